"""`ctscribe train {dino,warmup,finetune,manifest}`: the three training stages and dataset import.

    ctscribe train finetune --config train/configs/demo.yaml --set manifest=data/manifest.jsonl [--resume]
    accelerate launch -m app.cli.main train finetune --config run.yaml      # multi-GPU
    ctscribe train manifest --from synth data/phantoms --out data/manifest.jsonl
    ctscribe train manifest --from ctrate /data/ct-rate --reports train_reports.csv \\
        --labels train_labels.csv --metadata train_metadata.csv --out ct-rate.jsonl
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

STAGE_HELP = {
    "dino": "stage 1: DINO self-distillation of the slice encoder",
    "warmup": "stage 2: aggregator InfoNCE warm-up (encoder frozen)",
    "finetune": "stage 3: LoRA decoder + aggregator/fusion/label head on reports and VQA",
}


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train the model (three stages) or build a training manifest")
    stages = p.add_subparsers(dest="train_command", metavar="STAGE")
    for stage, text in STAGE_HELP.items():
        s = stages.add_parser(stage, help=text, description=text)
        s.add_argument("--config", help="YAML training config (train/configs/*.yaml)")
        s.add_argument(
            "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
            help="override a config key (dotted for stage keys: dino.n_local_crops=4); repeatable",
        )
        s.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in out_dir")
        s.set_defaults(func=run_stage, stage=stage)

    m = stages.add_parser("manifest", help="import a dataset (CT-RATE, a ctscribe synth set) into a manifest")
    m.add_argument("root", metavar="ROOT", help="dataset folder")
    m.add_argument("--from", dest="source", choices=("ctrate", "synth"), required=True)
    m.add_argument("--out", required=True, help="manifest JSONL to write")
    m.add_argument("--reports", help="ctrate: reports CSV (relative to ROOT or absolute)")
    m.add_argument("--labels", help="ctrate: labels CSV")
    m.add_argument("--metadata", help="ctrate: metadata CSV (slope/intercept, spacing)")
    m.add_argument("--vqa", help="ctrate: VQA JSONL {volume, question, choices?, answer}")
    m.add_argument("--mcq-csv", action="append", default=[], help="SAMF MCQ CSV to attach; repeatable")
    m.add_argument("--split", help="split name to record (default: from the folder)")
    m.add_argument("--no-value-check", action="store_true", help="decide raw vs HU by file name only (fast)")
    m.add_argument("--workers", type=int, default=4, help="threads reading volume headers/values")
    m.add_argument("--json", action="store_true", help="print the summary as JSON")
    m.set_defaults(func=run_manifest)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run_stage(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # DataLoader workers fork after tokenising
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from train.config import load_config
    from train.loop import run_training

    cfg = load_config(args.config, args.overrides, stage=args.stage)
    if cfg.stage != args.stage:
        from ctscribe.errors import CtscribeError, ErrorCode

        raise CtscribeError(ErrorCode.INVALID_REQUEST, f"the config is for stage {cfg.stage!r}, not {args.stage!r}")
    stage = _stage(cfg)
    result = run_training(cfg, stage, resume=args.resume)
    print(
        json.dumps(
            {
                "stage": cfg.stage,
                "step": result.step,
                "last_loss": result.last_loss,
                "out_dir": str(result.out_dir),
                "checkpoint": str(result.checkpoint) if result.checkpoint else None,
                "final": str(result.final_dir) if result.final_dir else None,
                "seconds": round(result.seconds, 1),
            }
        )
    )
    return 0


def _stage(cfg):
    if cfg.stage == "dino":
        from train.dino import DinoStage

        return DinoStage(cfg)
    if cfg.stage == "warmup":
        from train.warmup import WarmupStage

        return WarmupStage(cfg)
    from train.finetune import FinetuneStage

    return FinetuneStage(cfg)


def run_manifest(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ctscribe.errors import CtscribeError, ErrorCode
    from dataset.manifest import write_manifest
    from dataset.mcq_csv import attach_questions, read_mcq_csv

    root = Path(args.root)

    def under_root(name: str | None) -> Path | None:
        if not name:
            return None
        path = Path(name)
        return path if path.is_absolute() or path.exists() else root / path

    if args.source == "synth":
        from dataset.phantom_import import import_phantom

        result = import_phantom(root, [args.split] if args.split else None, check_values=not args.no_value_check)
    else:
        if not args.reports:
            raise CtscribeError(ErrorCode.INVALID_REQUEST, "--from ctrate needs --reports")
        from dataset.ctrate import import_ctrate

        result = import_ctrate(
            root,
            under_root(args.reports),
            labels_csv=under_root(args.labels),
            metadata_csv=under_root(args.metadata),
            vqa_jsonl=under_root(args.vqa),
            split=args.split,
            check_values=not args.no_value_check,
            workers=args.workers,
        )
    samples, warnings = result.samples, list(result.warnings)
    for csv_path in args.mcq_csv:
        mcq = read_mcq_csv(under_root(csv_path))
        samples, unmatched = attach_questions(samples, mcq.questions)
        warnings += mcq.warnings + [f"{csv_path}: no volume for {k}" for k in unmatched]
    if not samples:
        raise CtscribeError(ErrorCode.INVALID_REQUEST, f"no volumes found under {root}")
    out = write_manifest(args.out, samples)
    summary = {
        "manifest": str(out),
        "samples": len(samples),
        "raw": sum(s.hu_source == "raw" for s in samples),
        "hu": sum(s.hu_source == "hu" for s in samples),
        "questions": sum(len(s.questions) for s in samples),
        "with_labels": sum(s.labels is not None for s in samples),
        "skipped": len(result.skipped),
        "warnings": warnings,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)
        print(
            f"{summary['samples']} samples ({summary['hu']} HU, {summary['raw']} raw), "
            f"{summary['questions']} questions, {summary['skipped']} skipped -> {out}"
        )
    return 0
