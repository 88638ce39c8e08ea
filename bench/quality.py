"""Does the demo model read pixels? Label F1 and multiple-choice accuracy on new phantoms.

Usage: python bench/quality.py [--checkpoint DIR] [--n 200] [--seed 1000] [--batch-size 8]
                               [--max-new-tokens 256] [--mcq-per-case K] [--no-baseline]
                               [--work-dir DIR] [--out bench/results/quality.json]

Generates `--n` phantoms with a dataset seed never used in training (the bundled checkpoint is
trained on seed 0), runs `eval generate` (reports + every multiple-choice question) and
`eval score` on them, and reports, over the labels the phantom renders:
  - label-head macro-F1 (the 18-label head on the volume embedding),
  - report macro-F1 (the report labeler on the generated text vs the phantom's truth),
  - multiple-choice accuracy (chance 0.25 with four options).
The same numbers for the baseline - the same checkpoint with its vision side (encoder,
aggregator, fusion, label head) re-initialised at random - show how much comes from the
image rather than from text priors. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import write_json  # noqa: E402

DEFAULT_CHECKPOINT = ROOT / "model" / "weights" / "demo"


def rendered_labels() -> tuple[str, ...]:
    from imaging.phantom import FINDING_LABELS

    return tuple(dict.fromkeys(FINDING_LABELS.values()))


def make_phantom_manifest(root: Path, n: int, seed: int, mcq_per_case: int | None) -> Path:
    """`n` phantoms and their manifest; keeps `mcq_per_case` multiple-choice questions of each (seeded pick)."""
    import random
    from dataclasses import replace

    from dataset.manifest import write_manifest
    from dataset.phantom_import import import_phantom
    from imaging.phantom.dataset import write_dataset

    write_dataset(root, n, seed=seed, split="valid")
    samples = import_phantom(root).samples
    if mcq_per_case is not None:
        rng = random.Random(seed)
        picked = []
        for s in samples:
            mcqs = [q for q in s.questions if q.kind == "mcq"]
            picked.append(replace(s, questions=tuple(rng.sample(mcqs, min(mcq_per_case, len(mcqs))))))
        samples = picked
    return write_manifest(root / "manifest.jsonl", samples)


def random_vision_checkpoint(checkpoint: str, out_dir: Path, seed: int = 0) -> Path:
    """The checkpoint with encoder, aggregator, fusion and label head re-initialised (seeded)."""
    import torch

    from eval.generate import load_pipeline

    pipe = load_pipeline(checkpoint)
    torch.manual_seed(seed)
    for module in pipe.model.vision_modules().values():
        for sub in module.modules():
            if hasattr(sub, "reset_parameters"):
                sub.reset_parameters()
    pipe.save(out_dir)
    return out_dir


def question_topics(manifest: Path) -> dict[str, str]:
    """Question text -> topic (nodule_side, heart, ...) from the phantom set's VQA file."""
    import json

    topics = {}
    for path in manifest.parent.glob("*_vqa.jsonl"):
        for line in path.read_text().splitlines():
            q = json.loads(line)
            topics[q["question"]] = q.get("topic", "other")
    return topics


def mcq_by_topic(records: list[dict], topics: dict[str, str]) -> dict:
    """Multiple-choice accuracy per question topic: {topic: {accuracy, n}}."""
    by: dict[str, list[int]] = {}
    for r in records:
        if r["kind"] == "mcq":
            by.setdefault(topics.get(r["question"], "other"), []).append(int(r["predicted_index"] == r["answer_index"]))
    return {t: {"accuracy": round(sum(v) / len(v), 4), "n": len(v)} for t, v in sorted(by.items())}


def report_head_agreement(records: list[dict], labels: tuple[str, ...]) -> dict:
    """Share of (case, finding) pairs where the report (read by the labeler) and the label head
    (probability >= 0.5) say the same, over the rendered labels."""
    from model.labeler import label_report

    agree = total = 0
    for r in records:
        if r["kind"] != "report" or not r.get("labels_pred"):
            continue
        said = label_report(r["prediction"])
        for label in labels:
            agree += int(said[label] == int(r["labels_pred"][label] >= 0.5))
            total += 1
    return {"agreement": round(agree / max(1, total), 4), "pairs": total}


def repaired_scores(records: list[dict], labels: tuple[str, ...]) -> dict:
    """What `consistency=repair` (drop the sentences that contradict a confident head) does to
    the same generated reports: report macro-F1 and head agreement before and after."""
    from eval.clinical import label_prf, labels_matrix
    from model.consistency import guard
    from model.labeler import label_report
    from model.results import ReportOutput

    reports = [r for r in records if r["kind"] == "report" and r.get("labels_pred") and r.get("labels")]
    if not reports:
        return {}
    repaired, dropped = [], 0
    for r in reports:
        out = guard(ReportOutput(text=r["prediction"], labels=r["labels_pred"], key_slices=[], n_tokens=0),
                    labels, "repair")
        dropped += sum(len(w["sentences"]) for w in out.warnings if w.get("repaired"))
        repaired.append({**r, "prediction": out.text})
    truth = labels_matrix([r["labels"] for r in reports])
    f1 = restricted(label_prf(truth, labels_matrix([label_report(r["prediction"]) for r in repaired])), labels)
    return {"report_labeler_macro_f1": round(f1["macro"]["f1"], 4), "sentences_dropped": dropped,
            "report_head_agreement": report_head_agreement(repaired, labels)["agreement"]}


