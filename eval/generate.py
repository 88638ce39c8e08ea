"""`ctscribe eval generate`: batched, resumable, sharded predictions over a manifest.

Every manifest sample gives up to three kinds of work items: its report (`report`), each
multiple-choice question (`mcq`) and each free-text question (`free`). Items are grouped by
kind (all reports, then all multiple-choice, then all free-text questions) and run in batches through `model.Pipeline` (volumes come from the preprocessing cache, so a second
run reads no DICOM/NIfTI) and appended to `predictions.jsonl` one line per item, flushed
after every batch, in the format `eval score` reads:

    {"key": "<id>/report", "id", "kind": "report", "prediction", "reference",
     "labels"?: {..0/1}, "labels_pred": {label: prob}, "key_slices": [...],
     "warnings": [...], "guidance": "Seen: ...", "attributes_pred": {attribute: {class: prob}}}   (the consistency guard's, model.consistency; mode warn)
    {"key": "<id>/q3", "id", "kind": "mcq", "question", "choices", "answer_index",
     "predicted_index", "probabilities", "prediction", "reference", "mcq_mode", "generated"}
     (mcq_mode generate: probabilities null, `generated` the raw answer text, predicted_index
     null when it names no option)
    {"key": "<id>/q4", "id", "kind": "free", "question", "prediction", "reference"}

Resume: a restart reads the keys already written and runs only the rest; a torn last line
(the process was killed mid-write) is dropped first. With several processes (`accelerate
launch`) each takes every n-th work item, writes `predictions.rank<i>.jsonl`, and the main
process merges them into `predictions.jsonl` in manifest order once all are done.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ctscribe.errors import CtscribeError, ErrorCode

log = logging.getLogger(__name__)

KINDS = ("report", "mcq", "free")
PREDICTIONS = "predictions.jsonl"


@dataclass(frozen=True)
class GenerateConfig:
    batch_size: int = 4
    """Work items of one kind per model call."""
    max_new_tokens: int = 256
    """Cap on generated tokens per report / free-text answer."""
    device: str = "cpu"
    """Torch device for the model ("cuda" picks this process's GPU under accelerate)."""
    limit: int | None = None
    """Only the first N manifest samples (None: all)."""
    kinds: tuple[str, ...] = KINDS
    """Which kinds of items to run."""
    split: str | None = None
    """Only manifest samples of this split (None: all)."""
    cache_dir: str | None = None
    """Preprocessing cache (default: `.ctscribe-cache` beside the manifest)."""
    progress: bool = True
    """Show a tqdm bar."""
    dtype: str = ""
    """How the decoder runs (model.runtime.DECODE_DTYPES): "" = the checkpoint's dtype, as loaded
    (LoRA unmerged); otherwise the serving form (`Pipeline.for_inference`: LoRA merged, static
    cache) in auto | config | float32 | bfloat16 | int8 (weight-only, bf16 activations)."""

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.max_new_tokens < 1:
            raise CtscribeError(ErrorCode.INVALID_REQUEST, "batch_size and max_new_tokens must be >= 1")
        unknown = set(self.kinds) - set(KINDS)
        if unknown or not self.kinds:
            raise CtscribeError(ErrorCode.INVALID_REQUEST, f"kinds must be a non-empty subset of {KINDS}")


@dataclass(frozen=True)
class WorkItem:
    key: str
    sample: int
    kind: str
    question: int = -1
    """Index into the sample's questions; -1 for the report."""


def work_items(samples, kinds: tuple[str, ...]) -> list[WorkItem]:
    """Every (sample, report or question) to predict: grouped by kind (reports, then multiple
    choice, then free text, so batches are full), manifest order within a kind."""
    items = []
    for i, sample in enumerate(samples):
        if "report" in kinds and sample.report:
            items.append(WorkItem(f"{sample.id}/report", i, "report"))
        for j, q in enumerate(sample.questions):
            if q.kind in kinds:
                items.append(WorkItem(f"{sample.id}/q{j}", i, q.kind, j))
    return sorted(items, key=lambda it: KINDS.index(it.kind))  # stable: manifest order kept per kind


def read_done(path: Path) -> set[str]:
    """Keys already in a predictions file; a torn (unterminated) last line is cut off first."""
    if not path.is_file():
        return set()
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        with path.open("r+b") as handle:
            handle.truncate(cut)
        data = data[:cut]
        log.warning("%s: dropped a partly written last line", path)
    done = set()
    for line in data.decode("utf-8").splitlines():
        if line.strip():
            done.add(json.loads(line)["key"])
    return done


def _batches(items: list[WorkItem], batch_size: int) -> Iterator[list[WorkItem]]:
    """Consecutive runs of one kind, at most batch_size long (the pipeline batches one kind)."""
    batch: list[WorkItem] = []
    for item in items:
        if batch and (item.kind != batch[0].kind or len(batch) == batch_size):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


def load_pipeline(checkpoint: str, device: str = "cpu", dtype: str = ""):
    """A checkpoint dir or hub id, or `preset:NAME` for a seeded random-weight preset; with
    `dtype`, in its serving form (see GenerateConfig.dtype)."""
    import model
    from model.runtime import decode_dtype

    if checkpoint.startswith("preset:"):
        pipe = model.build(checkpoint[len("preset:") :], device=device)
    else:
        pipe = model.load(checkpoint, device=device)
    return pipe.for_inference(decode_dtype(dtype, pipe.device)) if dtype else pipe


def predict_batch(pipe, samples, cts, batch: list[WorkItem], max_new_tokens: int) -> list[dict]:
    """Run one same-kind batch; returns its prediction records."""
    from model.generation import GenerationParams

    params = GenerationParams(max_new_tokens=max_new_tokens)
    kind = batch[0].kind
    records = []
    if kind == "report":
        outputs = pipe.report(cts, params)
        for item, out in zip(batch, outputs):
            sample = samples[item.sample]
            record = {"key": item.key, "id": sample.id, "kind": "report", "prediction": out.text,
                      "reference": sample.report, "labels_pred": out.labels, "key_slices": out.key_slices,
                      "warnings": out.warnings, "guidance": out.guidance, "attributes_pred": out.attributes}
            if sample.labels is not None:
                record["labels"] = dict(sample.labels)
            records.append(record)
        return records
    questions = [samples[i.sample].questions[i.question] for i in batch]
    if kind == "mcq":
        outputs = pipe.choose(cts, [q.question for q in questions], [list(q.choices) for q in questions])
        for item, q, out in zip(batch, questions, outputs):
            records.append({"key": item.key, "id": samples[item.sample].id, "kind": "mcq", "question": q.question,
                            "choices": list(q.choices), "answer_index": list(q.choices).index(q.answer),
                            "predicted_index": out.index, "probabilities": out.probabilities,
                            "prediction": out.answer, "reference": q.answer, "mcq_mode": out.mcq_mode,
                            "generated": out.generated})
        return records
    outputs = pipe.answer(cts, [q.question for q in questions], params)
    for item, q, out in zip(batch, questions, outputs):
        records.append({"key": item.key, "id": samples[item.sample].id, "kind": "free", "question": q.question,
                        "prediction": out.text, "reference": q.answer})
    return records


def generate(checkpoint: str, manifest: str | Path, out_dir: str | Path, config: GenerateConfig | None = None) -> Path:
    """Predict every work item of the manifest not already in `out_dir`; returns predictions.jsonl."""
    from accelerate import PartialState

    from dataset.manifest import filter_split, read_manifest
    from dataset.prepared import make_cache, prepared_ct

    config = config or GenerateConfig()
    state = PartialState()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    samples = filter_split(read_manifest(manifest, check_files=True), config.split)
    if config.limit is not None:
        samples = samples[: config.limit]
    items = work_items(samples, config.kinds)
    if not items:
        raise CtscribeError(ErrorCode.INVALID_REQUEST, f"{manifest}: nothing to predict for kinds {config.kinds}")

    device = str(state.device) if config.device == "cuda" else config.device
    pipe = load_pipeline(checkpoint, device, config.dtype)
    cache = make_cache(config.cache_dir or Path(manifest).parent / ".ctscribe-cache", pipe.config.preprocess)

    sharded = state.num_processes > 1
    path = out_dir / (f"predictions.rank{state.process_index}.jsonl" if sharded else PREDICTIONS)
    done = read_done(path)
    mine = [it for n, it in enumerate(items) if n % state.num_processes == state.process_index]
    todo = [it for it in mine if it.key not in done]
    log.info("%d work items for this process, %d already done", len(mine), len(mine) - len(todo))

    bar = None
    if config.progress and state.is_local_main_process:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(mine), initial=len(mine) - len(todo), desc="generate", dynamic_ncols=True)
    with path.open("a", encoding="utf-8") as handle:
        for batch in _batches(todo, config.batch_size):
            cts = [prepared_ct(cache.get(samples[it.sample]).tensors) for it in batch]
            records = predict_batch(pipe, samples, cts, batch, config.max_new_tokens)
            handle.write("".join(json.dumps(r) + "\n" for r in records))
            handle.flush()
            os.fsync(handle.fileno())
            if bar is not None:
                bar.update(len(batch))
    if bar is not None:
        bar.close()

    if not sharded:
        return path
    state.wait_for_everyone()
    merged = out_dir / PREDICTIONS
    if state.is_main_process:
        _merge_shards(out_dir, state.num_processes, [it.key for it in items], merged)
    state.wait_for_everyone()
    return merged


def _merge_shards(out_dir: Path, n_shards: int, order: list[str], merged: Path) -> None:
    """Shard files -> one predictions.jsonl in work-item order, written atomically."""
    by_key = {}
    for rank in range(n_shards):
        with (out_dir / f"predictions.rank{rank}.jsonl").open(encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    record = json.loads(line)
                    by_key[record["key"]] = line if line.endswith("\n") else line + "\n"
    tmp = merged.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(by_key[k] for k in order if k in by_key), encoding="utf-8")
    os.replace(tmp, merged)
