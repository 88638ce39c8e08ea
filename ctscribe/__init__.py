"""ctscribe: chest CT report generation and visual question answering.

This package is the lowest layer: what every other package shares (the error type and its
codes, the CT-RATE label names) and imports nothing of ours.
"""
