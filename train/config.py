"""Training configuration: one frozen dataclass per stage, read from YAML plus `key=value` overrides.

A YAML file holds the shared loop settings at the top level and each stage's own settings
under its name:

    stage: finetune
    manifest: data/manifest.jsonl
    out_dir: runs/demo-finetune
    lr: 2.0e-4
    steps: 400
    finetune: {vqa_fraction: 0.5}

Overrides use dotted keys (`--set lr=1e-3 --set dino.n_local_crops=4`); values are parsed
as YAML scalars and checked against the field's type. Unknown keys are errors, not ignored.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ctscribe.errors import CtscribeError, ErrorCode
from ctscribe.labels import CTRATE_LABELS

STAGES = ("dino", "warmup", "finetune")
WARMUP_OBJECTIVES = ("infonce", "labels")


@dataclass(frozen=True)
class DinoConfig:
    """Stage 1: DINO self-distillation of the slice encoder."""

    out_dim: int = 4096
    """Prototypes (output width) of the projection head (65536 in DINO; smaller suits CT)."""
    hidden_dim: int = 2048
    """Hidden width of the projection head's MLP."""
    bottleneck_dim: int = 256
    """Width of the L2-normalised bottleneck before the weight-normed last layer."""
    n_global_crops: int = 2
    """Global crops per slice (the teacher sees only these)."""
    n_local_crops: int = 6
    """Local crops per slice (student only)."""
    global_crop_scale: tuple[float, float] = (0.4, 1.0)
    """Area fraction range of a global crop."""
    local_crop_scale: tuple[float, float] = (0.05, 0.4)
    """Area fraction range of a local crop."""
    local_crop_size: int = 0
    """Side of local crops in pixels; 0 = 96/224 of the encoder's input size."""
    student_temp: float = 0.1
    teacher_temp: float = 0.04
    """Teacher softmax temperature after warm-up."""
    warmup_teacher_temp: float = 0.04
    """Teacher temperature at step 0, raised linearly to `teacher_temp`."""
    warmup_teacher_temp_steps: int = 0
    """Steps of the teacher-temperature warm-up."""
    center_momentum: float = 0.9
    """EMA rate of the teacher-output centre."""
    momentum_start: float = 0.996
    """EMA rate of the teacher weights at step 0; cosine-raised to `momentum_end`."""
    momentum_end: float = 1.0
    intensity_jitter: float = 0.1
    """Max random brightness/contrast change of a crop (in the normalised intensity units)."""


@dataclass(frozen=True)
class WarmupConfig:
    """Stage 2: aggregator InfoNCE with the encoder frozen (DESIGN.md §4.3), or, with
    `objective: labels`, encoder + aggregator + label head on the label BCE (train/label_warmup.py)."""

    objective: str = "infonce"
    """infonce (self-supervised, two views) | labels (supervised by the manifest's labels)."""
    temperature: float = 0.07
    """InfoNCE softmax temperature."""
    cache_features: bool = True
    """Cache the frozen encoder's slice features on disk (keyed by encoder weights hash);
    ignored when `train_encoder` is on."""
    train_encoder: bool = False
    """labels only: train the slice encoder too (needed when it starts from random weights)."""
    label_names: tuple[str, ...] = ()
    """labels only: the labels the loss uses; () = all 18."""


@dataclass(frozen=True)
class FinetuneConfig:
    """Stage 3: LoRA decoder + aggregator, fusion and label head; reports and VQA mixed."""

    vqa_fraction: float = 0.5
    """Share of training items that are questions (the rest are reports), when both exist."""
    label_loss_weight: float = 1.0
    """Weight of the label-head BCE (applied only to samples with labels)."""
    train_aggregator: bool = True
    train_encoder: bool = False
    """Fine-tune the slice encoder too (off: it stays frozen, features can be cached)."""
    cache_features: bool = False
    """Cache frozen encoder features (only when `train_encoder` is off)."""
    max_report_chars: int = 4000
    """Reports are cut to this many characters before tokenising."""
    guidance_head_fraction: float = 0.3
    """Models with prompt guidance: share of items whose guidance is the heads' own predictions
    (train/guidance_mix.py); the rest get the ground truth with noise."""
    guidance_label_noise: float = 0.05
    """Probability that a ground-truth guidance label is flipped."""
    guidance_attribute_noise: float = 0.05
    """Probability that a ground-truth guidance attribute is replaced by a random class."""


