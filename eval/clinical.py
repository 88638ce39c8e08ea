"""Clinical efficacy metrics: per-label, macro and micro P/R/F1 of 18-label vectors (the labeler on generated vs reference reports).

The reference report's labels are the truth (or given labels, when a manifest carries them).
Per label: precision, recall, F1 and support (positive references). Macro: the unweighted
mean over labels; micro: from true/false positives and false negatives summed over labels.
A label with no predicted positives has precision 0; with no reference positives, recall 0
(scikit-learn's `zero_division=0`), so macro figures are not inflated by empty labels.
"""

from __future__ import annotations

import numpy as np

from ctscribe.labels import CTRATE_LABELS


def _prf(tp: float, fp: float, fn: float) -> tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def label_prf(y_true, y_pred, labels: tuple[str, ...] = CTRATE_LABELS) -> dict:
    """Per-label and macro/micro precision, recall, F1 for 0/1 arrays of shape (N, L)."""
    truth = np.asarray(y_true, dtype=bool).reshape(-1, len(labels))  # (N, L)
    pred = np.asarray(y_pred, dtype=bool).reshape(-1, len(labels))  # (N, L)
    if truth.shape != pred.shape:
        raise ValueError(f"shape mismatch: truth {truth.shape} vs prediction {pred.shape}")
    tp = (truth & pred).sum(axis=0)
    fp = (~truth & pred).sum(axis=0)
    fn = (truth & ~pred).sum(axis=0)
    per_label = {}
    for i, label in enumerate(labels):
        precision, recall, f1 = _prf(tp[i], fp[i], fn[i])
        per_label[label] = {"precision": precision, "recall": recall, "f1": f1,
                            "support": int(truth[:, i].sum()), "predicted": int(pred[:, i].sum())}
    micro = _prf(tp.sum(), fp.sum(), fn.sum())
    return {
        "per_label": per_label,
        "macro": {k: float(np.mean([v[k] for v in per_label.values()])) for k in ("precision", "recall", "f1")},
        "micro": {"precision": micro[0], "recall": micro[1], "f1": micro[2]},
        "n": int(truth.shape[0]),
    }


def labels_matrix(label_dicts: list[dict[str, float]], labels: tuple[str, ...] = CTRATE_LABELS,
                  threshold: float = 0.5):
    """(N, L) 0/1 array from per-report label dicts (probabilities are thresholded)."""
    return np.array([[int(float(d.get(label, 0)) >= threshold) for label in labels] for d in label_dicts],
                    dtype=np.int64).reshape(-1, len(labels))
