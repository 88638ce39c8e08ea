"""Labeler P/R/F1 on the 800 manually labelled CT-RATE reports: dev (500) and held-out (300).

Usage: python bench/labeler.py [--data ../shared/data/reports/ctrate_labeled_reports.csv]
                               [--out bench/results/labeler.json] [--strict-uncertain]
Prints per-label precision/recall/F1 and macro/micro for both parts of the fixed split
(`model/labeler/split.py`) and writes them as JSON. The rules were tuned on dev only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ctscribe.labels import CTRATE_LABELS  # noqa: E402
from eval.clinical import label_prf, labels_matrix  # noqa: E402
from model.labeler import LabelerConfig, label_reports  # noqa: E402
from model.labeler.split import split_frame  # noqa: E402

DEFAULT_DATA = ROOT / ".." / "shared" / "data" / "reports" / "ctrate_labeled_reports.csv"


def evaluate_part(frame, config: LabelerConfig) -> dict:
    predicted = labels_matrix(label_reports(frame["report_text"].fillna("").tolist(), config))
    return label_prf(frame[list(CTRATE_LABELS)].to_numpy(), predicted)


def format_table(name: str, result: dict) -> str:
    lines = [f"== {name} (n={result['n']})", f"{'label':36s} {'P':>6s} {'R':>6s} {'F1':>6s} {'support':>7s}"]
    for label, v in result["per_label"].items():
        lines.append(f"{label:36s} {v['precision']:6.3f} {v['recall']:6.3f} {v['f1']:6.3f} {v['support']:7d}")
    for avg in ("macro", "micro"):
        v = result[avg]
        lines.append(f"{avg:36s} {v['precision']:6.3f} {v['recall']:6.3f} {v['f1']:6.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import pandas as pd

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "labeler.json")
    parser.add_argument("--strict-uncertain", action="store_true",
                        help="count uncertain mentions as negative (default: positive)")
    args = parser.parse_args(argv)
    if not args.data.is_file():
        print(f"error: labelled reports not found: {args.data}", file=sys.stderr)
        return 2
    config = LabelerConfig(uncertain_as_positive=not args.strict_uncertain)
    dev, heldout = split_frame(pd.read_csv(args.data))
    results = {"config": {"uncertain_as_positive": config.uncertain_as_positive},
               "dev": evaluate_part(dev, config), "heldout": evaluate_part(heldout, config)}
    print(format_table("dev", results["dev"]))
    print(format_table("held-out", results["heldout"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=float))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
