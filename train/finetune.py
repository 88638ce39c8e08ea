"""Stage 3: fine-tune the whole model for reports and VQA (DESIGN.md §5).

LoRA adapters on the decoder (its base weights stay frozen), and the aggregator, fusion and
label head trained in full; the encoder is frozen unless `finetune.train_encoder`. Report
items and question items (multiple-choice answered as "b. text", free text) are mixed
(`finetune.vqa_fraction`); the LM loss covers answer tokens only, and the label head's BCE
is added for volumes that have labels. The result is a model checkpoint directory
(`model.checkpoint.save`: config.json, vision.safetensors, adapter/, tokenizer/).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ctscribe.labels import CTRATE_LABELS
from dataset.prepared import make_cache
from train.config import TrainConfig
from train.data import (
    VolumeDataset,
    collate_labelled_volumes,
    label_targets,
    load_samples,
    warm_cache,
)
from train.loop import Stage
from train.modelling import load_model_config, load_weights
from train.warmup import encoder_features


@dataclass(frozen=True)
class Item:
    sample: int
    question: int
    """-1 for the report, else the index into the sample's questions."""


def mix_items(samples, vqa_fraction: float) -> list[Item]:
    """Report and question items, question items repeated so they make ~vqa_fraction of the list."""
    reports = [Item(i, -1) for i, s in enumerate(samples) if s.report]
    questions = [Item(i, q) for i, s in enumerate(samples) for q in range(len(s.questions))]
    if not reports or not questions or vqa_fraction in (0.0, 1.0):
        if vqa_fraction == 0.0 and reports:
            return reports
        if vqa_fraction == 1.0 and questions:
            return questions
        return reports + questions
    # Repeat the rarer kind a whole number of times (never drop data to hit the ratio).
    want_q_per_r = vqa_fraction / (1 - vqa_fraction)
    have_q_per_r = len(questions) / len(reports)
    if have_q_per_r < want_q_per_r:
        return reports + questions * max(1, round(want_q_per_r / have_q_per_r))
    return reports * max(1, round(have_q_per_r / want_q_per_r)) + questions


class FinetuneModule(nn.Module):
    """The CTScribeModel; `forward(batch, step)` returns its masked LM loss (+ label BCE)."""

    def __init__(self, model: nn.Module, label_loss_weight: float = 1.0):
        super().__init__()
        self.model = model
        self.label_loss_weight = label_loss_weight

    def forward(self, batch: dict, step: int) -> dict[str, torch.Tensor]:
        out = self.model(batch)
        loss = out.lm_loss
        metrics = {"lm_loss": out.lm_loss.detach()}
        if out.label_loss is not None:
            loss = loss + self.label_loss_weight * out.label_loss
            metrics["label_loss"] = out.label_loss.detach()
        return {"loss": loss, **metrics}


class TextDataset(VolumeDataset):
    """Items: one volume + one prompt/answer pair (report or question), tokenised."""

    def __init__(self, samples, cache, keys, items: list[Item], encode_item, features=None):
        super().__init__(samples, cache, keys)
        self.items = items
        self.encode_item = encode_item
        self.features = features
        self.seeds = None

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, item: tuple[int, int]) -> dict:
        index, seed = item
        it = self.items[index]
        tensors = self.load(it.sample, slices=self.features is None)
        if self.features is not None:
            tensors["slice_features"] = self.features[it.sample]
        sample = self.samples[it.sample]
        return {
            "volume": tensors,
            "text": self.encode_item(sample, it.question, int(tensors["slices"].shape[0]), it.sample, seed),
            "label_targets": label_targets(sample.labels),
            "label_mask": torch.full((len(CTRATE_LABELS),), sample.labels is not None, dtype=torch.bool),
        }


