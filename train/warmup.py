"""Stage 2: aggregator warm-up by InfoNCE between two views of each volume (DESIGN.md §4.3).

Views: of the three planes' slice stacks, each view keeps two planes (the two views never
the same pair), and of each kept plane every second slice, view A from offset p and view B
from offset 1 - p. So the two views share one plane at adjacent (offset by one) slices and
each has a plane the other lacks; z3d of both must agree, and differ from the z3d of the
other volumes in the batch (the negatives). Temperature 0.07; symmetric cross-entropy.

The encoder is frozen; with `warmup.cache_features` its slice features are computed once
per volume and cached on disk (keyed by the encoder's weights hash).

`warmup.objective: labels` swaps InfoNCE for the label-head BCE (train/label_warmup.py); it
can train the encoder too, and also writes `label_head.safetensors` and `encoder.safetensors`
(the encoder the aggregator was fitted to, trained or not).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dataset.cache import FeatureCache, module_hash
from dataset.prepared import make_cache
from train.config import TrainConfig
from train.data import VolumeDataset, collate_labelled_volumes, load_samples, warm_cache
from train.label_warmup import LabelledVolumeDataset, LabelWarmupModule, label_mask_for
from train.loop import Stage
from train.modelling import build_encoder, load_model_config, load_weights, save_weights

PLANE_PAIRS = ((0, 1), (0, 2), (1, 2))


def two_views(plane_ids: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Slice indices of view A and view B for one volume (see the module docstring)."""
    present = sorted(set(plane_ids.tolist()))
    pairs = [p for p in PLANE_PAIRS if set(p) <= set(present)] or [(present[0], present[0])]
    order = torch.randperm(len(pairs), generator=generator).tolist()
    pair_a = pairs[order[0]]
    pair_b = pairs[order[1]] if len(order) > 1 else pair_a
    offset = int(torch.randint(0, 2, (1,), generator=generator))

    def select(pair: tuple[int, int], parity: int) -> torch.Tensor:
        chosen = []
        for plane in dict.fromkeys(pair):
            idx = torch.nonzero(plane_ids == plane).flatten()
            part = idx[parity::2]
            chosen.append(part if part.numel() else idx)  # a one-slice plane gives its slice to both
        return torch.cat(chosen)

    return select(pair_a, offset), select(pair_b, 1 - offset)


