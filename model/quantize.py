"""Weight-only int8 for decoding on a CPU: each linear layer's weight as int8 with one bf16
scale per output row (symmetric, absmax / 127); activations stay bf16.

Decoding one token reads every weight once and does little else, so its speed is the bytes
read: int8 halves bf16's. The matrix product is `aten._weight_int8pack_mm` (PyTorch's CPU
kernel for exactly this layout). The output is not bit-identical to bf16; what it costs in
report quality is measured by bench/quality.py (docs/training.md). Inference only.
"""

from __future__ import annotations

import torch
from torch import nn


def int8_matmul_available() -> bool:
    return hasattr(torch.ops.aten, "_weight_int8pack_mm")


class Int8WeightOnlyLinear(nn.Module):
    """A frozen `nn.Linear` with int8 weights (per-row scale) and bf16 activations."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        weight = linear.weight.detach().float()
        scales = weight.abs().amax(dim=1).clamp(min=1e-12) / 127.0  # (out,)
        self.register_buffer("weight_int8", torch.round(weight / scales[:, None]).clamp(-127, 127).to(torch.int8))
        self.register_buffer("scales", scales.to(torch.bfloat16))
        bias = None if linear.bias is None else linear.bias.detach().to(torch.bfloat16)
        self.register_buffer("bias", bias)
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).to(torch.bfloat16).contiguous()
        out = torch.ops.aten._weight_int8pack_mm(flat, self.weight_int8, self.scales)
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)


def quantize_linear_layers(module: nn.Module) -> int:
    """Replace every `nn.Linear` under `module` (the LM head included; a tied input embedding
    stays as it is) by an `Int8WeightOnlyLinear`, and the rest (norms, embeddings) to bf16.
    Returns how many layers were replaced."""
    count = _replace_linears(module)
    module.to(torch.bfloat16)  # floating parameters only: the int8 buffers keep their dtype
    return count


def _replace_linears(module: nn.Module) -> int:
    count = 0
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Linear):
            setattr(module, name, Int8WeightOnlyLinear(child))
            count += 1
        else:
            count += _replace_linears(child)
    return count