class PromptEncoder:
    """Manifest sample + item -> EncodedPrompt with the model's prompt format (and, for models
    with prompt guidance, the item's guidance: train/guidance_mix.py)."""

    def __init__(self, tokenizer, prompt_cfg, n_placeholders, max_report_chars: int, guidance=None):
        self.tokenizer = tokenizer
        self.prompt_cfg = prompt_cfg
        self.n_placeholders = n_placeholders
        self.max_report_chars = max_report_chars
        self.guidance = guidance
        """None (no guidance), or (GuidanceMix, per-sample attributes, per-sample head findings)."""

    def guidance_for(self, sample, sample_index: int, seed: int) -> str:
        if self.guidance is None:
            return ""
        mix, attributes, predicted = self.guidance
        return mix.text(seed, sample.labels, attributes[sample_index], predicted[sample_index] if predicted else None)

    def __call__(self, sample, question: int, n_slices: int, sample_index: int = 0, seed: int = 0):
        from model.prompts import encode, mcq_answer, mcq_prompt, question_prompt, report_prompt

        cfg, n_ph = self.prompt_cfg, self.n_placeholders(n_slices)
        g = self.guidance_for(sample, sample_index, seed)
        if question < 0:
            return encode(self.tokenizer, cfg, report_prompt(cfg, n_ph, g), sample.report[: self.max_report_chars])
        q = sample.questions[question]
        if q.kind == "mcq":
            choices = list(q.choices)
            index = choices.index(q.answer)
            prompt = mcq_prompt(cfg, n_ph, q.question, choices, g)
            return encode(self.tokenizer, cfg, prompt, mcq_answer(cfg, index, q.answer))
        return encode(self.tokenizer, cfg, question_prompt(cfg, n_ph, q.question, g), q.answer)


class Collate:
    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, items: list[dict]) -> dict:
        from model.batching import pad_prompts

        batch = collate_labelled_volumes(items)
        batch.update(pad_prompts([it["text"] for it in items], self.pad_id, side="right"))
        return batch


class FinetuneStage(Stage):
    name = "finetune"

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.model_config = load_model_config(cfg.preset, cfg.init_checkpoint, cfg.model_config)
        self.pipe = None

    def build_module(self) -> FinetuneModule:
        import model as model_api

        if self.cfg.init_checkpoint:
            pipe = model_api.load(self.cfg.init_checkpoint)
        else:
            pipe = model_api.build(self.model_config, seed=self.cfg.seed)
        m = pipe.model
        if self.cfg.init_adapter:
            load_adapter(m.decoder, self.cfg.init_adapter)
        if self.cfg.init_encoder:
            load_weights(m.encoder, self.cfg.init_encoder, "encoder")
        if self.cfg.init_aggregator:
            load_weights(m.aggregator, self.cfg.init_aggregator, "aggregator")
        if self.cfg.init_label_head:
            if m.label_head is None:
                from ctscribe.errors import CtscribeError, ErrorCode

                raise CtscribeError(ErrorCode.INVALID_REQUEST, "init_label_head given but the model has no label head")
            load_weights(m.label_head, self.cfg.init_label_head, "label head")
        if self.cfg.init_attribute_head:
            if m.attribute_head is None:
                from ctscribe.errors import CtscribeError, ErrorCode

                raise CtscribeError(ErrorCode.INVALID_REQUEST, "init_attribute_head given but the model has no attribute heads")
            load_weights(m.attribute_head, self.cfg.init_attribute_head, "attribute head")
        ft = self.cfg.finetune
        m.requires_grad_(False)
        if m.decoder.has_lora:
            for name, p in m.decoder.named_parameters():
                p.requires_grad = "lora_" in name
        m.fusion.requires_grad_(True)
        m.aggregator.requires_grad_(ft.train_aggregator)
        m.encoder.requires_grad_(ft.train_encoder)
        for head in (m.label_head, m.attribute_head):
            if head is not None:
                head.requires_grad_(ft.label_loss_weight > 0)
        self.pipe = pipe
        return FinetuneModule(m, ft.label_loss_weight)

    def dataset(self) -> TextDataset:
        samples = load_samples(self.cfg.manifest, self.cfg.split)
        cache = make_cache(self.cfg.resolved_cache_dir(), self.model_config.preprocess, self.cfg.store_dtype)
        keys = warm_cache(samples, cache, progress=self.cfg.progress)
        items = mix_items(samples, self.cfg.finetune.vqa_fraction)
        if not items:
            from ctscribe.errors import CtscribeError, ErrorCode

            raise CtscribeError(ErrorCode.INVALID_REQUEST, "finetune: the manifest has no reports and no questions")
        features = None
        if self.cfg.finetune.cache_features and not self.cfg.finetune.train_encoder:
            features = encoder_features(self.pipe.model.encoder, cache, keys, self.cfg.resolved_cache_dir())
        m = self.pipe.model
        encoder = PromptEncoder(
            self.pipe.tokenizer, m.cfg.prompt, m.n_placeholders, self.cfg.finetune.max_report_chars,
            self._guidance(samples, cache, keys, features),
        )
        return TextDataset(samples, cache, keys, items, encoder, features)

    def _guidance(self, samples, cache, keys, features):
        """(GuidanceMix, attributes per sample, head findings per sample) or None (guidance off)."""
        from model.guidance import guidance_labels
        from train.guidance_mix import GuidanceMix
        from train.label_warmup import report_attributes

        m, ft = self.pipe.model, self.cfg.finetune
        if m.cfg.prompt.guidance == "off":
            return None
        names = guidance_labels(m.cfg)
        mix = GuidanceMix(names, ft.guidance_head_fraction, ft.guidance_label_noise, ft.guidance_attribute_noise)
        attributes = [report_attributes(s, m.cfg.labels.attributes) for s in samples]
        predicted = head_findings(m, cache, keys, features, names) if ft.guidance_head_fraction > 0 else None
        return mix, attributes, predicted

    def collate(self, items):
        return Collate(int(self.pipe.tokenizer.pad_token_id))(items)

    def export(self, module: FinetuneModule, final_dir: Path) -> None:
        from model import checkpoint

        checkpoint.save(module.model, final_dir, tokenizer=self.pipe.tokenizer, trained_on=self.cfg.trained_on)


