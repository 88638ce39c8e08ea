"""ctscribe: fusion package."""
