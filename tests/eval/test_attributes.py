"""Attributes (lobe, side, size, device, station) read from report text."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.attributes import size_bin
from model.labeler.attributes import extract_attributes

REPORTS = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "reports" / "ctrate_labeled_reports.csv"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("A nodule measuring 8 mm was observed in the upper lobe of the right lung.",
         {"nodule_lobe": ["right upper"], "nodule_size": ["6 to 10 mm"]}),
        ("There is a 1.2 cm nodule in the left lung lower lobe superior segment.",
         {"nodule_lobe": ["left lower"], "nodule_size": ["11 to 20 mm"]}),
        ("No nodule was detected in both lungs.", {}),
        ("Bilateral pleural effusion was observed, reaching 20 mm on the right and 12 mm on the left.",
         {"effusion_side": ["bilateral"]}),
        ("There is a left pleural effusion with a thickness of 30 mm.", {"effusion_side": ["left"]}),
        ("Sternotomy wires are observed in the sternum.", {"device": ["sternotomy wires"]}),
        ("Enlarged lymph nodes reaching 15 mm are observed in the subcarinal and right hilar region.",
         {"lymph_station": ["subcarinal", "right hilar"]}),
        ("In the middle lobe of the right lung, an area of consolidation is observed.",
         {"consolidation_lobe": ["right middle"]}),
    ],
)
def test_attributes_from_sentences(text, expected):
    assert extract_attributes(text) == expected


def test_size_bins_match_the_phantom_questions():
    from imaging.phantom.questions import NODULE_SIZE_BINS, nodule_size_bin

    for mm in (4, 5.9, 6, 10, 10.5, 11, 20, 21, 26):
        assert size_bin(mm) == nodule_size_bin(mm).lower()
    assert len(NODULE_SIZE_BINS) == 4


def test_phantom_reports_give_exactly_the_phantoms_attributes():
    from imaging.phantom.case import describe_case, sample_case

    checked = 0
    for index in range(60):
        spec = sample_case(11, index)
        report, _ = describe_case(spec)
        got = extract_attributes(report["Findings_EN"] + " " + report["Impressions_EN"])
        found = {f.kind: f.details for f in spec.findings}
        if "lung_nodule" in found:
            assert got["nodule_lobe"] == [found["lung_nodule"]["lobe"]]
            assert got["nodule_size"] == [size_bin(found["lung_nodule"]["size_mm"])]
            checked += 1
        if "pleural_effusion" in found:
            assert got["effusion_side"] == [found["pleural_effusion"]["side"]]
        else:
            assert "effusion_side" not in got
        if "lymphadenopathy" in found:
            assert sorted(got["lymph_station"]) == sorted(found["lymphadenopathy"]["stations"])
        if "medical_material" in found:
            assert got["device"] == [found["medical_material"]["device"]]
    assert checked > 10


@pytest.mark.skipif(not REPORTS.is_file(), reason="../shared/data/reports is absent")
def test_real_ctrate_reports_give_attributes_only_for_labelled_findings():
    import pandas as pd

    frame = pd.read_csv(REPORTS)
    lobes = 0
    for _, row in frame.head(300).iterrows():
        got = extract_attributes(row["report_text"])
        if "nodule_lobe" in got:
            lobes += 1
        if "effusion_side" in got:
            assert got["effusion_side"][0] in ("right", "left", "bilateral")
    assert lobes > 30  # CT-RATE reports name a nodule's lobe often; the reader finds them
