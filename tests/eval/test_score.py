"""`eval score` and `eval label`: files written, values consistent with the metric functions, errors."""

import json

import pytest

from app.cli.main import main
from tests.eval.conftest import wordnet_available

needs_wordnet = pytest.mark.skipif(not wordnet_available(), reason="WordNet (Debian wordnet-base) not installed")

REPORT_A = "Bilateral pleural effusion is observed. No nodule was detected."
REPORT_B = "A 5 mm nodule in the right upper lobe. Pleural effusion was not detected."


def write_predictions(path, with_bad_line=False):
    lines = [
        {"id": "r1", "kind": "report", "prediction": REPORT_A, "reference": REPORT_A,
         "labels_pred": {"Pleural effusion": 0.9, "Lung nodule": 0.2}},
        {"id": "r2", "kind": "report", "prediction": REPORT_A, "reference": REPORT_B,
         "labels_pred": {"Pleural effusion": 0.1, "Lung nodule": 0.7}},
        {"id": "q1", "kind": "mcq", "prediction": "b. nodule", "reference": "b. nodule",
         "choices": ["a", "b", "c", "d"], "answer_index": 1, "predicted_index": 1},
        {"id": "q2", "kind": "mcq", "prediction": "a", "reference": "c", "answer_index": 2, "predicted_index": 0},
        {"id": "f1", "kind": "free", "prediction": "The right lung.", "reference": "right lung"},
    ]
    text = "\n".join(json.dumps(x) for x in lines) + "\n"
    if with_bad_line:
        text += "{not json\n"
    path.write_text(text)


@needs_wordnet
def test_score_cli_writes_metrics_csv_and_html(tmp_path, capsys):
    preds = tmp_path / "predictions.jsonl"
    write_predictions(preds)
    out = tmp_path / "scores"
    assert main(["eval", "score", "--predictions", str(preds), "--out", str(out), "--no-bertscore"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == {"report": 2, "mcq": 2, "free": 1}
    text = metrics["report"]["text"]
    assert text["bleu_4_mean"] < 1.0 and "bleu_4_corpus" in text and "bertscore_f1_mean" not in text
    # r1: generated == reference (all labels agree); r2 says effusion where the reference has a nodule.
    clinical = metrics["report"]["clinical"]
    assert clinical["per_label"]["Pleural effusion"] == pytest.approx(
        {"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1, "predicted": 2})
    assert clinical["per_label"]["Lung nodule"]["recall"] == 0.0
    # Label head: effusion 0.9 / 0.1 vs truth 1 / 0, nodule 0.2 / 0.7 vs truth 0 / 1 -> perfect.
    head = metrics["report"]["label_head"]["per_label"]
    assert head["Pleural effusion"]["f1"] == 1.0 and head["Lung nodule"]["f1"] == 1.0
    assert metrics["mcq"]["accuracy"] == 0.5
    assert metrics["free"]["exact_match"] == 1.0
    import pandas as pd

    rows = pd.read_csv(out / "per_sample.csv")
    assert list(rows["id"]) == ["r1", "r2", "q1", "q2", "f1"]
    assert rows.loc[0, "bleu_4"] == pytest.approx(1.0) and rows.loc[1, "bleu_4"] < 1.0
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 3 and "Clinical efficacy" in html


def test_score_rejects_bad_input(tmp_path, capsys):
    preds = tmp_path / "p.jsonl"
    write_predictions(preds, with_bad_line=True)
    assert main(["eval", "score", "--predictions", str(preds), "--out", str(tmp_path / "o")]) == 2
    assert "error: invalid_request:" in capsys.readouterr().err
    assert main(["eval", "score", "--predictions", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path)]) == 2
    preds.write_text(json.dumps({"id": 1, "kind": "mcq", "answer_index": 1}) + "\n")
    assert main(["eval", "score", "--predictions", str(preds), "--out", str(tmp_path / "o")]) == 2
    assert "predicted_index" in capsys.readouterr().err


def test_label_cli_on_ctrate_reports_layout(tmp_path, capsys):
    import pandas as pd

    csv = tmp_path / "reports.csv"
    pd.DataFrame({
        "VolumeName": ["valid_1_a_1.nii.gz", "valid_2_a_1.nii.gz"],
        "Findings_EN": ["Bilateral pleural effusion is observed.", "No pleural effusion."],
        "Impressions_EN": ["Cardiomegaly.", "Normal study."],
    }).to_csv(csv, index=False)
    out = tmp_path / "labels.csv"
    assert main(["eval", "label", str(csv), "--out", str(out)]) == 0
    labels = pd.read_csv(out)
    assert list(labels.columns)[0] == "VolumeName" and len(labels.columns) == 19
    assert labels.loc[0, "Pleural effusion"] == 1 and labels.loc[0, "Cardiomegaly"] == 1
    assert labels.loc[1].iloc[1:].sum() == 0
    assert main(["eval", "label", str(csv), "--text-column", "nope", "--out", str(out)]) == 2
    assert "error: invalid_request:" in capsys.readouterr().err
