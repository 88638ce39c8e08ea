"""Weights that ship inside the package: the trained demo checkpoint (the `demo` preset).

It sits in `model/weights/demo` in the source tree and in an install; the CLI and the
service both default to it.
"""

from pathlib import Path

DEMO_CHECKPOINT = Path(__file__).resolve().parent / "weights" / "demo"
