"""`ctscribe report PATH` and `ctscribe vqa PATH --question Q [--choice TEXT ...]` (DESIGN.md §3).

Reads the CT with `imaging.read.read_volume`, runs the model and prints the report (or the
answer); `--json` prints one JSON document with the text, label probabilities, key slices,
per-stage timings, the model / weights hashes and `warnings`. Warnings are structured
({code, message, ...}): `input` (from reading the CT), `report_contradicts_label_head` (the
consistency guard, `--consistency`), `model_not_trained_on_real_ct` (a phantom-only model on
a real CT); without `--json` each is one line `warning: <code>: <message>` on stderr. `--checkpoint` takes a checkpoint
directory or hub id; `tiny` builds the random tiny preset (smoke tests); by default the
bundled demo checkpoint `model/weights/demo` is used, and its absence is `model_not_ready`.
`--resample-geometry` (or an `--on-*` flag) resamples a tilted, oblique or unevenly spaced stack
instead of refusing it, as `inspect` and training do (app/cli/geometry_flags.py).
Heavy imports (torch, transformers) stay inside the handlers so `ctscribe --help` is fast.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from app.cli.geometry_flags import add_geometry_arguments, geometry_policies
from model.bundled_weights import DEMO_CHECKPOINT

RANDOM_PRESETS = ("tiny",)
"""--checkpoint values that build a random-weight preset instead of loading weights."""


def register(subparsers) -> None:
    report = subparsers.add_parser(
        "report", help="write a findings report for a chest CT", description=__doc__.splitlines()[0]
    )
    _common(report)
    report.add_argument(
        "--consistency", choices=("off", "warn", "repair"), default="warn",
        help="check the report against the label head: warn about confident disagreements (default), "
             "also drop the contradicting sentences (repair), or not check (off)",
    )
    report.set_defaults(func=run_report)

    vqa = subparsers.add_parser("vqa", help="answer a question about a chest CT (free text or multiple choice)")
    _common(vqa)
    vqa.add_argument("--question", "-q", required=True, help="the question")
    vqa.add_argument(
        "--choice", action="append", default=[], metavar="TEXT",
        help="a multiple-choice option (repeat 2-4 times, distinct; lettered a-d as in SAMF)"
    )
    vqa.add_argument(
        "--mcq-mode", choices=("likelihood", "generate"), default=None,
        help="multiple choice by option likelihood or by generating the answer and parsing it "
        "(default: the model's; samf-compat generates, as the SAMF release does)",
    )
    vqa.set_defaults(func=run_vqa)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", nargs="+", help="a NIfTI file, a DICOM folder, a zip, or several DICOM files")
    parser.add_argument(
        "--checkpoint", help=f"checkpoint directory or hub id, or 'tiny' (random weights); default {DEMO_CHECKPOINT}"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...)")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="cap on generated tokens")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass")
    parser.add_argument("--seed", type=int, help="sampling seed")
    parser.add_argument("--series", metavar="UID", help="DICOM SeriesInstanceUID (or its uid_hash) to read")
    add_decode_dtype_argument(parser)
    add_geometry_arguments(parser)


def add_decode_dtype_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--decode-dtype", choices=("auto", "config", "float32", "bfloat16", "int8"), default="auto",
        help="how the decoder runs (LoRA merged, static cache): auto = weight-only int8 on a CPU with native "
        "bf16, the checkpoint's dtype elsewhere (README: Speed on a CPU)",
    )


def load_pipeline(checkpoint: str | None, device: str = "cpu", decode_dtype: str | None = None):
    """The pipeline for `--checkpoint` (see the module docstring); with `decode_dtype`
    (model.runtime.DECODE_DTYPES) in its serving form, `Pipeline.for_inference`."""
    import model
    from model.errors import not_ready
    from model.runtime import configure_threads
    from model.runtime import decode_dtype as resolve_decode_dtype

    if device.split(":")[0] == "cpu":
        configure_threads()
    if checkpoint in RANDOM_PRESETS:
        pipe = model.build(checkpoint, device=device)
    else:
        if checkpoint is None:
            if not (DEMO_CHECKPOINT / "config.json").is_file():
                raise not_ready(
                    f"the bundled demo checkpoint is not there ({DEMO_CHECKPOINT}); pass --checkpoint DIR_OR_HUB_ID "
                    "(or --checkpoint tiny for a random-weight smoke test)"
                )
            checkpoint = str(DEMO_CHECKPOINT)
        pipe = model.load(checkpoint, device=device)
    return pipe.for_inference(resolve_decode_dtype(decode_dtype, pipe.device)) if decode_dtype else pipe


def _prepare(args: argparse.Namespace):
    """(pipeline, PreparedCT, volume, timings) for the command's input."""
    from transformers.utils import logging as hf_logging

    from imaging.options import ReadOptions
    from imaging.read import read_volume

    hf_logging.disable_progress_bar()
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    source = args.path[0] if len(args.path) == 1 else args.path
    volume = read_volume(source, ReadOptions(series_uid=args.series, **geometry_policies(args)))
    t1 = time.perf_counter()
    pipe = load_pipeline(args.checkpoint, args.device, args.decode_dtype)
    t2 = time.perf_counter()
    ct = pipe.prepare(volume.hu, volume.spacing_mm_zyx, volume.orientation_in)
    t3 = time.perf_counter()
    timings.update(read=round(t1 - t0, 4), load_model=round(t2 - t1, 4), prepare=round(t3 - t2, 4))
    return pipe, ct, volume, timings


