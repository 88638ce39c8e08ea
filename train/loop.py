"""The training loop shared by the three stages, on accelerate (DDP/FSDP/DeepSpeed by config).

A stage supplies a module whose `forward(batch, step)` returns `{"loss": ..., other scalars}`
(the whole computation runs inside forward so DDP's gradient sync and autocast see it), the
parameters to optimise, a dataset indexed by `(index, seed)` items, and a collate function.

Resuming is exact: a checkpoint (`accelerator.save_state`: model, optimizer, scheduler, the
RNG states of every library, the accelerator's step) is written at optimizer-step
boundaries together with `trainer_state.json` (step, epoch, micro-batches consumed); the
data order is a function of the micro-batch number (`StepBatchSampler`), so a resumed run
continues with the very next batch and the same augmentations.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ctscribe.errors import CtscribeError, ErrorCode
from train.config import TrainConfig
from train.curves import LossLog, plot_losses
from train.sampler import StepBatchSampler

log = logging.getLogger(__name__)

STATE_FILE = "trainer_state.json"
CHECKPOINTS = "checkpoints"


class Stage:
    """What one training stage plugs into `run_training` (subclasses override these)."""

    name = "stage"

    def build_module(self) -> nn.Module:
        """The module to train; `forward(batch, step)` returns {"loss": tensor, ...scalars}."""
        raise NotImplementedError

    def parameter_groups(self, module: nn.Module) -> Iterable:
        """What the optimizer updates (default: every parameter that requires grad)."""
        return decay_groups(module.parameters())

    def dataset(self) -> Dataset:
        """Items are fetched as `dataset[(index, seed)]`."""
        raise NotImplementedError

    def collate(self, items: list) -> object:
        return torch.utils.data.default_collate(items)

    def after_optimizer_step(self, module: nn.Module, step: int) -> None:
        """Called with the unwrapped module after optimizer step `step` (e.g. a DINO EMA update)."""

    def export(self, module: nn.Module, final_dir: Path) -> None:
        """Write the stage's artefact (weights other stages load) from the unwrapped module."""


