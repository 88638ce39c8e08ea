"""ctscribe service and command line."""
