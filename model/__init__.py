"""ctscribe: model package."""