def decay_groups(parameters: Iterable[nn.Parameter]) -> list[dict]:
    """Trainable parameters in two AdamW groups: weight decay on matrices only, never on
    biases, norms and embeddings-like vectors (decaying a LayerNorm gain towards 0 hurts)."""
    trainable = [p for p in parameters if p.requires_grad]
    groups = [
        {"params": [p for p in trainable if p.ndim >= 2]},
        {"params": [p for p in trainable if p.ndim < 2], "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


@dataclass
class TrainResult:
    step: int
    """Optimizer steps completed."""
    last_loss: float
    out_dir: Path
    checkpoint: Path | None
    final_dir: Path | None
    seconds: float


def lr_lambda(cfg: TrainConfig) -> Callable[[int], float]:
    """Linear warm-up to 1, then cosine down to `min_lr_ratio` at `steps`."""

    def factor(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        span = max(1, cfg.steps - cfg.warmup_steps)
        progress = min(1.0, (step - cfg.warmup_steps) / span)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def to_device(batch, device: torch.device, non_blocking: bool = False):
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device, non_blocking) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device, non_blocking) for v in batch)
    return batch


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The newest complete checkpoint (one with its trainer_state.json) under out_dir."""
    root = Path(out_dir) / CHECKPOINTS
    done = [p for p in root.glob("step_*") if (p / STATE_FILE).is_file()] if root.is_dir() else []
    return max(done, key=lambda p: int(p.name.split("_")[1]), default=None)


def make_accelerator(cfg: TrainConfig):
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration

    use_gpu = torch.cuda.is_available() and not cfg.cpu
    return Accelerator(
        mixed_precision="bf16" if (cfg.bf16 and (use_gpu or cfg.bf16_cpu)) else "no",
        gradient_accumulation_steps=cfg.grad_accum,
        cpu=not use_gpu,
        # The loop shards data itself (StepBatchSampler), so accelerate never wraps loaders.
        dataloader_config=DataLoaderConfiguration(split_batches=False),
    )


def run_training(
    cfg: TrainConfig, stage: Stage, *, resume: bool = False, stop_after_steps: int | None = None
) -> TrainResult:
    """Train `stage` for `cfg.steps` optimizer steps (resuming from the latest checkpoint if asked).

    `stop_after_steps` ends this invocation early after that many optimizer steps in total
    (what a kill after a checkpoint leaves behind; used by the resume tests).
    """
    from accelerate.utils import set_seed

    started = time.perf_counter()
    out_dir = Path(cfg.out_dir)
    accelerator = make_accelerator(cfg)
    set_seed(cfg.seed)  # identical initial weights on every process
    module = stage.build_module()
    optimizer = torch.optim.AdamW(
        stage.parameter_groups(module), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))
    model, optimizer = accelerator.prepare(module, optimizer)
    # Stepped by hand once per optimizer step (a prepared scheduler steps once per process).
    accelerator.register_for_checkpointing(scheduler)

    step, micro_batches = 0, 0
    checkpoint = latest_checkpoint(out_dir) if resume else None
    if resume and checkpoint is None:
        log.warning("no checkpoint under %s: starting from scratch", out_dir)
    if checkpoint is not None:
        accelerator.load_state(str(checkpoint))
        state = json.loads((checkpoint / STATE_FILE).read_text())
        step, micro_batches = int(state["step"]), int(state["micro_batches"])
        log.info("resumed from %s at step %d", checkpoint, step)
    elif accelerator.is_main_process and (out_dir / CHECKPOINTS).is_dir() and any((out_dir / CHECKPOINTS).iterdir()):
        raise CtscribeError(
            ErrorCode.INVALID_REQUEST,
            f"{out_dir} already holds checkpoints: pass --resume to continue, or choose another out_dir",
        )

    losses = LossLog(out_dir / "losses.csv")
    if accelerator.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "train_config.json").write_text(json.dumps(cfg.to_dict(), indent=2, default=str))
        losses.truncate_after(step)

    dataset = stage.dataset()
    sampler = StepBatchSampler(
        len(dataset),
        cfg.batch_size,
        cfg.seed,
        start_batch=micro_batches,
        rank=accelerator.process_index,
        world=accelerator.num_processes,
    )
    use_pin = cfg.pin_memory and accelerator.device.type == "cuda"
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=stage.collate,
        num_workers=cfg.num_workers,
        pin_memory=use_pin,
        # Its own generator: creating the iterator must not consume the global RNG that a
        # checkpoint restores (dropout and friends would drift after a resume).
        generator=torch.Generator(),
        persistent_workers=False,
    )

    progress = None
    if cfg.progress and accelerator.is_local_main_process:
        from tqdm.auto import tqdm

        progress = tqdm(total=cfg.steps, initial=step, desc=f"{stage.name}", dynamic_ncols=True)

    last_loss = math.nan
    last_saved: Path | None = checkpoint
    end = cfg.steps if stop_after_steps is None else min(cfg.steps, stop_after_steps)
    data = iter(loader)
    model.train()
    while step < end:
        sums: dict[str, float] = {}
        for _ in range(cfg.grad_accum):
            batch = to_device(next(data), accelerator.device, non_blocking=use_pin)
            micro_batches += 1
            with accelerator.accumulate(model):
                with accelerator.autocast():
                    out = model(batch, step)
                loss = out["loss"]
                if not torch.isfinite(loss.detach()):
                    raise CtscribeError(ErrorCode.INVALID_REQUEST, f"{stage.name}: loss is {loss.item()} at step {step}")
                accelerator.backward(loss)
                if accelerator.sync_gradients and cfg.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            for key, value in out.items():
                sums[key] = sums.get(key, 0.0) + float(value.detach().float()) / cfg.grad_accum
        scheduler.step()
        step += 1
        stage.after_optimizer_step(accelerator.unwrap_model(model), step)

        metrics = _mean_over_processes(accelerator, sums)
        last_loss = metrics["loss"]
        if accelerator.is_main_process and (step % cfg.log_every == 0 or step == end):
            row = {"step": step, "epoch": sampler.epoch_of(micro_batches - 1), "lr": scheduler.get_last_lr()[0]}
            losses.append(row | metrics)
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{last_loss:.4f}")
        if step % cfg.save_every == 0 or step == end:
            last_saved = save_checkpoint(accelerator, cfg, out_dir, step, micro_batches, sampler)
            if accelerator.is_main_process:
                plot_losses(losses, out_dir / "losses.png", title=f"{stage.name} ({out_dir.name})")
    if progress is not None:
        progress.close()

    final_dir = None
    if step >= cfg.steps:
        final_dir = out_dir / "final"
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            final_dir.mkdir(parents=True, exist_ok=True)
            stage.export(accelerator.unwrap_model(model), final_dir)
        accelerator.wait_for_everyone()
    return TrainResult(step, last_loss, out_dir, last_saved, final_dir, time.perf_counter() - started)


def _mean_over_processes(accelerator, sums: dict[str, float]) -> dict[str, float]:
    if accelerator.num_processes == 1:
        return sums
    keys = sorted(sums)
    values = torch.tensor([sums[k] for k in keys], device=accelerator.device)
    values = accelerator.reduce(values, reduction="mean")
    return dict(zip(keys, values.tolist(), strict=True))


def save_checkpoint(accelerator, cfg: TrainConfig, out_dir: Path, step: int, micro_batches: int, sampler) -> Path:
    """Save a resumable checkpoint for `step`; a partial one never looks complete."""
    root = out_dir / CHECKPOINTS
    final = root / f"step_{step:08d}"
    tmp = root / f".tmp_step_{step:08d}"
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        state = {
            "step": step,
            "micro_batches": micro_batches,
            "epoch": sampler.epoch_of(max(0, micro_batches - 1)),
            "samples_per_process": micro_batches * cfg.batch_size,
            "num_processes": accelerator.num_processes,
            "seed": cfg.seed,
        }
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=2))
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        old = sorted(
            (p for p in root.glob("step_*") if (p / STATE_FILE).is_file()), key=lambda p: int(p.name.split("_")[1])
        )
        for stale in old[: -cfg.keep_checkpoints]:
            shutil.rmtree(stale, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final
