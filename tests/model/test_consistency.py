"""The consistency guard: the report labeler's reading of the text against the label head."""

from __future__ import annotations

import pytest

from ctscribe.errors import ErrorCode
from ctscribe.labels import CTRATE_LABELS
from model.consistency import ABSENT_MAX, CODE, PRESENT_MIN, guard
from model.errors import ModelError
from model.labeler.negation import sentence_spans, split_sentences
from model.results import ReportOutput

AGREEING = (
    "Trachea and both main bronchi are open. Heart size has increased (cardiomegaly). "
    "No pleural effusion was detected. Bone structures are natural."
)


def _report(text: str, **probs: float) -> ReportOutput:
    labels = {name: 0.5 for name in CTRATE_LABELS}  # undecided: never a disagreement
    labels.update({name.replace("_", " "): p for name, p in probs.items()})
    return ReportOutput(text=text, labels=labels, key_slices=[], n_tokens=0)


def test_the_thresholds_are_confident_on_both_sides():
    assert 0.5 < PRESENT_MIN < 1 and 0 < ABSENT_MAX < 0.5


def test_text_that_negates_a_confidently_present_finding_is_flagged():
    out = guard(_report(AGREEING, Pleural_effusion=0.97), CTRATE_LABELS)
    assert out.warnings == [{
        "code": CODE, "finding": "Pleural effusion", "head_probability": 0.97, "text_says": "absent",
        "sentences": ["No pleural effusion was detected."], "message": out.warnings[0]["message"],
    }]
    assert "Pleural effusion" in out.warnings[0]["message"]
    assert out.text == AGREEING  # warn never edits the text


def test_text_that_asserts_a_confidently_absent_finding_is_flagged():
    out = guard(_report(AGREEING, Cardiomegaly=0.03), CTRATE_LABELS)
    [w] = out.warnings
    assert (w["finding"], w["text_says"], w["head_probability"]) == ("Cardiomegaly", "present", 0.03)
    assert w["sentences"] == ["Heart size has increased (cardiomegaly)."]


def test_a_confidently_present_finding_the_text_never_mentions_is_flagged_without_sentences():
    out = guard(_report(AGREEING, Emphysema=0.9), CTRATE_LABELS)
    [w] = out.warnings
    assert (w["finding"], w["text_says"], w["sentences"]) == ("Emphysema", "not_mentioned", [])


def test_an_agreeing_report_has_no_warnings():
    out = guard(_report(AGREEING, Cardiomegaly=0.95, Pleural_effusion=0.02, Emphysema=0.1), CTRATE_LABELS)
    assert out.warnings == []


def test_off_checks_nothing_and_changes_nothing():
    out = guard(_report(AGREEING, Pleural_effusion=0.99, Cardiomegaly=0.01), CTRATE_LABELS, "off")
    assert out.warnings == [] and out.text == AGREEING


def test_only_the_given_labels_are_checked():
    out = guard(_report(AGREEING, Pleural_effusion=0.99, Cardiomegaly=0.01), ["Cardiomegaly"])
    assert [w["finding"] for w in out.warnings] == ["Cardiomegaly"]


def test_repair_drops_exactly_the_offending_sentences_and_keeps_the_rest():
    out = guard(_report(AGREEING, Pleural_effusion=0.99, Cardiomegaly=0.01), CTRATE_LABELS, "repair")
    assert out.text == "Trachea and both main bronchi are open. Bone structures are natural."
    assert [w["repaired"] for w in out.warnings] == ["dropped", "dropped"]


def test_repair_cannot_invent_a_missing_finding():
    out = guard(_report(AGREEING, Emphysema=0.9), CTRATE_LABELS, "repair")
    assert out.text == AGREEING
    [w] = out.warnings
    assert w["text_says"] == "not_mentioned" and "repaired" not in w


def test_repair_keeps_separators_and_case_of_what_it_keeps():
    text = 'Heart size is normal.\nCardiomegaly was not observed. "Mild emphysema. Nodule in the right lung.'
    out = guard(_report(text, Cardiomegaly=0.95), CTRATE_LABELS, "repair")
    assert out.text == 'Heart size is normal.\n"Mild emphysema. Nodule in the right lung.'


def test_a_model_without_a_label_head_is_not_checked():
    out = ReportOutput(text=AGREEING, labels={}, key_slices=[], n_tokens=0)
    assert guard(out, CTRATE_LABELS).warnings == []


def test_a_bad_mode_is_invalid_request():
    with pytest.raises(ModelError) as err:
        guard(_report(AGREEING), CTRATE_LABELS, "fix")
    assert err.value.code == ErrorCode.INVALID_REQUEST


@pytest.mark.parametrize("text", [AGREEING, 'a.b.  C? "d\n\ne • f.G', "", "  one sentence  "])
def test_sentence_spans_match_the_labelers_sentences(text):
    assert [text[a:b].lower() for a, b in sentence_spans(text)] == split_sentences(text)


def test_pipeline_report_checks_its_consistency_argument(tiny_pipe, tiny_cts):
    with pytest.raises(ModelError):
        tiny_pipe.report(tiny_cts[:1], consistency="sometimes")
    from model.generation import GenerationParams

    [out] = tiny_pipe.report(tiny_cts[:1], GenerationParams(max_new_tokens=3), consistency="off")
    assert out.warnings == []
