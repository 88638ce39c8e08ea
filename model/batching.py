"""Collating prepared CTs and encoded prompts into the batch dict `CTScribeModel.forward` reads.

Batch keys (all tensors):
- `slices` (B, S, 3, H, W) float, `plane_ids` (B, S) long, `positions` (B, S) float,
  `slice_mask` (B, S) bool (False on padding when CTs have different slice counts),
  `slice_index` (B, S) long (key-slice evidence only).
- `input_ids` (B, T) long, `attention_mask` (B, T) long, `prompt_mask` (B, T) bool (the
  prompt's real tokens: what the fusion may read), `labels` (B, T) long (-100 except on
  answer tokens; present when answers were given).
- optional `label_targets` (B, L) float and `label_mask` (B, L) bool for the label head.
Generation pads on the left (new tokens are appended on the right); training may use either.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from model.preprocess import PreparedCT
from model.prompts import EncodedPrompt


def stack_cts(cts: Sequence[PreparedCT]) -> dict[str, torch.Tensor]:
    """PreparedCTs -> slice tensors padded to the longest; `slice_mask` marks real slices."""
    if not cts:
        raise ValueError("no CTs to stack")
    n = max(ct.n_slices for ct in cts)
    b = len(cts)
    c, h, w = cts[0].slices.shape[1:]
    slices = torch.zeros(b, n, c, h, w, dtype=torch.float32)
    plane_ids = torch.zeros(b, n, dtype=torch.long)
    positions = torch.zeros(b, n, dtype=torch.float32)
    slice_index = torch.zeros(b, n, dtype=torch.long)
    slice_mask = torch.zeros(b, n, dtype=torch.bool)
    for i, ct in enumerate(cts):
        s = ct.n_slices
        slices[i, :s] = ct.slices
        plane_ids[i, :s] = ct.plane_ids
        positions[i, :s] = ct.positions
        slice_index[i, :s] = ct.slice_index
        slice_mask[i, :s] = True
    return {
        "slices": slices,
        "plane_ids": plane_ids,
        "positions": positions,
        "slice_index": slice_index,
        "slice_mask": slice_mask,
    }


def pad_prompts(encoded: Sequence[EncodedPrompt], pad_id: int, side: str = "left") -> dict[str, torch.Tensor]:
    """Encoded prompts (+ answers) -> `input_ids`, `attention_mask`, `prompt_mask`, `labels`."""
    if side not in ("left", "right"):
        raise ValueError(f"side must be left or right, got {side!r}")
    t = max(len(e.input_ids) for e in encoded)
    b = len(encoded)
    input_ids = torch.full((b, t), pad_id, dtype=torch.long)
    labels = torch.full((b, t), -100, dtype=torch.long)
    attention = torch.zeros(b, t, dtype=torch.long)
    prompt = torch.zeros(b, t, dtype=torch.bool)
    for i, e in enumerate(encoded):
        n = len(e.input_ids)
        start = t - n if side == "left" else 0
        input_ids[i, start : start + n] = torch.tensor(e.input_ids)
        labels[i, start : start + n] = torch.tensor(e.labels)
        attention[i, start : start + n] = 1
        prompt[i, start : start + e.n_prompt] = True
    return {"input_ids": input_ids, "attention_mask": attention, "prompt_mask": prompt, "labels": labels}


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
