"""Offline `evaluate` metric modules shipped with ctscribe (loaded by local path, never from the hub).

Each sub-directory `<name>/<name>.py` is an `evaluate.Metric` script; `load_metric(name)`
loads it with `evaluate.load(<dir>)`, which needs no network.
"""

from __future__ import annotations

from pathlib import Path

METRICS_DIR = Path(__file__).resolve().parent
METRIC_NAMES = ("bleu", "meteor", "rouge_l", "bertscore")


def metric_path(name: str) -> Path:
    """The directory of a shipped metric module."""
    if name not in METRIC_NAMES:
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(METRIC_NAMES)}")
    return METRICS_DIR / name


def load_metric(name: str):
    """`evaluate.load` of a shipped metric module by its local path."""
    import evaluate

    return evaluate.load(str(metric_path(name)))
