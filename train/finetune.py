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

from model.labels import CTRATE_LABELS
from train.config import TrainConfig
from train.data import (
    VolumeDataset,
    collate_labelled_volumes,
    label_targets,
    load_samples,
    make_cache,
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

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, item: tuple[int, int]) -> dict:
        index, _seed = item
        it = self.items[index]
        tensors = self.load(it.sample)
        if self.features is not None:
            tensors["slice_features"] = self.features[it.sample]
        sample = self.samples[it.sample]
        return {
            "volume": tensors,
            "text": self.encode_item(sample, it.question, int(tensors["slices"].shape[0])),
            "label_targets": label_targets(sample.labels),
            "label_mask": torch.full((len(CTRATE_LABELS),), sample.labels is not None, dtype=torch.bool),
        }


class PromptEncoder:
    """Manifest sample + item -> EncodedPrompt with the model's prompt format."""

    def __init__(self, tokenizer, prompt_cfg, n_placeholders, max_report_chars: int):
        self.tokenizer = tokenizer
        self.prompt_cfg = prompt_cfg
        self.n_placeholders = n_placeholders
        self.max_report_chars = max_report_chars

    def __call__(self, sample, question: int, n_slices: int):
        from model.prompts import encode, mcq_answer, mcq_prompt, question_prompt, report_prompt

        cfg, n_ph = self.prompt_cfg, self.n_placeholders(n_slices)
        if question < 0:
            return encode(self.tokenizer, cfg, report_prompt(cfg, n_ph), sample.report[: self.max_report_chars])
        q = sample.questions[question]
        if q.kind == "mcq":
            choices = list(q.choices)
            index = choices.index(q.answer)
            prompt = mcq_prompt(cfg, n_ph, q.question, choices)
            return encode(self.tokenizer, cfg, prompt, mcq_answer(cfg, index, q.answer))
        return encode(self.tokenizer, cfg, question_prompt(cfg, n_ph, q.question), q.answer)


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
        self.model_config = load_model_config(cfg.preset, cfg.init_checkpoint)
        self.pipe = None

    def build_module(self) -> FinetuneModule:
        import model as model_api

        if self.cfg.init_checkpoint:
            pipe = model_api.load(self.cfg.init_checkpoint)
        else:
            pipe = model_api.build(self.model_config, seed=self.cfg.seed)
        m = pipe.model
        if self.cfg.init_encoder:
            load_weights(m.encoder, self.cfg.init_encoder, "encoder")
        if self.cfg.init_aggregator:
            load_weights(m.aggregator, self.cfg.init_aggregator, "aggregator")
        if self.cfg.init_label_head:
            if m.label_head is None:
                from imaging.errors import CtscribeError, ErrorCode

                raise CtscribeError(ErrorCode.INVALID_REQUEST, "init_label_head given but the model has no label head")
            load_weights(m.label_head, self.cfg.init_label_head, "label head")
        ft = self.cfg.finetune
        m.requires_grad_(False)
        if m.decoder.has_lora:
            for name, p in m.decoder.named_parameters():
                p.requires_grad = "lora_" in name
        m.fusion.requires_grad_(True)
        m.aggregator.requires_grad_(ft.train_aggregator)
        m.encoder.requires_grad_(ft.train_encoder)
        if m.label_head is not None:
            m.label_head.requires_grad_(True)
        self.pipe = pipe
        return FinetuneModule(m, ft.label_loss_weight)

    def dataset(self) -> TextDataset:
        samples = load_samples(self.cfg.manifest, self.cfg.split)
        cache = make_cache(self.cfg.resolved_cache_dir(), self.model_config.preprocess, self.cfg.store_dtype)
        keys = warm_cache(samples, cache, progress=self.cfg.progress)
        items = mix_items(samples, self.cfg.finetune.vqa_fraction)
        if not items:
            from imaging.errors import CtscribeError, ErrorCode

            raise CtscribeError(ErrorCode.INVALID_REQUEST, "finetune: the manifest has no reports and no questions")
        features = None
        if self.cfg.finetune.cache_features and not self.cfg.finetune.train_encoder:
            features = encoder_features(self.pipe.model.encoder, cache, keys, self.cfg.resolved_cache_dir())
        m = self.pipe.model
        encoder = PromptEncoder(
            self.pipe.tokenizer, m.cfg.prompt, m.n_placeholders, self.cfg.finetune.max_report_chars
        )
        return TextDataset(samples, cache, keys, items, encoder, features)

    def collate(self, items):
        return Collate(int(self.pipe.tokenizer.pad_token_id))(items)

    def export(self, module: FinetuneModule, final_dir: Path) -> None:
        from model import checkpoint

        checkpoint.save(module.model, final_dir, tokenizer=self.pipe.tokenizer)
