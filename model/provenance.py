"""What a model was trained on, and the warning its results carry when the input lies outside it.

DESIGN.md §7 ("a checkpoint says what it is"). A checkpoint records `trained_on` in its
`checkpoint` block (`model.checkpoint.save`); `Pipeline.trained_on` reads it back, and a
checkpoint written before the field existed is `unknown`. A model trained only on synthetic
phantoms describes phantoms: on any other CT its output is not meaningful, and every result
it gives for one (report, free-text answer, multiple choice) says so. The check needs both
the read volume (`Volume.source_hint`) and the pipeline, so the serving layer and the CLI
call `input_warnings` / `attach` once per request; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable

from imaging.volume import PHANTOM_SOURCE_HINT
from model.errors import invalid

UNKNOWN = "unknown"
SYNTHETIC_PHANTOM = "synthetic-phantom"
CT_RATE = "ct-rate"
NOT_TRAINED_ON_REAL_CT = {
    "code": "model_not_trained_on_real_ct",
    "message": "this model was trained on synthetic phantoms only; its output on a real CT is not meaningful",
}


def check_trained_on(value) -> str:
    """A `trained_on` value as stored: a non-empty string (`synthetic-phantom`, `ct-rate`, `unknown`, ...)."""
    if not isinstance(value, str) or not value.strip():
        raise invalid(f"trained_on must be a non-empty string (e.g. {SYNTHETIC_PHANTOM}, {CT_RATE}), not {value!r}")
    return value.strip()


def input_warnings(trained_on: str, source_hint: str) -> list[dict]:
    """The warnings every result for this input gets: [] unless a phantom-only model reads a non-phantom."""
    if trained_on == SYNTHETIC_PHANTOM and source_hint != PHANTOM_SOURCE_HINT:
        return [dict(NOT_TRAINED_ON_REAL_CT)]
    return []


def attach(outputs: Iterable, warnings: list[dict]) -> None:
    """Put (copies of) `warnings` first in each result's `warnings` list (they qualify all the rest)."""
    for output in outputs:
        output.warnings[:0] = [dict(w) for w in warnings]