@dataclass(frozen=True)
class TrainConfig:
    """Settings shared by all stages: data, optimisation, checkpoints."""

    stage: str = "finetune"
    """dino | warmup | finetune."""
    manifest: str = ""
    """Manifest JSONL of the training data (see dataset/manifest.py)."""
    split: str = "train"
    """Manifest split trained on ('' = every sample)."""
    out_dir: str = "runs/ctscribe"
    """Run folder: checkpoints/, losses.csv, losses.png, final/ artefacts."""
    cache_dir: str = ""
    """Preprocessing cache; '' = `.ctscribe-cache` next to the manifest."""
    preset: str = "tiny"
    """Model preset built when no `init_checkpoint` is given (tiny | demo | ctscribe)."""
    model_config: str = ""
    """A model config JSON (a checkpoint's `config.json` layout) built instead of `preset`
    (e.g. the demo preset with another preprocessing); ignored with `init_checkpoint`."""
    init_checkpoint: str = ""
    """Model checkpoint directory to start from (model.load)."""
    init_adapter: str = ""
    """A checkpoint directory whose LoRA adapter (`adapter/`) is loaded into the decoder before
    fine-tuning (a warm start: the new model keeps its own config and vision weights)."""
    init_encoder: str = ""
    """Encoder weights (a stage-1 `final/encoder.safetensors`) loaded before training."""
    init_aggregator: str = ""
    """Aggregator weights (a stage-2 `final/aggregator.safetensors`) loaded before training."""
    init_label_head: str = ""
    """Label-head weights (a `warmup.objective: labels` run's `final/label_head.safetensors`)."""
    trained_on: str = "unknown"
    """What the training data is, recorded in the exported checkpoint: synthetic-phantom |
    ct-rate | unknown (model.provenance)."""
    init_attribute_head: str = ""
    """Attribute-head weights (a `warmup.objective: labels` run's `final/attribute_head.safetensors`)."""
    lr: float = 1e-4
    """Peak learning rate (after warm-up)."""
    min_lr_ratio: float = 0.1
    """Cosine decay floor as a fraction of `lr`."""
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    steps: int = 1000
    """Optimizer steps in the whole run."""
    warmup_steps: int = 50
    """Linear learning-rate warm-up, in optimizer steps."""
    batch_size: int = 8
    """Samples per micro-batch per process."""
    grad_accum: int = 1
    """Micro-batches accumulated per optimizer step."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm (0 = off)."""
    save_every: int = 100
    """Save a resumable checkpoint every N optimizer steps (and at the end)."""
    keep_checkpoints: int = 2
    """How many of the latest checkpoints to keep."""
    log_every: int = 1
    """Append the loss to losses.csv every N optimizer steps."""
    seed: int = 0
    bf16: bool = True
    """bf16 mixed precision when a GPU is present (fp32 on CPU unless `bf16_cpu`)."""
    bf16_cpu: bool = False
    """bf16 autocast on the CPU too: ~5x faster matrix products on CPUs with AMX / AVX512-BF16
    (measured on this project's 2-core Xeon), at bf16's precision; off by default."""
    cpu: bool = False
    """Force CPU even when a GPU is present."""
    num_workers: int = 2
    """DataLoader worker processes (0 = load in the main process)."""
    pin_memory: bool = True
    """Pinned host memory for batches (used only with a GPU)."""
    store_dtype: str = "float16"
    """dtype of float tensors in the preprocessing cache (float16 halves the disk)."""
    progress: bool = True
    """Show a tqdm progress bar."""
    dino: DinoConfig = field(default_factory=DinoConfig)
    warmup: WarmupConfig = field(default_factory=WarmupConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def resolved_cache_dir(self) -> Path:
        if self.cache_dir:
            return Path(self.cache_dir)
        if self.manifest:
            return Path(self.manifest).resolve().parent / ".ctscribe-cache"
        return Path(self.out_dir) / "cache"

    def validate(self) -> TrainConfig:
        def bad(msg: str) -> CtscribeError:
            return CtscribeError(ErrorCode.INVALID_REQUEST, f"training config: {msg}")

        if self.stage not in STAGES:
            raise bad(f"stage must be one of {STAGES}, got {self.stage!r}")
        for name in ("steps", "batch_size", "grad_accum", "save_every", "log_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise bad(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.warmup_steps < 0 or self.num_workers < 0:
            raise bad("lr must be > 0; warmup_steps and num_workers >= 0")
        if not 0 <= self.finetune.vqa_fraction <= 1:
            raise bad("finetune.vqa_fraction must be in [0, 1]")
        for name in ("guidance_head_fraction", "guidance_label_noise", "guidance_attribute_noise"):
            if not 0 <= getattr(self.finetune, name) <= 1:
                raise bad(f"finetune.{name} must be in [0, 1]")
        if self.warmup.objective not in WARMUP_OBJECTIVES:
            raise bad(f"warmup.objective must be one of {WARMUP_OBJECTIVES}, got {self.warmup.objective!r}")
        unknown = [n for n in self.warmup.label_names if n not in CTRATE_LABELS]
        if unknown:
            raise bad(f"warmup.label_names has unknown labels {unknown}; known: {list(CTRATE_LABELS)}")
        if self.dino.n_global_crops < 2:
            raise bad("dino.n_global_crops must be >= 2 (the loss pairs different views)")
        return self


def _parse_value(raw, annotation, key: str):
    """Coerce a YAML value to a dataclass field type; errors name the key."""
    hint = annotation
    origin = typing.get_origin(hint)
    try:
        if hint is bool:
            if isinstance(raw, bool):
                return raw
            raise TypeError
        if hint is int:
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise TypeError
            return int(raw)
        if hint is float:
            if isinstance(raw, bool):
                raise TypeError
            return float(raw)
        if hint is str:
            return "" if raw is None else str(raw)
        if origin is tuple:
            args = typing.get_args(hint)
            if not isinstance(raw, (list, tuple)):
                raise TypeError
            if len(args) == 2 and args[1] is Ellipsis:  # tuple[X, ...]: any length
                args = (args[0],) * len(raw)
            if len(raw) != len(args):
                raise TypeError
            return tuple(_parse_value(v, a, key) for v, a in zip(raw, args, strict=True))
        if origin in (typing.Union, types.UnionType):
            return raw
    except (TypeError, ValueError):
        pass
    else:
        return raw
    raise CtscribeError(ErrorCode.INVALID_REQUEST, f"training config: {key}={raw!r} is not a valid {hint}")


def _build(cls, values: dict, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in values if k not in known]
    if unknown:
        raise CtscribeError(
            ErrorCode.INVALID_REQUEST,
            f"training config: unknown key(s) {[prefix + k for k in unknown]}; known: {sorted(known)}",
        )
    kwargs = {}
    for name, raw in values.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(raw, dict):
                raise CtscribeError(ErrorCode.INVALID_REQUEST, f"training config: {prefix}{name} must be a mapping")
            kwargs[name] = _build(hint, raw, f"{prefix}{name}.")
        else:
            kwargs[name] = _parse_value(raw, hint, prefix + name)
    return cls(**kwargs)


def parse_overrides(pairs: list[str] | None) -> dict:
    """`["lr=1e-3", "dino.n_local_crops=4"]` -> nested dict, values parsed as YAML scalars."""
    out: dict = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise CtscribeError(ErrorCode.INVALID_REQUEST, f"override {pair!r} is not key=value")
        key, value = pair.split("=", 1)
        try:
            parsed = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            parsed = value
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = parsed
    return out


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, **defaults) -> TrainConfig:
    """TrainConfig from an optional YAML file, then `defaults` (e.g. the CLI's stage), then overrides.

    Relative paths (manifest, out_dir, ...) are relative to the working directory, as on
    the command line.
    """
    values: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise CtscribeError(ErrorCode.INVALID_REQUEST, f"training config not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise CtscribeError(ErrorCode.INVALID_REQUEST, f"training config {path} is not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise CtscribeError(ErrorCode.INVALID_REQUEST, f"training config {path} must be a mapping")
        values = loaded
    values = _merge(values, {k: v for k, v in defaults.items() if v is not None})
    values = _merge(values, parse_overrides(overrides))
    return _build(TrainConfig, values).validate()