def info_nce(z_a: torch.Tensor, z_b: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric InfoNCE over a batch of paired embeddings (B, d); returns (loss, top-1 accuracy)."""
    a, b = F.normalize(z_a.float(), dim=-1), F.normalize(z_b.float(), dim=-1)
    logits = a @ b.T / temperature  # (B, B): the diagonal holds the positives
    target = torch.arange(a.shape[0], device=a.device)
    loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    accuracy = (logits.argmax(dim=1) == target).float().mean()
    return loss, accuracy


class WarmupModule(nn.Module):
    """Frozen encoder + trainable aggregator; `forward(batch, step)` returns the InfoNCE loss."""

    def __init__(self, encoder: nn.Module, aggregator: nn.Module, temperature: float):
        super().__init__()
        self.encoder = encoder.requires_grad_(False)
        self.aggregator = aggregator
        self.temperature = temperature

    def _z3d(self, view: dict) -> torch.Tensor:
        features = view.get("slice_features")
        if features is None:
            with torch.no_grad():
                self.encoder.eval()
                features = self.encoder(view["slices"])  # (B, S, d_slice)
        z3d, _ = self.aggregator(features, view["plane_ids"], view["positions"], view["slice_mask"])
        return z3d

    def forward(self, batch: dict, step: int) -> dict[str, torch.Tensor]:
        loss, accuracy = info_nce(self._z3d(batch["a"]), self._z3d(batch["b"]), self.temperature)
        return {"loss": loss, "accuracy": accuracy}


class ViewDataset(VolumeDataset):
    """Items: the two views of a volume, as slice images or cached features."""

    def __init__(self, samples, cache, keys, features: list[torch.Tensor] | None):
        super().__init__(samples, cache, keys)
        self.features = features

    def __getitem__(self, item: tuple[int, int]) -> dict:
        index, seed = item
        tensors = self.load(index)
        if self.features is not None:
            tensors["slice_features"] = self.features[index]
            del tensors["slices"]
        view_a, view_b = two_views(tensors["plane_ids"], torch.Generator().manual_seed(seed))
        pick = lambda idx: {k: v[idx] for k, v in tensors.items() if k != "slice_index"}  # noqa: E731
        return {"a": pick(view_a), "b": pick(view_b)}


def collate_views(items: list[dict]) -> dict:
    return {view: pad_views([it[view] for it in items]) for view in ("a", "b")}


def pad_views(views: list[dict]) -> dict[str, torch.Tensor]:
    """Pad views of different lengths to the longest; `slice_mask` marks real slices."""
    key = "slice_features" if "slice_features" in views[0] else "slices"
    n_max = max(v[key].shape[0] for v in views)
    out = {key: torch.zeros(len(views), n_max, *views[0][key].shape[1:])}  # (B, S, ...)
    out["plane_ids"] = torch.zeros(len(views), n_max, dtype=torch.long)
    out["positions"] = torch.zeros(len(views), n_max)
    out["slice_mask"] = torch.zeros(len(views), n_max, dtype=torch.bool)
    for i, v in enumerate(views):
        n = v[key].shape[0]
        out[key][i, :n] = v[key]
        out["plane_ids"][i, :n] = v["plane_ids"]
        out["positions"][i, :n] = v["positions"]
        out["slice_mask"][i, :n] = True
    return out


def load_vision_part(module: nn.Module, checkpoint_dir: str, prefix: str) -> None:
    """Load `prefix.*` tensors of a model checkpoint's vision.safetensors into `module`."""
    from safetensors.torch import load_file

    state = load_file(str(Path(checkpoint_dir) / "vision.safetensors"))
    part = {k[len(prefix) + 1 :]: v for k, v in state.items() if k.startswith(prefix + ".")}
    module.load_state_dict(part, strict=True)


class WarmupStage(Stage):
    name = "warmup"

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.model_config = load_model_config(cfg.preset, cfg.init_checkpoint, cfg.model_config)
        self.module: WarmupModule | None = None

    def build_module(self) -> nn.Module:
        from model.aggregator import build_aggregator
        from model.encoder_weights import load_encoder_weights

        encoder = build_encoder(self.model_config.encoder)
        aggregator = build_aggregator(self.model_config.aggregator)
        label_head = self._label_head() if self.supervised else None
        attribute_head = self._attribute_head() if self.supervised else None
        if self.cfg.init_checkpoint:
            load_vision_part(encoder, self.cfg.init_checkpoint, "encoder")
            load_vision_part(aggregator, self.cfg.init_checkpoint, "aggregator")
            if label_head is not None:
                load_vision_part(label_head, self.cfg.init_checkpoint, "label_head")
            if attribute_head is not None:
                load_vision_part(attribute_head, self.cfg.init_checkpoint, "attribute_head")
        elif not self.cfg.init_encoder:
            load_encoder_weights(encoder, self.model_config.encoder)  # the preset's pretrained ViT, if any
        if self.cfg.init_encoder:
            load_weights(encoder, self.cfg.init_encoder, "encoder")
        if self.cfg.init_aggregator:
            load_weights(aggregator, self.cfg.init_aggregator, "aggregator")
        if label_head is not None and self.cfg.init_label_head:
            load_weights(label_head, self.cfg.init_label_head, "label head")
        if attribute_head is not None and self.cfg.init_attribute_head:
            load_weights(attribute_head, self.cfg.init_attribute_head, "attribute head")
        if self.supervised:
            self.module = LabelWarmupModule(
                encoder, aggregator, label_head, self.cfg.warmup.train_encoder, attribute_head
            )
        else:
            self.module = WarmupModule(encoder, aggregator, self.cfg.warmup.temperature)
        return self.module

    @property
    def supervised(self) -> bool:
        return self.cfg.warmup.objective == "labels"

    def _label_head(self) -> nn.Linear:
        labels = self.model_config.labels
        if not labels.enabled:
            from ctscribe.errors import CtscribeError, ErrorCode

            raise CtscribeError(
                ErrorCode.INVALID_REQUEST, "warmup.objective=labels needs a model with a label head (labels.enabled)"
            )
        return nn.Linear(self.model_config.aggregator.d_volume, labels.n_labels)

    def _attribute_head(self):
        from model.attributes import AttributeHead

        names = self.model_config.labels.attributes
        agg = self.model_config.aggregator
        return AttributeHead(names, agg.d_slice, agg.d_volume) if names else None

    def dataset(self):
        samples = load_samples(self.cfg.manifest, self.cfg.split)
        cache = make_cache(self.cfg.resolved_cache_dir(), self.model_config.preprocess, self.cfg.store_dtype)
        keys = warm_cache(samples, cache, progress=self.cfg.progress)
        trains_encoder = self.supervised and self.cfg.warmup.train_encoder
        features = None
        if self.cfg.warmup.cache_features and not trains_encoder:
            features = encoder_features(self.module.encoder, cache, keys, self.cfg.resolved_cache_dir())
        if self.supervised:
            if not any(s.labels for s in samples):
                from ctscribe.errors import CtscribeError, ErrorCode

                raise CtscribeError(
                    ErrorCode.INVALID_REQUEST, "warmup.objective=labels: no sample of the manifest has labels"
                )
            return LabelledVolumeDataset(
                samples, cache, keys, features, label_mask_for(self.cfg.warmup.label_names),
                self.model_config.labels.attributes,
            )
        return ViewDataset(samples, cache, keys, features)

    def collate(self, items):
        return collate_labelled_volumes(items) if self.supervised else collate_views(items)

    def export(self, module: nn.Module, final_dir: Path) -> None:
        meta = {"stage": "warmup", "objective": self.cfg.warmup.objective}
        save_weights(module.aggregator, final_dir / "aggregator.safetensors", meta)
        if isinstance(module, LabelWarmupModule):
            save_weights(module.label_head, final_dir / "label_head.safetensors", meta)
            if module.attribute_head is not None:
                save_weights(module.attribute_head, final_dir / "attribute_head.safetensors", meta)
            # Always: a frozen random encoder is only reproducible from its weights, and the
            # aggregator and head were fitted to exactly its features.
            save_weights(module.encoder, final_dir / "encoder.safetensors", meta)
        (final_dir / "aggregator_config.json").write_text(json.dumps(asdict(self.model_config.aggregator), indent=2))
        # the whole model config the weights belong to (preprocessing included), for evaluation
        (final_dir / "model_config.json").write_text(json.dumps(self.model_config.to_dict(), indent=2))


@torch.no_grad()
def encoder_features(encoder: nn.Module, cache, keys: list[str], cache_dir: Path) -> list[torch.Tensor]:
    """Frozen-encoder features (S, d_slice) of every cached volume, computed once and cached."""
    from safetensors.torch import load_file

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    was = next(encoder.parameters()).device
    encoder.to(device).eval()
    features_cache = FeatureCache(cache_dir, module_hash(encoder))
    out = []
    for key in keys:
        def compute(key=key):
            slices = load_file(str(cache.path_for(key)))["slices"].float().to(device)
            return encoder(slices[None])[0]  # (S, d_slice)

        out.append(features_cache.get(key, compute))
    encoder.to(was)
    return out