def all_warnings(volume, output) -> list[dict]:
    """The reader's warnings (code `input`) followed by the result's own."""
    return [{"code": "input", "message": w} for w in volume.warnings] + list(output.warnings)


def print_warnings(warnings: list[dict]) -> None:
    """One line `warning: <code>: <message>` each, on stderr (stdout keeps the result alone)."""
    for w in warnings:
        print(f"warning: {w['code']}: {w['message']}", file=sys.stderr)


def _choice_line(out) -> str:
    """`b. text  (p=0.71)` (likelihood), `b. text  (generated: "...")`, or the raw text if unparsed."""
    if out.index is None:
        return f"(no option named) generated: {out.generated!r}"
    if out.probabilities is not None:
        return f"{out.letter}. {out.answer}  (p={out.probabilities[out.index]:.2f})"
    return f"{out.letter}. {out.answer}  (generated: {out.generated!r})"


def _params(args: argparse.Namespace):
    from model.generation import GenerationParams

    return GenerationParams(
        max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p, seed=args.seed
    )


def _envelope(pipe, volume, timings: dict, params=None) -> dict:
    doc = {
        "model_hash": pipe.model_hash,
        "weights_hash": pipe.weights_hash,
        "model": pipe.config.name,
        "checkpoint": pipe.source,
        "input": {
            "format": volume.format,
            "shape_zyx": list(volume.shape_zyx),
            "spacing_mm_zyx": [float(s) for s in volume.spacing_mm_zyx],
            "orientation_in": volume.orientation_in,
        },
        "timings_s": timings,
    }
    if params is not None:
        doc["generation"] = params.to_dict()
    return doc


def run_report(args: argparse.Namespace) -> int:
    from model.provenance import attach, input_warnings

    params = _params(args)
    pipe, ct, volume, timings = _prepare(args)
    out = pipe.report([ct], params, consistency=args.consistency)[0]
    attach([out], input_warnings(pipe.trained_on, volume.source_hint))
    timings.update(out.timings_s)
    warnings = all_warnings(volume, out)
    doc = {
        "text": out.text,
        "labels": out.labels,
        "key_slices": out.key_slices,
        "n_tokens": out.n_tokens,
        "attributes": out.attributes,
        "guidance": out.guidance,
        **_envelope(pipe, volume, timings, params),
        "warnings": warnings,
    }
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(out.text)
    if out.guidance:
        print("\nthe vision side saw (what the decoder was told):\n  " + out.guidance.replace("\n", "\n  "))
    likely = sorted(((p, n) for n, p in out.labels.items() if p >= 0.5), reverse=True)
    if likely:
        print("\nlabels (p >= 0.5): " + ", ".join(f"{n} {p:.2f}" for p, n in likely))
    if out.key_slices:
        print("key slices: " + ", ".join(f"{k['plane']} {k['index']} ({k['weight']:.2f})" for k in out.key_slices))
    print_warnings(warnings)
    return 0


def run_vqa(args: argparse.Namespace) -> int:
    from app.choices import check_choices
    from model.provenance import attach, input_warnings

    if args.choice:
        args.choice = list(check_choices(args.choice))  # bad option lists fail before the model is loaded
    params = _params(args)
    pipe, ct, volume, timings = _prepare(args)
    if args.choice:
        out = pipe.choose([ct], [args.question], [args.choice], mode=args.mcq_mode, params=params)[0]
        attach([out], input_warnings(pipe.trained_on, volume.source_hint))
        timings.update(out.timings_s)
        doc = {
            "question": args.question,
            "choices": args.choice,
            "answer": out.answer,
            "index": out.index,
            "letter": out.letter,
            "probabilities": out.probabilities,
            "mcq_mode": out.mcq_mode,
            "generated": out.generated,
            **_envelope(pipe, volume, timings),
        }
        text = _choice_line(out)
    else:
        out = pipe.answer([ct], [args.question], params)[0]
        attach([out], input_warnings(pipe.trained_on, volume.source_hint))
        timings.update(out.timings_s)
        doc = {"question": args.question, "answer": out.text, "n_tokens": out.n_tokens,
               **_envelope(pipe, volume, timings, params)}
        text = out.text
    doc["warnings"] = all_warnings(volume, out)
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(text)
        print_warnings(doc["warnings"])
    return 0