def restricted(prf: dict, labels: tuple[str, ...]) -> dict:
    """Macro P/R/F1 over a subset of the per-label entries of `eval.clinical.label_prf`."""
    per = {k: v for k, v in prf["per_label"].items() if k in labels}
    macro = {m: sum(v[m] for v in per.values()) / len(per) for m in ("precision", "recall", "f1")}
    return {"macro": macro, "per_label": per}


def evaluate(checkpoint: str, manifest: Path, out_dir: Path, args) -> dict:
    from eval.generate import GenerateConfig, generate
    from eval.score import ScoreConfig, read_predictions, score_records
    from eval.text_metrics import TextMetricsConfig

    start = time.perf_counter()
    config = GenerateConfig(batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
                            kinds=("report", "mcq"), progress=True, dtype=args.dtype)
    predictions = generate(checkpoint, manifest, out_dir, config)
    generate_s = time.perf_counter() - start
    metrics, _ = score_records(read_predictions(predictions),
                               ScoreConfig(text=TextMetricsConfig(metrics=("bleu", "rouge_l")), html=False))
    labels = rendered_labels()
    report = metrics["report"]
    records = read_predictions(predictions)
    return {
        "label_head": restricted(report["label_head"], labels),
        "report_labeler": restricted(report["clinical"], labels),
        "mcq_accuracy": metrics["mcq"]["accuracy"],
        "mcq_by_topic": mcq_by_topic(records, question_topics(manifest)),
        "report_head_agreement": report_head_agreement(records, labels),
        "repair": repaired_scores(records, labels),
        "n_mcq": metrics["n"]["mcq"],
        "bleu_4_mean": report["text"]["bleu_4_mean"],
        "rouge_l_mean": report["text"]["rouge_l_mean"],
        "generate_s": round(generate_s, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1000, help="phantom dataset seed (training used 0)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--mcq-per-case", type=int, default=None,
                        help="score K seeded-random multiple-choice questions per phantom (CPU budget)")
    parser.add_argument("--dtype", default="", help="decoder for inference: \"\" = the checkpoint as loaded, else its serving "
                        "form in auto | config | float32 | bfloat16 | int8 (model.runtime.DECODE_DTYPES)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the random-vision baseline")
    parser.add_argument("--work-dir", type=Path, default=None, help="keep phantoms and predictions here (resumable)")
    parser.add_argument("--out", default=None, help="JSON path (default bench/results/quality.json)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ctscribe-quality-") as tmp:
        work = args.work_dir or Path(tmp)
        manifest = make_phantom_manifest(work / "phantoms", args.n, args.seed, args.mcq_per_case)
        runs = {"trained": evaluate(args.checkpoint, manifest, work / "trained", args)}
        if not args.no_baseline:
            baseline = random_vision_checkpoint(args.checkpoint, work / "random-vision-checkpoint")
            runs["random_vision"] = evaluate(str(baseline), manifest, work / "random_vision", args)

    print(f"{args.n} phantoms (seed {args.seed}), labels rendered: {len(rendered_labels())}")
    print(f"{'model':16s} {'head macro-F1':>14s} {'report macro-F1':>16s} {'MCQ acc':>8s} {'agree':>6s} {'BLEU-4':>7s}")
    for name, r in runs.items():
        print(f"{name:16s} {r['label_head']['macro']['f1']:14.3f} {r['report_labeler']['macro']['f1']:16.3f} "
              f"{r['mcq_accuracy']:8.3f} {r['report_head_agreement']['agreement']:6.3f} {r['bleu_4_mean']:7.3f}")
    for name, r in runs.items():
        if r.get("repair"):
            print(f"{name}: consistency=repair -> report macro-F1 {r['repair']['report_labeler_macro_f1']:.3f}, "
                  f"agreement {r['repair']['report_head_agreement']:.3f} ({r['repair']['sentences_dropped']} sentences dropped)")
        print(f"{name}: MCQ by topic " + ", ".join(f"{t} {v['accuracy']:.2f} (n={v['n']})" for t, v in r["mcq_by_topic"].items()))
    write_json("quality", {"checkpoint": args.checkpoint, "n": args.n, "seed": args.seed,
                           "mcq_per_case": args.mcq_per_case, "dtype": args.dtype or "checkpoint",
                            "max_new_tokens": args.max_new_tokens, "runs": runs}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
