"""Stage 2, supervised variant: encoder + aggregator + label head on the label BCE alone.

`warmup.objective: labels` trains the vision side where labels exist (CT-RATE's 18 labels,
the phantom's findings) without running the decoder: one step costs the vision forward and
backward only, a fraction of a fine-tuning step. Fine-tuning then starts from vision
features that already separate the findings (`init_encoder`, `init_aggregator`,
`init_label_head`), instead of teaching a randomly initialised ViT through the LM loss,
which learns the reports' text prior long before it learns to read pixels.

Only labels a sample has count (`label_mask`); `warmup.label_names` restricts the loss to
some labels (e.g. the findings a phantom set renders), so the rest do not pull the head
towards "always negative".
"""

from __future__ import annotations

import torch
from torch import nn

from ctscribe.labels import CTRATE_LABELS
from model.attributes import AttributeHead, attribute_loss, attribute_targets
from model.ctscribe_model import label_bce
from train.data import VolumeDataset, label_targets


class LabelWarmupModule(nn.Module):
    """Encoder (trainable or frozen) + aggregator + label head (+ attribute heads);
    `forward(batch, step)` -> label BCE (+ attribute loss)."""

    def __init__(
        self,
        encoder: nn.Module,
        aggregator: nn.Module,
        label_head: nn.Linear,
        train_encoder: bool,
        attribute_head: AttributeHead | None = None,
    ):
        super().__init__()
        self.encoder = encoder.requires_grad_(train_encoder)
        self.aggregator = aggregator
        self.label_head = label_head
        self.attribute_head = attribute_head
        self.train_encoder = train_encoder

    def logits(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, n_labels) label logits, (B, C) attribute logits (None without attribute heads)."""
        features = batch.get("slice_features")
        if features is None:
            if self.train_encoder:
                features = self.encoder(batch["slices"])  # (B, S, d_slice)
            else:
                with torch.no_grad():
                    self.encoder.eval()
                    features = self.encoder(batch["slices"])
        z3d, refined = self.aggregator(features, batch["plane_ids"], batch["positions"], batch["slice_mask"])
        attributes = None
        if self.attribute_head is not None:
            attributes = self.attribute_head(refined, z3d, batch["slice_mask"])
        return self.label_head(z3d), attributes

    def forward(self, batch: dict, step: int) -> dict[str, torch.Tensor]:
        logits, attributes = self.logits(batch)
        targets, mask = batch["label_targets"], batch["label_mask"]
        loss = label_bce(logits.float(), targets, mask)
        with torch.no_grad():
            hits = ((logits > 0).float() == targets) & mask
            accuracy = hits.sum() / mask.sum().clamp(min=1)
        out = {"label_loss": loss.detach(), "label_accuracy": accuracy}
        if attributes is not None:
            attr_loss = attribute_loss(
                attributes, batch["attribute_targets"], batch["attribute_mask"], self.attribute_head.names
            )
            loss = loss + attr_loss
            out["attribute_loss"] = attr_loss.detach()
        return {"loss": loss, **out}


def label_mask_for(names: tuple[str, ...]) -> torch.Tensor:
    """(18,) bool: which of the CT-RATE labels the loss uses (all when `names` is empty)."""
    if not names:
        return torch.ones(len(CTRATE_LABELS), dtype=torch.bool)
    return torch.tensor([n in names for n in CTRATE_LABELS])


class LabelledVolumeDataset(VolumeDataset):
    """Items: one volume's prepared tensors (or cached features) + its label targets and mask
    (+ attribute targets read from its report text, when `attribute_names` is given)."""

    def __init__(self, samples, cache, keys, features, used: torch.Tensor, attribute_names: tuple[str, ...] = ()):
        super().__init__(samples, cache, keys)
        self.features = features
        self.used = used
        self.attribute_names = attribute_names
        self.attributes = [report_attributes(s, attribute_names) for s in samples] if attribute_names else None

    def __getitem__(self, item: tuple[int, int]) -> dict:
        index, _seed = item
        tensors = self.load(index, slices=self.features is None)
        if self.features is not None:
            tensors["slice_features"] = self.features[index]
        labels = self.samples[index].labels
        mask = self.used.clone() if labels else torch.zeros(len(CTRATE_LABELS), dtype=torch.bool)
        item = {"volume": tensors, "label_targets": label_targets(labels), "label_mask": mask}
        if self.attributes is not None:
            item["attribute_targets"], item["attribute_mask"] = attribute_targets(
                self.attributes[index], self.attribute_names
            )
        return item


def report_attributes(sample, names: tuple[str, ...]) -> dict[str, list[str]]:
    """The attributes (lobe, side, size, ...) the sample's report text gives its findings."""
    from model.labeler.attributes import extract_attributes

    return extract_attributes(sample.report, names) if sample.report else {}

