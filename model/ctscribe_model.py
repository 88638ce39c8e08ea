"""The assembled model (DESIGN.md §2, §4): encoder -> aggregator -> fusion -> decoder, + label head.

Data flow of `forward(batch)` (batch keys: model/batching.py):
  slices (B, S, 3, H, W) --encoder--> F2d (B, S, d_slice) --aggregator--> z3d (B, d_volume),
  refined (B, S, d_slice); label head: z3d -> (B, 18) logits.
  prompt token embeddings (B, T, d_model) + prompt mask --fusion--> visual tokens (B, N, d_model),
  spliced into the embeddings where the placeholder token sits (found by mask, not offset)
  --decoder--> logits (B, T, V).
Losses: next-token cross entropy on answer tokens only (labels -100 elsewhere) + BCE of the
label head where label targets exist, weighted by `labels.loss_weight`.

The fusion's text attention reads the prompt only: `prompt_mask` excludes answer tokens,
padding, and (ctscribe fusions) the placeholder rows, whose embeddings carry no meaning.
The compat fusions read the whole prompt including the placeholders, as the release does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fusion.base import Fusion, FusionOutput
from model.aggregator import Aggregator
from model.attributes import AttributeHead
from model.config import ModelConfig
from model.decoder import Decoder
from model.encoder import SliceEncoder
from model.errors import invalid


@dataclass
class VisualFeatures:
    """What the vision side computes once per CT, reused for every prompt about it."""

    z3d: torch.Tensor
    """(B, d_volume) volume embedding."""
    slices: torch.Tensor
    """(B, S, d_slice) refined slice embeddings."""
    slice_mask: torch.Tensor
    """(B, S) bool, True on real slices."""
    plane_ids: torch.Tensor
    """(B, S) long."""
    positions: torch.Tensor
    """(B, S) float in [0, 1]."""
    label_logits: torch.Tensor | None
    """(B, n_labels) or None when the model has no label head."""
    attribute_logits: torch.Tensor | None = None
    """(B, n_attribute_classes) or None when the model has no attribute heads."""

    def repeat(self, counts: list[int]) -> VisualFeatures:
        """Row i repeated counts[i] times (several prompts about one CT)."""
        idx = torch.repeat_interleave(torch.arange(len(counts), device=self.z3d.device), torch.tensor(counts, device=self.z3d.device))
        return VisualFeatures(
            z3d=self.z3d[idx],
            slices=self.slices[idx],
            slice_mask=self.slice_mask[idx],
            plane_ids=self.plane_ids[idx],
            positions=self.positions[idx],
            label_logits=None if self.label_logits is None else self.label_logits[idx],
            attribute_logits=None if self.attribute_logits is None else self.attribute_logits[idx],
        )


@dataclass
class CTScribeOutput:
    loss: torch.Tensor | None
    """lm_loss + loss_weight * label_loss (whichever exist); None without targets."""
    lm_loss: torch.Tensor | None
    label_loss: torch.Tensor | None
    logits: torch.Tensor
    """(B, T, V) next-token logits."""
    label_logits: torch.Tensor | None
    """(B, n_labels)."""
    slice_attention: torch.Tensor
    """(B, S) the fusion's α."""
    visual_tokens: torch.Tensor
    """(B, N, d_model) what was spliced into the placeholders."""


