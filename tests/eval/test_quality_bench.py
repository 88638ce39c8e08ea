"""The quality benchmark's own measures: MCQ accuracy per topic, report/head agreement, repair."""

from __future__ import annotations

from bench.quality import mcq_by_topic, repaired_scores, report_head_agreement

LABELS = ("Cardiomegaly", "Pleural effusion")


def _report(text, head, truth):
    return {"kind": "report", "prediction": text, "labels_pred": head, "labels": truth}


def test_mcq_accuracy_is_split_by_topic():
    records = [
        {"kind": "mcq", "question": "Which lung?", "predicted_index": 1, "answer_index": 1},
        {"kind": "mcq", "question": "Which lung?", "predicted_index": 0, "answer_index": 1},
        {"kind": "mcq", "question": "Heart?", "predicted_index": 2, "answer_index": 2},
        {"kind": "report", "prediction": "x"},
    ]
    out = mcq_by_topic(records, {"Which lung?": "nodule_side", "Heart?": "heart"})
    assert out == {"heart": {"accuracy": 1.0, "n": 1}, "nodule_side": {"accuracy": 0.5, "n": 2}}


def test_agreement_counts_case_finding_pairs():
    records = [
        _report("The heart size is increased (cardiomegaly). No pleural effusion was detected.",
                {"Cardiomegaly": 0.9, "Pleural effusion": 0.1}, {"Cardiomegaly": 1, "Pleural effusion": 0}),
        _report("Heart contour and size are normal. No pleural effusion was detected.",
                {"Cardiomegaly": 0.9, "Pleural effusion": 0.7}, {"Cardiomegaly": 1, "Pleural effusion": 1}),
    ]
    assert report_head_agreement(records, LABELS) == {"agreement": 0.5, "pairs": 4}


def test_repair_drops_contradicting_sentences_and_is_measured():
    records = [
        _report("Heart contour and size are normal. There is a left pleural effusion.",
                {"Cardiomegaly": 0.95, "Pleural effusion": 0.05}, {"Cardiomegaly": 1, "Pleural effusion": 0}),
    ]
    out = repaired_scores(records, LABELS)
    assert out["sentences_dropped"] == 1  # the effusion sentence; the normal heart is only "not present"
    assert out["report_head_agreement"] == 0.5  # effusion now agrees (absent); cardiomegaly still unmentioned
