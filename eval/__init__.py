"""ctscribe: eval package."""
