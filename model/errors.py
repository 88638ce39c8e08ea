"""The model package's error type (a `CtscribeError`, so the CLI and the service map it)."""

from __future__ import annotations

from ctscribe.errors import CtscribeError, ErrorCode


class ModelError(CtscribeError):
    """A checkpoint, preset or request the model cannot serve.

    `invalid_request` for bad arguments or a malformed checkpoint; `model_not_ready` when
    the weights are not there (missing directory, hub offline, demo not trained yet).
    """


def invalid(message: str) -> ModelError:
    return ModelError(ErrorCode.INVALID_REQUEST, message)


def not_ready(message: str) -> ModelError:
    return ModelError(ErrorCode.MODEL_NOT_READY, message)
