"""Stage 1: DINO self-distillation of the slice encoder on slices of all three planes.

Student and teacher share the architecture (encoder + projection head); the teacher is an
EMA of the student (momentum cosine-raised from `momentum_start` to `momentum_end`) and is
never trained by gradients. Each slice gives 2 global crops (teacher and student) and
`n_local_crops` small crops (student only); the student learns to predict, from every crop,
the teacher's centred, sharpened distribution over the prototypes for the *other* global
crops (Caron et al. 2021). Centring (an EMA of the teacher's mean output) and a low,
warmed-up teacher temperature keep the teacher from collapsing.

Augmentations are torch-only and seeded per item: random resized crops (no flips: left and
right are anatomy in a chest CT) and a small brightness/contrast jitter.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from dataset.prepared import make_cache
from train.config import DinoConfig, TrainConfig
from train.data import SliceDataset, load_samples, warm_cache
from train.loop import Stage
from train.modelling import build_encoder, load_model_config, load_weights, save_weights


class DinoHead(nn.Module):
    """MLP -> L2-normalised bottleneck -> weight-normed prototypes (gain fixed at 1)."""

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int, bottleneck_dim: int):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            nn.GELU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.GELU(),
            nn.Linear(hidden_dim, bottleneck_dim),
        )
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):
                nn.init.trunc_normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)
        last = nn.Linear(bottleneck_dim, out_dim, bias=False)
        self.last_layer = nn.utils.parametrizations.weight_norm(last)
        # A fixed unit gain: only the direction of each prototype is learnt (as in DINO).
        gain = self.last_layer.parametrizations.weight.original0
        gain.data.fill_(1.0)
        gain.requires_grad = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(self.mlp(x), dim=-1, p=2)
        return self.last_layer(x)


def cosine_momentum(step: int, total: int, start: float, end: float) -> float:
    """Teacher EMA momentum at `step`: `start` at 0, `end` at `total` (cosine)."""
    progress = min(1.0, step / max(1, total))
    return end - (end - start) * (math.cos(math.pi * progress) + 1) / 2


def teacher_temperature(step: int, cfg: DinoConfig) -> float:
    if step < cfg.warmup_teacher_temp_steps:
        t = step / cfg.warmup_teacher_temp_steps
        return cfg.warmup_teacher_temp + t * (cfg.teacher_temp - cfg.warmup_teacher_temp)
    return cfg.teacher_temp


def dino_loss(
    student_out: torch.Tensor, teacher_out: torch.Tensor, center: torch.Tensor, n_global: int, student_temp: float,
    teacher_temp: float,
) -> torch.Tensor:
    """Cross-entropy from each teacher global view to every *other* student view.

    student_out: (V * B, K) crop-major (globals first); teacher_out: (n_global * B, K).
    """
    n_views = student_out.shape[0] // (teacher_out.shape[0] // n_global)
    student = (student_out / student_temp).chunk(n_views)
    teacher = F.softmax((teacher_out - center) / teacher_temp, dim=-1).detach().chunk(n_global)
    total, pairs = 0.0, 0
    for t_index, q in enumerate(teacher):
        for s_index, s in enumerate(student):
            if s_index == t_index:
                continue
            total = total + torch.sum(-q * F.log_softmax(s, dim=-1), dim=-1).mean()
            pairs += 1
    return total / pairs


class DinoModule(nn.Module):
    """Student and EMA teacher; `forward(batch, step)` returns the DINO loss."""

    def __init__(self, backbone: nn.Module, d_embed: int, cfg: DinoConfig, total_steps: int):
        super().__init__()
        self.cfg = cfg
        self.total_steps = total_steps
        head = DinoHead(d_embed, cfg.out_dim, cfg.hidden_dim, cfg.bottleneck_dim)
        self.student = nn.ModuleDict({"backbone": backbone, "head": head})
        self.teacher = copy.deepcopy(self.student)
        for p in self.teacher.parameters():
            p.requires_grad = False
        self.register_buffer("center", torch.zeros(1, cfg.out_dim))

    def _embed(self, net: nn.ModuleDict, images: torch.Tensor) -> torch.Tensor:
        return net["head"](net["backbone"].embed_images(images, interpolate_pos_encoding=True))

    def forward(self, batch: dict, step: int) -> dict[str, torch.Tensor]:
        globals_, locals_ = batch["global"], batch["local"]  # (G*B, 3, H, W), (L*B, 3, h, w)
        with torch.no_grad():
            teacher_out = self._embed(self.teacher, globals_).float()
        student_out = [self._embed(self.student, globals_)]
        if locals_.numel():
            student_out.append(self._embed(self.student, locals_))
        student_out = torch.cat(student_out).float()
        temp = teacher_temperature(step, self.cfg)
        loss = dino_loss(student_out, teacher_out, self.center, self.cfg.n_global_crops, self.cfg.student_temp, temp)
        self._update_center(teacher_out)
        with torch.no_grad():
            probs = F.softmax((teacher_out - self.center) / temp, dim=-1)
            entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1).mean()
        return {"loss": loss, "teacher_entropy": entropy}

    @torch.no_grad()
    def _update_center(self, teacher_out: torch.Tensor) -> None:
        batch_center = teacher_out.mean(dim=0, keepdim=True)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(batch_center)
            batch_center /= dist.get_world_size()
        m = self.cfg.center_momentum
        self.center.mul_(m).add_(batch_center * (1 - m))

    @torch.no_grad()
    def update_teacher(self, step: int) -> None:
        m = cosine_momentum(step, self.total_steps, self.cfg.momentum_start, self.cfg.momentum_end)
        for p_student, p_teacher in zip(self.student.parameters(), self.teacher.parameters(), strict=True):
            p_teacher.mul_(m).add_(p_student.detach(), alpha=1 - m)


class MultiCrop:
    """(3, H, W) slice -> (global crops, local crops), deterministic for a given generator."""

    def __init__(self, cfg: DinoConfig, image_size: int, patch_size: int):
        self.cfg = cfg
        self.global_size = image_size
        local = cfg.local_crop_size or round(image_size * 96 / 224)
        self.local_size = max(patch_size, round(local / patch_size) * patch_size)

    def __call__(self, image: torch.Tensor, g: torch.Generator) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        cfg = self.cfg
        globals_ = [self._crop(image, self.global_size, cfg.global_crop_scale, g) for _ in range(cfg.n_global_crops)]
        locals_ = [self._crop(image, self.local_size, cfg.local_crop_scale, g) for _ in range(cfg.n_local_crops)]
        return globals_, locals_

    def _crop(self, image: torch.Tensor, size: int, scale: tuple[float, float], g: torch.Generator) -> torch.Tensor:
        _, h, w = image.shape
        top, left, ch, cw = 0, 0, h, w
        for _ in range(10):  # torchvision's RandomResizedCrop sampling, aspect ratio 3/4..4/3
            area = h * w * _uniform(g, *scale)
            ratio = math.exp(_uniform(g, math.log(3 / 4), math.log(4 / 3)))
            cw_try, ch_try = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
            if 0 < cw_try <= w and 0 < ch_try <= h:
                ch, cw = ch_try, cw_try
                top = int(torch.randint(0, h - ch + 1, (1,), generator=g))
                left = int(torch.randint(0, w - cw + 1, (1,), generator=g))
                break
        crop = image[:, top : top + ch, left : left + cw].unsqueeze(0)  # (1, 3, ch, cw)
        crop = F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0]
        jitter = self.cfg.intensity_jitter
        contrast = 1 + _uniform(g, -jitter, jitter)
        brightness = _uniform(g, -jitter, jitter)
        return crop * contrast + brightness


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g))


def collate_crops(items: list[tuple[list[torch.Tensor], list[torch.Tensor]]]) -> dict[str, torch.Tensor]:
    """Crop-major stacking: all items' crop 0, then all items' crop 1, ... (the loss chunks by crop)."""
    n_global, n_local = len(items[0][0]), len(items[0][1])
    globals_ = torch.cat([torch.stack([it[0][c] for it in items]) for c in range(n_global)])
    if n_local:
        locals_ = torch.cat([torch.stack([it[1][c] for it in items]) for c in range(n_local)])
    else:
        locals_ = torch.zeros(0)
    return {"global": globals_, "local": locals_}


class DinoStage(Stage):
    name = "dino"

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.model_config = load_model_config(cfg.preset, cfg.init_checkpoint, cfg.model_config)

    def build_module(self) -> DinoModule:
        enc_cfg = self.model_config.encoder
        backbone = build_encoder(enc_cfg)
        if self.cfg.init_encoder:
            load_weights(backbone, self.cfg.init_encoder, "encoder")
        return DinoModule(backbone, enc_cfg.d_slice, self.cfg.dino, self.cfg.steps)

    def dataset(self) -> SliceDataset:
        samples = load_samples(self.cfg.manifest, self.cfg.split)
        cache = make_cache(self.cfg.resolved_cache_dir(), self.model_config.preprocess, self.cfg.store_dtype)
        keys = warm_cache(samples, cache, progress=self.cfg.progress)
        enc = self.model_config.encoder
        return SliceDataset(samples, cache, keys, MultiCrop(self.cfg.dino, enc.image_size, enc.patch_size))

    def collate(self, items):
        return collate_crops(items)

    def after_optimizer_step(self, module: DinoModule, step: int) -> None:
        module.update_teacher(step)

    def export(self, module: DinoModule, final_dir: Path) -> None:
        """The teacher's encoder (DINO's convention: the teacher is the better network)."""
        save_weights(module.teacher["backbone"], final_dir / "encoder.safetensors", {"stage": "dino"})
        (final_dir / "encoder_config.json").write_text(json.dumps(asdict(self.model_config.encoder), indent=2))