def load_adapter(decoder, checkpoint_dir: str) -> None:
    """Load a checkpoint's LoRA adapter weights into `decoder` (same base LM, same LoRA targets)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    from ctscribe.errors import CtscribeError, ErrorCode

    path = Path(checkpoint_dir) / "adapter" / "adapter_model.safetensors"
    if not decoder.has_lora or not path.is_file():
        raise CtscribeError(ErrorCode.INVALID_REQUEST, f"init_adapter: no LoRA adapter at {path} (or the model has no LoRA)")
    result = set_peft_model_state_dict(decoder.lm, load_file(str(path)))
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    if unexpected:
        raise CtscribeError(ErrorCode.INVALID_REQUEST, f"init_adapter {path} does not fit: unexpected {unexpected[:3]}")


@torch.no_grad()
def head_findings(model, cache, keys, features, names, batch_size: int = 16) -> list:
    """The heads' findings (model.guidance.Findings) for every training volume, from the vision
    side as it is before fine-tuning (cached encoder features when there are any)."""
    from model.guidance import findings_from_heads, head_outputs
    from train.data import pad_slice_features, prepared_batch

    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(keys), batch_size):
        part = keys[start : start + batch_size]
        batch = prepared_batch(cache, part)
        feats = None
        if features is not None:
            feats = pad_slice_features(features[start : start + len(part)], batch["slices"].shape[1])
        visual = model.encode_volume(batch["slices"], batch["plane_ids"], batch["positions"], batch["slice_mask"],
                                     slice_features=feats)
        labels, attributes = head_outputs(model.cfg, visual.label_logits, visual.attribute_logits)
        out += [findings_from_heads(lb, at, names, model.cfg.prompt.guidance_threshold) for lb, at in zip(labels, attributes)]
    model.train(was_training)
    return out
