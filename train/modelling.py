"""The bits of the model the stages share: the model config, the slice encoder, weight files.

Stage 1 trains the same encoder class the model uses (`model.encoder.SliceEncoder`), so its
exported state dict loads into stage 2, stage 3 and the model's checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from ctscribe.errors import CtscribeError, ErrorCode


def load_model_config(preset: str, init_checkpoint: str = "", model_config: str = ""):
    """The ModelConfig of `init_checkpoint`'s config.json, else of the `model_config` JSON,
    else of the preset."""
    from model.config import ModelConfig

    if init_checkpoint or model_config:
        path = Path(init_checkpoint) / "config.json" if init_checkpoint else Path(model_config)
        if not path.is_file():
            raise CtscribeError(ErrorCode.INVALID_REQUEST, f"model config not found: {path}")
        doc = json.loads(path.read_text())
        doc.pop("checkpoint", None)
        return ModelConfig.from_dict(doc)
    return ModelConfig.from_preset(preset)


def build_encoder(enc_cfg) -> nn.Module:
    """A randomly initialised `model.encoder.SliceEncoder` (pretrained weights are the caller's)."""
    from model.encoder import build_encoder as build_slice_encoder

    return build_slice_encoder(enc_cfg)


def save_weights(module: nn.Module, path: Path, metadata: dict | None = None) -> Path:
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={k: str(v) for k, v in (metadata or {}).items()})
    return path


def load_weights(module: nn.Module, path: str | Path, what: str) -> None:
    """Load a `.safetensors` state dict strictly; shape or key mismatches are clear errors."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CtscribeError(ErrorCode.INVALID_REQUEST, f"{what} weights not found: {path}")
    state = load_file(str(path))
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CtscribeError(ErrorCode.INVALID_REQUEST, f"{what} weights {path} do not fit: {first}") from None
