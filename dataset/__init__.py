"""Datasets as the model sees them: the manifest (one JSONL line per volume), the CT-RATE,
SAMF MCQ and phantom importers that write it, volume reading with the HU source decided,
and the preprocessing cache both training and evaluation read volumes through."""
