"""Per-finding attribute heads: where a finding is and how large (side, lobe, size bin, device).

The 18-label head says *whether* a finding is present; reports and questions also ask
*where* ("which lobe?", "which side?") and *how large*. Each attribute is a small
classification problem over a fixed vocabulary, asked only of volumes where its finding is
present (the loss is masked elsewhere). Targets come from report text (model/labeler/
attributes.py), so CT-RATE reports and the phantom's reports train them the same way.

The head reads the refined slice tokens, not only z3d: a learned query per attribute
attends over the slices (each carries its plane and position), so "the nodule is in the
slices near the top of the right lung" can become a lobe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from model.errors import invalid

LOBES = ("right upper", "right middle", "right lower", "left upper", "left lower")
NODULE_SIZE_BINS = ("smaller than 6 mm", "6 to 10 mm", "11 to 20 mm", "larger than 20 mm")


@dataclass(frozen=True)
class Attribute:
    finding: str
    """The CT-RATE label this attribute describes (asked only where it is present)."""
    name: str
    """What it says: lobe, side, size, device, station."""
    classes: tuple[str, ...]
    """The vocabulary, in output order."""
    multi: bool = False
    """Several classes may hold at once (lymph node stations): BCE instead of softmax."""


ATTRIBUTES: dict[str, Attribute] = {
    "nodule_lobe": Attribute("Lung nodule", "lobe", LOBES),
    "nodule_size": Attribute("Lung nodule", "size", NODULE_SIZE_BINS),
    "consolidation_lobe": Attribute("Consolidation", "lobe", LOBES),
    "opacity_lobe": Attribute("Lung opacity", "lobe", LOBES),
    "atelectasis_lobe": Attribute("Atelectasis", "lobe", LOBES),
    "effusion_side": Attribute("Pleural effusion", "side", ("right", "left", "bilateral")),
    "device": Attribute("Medical material", "device", ("port catheter", "sternotomy wires", "pacemaker")),
    "lymph_station": Attribute(
        "Lymphadenopathy", "station", ("right paratracheal", "subcarinal", "prevascular", "right hilar"), multi=True
    ),
}


def size_bin(size_mm: float) -> str:
    """A nodule diameter -> its NODULE_SIZE_BINS entry (the phantom questions' bins)."""
    return NODULE_SIZE_BINS[0 if size_mm < 6 else 1 if size_mm <= 10 else 2 if size_mm <= 20 else 3]


def check_attribute_names(names) -> tuple[str, ...]:
    unknown = [n for n in names if n not in ATTRIBUTES]
    if unknown:
        raise invalid(f"unknown attributes {unknown}; known: {list(ATTRIBUTES)}")
    return tuple(names)


def class_offsets(names: tuple[str, ...]) -> list[tuple[int, int]]:
    """(start, stop) of each attribute's classes in the concatenated logits."""
    out, start = [], 0
    for n in names:
        stop = start + len(ATTRIBUTES[n].classes)
        out.append((start, stop))
        start = stop
    return out


class AttributeHead(nn.Module):
    """Refined slice tokens (B, S, d_slice) + z3d (B, d_volume) -> (B, sum of class counts) logits."""

    def __init__(self, names: tuple[str, ...], d_slice: int, d_volume: int):
        super().__init__()
        self.names = check_attribute_names(names)
        self.offsets = class_offsets(self.names)
        n_attr = len(self.names)
        self.queries = nn.Parameter(torch.empty(n_attr, d_slice))  # (A, d_slice)
        self.norm = nn.LayerNorm(d_slice)
        self.proj = nn.ModuleList(
            nn.Linear(d_slice + d_volume, len(ATTRIBUTES[n].classes)) for n in self.names
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The queries' initialisation (the linear layers and the norm reset themselves)."""
        nn.init.normal_(self.queries, std=1.0 / math.sqrt(self.queries.shape[-1]))

    def forward(self, slices: torch.Tensor, z3d: torch.Tensor, slice_mask: torch.Tensor) -> torch.Tensor:
        x = self.norm(slices)  # (B, S, d)
        scores = torch.einsum("bsd,ad->bas", x, self.queries) / math.sqrt(x.shape[-1])  # (B, A, S)
        scores = scores.masked_fill(~slice_mask.bool().unsqueeze(1), float("-inf"))
        pooled = torch.softmax(scores, dim=-1) @ x  # (B, A, d)
        logits = [p(torch.cat([pooled[:, a], z3d], dim=-1)) for a, p in enumerate(self.proj)]
        return torch.cat(logits, dim=-1)  # (B, C)


def attribute_loss(
    logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, names: tuple[str, ...]
) -> torch.Tensor:
    """Cross entropy (softmax attributes) or BCE (multi) per attribute, averaged over the
    (sample, attribute) pairs whose target is known. targets (B, C) one/multi-hot, mask (B, A)."""
    total, count = logits.new_zeros(()), logits.new_zeros(())
    for a, (start, stop) in enumerate(class_offsets(names)):
        rows = mask[:, a].bool()
        if not bool(rows.any()):
            continue
        lg, tg = logits[rows, start:stop].float(), targets[rows, start:stop].float()
        if ATTRIBUTES[names[a]].multi:
            per = F.binary_cross_entropy_with_logits(lg, tg, reduction="none").mean(-1)
        else:
            per = F.cross_entropy(lg, tg.argmax(-1), reduction="none")
        total = total + per.sum()
        count = count + rows.sum()
    return total / count.clamp(min=1)


def attribute_targets(values: dict[str, list[str]], names: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """{attribute: [class, ...]} (from the report text) -> (C,) float targets, (A,) bool mask."""
    offsets = class_offsets(names)
    targets = torch.zeros(offsets[-1][1] if offsets else 0)
    mask = torch.zeros(len(names), dtype=torch.bool)
    for a, name in enumerate(names):
        classes = ATTRIBUTES[name].classes
        known = [c for c in values.get(name, []) if c in classes]
        if not known:
            continue
        if not ATTRIBUTES[name].multi:
            known = known[:1]
        for c in known:
            targets[offsets[a][0] + classes.index(c)] = 1.0
        mask[a] = True
    return targets, mask


def decode_attributes(logits: torch.Tensor, names: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """(C,) logits of one volume -> {attribute: {class: probability}}."""
    out = {}
    for a, (start, stop) in enumerate(class_offsets(names)):
        attr = ATTRIBUTES[names[a]]
        lg = logits[start:stop].float()
        probs = torch.sigmoid(lg) if attr.multi else torch.softmax(lg, dim=-1)
        out[names[a]] = {c: round(float(p), 6) for c, p in zip(attr.classes, probs.tolist())}
    return out
