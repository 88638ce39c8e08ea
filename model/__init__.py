"""ctscribe: the model (configs, slice encoder, aggregator, decoder, pipeline).

The public API (`load`, `build`, `Pipeline`, `GenerationParams`, the result types,
`PreparedCT`, `ModelError`) is imported lazily, so `import model.labeler` works without torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "load": "model.pipeline",
    "build": "model.pipeline",
    "Pipeline": "model.pipeline",
    "GenerationParams": "model.generation",
    "ReportOutput": "model.results",
    "AnswerOutput": "model.results",
    "ChoiceOutput": "model.results",
    "PreparedCT": "model.preprocess",
    "ModelConfig": "model.config",
    "ModelError": "model.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'model' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
