"""Synthetic chest CT phantom: procedural anatomy with findings, reports, labels and questions.

`generate_case(seed, index)` gives one case (a canonical `Volume` in HU plus its CT-RATE
style report, 18 labels, findings with locations and questions); `write_dataset` writes a
CT-RATE-layout dataset (`ctscribe synth`). Deterministic per seed.
"""

from imaging.phantom.case import CaseSpec, PhantomCase, generate_case, render_case, sample_case
from imaging.phantom.config import FINDING_KINDS, FINDING_LABELS, PhantomConfig
from imaging.phantom.findings import Finding

__all__ = [
    "FINDING_KINDS",
    "FINDING_LABELS",
    "CaseSpec",
    "Finding",
    "PhantomCase",
    "PhantomConfig",
    "generate_case",
    "render_case",
    "sample_case",
]
