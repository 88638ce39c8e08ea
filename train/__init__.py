"""ctscribe: train package."""
