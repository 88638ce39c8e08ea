"""`ctscribe eval score`: predictions JSONL -> metrics.json, per_sample.csv and report.html.

Each line (as `eval generate` writes it): `{id, kind: "report"|"mcq"|"free", prediction,
reference, choices?, answer_index?, predicted_index?, labels_pred?: {label: prob},
labels?: {label: 0/1}}`. Reports get the text metrics and clinical efficacy (the labeler on
the generated vs the reference report, or vs given `labels`); `labels_pred` (the model's
label head) is scored against the same truth. Multiple choice gets accuracy and macro P/R/F1
over answer letters; free-text answers get exact match and token F1.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ctscribe.errors import CtscribeError, ErrorCode
from eval.judge import JudgeConfig
from eval.text_metrics import TextMetricsConfig, compute_text_metrics

KINDS = ("report", "mcq", "free")


@dataclass(frozen=True)
class ScoreConfig:
    text: TextMetricsConfig = field(default_factory=TextMetricsConfig)
    """Which text metrics to run and how (BERTScore model, tokenisation)."""
    label_threshold: float = 0.5
    """Probability at or above which a `labels_pred` entry counts as positive."""
    html: bool = True
    """Write report.html with charts."""
    judge: JudgeConfig | None = None
    """Optional LLM-judge score of reports (off by default; eval/judge.py)."""


def read_predictions(path: Path) -> list[dict]:
    """Parse and validate a predictions JSONL file; bad input is an `invalid_request`."""
    path = Path(path)
    if not path.is_file():
        raise CtscribeError(ErrorCode.INVALID_REQUEST, f"predictions file not found: {path}")
    records = []
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CtscribeError(ErrorCode.INVALID_REQUEST, f"{path}:{line_no}: not JSON ({exc.msg})") from None
            _validate(record, f"{path}:{line_no}")
            records.append(record)
    if not records:
        raise CtscribeError(ErrorCode.INVALID_REQUEST, f"no predictions in {path}")
    return records


def _validate(record, where: str) -> None:
    if not isinstance(record, dict):
        raise CtscribeError(ErrorCode.INVALID_REQUEST, f"{where}: expected a JSON object")
    kind = record.get("kind")
    if kind not in KINDS:
        raise CtscribeError(ErrorCode.INVALID_REQUEST, f"{where}: kind must be one of {KINDS}, got {kind!r}")
    if kind == "mcq":
        if not isinstance(record.get("answer_index"), int):
            raise CtscribeError(ErrorCode.INVALID_REQUEST, f"{where}: mcq line needs an integer answer_index")
        predicted = record.get("predicted_index", "missing")
        if predicted is not None and not isinstance(predicted, int):  # None: a generated answer naming no option
            raise CtscribeError(ErrorCode.INVALID_REQUEST, f"{where}: mcq line needs an integer (or null) predicted_index")
    else:
        for key in ("prediction", "reference"):
            if not isinstance(record.get(key), str):
                raise CtscribeError(ErrorCode.INVALID_REQUEST, f"{where}: {kind} line needs a string {key}")


def score_records(records: list[dict], config: ScoreConfig | None = None) -> tuple[dict, list[dict]]:
    """(metrics, per-sample rows) for validated prediction records."""
    from eval.clinical import label_prf, labels_matrix
    from eval.vqa_metrics import exact_match, free_text_metrics, mcq_metrics, token_f1
    from model.labeler import label_reports

    config = config or ScoreConfig()
    metrics: dict = {"n": {kind: sum(r["kind"] == kind for r in records) for kind in KINDS}}
    rows: list[dict] = []

    reports = [r for r in records if r["kind"] == "report"]
    if reports:
        predictions = [r["prediction"] for r in reports]
        references = [r["reference"] for r in reports]
        summary, per_sample = compute_text_metrics(predictions, references, config.text)
        pred_labels = labels_matrix(label_reports(predictions))
        if all(isinstance(r.get("labels"), dict) for r in reports):
            truth, truth_source = labels_matrix([r["labels"] for r in reports]), "given labels"
        else:
            truth, truth_source = labels_matrix(label_reports(references)), "labeler on reference reports"
        metrics["report"] = {"text": summary, "clinical": label_prf(truth, pred_labels),
                             "clinical_truth": truth_source}
        if all(isinstance(r.get("labels_pred"), dict) for r in reports):
            head = labels_matrix([r["labels_pred"] for r in reports], threshold=config.label_threshold)
            metrics["report"]["label_head"] = label_prf(truth, head)
        if config.judge is not None:
            from eval.judge import LLMJudge

            judged = LLMJudge(config.judge).score(predictions, references)
            per_sample["llm_judge"] = judged.pop("per_sample")
            metrics["report"]["llm_judge"] = judged
        for i, record in enumerate(reports):
            row = {"id": record.get("id"), "kind": "report"}
            row.update({name: values[i] for name, values in per_sample.items()})
            row["labels_correct"] = int((pred_labels[i] == truth[i]).sum())
            rows.append(row)

    mcqs = [r for r in records if r["kind"] == "mcq"]
    if mcqs:
        metrics["mcq"] = mcq_metrics([r["predicted_index"] for r in mcqs], [r["answer_index"] for r in mcqs])
        rows += [{"id": r.get("id"), "kind": "mcq", "correct": int(r["predicted_index"] == r["answer_index"])}
                 for r in mcqs]

    frees = [r for r in records if r["kind"] == "free"]
    if frees:
        metrics["free"] = free_text_metrics([r["prediction"] for r in frees], [r["reference"] for r in frees])
        rows += [{"id": r.get("id"), "kind": "free", "exact_match": exact_match(r["prediction"], r["reference"]),
                  "token_f1": token_f1(r["prediction"], r["reference"])} for r in frees]
    return metrics, rows


def score_file(predictions_path: Path, out_dir: Path, config: ScoreConfig | None = None) -> dict:
    """Score a predictions file and write metrics.json, per_sample.csv (and report.html) to out_dir."""
    import pandas as pd

    config = config or ScoreConfig()
    records = read_predictions(predictions_path)
    metrics, rows = score_records(records, config)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=_json_default))
    pd.DataFrame(rows).to_csv(out_dir / "per_sample.csv", index=False)
    if config.html:
        from eval.html_report import write_html_report

        write_html_report(metrics, rows, out_dir / "report.html")
    return metrics


def _json_default(value):
    try:
        return value.item()  # numpy scalars
    except AttributeError:
        raise TypeError(f"not JSON serialisable: {type(value)}") from None
