"""VQA metrics: multiple choice (accuracy, macro P/R/F1 over answer letters) and free text (SQuAD-style).

Multiple choice: each answer is a choice index (0 = "a"); precision, recall and F1 are
computed per letter that occurs among the gold or predicted answers and macro-averaged
(a letter never predicted has precision 0, as scikit-learn's `zero_division=0`).
Free text: exact match and token-overlap F1 after SQuAD's normalisation (lowercase, drop
punctuation and the articles a/an/the, collapse whitespace), averaged over questions.
"""

from __future__ import annotations

import re
import string
from collections import Counter

LETTERS = "abcdefghijklmnopqrstuvwxyz"


def mcq_metrics(predicted_indices: list[int | None], answer_indices: list[int]) -> dict[str, float]:
    """accuracy, precision, recall, f1 (macro over letters), n, unparsed for multiple-choice
    answers. A None prediction (a generated answer that names no option) is wrong, and no letter."""
    if len(predicted_indices) != len(answer_indices):
        raise ValueError(f"{len(predicted_indices)} predictions but {len(answer_indices)} answers")
    n = len(answer_indices)
    if n == 0:
        return {"accuracy": 0.0, "precision": 0.0, "recall": 0.0, "f1": 0.0, "n": 0}
    pairs = list(zip(predicted_indices, answer_indices))
    accuracy = sum(p == a for p, a in pairs) / n
    classes = sorted((set(predicted_indices) | set(answer_indices)) - {None})
    precisions, recalls, f1s = [], [], []
    per_letter = {}
    for c in classes:
        tp = sum(p == c and a == c for p, a in pairs)
        n_pred = sum(p == c for p, _ in pairs)
        n_gold = sum(a == c for _, a in pairs)
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / n_gold if n_gold else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        precisions.append(precision)
        recalls.append(recall)
        f1s.append(f1)
        per_letter[_letter(c)] = {"precision": precision, "recall": recall, "f1": f1, "support": n_gold}
    return {
        "accuracy": accuracy,
        "precision": sum(precisions) / len(classes),
        "recall": sum(recalls) / len(classes),
        "f1": sum(f1s) / len(classes),
        "n": n,
        "unparsed": sum(p is None for p in predicted_indices),
        "per_letter": per_letter,
    }


def _letter(index: int) -> str:
    return LETTERS[index] if 0 <= index < len(LETTERS) else str(index)


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lowercase, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(reference))


def token_f1(prediction: str, reference: str) -> float:
    """Harmonic mean of token precision and recall over the normalised bags of words."""
    pred_tokens = normalize_answer(prediction).split()
    ref_tokens = normalize_answer(reference).split()
    if not pred_tokens or not ref_tokens:
        # Both empty is a perfect (empty) answer; one empty shares nothing with the other.
        return float(pred_tokens == ref_tokens)
    overlap = sum((Counter(pred_tokens) & Counter(ref_tokens)).values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(pred_tokens)
    recall = overlap / len(ref_tokens)
    return 2 * precision * recall / (precision + recall)


def free_text_metrics(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Mean exact match and token F1 over free-text answers."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    n = len(references)
    if n == 0:
        return {"exact_match": 0.0, "token_f1": 0.0, "n": 0}
    return {
        "exact_match": sum(exact_match(p, r) for p, r in zip(predictions, references)) / n,
        "token_f1": sum(token_f1(p, r) for p, r in zip(predictions, references)) / n,
        "n": n,
    }