class CTScribeModel(nn.Module):
    def __init__(
        self,
        cfg: ModelConfig,
        encoder: SliceEncoder,
        aggregator: Aggregator,
        fusion: Fusion,
        decoder: Decoder,
        vision_token_id: int,
    ):
        super().__init__()
        self.cfg = cfg
        self.encoder = encoder
        self.aggregator = aggregator
        self.fusion = fusion
        self.decoder = decoder
        self.label_head = nn.Linear(cfg.aggregator.d_volume, cfg.labels.n_labels) if cfg.labels.enabled else None
        self.attribute_head = (
            AttributeHead(cfg.labels.attributes, cfg.aggregator.d_slice, cfg.aggregator.d_volume)
            if cfg.labels.attributes
            else None
        )
        self.vision_token_id = int(vision_token_id)
        self.placeholder_repeat = _placeholder_repeat(cfg)

    # ---- sizes -----------------------------------------------------------------------------

    def n_placeholders(self, n_slices: int) -> int:
        """How many placeholder tokens a prompt about a CT of `n_slices` slices must hold."""
        return self.fusion.n_tokens(n_slices) * self.placeholder_repeat

    def vision_modules(self) -> dict[str, nn.Module]:
        """The parts stored in `vision.safetensors` (everything but the decoder)."""
        parts = {"encoder": self.encoder, "aggregator": self.aggregator, "fusion": self.fusion}
        if self.label_head is not None:
            parts["label_head"] = self.label_head
        if self.attribute_head is not None:
            parts["attribute_head"] = self.attribute_head
        return parts

    # ---- stages ----------------------------------------------------------------------------

    def encode_volume(
        self,
        slices: torch.Tensor | None = None,
        plane_ids: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
        slice_mask: torch.Tensor | None = None,
        slice_features: torch.Tensor | None = None,
    ) -> VisualFeatures:
        """Slice images (B, S, 3, H, W), or cached encoder features (B, S, d_slice) -> VisualFeatures."""
        if slice_features is None:
            if slices is None:
                raise invalid("encode_volume needs slices or slice_features")
            slice_features = self.encoder(slices)  # (B, S, d_slice)
        b, s = slice_features.shape[:2]
        dev = slice_features.device
        if slice_mask is None:
            slice_mask = torch.ones(b, s, dtype=torch.bool, device=dev)
        if plane_ids is None:
            plane_ids = torch.zeros(b, s, dtype=torch.long, device=dev)
        if positions is None:
            positions = torch.linspace(0.0, 1.0, s, device=dev).expand(b, s)
        z3d, refined = self.aggregator(slice_features, plane_ids, positions, slice_mask)
        label_logits = self.label_head(z3d) if self.label_head is not None else None
        attribute_logits = (
            self.attribute_head(refined, z3d, slice_mask) if self.attribute_head is not None else None
        )
        return VisualFeatures(z3d, refined, slice_mask.bool(), plane_ids, positions, label_logits, attribute_logits)

    def fusion_prompt_mask(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """(B, T) bool: the tokens the fusion's text attention may read (never the answer)."""
        mask = attention_mask.bool() if prompt_mask is None else prompt_mask.bool() & attention_mask.bool()
        if self.placeholder_repeat == 1:  # ctscribe fusions: placeholder rows carry no text
            mask = mask & (input_ids != self.vision_token_id)
        return mask

    def build_inputs_embeds(
        self,
        visual: VisualFeatures,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        prompt_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, FusionOutput]:
        """Token embeddings with the fusion's visual tokens spliced into the placeholders."""
        embeds = self.decoder.embed_tokens(input_ids)  # (B, T, d_model)
        text_mask = self.fusion_prompt_mask(input_ids, attention_mask, prompt_mask)
        fused = self.fusion(
            visual.z3d,
            visual.slices,
            embeds.to(visual.z3d.dtype),
            text_mask,
            slice_mask=visual.slice_mask,
            plane_ids=visual.plane_ids,
            positions=visual.positions,
        )
        return self.splice(embeds, input_ids, fused, attention_mask), fused

    def visual_slots(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, n: int) -> torch.Tensor:
        """(B, T) bool: the positions the n visual tokens are written to (prompt.visual_positions)."""
        where = input_ids == self.vision_token_id  # (B, T)
        counts = where.sum(dim=1)
        if bool((counts != n).any()):
            raise invalid(f"each prompt must hold {n} placeholder tokens, found {counts.tolist()}")
        if self.cfg.prompt.visual_positions == "placeholders":
            return where
        # after-first-token (the SAMF release): positions first+1 .. first+n of each row, where
        # `first` is the row's first real token (rows are left padded).
        real = attention_mask.bool()
        first = real.long().argmax(dim=1, keepdim=True)  # (B, 1)
        if bool(((real.sum(dim=1, keepdim=True)) < n + 1).any()):
            raise invalid(f"each prompt must hold at least {n + 1} tokens")
        offset = torch.arange(input_ids.shape[1], device=input_ids.device)[None] - first  # (B, T)
        return (offset >= 1) & (offset <= n)

    def splice(
        self, embeds: torch.Tensor, input_ids: torch.Tensor, fused: FusionOutput, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Write the visual tokens, in order, into their positions (`visual_slots`)."""
        tokens = fused.tokens  # (B, N, d_model)
        repeat = int(fused.extras.get("repeat", 1))
        if repeat > 1:
            tokens = tokens.repeat_interleave(repeat, dim=1)  # (B, N * repeat, d_model)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        where = self.visual_slots(input_ids, attention_mask, int(tokens.shape[1]))
        # masked_scatter fills the True positions in row-major order: row b's placeholders get
        # row b's tokens in sequence, wherever the placeholders sit.
        return embeds.masked_scatter(where.unsqueeze(-1), tokens.to(embeds.dtype))

    # ---- training / scoring forward -----------------------------------------------------------

    def forward(self, batch: dict) -> CTScribeOutput:
        visual = self.encode_volume(
            batch.get("slices"),
            batch.get("plane_ids"),
            batch.get("positions"),
            batch.get("slice_mask"),
            slice_features=batch.get("slice_features"),
        )
        input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
        labels = batch.get("labels")
        prompt_mask = batch.get("prompt_mask")
        if prompt_mask is None and labels is not None:
            prompt_mask = labels == -100  # answer tokens carry labels; never let the fusion read them
        embeds, fused = self.build_inputs_embeds(visual, input_ids, attention_mask, prompt_mask)
        positions = position_ids_from_mask(attention_mask)
        out = self.decoder(inputs_embeds=embeds, attention_mask=attention_mask, position_ids=positions)
        logits = out.logits  # (B, T, V)

        lm_loss = next_token_loss(logits, labels) if labels is not None else None
        label_loss = None
        targets = batch.get("label_targets")
        if targets is not None and visual.label_logits is not None:
            label_loss = label_bce(visual.label_logits, targets, batch.get("label_mask"))
        parts = [x for x in (lm_loss,) if x is not None]
        if label_loss is not None:
            parts.append(self.cfg.labels.loss_weight * label_loss)
        loss = torch.stack(parts).sum() if parts else None
        return CTScribeOutput(loss, lm_loss, label_loss, logits, visual.label_logits, fused.slice_attention, fused.tokens)


def _placeholder_repeat(cfg: ModelConfig) -> int:
    """The compat fusions emit one token the release copies into every `<im_patch>` slot."""
    if cfg.fusion.name.endswith("-compat"):
        from fusion.compat import COMPAT_PLACEHOLDERS

        return COMPAT_PLACEHOLDERS
    return 1


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T) positions counting real tokens only, so left padding does not shift them."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def next_token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross entropy of predicting labels[t + 1] from position t, over labelled tokens."""
    shift_logits = logits[:, :-1].float()  # (B, T-1, V)
    shift_labels = labels[:, 1:].to(logits.device)  # (B, T-1)
    if not bool((shift_labels != -100).any()):
        return shift_logits.sum() * 0.0  # no answer tokens: zero loss that keeps the graph
    return F.cross_entropy(shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1), ignore_index=-100)


def label_bce(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """BCE of the label head, averaged over the (sample, label) pairs that have a target."""
    targets = targets.to(logits.dtype)
    if mask is None:
        mask = ~torch.isnan(targets)
    mask = mask.bool()
    per = F.binary_cross_entropy_with_logits(logits, torch.nan_to_num(targets), reduction="none")
    return (per * mask).sum() / mask.sum().clamp(min=1)


def assemble(cfg: ModelConfig, tokenizer, decoder: Decoder) -> CTScribeModel:
    """The full model around a ready decoder; vision parts randomly initialised."""
    from fusion.base import build_fusion
    from model.aggregator import build_aggregator
    from model.encoder import build_encoder
    from model.tokenizer import vision_token_id

    if len(tokenizer) > decoder.base.get_input_embeddings().weight.shape[0]:
        raise invalid("the decoder's vocabulary is smaller than the tokenizer's")
    return CTScribeModel(
        cfg,
        build_encoder(cfg.encoder),
        build_aggregator(cfg.aggregator),
        build_fusion(cfg.fusion),
        decoder,
        vision_token_id(tokenizer, cfg.prompt),
    )
