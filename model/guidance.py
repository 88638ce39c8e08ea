"""Diagnosis-driven decoding (PromptMRG, AAAI 2024): the heads' findings, written into the prompt.

The label head says which findings the CT shows and the attribute heads where and how
large; the decoder is told, as text, before it writes:

    Seen: lung nodule (right upper lobe, 6 to 10 mm); pleural effusion (left).
    Not seen: cardiomegaly, pericardial effusion, ...

so the report follows what the vision side sees instead of the reports' text prior. Text,
not learned per-label embeddings: the decoder reads it with the token embeddings it already
has, and a user can read (and override, `findings=`) exactly what the decoder was told.
Training writes the same text from the ground truth, mixed with the heads' own predictions
and some label noise (train/guidance_mix.py), so the decoder follows the guidance and
tolerates the heads' errors.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch

from model.attributes import ATTRIBUTES, decode_attributes
from model.config import ModelConfig
from model.errors import invalid

Findings = dict[str, dict[str, list[str]]]
"""{label: {attribute name: [class, ...]}} of the findings seen (attributes may be empty)."""


def guidance_labels(cfg: ModelConfig) -> tuple[str, ...]:
    """The labels the guidance names, in head order."""
    chosen = set(cfg.prompt.guidance_labels or cfg.labels.names)
    return tuple(n for n in cfg.labels.names if n in chosen)


def _attribute_phrase(name: str, values: list[str]) -> str:
    attr = ATTRIBUTES[name]
    if attr.name == "lobe":
        return f"{values[0]} lobe"
    if attr.name == "station":
        return " and ".join(values)
    return values[0]


def guidance_text(seen: Findings, labels: Iterable[str]) -> str:
    """The guidance for `seen` findings among `labels` (the labels it may name), in `labels` order."""
    labels = tuple(labels)
    parts, absent = [], []
    for label in labels:
        if label not in seen:
            absent.append(label.lower())
            continue
        details = [
            _attribute_phrase(name, values)
            for name, values in seen[label].items()
            if values and name in ATTRIBUTES and ATTRIBUTES[name].finding == label
        ]
        parts.append(label.lower() + (f" ({', '.join(details)})" if details else ""))
    lines = ["Seen: " + ("; ".join(parts) if parts else "none") + "."]
    if absent:
        lines.append("Not seen: " + ", ".join(absent) + ".")
    return "\n".join(lines)


def findings_from_heads(
    label_probs: Mapping[str, float],
    attribute_probs: Mapping[str, Mapping[str, float]],
    labels: Iterable[str],
    threshold: float = 0.5,
) -> Findings:
    """Head outputs of one CT -> the findings seen: labels at or above `threshold`, each with
    its most likely attribute classes (multi-label attributes: every class >= 0.5, else the best)."""
    seen: Findings = {}
    for label in labels:
        if float(label_probs.get(label, 0.0)) < threshold:
            continue
        details = {}
        for name, probs in attribute_probs.items():
            attr = ATTRIBUTES[name]
            if attr.finding != label or not probs:
                continue
            best = max(probs, key=probs.get)
            details[name] = [c for c in attr.classes if probs[c] >= 0.5] if attr.multi else [best]
            details[name] = details[name] or [best]
        seen[label] = details
    return seen


def findings_from_truth(labels: Mapping[str, int], attributes: Mapping[str, list[str]], names: Iterable[str]) -> Findings:
    """A manifest sample's labels (0/1) + its report's attributes -> the findings seen."""
    seen: Findings = {}
    for label in names:
        if int(labels.get(label, 0) or 0) == 1:
            seen[label] = {
                n: list(v) for n, v in attributes.items() if n in ATTRIBUTES and ATTRIBUTES[n].finding == label
            }
    return seen


def head_outputs(
    cfg: ModelConfig, label_logits: torch.Tensor | None, attribute_logits: torch.Tensor | None
) -> tuple[list[dict[str, float]], list[dict[str, dict[str, float]]]]:
    """(B, n_labels) and (B, C) logits -> per CT: {label: prob}, {attribute: {class: prob}}."""
    if label_logits is None:
        return [], []
    probs = torch.sigmoid(label_logits.float()).cpu()
    labels = [{n: round(float(p), 6) for n, p in zip(cfg.labels.names, row.tolist())} for row in probs]
    if attribute_logits is None:
        return labels, [{} for _ in labels]
    attrs = [decode_attributes(row.cpu(), cfg.labels.attributes) for row in attribute_logits]
    return labels, attrs


def check_findings(findings: Mapping, cfg: ModelConfig) -> Findings:
    """User-given findings (`{label: {attribute: [class]}}` or a list of labels) -> Findings,
    refusing unknown labels, attributes and classes (a clear invalid_request)."""
    names = guidance_labels(cfg)
    if isinstance(findings, (list, tuple)):
        findings = {label: {} for label in findings}
    if not isinstance(findings, Mapping):
        raise invalid("findings must be a list of labels or an object {label: {attribute: [class]}}")
    by_lower = {n.lower(): n for n in names}
    out: Findings = {}
    for label, attrs in findings.items():
        name = by_lower.get(str(label).strip().lower())
        if name is None:
            raise invalid(f"unknown finding {label!r}; this model knows: {list(names)}")
        attrs = attrs or {}
        if not isinstance(attrs, Mapping):
            raise invalid(f"attributes of {label!r} must be an object {{attribute: [class]}}")
        details = {}
        for attr_name, values in attrs.items():
            attr = ATTRIBUTES.get(attr_name)
            if attr is None or attr.finding != name:
                raise invalid(f"{attr_name!r} is not an attribute of {name!r}")
            values = [values] if isinstance(values, str) else list(values)
            bad = [v for v in values if v not in attr.classes]
            if bad or not values:
                raise invalid(f"{attr_name} must be among {list(attr.classes)}, got {values}")
            details[attr_name] = values
        out[name] = details
    return out
