"""Phantom reports and questions: present findings described with location, absent ones negated."""

from collections import Counter

import pytest

from imaging.phantom import FINDING_KINDS, generate_case
from imaging.phantom.case import describe_case, sample_case

# Words a reader looks for, per finding kind (independent of which paraphrase was drawn).
PRESENT_WORDS = {
    "lung_nodule": "nodule",
    "consolidation": "consolidation",
    "lung_opacity": "ground glass",
    "atelectasis": "atelectasis",
    "emphysema": "emphysematous",
    "pleural_effusion": "pleural effusion",
    "pericardial_effusion": "pericardial effusion",
    "cardiomegaly": "cardiomegaly",
    "hiatal_hernia": "hiatal hernia",
    "lymphadenopathy": "lymph",
    "arterial_wall_calcification": "aort",
    "coronary_calcification": "coronary",
}


def _sentences(text):
    return [s.strip().lower() for s in text.replace("; ", ". ").split(". ") if s.strip()]


@pytest.mark.parametrize("kind", FINDING_KINDS)
def test_present_finding_is_described_with_its_location(kind):
    case = generate_case(9, force=(kind,), exclude=tuple(k for k in FINDING_KINDS if k != kind), render=False)
    findings = case.report["Findings_EN"].lower()
    impression = case.report["Impressions_EN"].lower()
    d = case.spec.finding(kind).details
    if kind in PRESENT_WORDS:
        word = PRESENT_WORDS[kind]
        positive = [s for s in _sentences(findings) if word in s and not s.startswith("no ")]
        assert positive, f"{kind}: no positive sentence with {word!r} in {findings!r}"
    if "lobe" in d:
        side, level = d["lobe"].split()
        assert f"{level} lobe of the {side} lung" in findings
        assert f"{level} lobe of the {side} lung" in impression
    if kind == "lung_nodule":
        assert f"{d['size_mm']} mm" in findings
    if kind == "pleural_effusion":
        for side, mm in d["thickness_mm"].items():
            assert f"{mm} mm" in findings and (side in findings or "bilateral" in findings)
    if kind == "medical_material":
        assert (
            ("sternotomy" in findings) if d["device"] == "sternotomy wires" else ("port catheter" in findings)
        )
    assert "within normal limits" not in impression


def test_normal_case_negates_every_finding():
    case = generate_case(9, exclude=FINDING_KINDS, render=False)
    text = case.report["Findings_EN"].lower()
    for negation in (
        "pericardial effusion",
        "pleural effusion",
        "hiatal hernia",
        "lymph node",
        "nodul",
        "calcific",
        "medical device",
    ):
        hits = [s for s in _sentences(text) if negation in s]
        assert hits and all(("no" in s.split()) or ("not" in s.split()) for s in hits), negation
    assert "normal" in text and "cardiomegaly" not in text
    assert "normal limits" in case.report["Impressions_EN"].lower()


def test_report_has_ctrate_columns_and_paraphrases_vary():
    reports = [generate_case(2, i, render=False).report for i in range(20)]
    assert all(
        set(r) == {"ClinicalInformation_EN", "Technique_EN", "Findings_EN", "Impressions_EN"} for r in reports
    )
    first_sentences = {r["Findings_EN"].split(". ")[0] for r in reports}
    assert len(first_sentences) >= 2


def test_mcqs_have_four_distinct_options_and_one_uniform_answer():
    positions = Counter()
    for i in range(60):
        for q in describe_case(sample_case(13, i))[1]:
            if q["kind"] != "mcq":
                assert q["answer"] and "choices" not in q
                continue
            assert len(q["choices"]) == 4 and len(set(q["choices"])) == 4
            assert q["choices"].count(q["answer"]) == 1
            assert q["choices"]["abcd".index(q["answer_choice"])] == q["answer"]
            positions[q["answer_choice"]] += 1
    total = sum(positions.values())
    assert set(positions) == set("abcd")
    assert all(0.17 < n / total < 0.33 for n in positions.values()), positions


def test_answers_agree_with_the_findings():
    for i in range(30):
        spec = sample_case(17, i)
        qs = {(q["kind"], q["topic"]): q for q in describe_case(spec)[1]}
        labels = {f.label for f in spec.findings}
        nodule = spec.finding("lung_nodule")
        side_answer = qs["mcq", "nodule_side"]["answer"]
        assert side_answer == (
            f"{nodule.details['side'].capitalize()} lung" if nodule else "Neither lung (no nodule)"
        )
        if nodule:
            side, level = nodule.details["lobe"].split()
            assert qs["mcq", "nodule_lobe"]["answer"] == f"{side.capitalize()} {level} lobe"
            assert qs["free", "nodule_size"]["answer"] == str(nodule.details["size_mm"])
        effusion = spec.finding("pleural_effusion")
        assert qs["free", "pleural_effusion"]["answer"].startswith("Yes") == (effusion is not None)
        assert (qs["mcq", "pleural_effusion"]["answer"] == "No pleural effusion") == (effusion is None)
        assert qs["free", "cardiomegaly"]["answer"] == ("Yes." if "cardiomegaly" in spec.kinds else "No.")
        if ("mcq", "present_finding") in qs:
            q = qs["mcq", "present_finding"]
            assert q["answer"] in labels and sum(c in labels for c in q["choices"]) == 1
        if ("mcq", "absent_finding") in qs:
            q = qs["mcq", "absent_finding"]
            assert q["answer"] not in labels and sum(c not in labels for c in q["choices"]) == 1


def test_project_labeler_reads_the_drawn_labels_from_the_reports():
    """The synthetic reports must label back to their own ground truth (they train the label head)."""
    labeler = pytest.importorskip("model.labeler")
    for i in range(40):
        spec = sample_case(31, i)
        report = describe_case(spec)[0]
        predicted = labeler.label_report(report["Findings_EN"] + " " + report["Impressions_EN"])
        assert {k for k, v in predicted.items() if v} == {k for k, v in spec.labels().items() if v}, i
