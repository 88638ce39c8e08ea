from pathlib import Path

import numpy as np
import pytest

from ctscribe.errors import CtscribeError
from ctscribe.labels import CTRATE_LABELS
from dataset.ctrate import import_ctrate, parse_xy_spacing
from dataset.manifest import read_manifest, write_manifest
from dataset.volume_io import load_hu
from tests.train.fake_ctrate import build_tree, volume_path, write_nifti


def _canonical(hu_xyz):
    # nibabel writes RAS with a positive diagonal affine; canonical is (z, y, x) LPS.
    return hu_xyz.transpose(2, 1, 0)[:, ::-1, ::-1].astype(np.float32)


def test_v1_raw_and_v2_hu_are_detected_and_load_to_the_same_hu(tmp_path):
    tree = build_tree(tmp_path, {"train_1_a_1.nii.gz": "raw", "train_2_a_1_fixed.nii.gz": "hu"})
    result = import_ctrate(
        tmp_path, tree["reports"], labels_csv=tree["labels"], metadata_csv=tree["metadata"]
    )
    assert result.warnings == []
    by_id = {s.id: s for s in result.samples}
    v1, v2 = by_id["train_1_a_1"], by_id["train_2_a_1_fixed"]
    assert (v1.hu_source, v1.rescale_slope, v1.rescale_intercept) == ("raw", 1.0, -1024.0)
    # v2 is HU already: slope/intercept are never carried, so nothing can apply them twice.
    assert (v2.hu_source, v2.rescale_slope, v2.rescale_intercept) == ("hu", 1.0, 0.0)
    assert v1.hu_check["decided_by"] == "name+values"
    assert v1.split == "train" and v1.spacing_mm_zyx == (2.0, 0.8, 0.8)
    assert v1.findings.startswith("Findings 0") and v1.impression == "Impression 0."
    assert list(v1.labels) == list(CTRATE_LABELS) and v1.labels["Medical material"] == 0
    assert v2.labels["Medical material"] == 1
    for sample, name in ((v1, "train_1_a_1.nii.gz"), (v2, "train_2_a_1_fixed.nii.gz")):
        hu, spacing, _ = load_hu(
            sample.volume,
            hu_source=sample.hu_source,
            rescale_slope=sample.rescale_slope,
            rescale_intercept=sample.rescale_intercept,
            spacing_mm_zyx=sample.spacing_mm_zyx,
        )
        np.testing.assert_array_equal(hu, _canonical(tree["truth"][name]))
        assert spacing == (2.0, 0.8, 0.8)
    # The manifest round-trips the decision.
    path = write_manifest(tmp_path / "manifest.jsonl", result.samples)
    assert [s.hu_source for s in read_manifest(path)] == ["raw", "hu"]


def test_name_and_values_disagree_warns_and_trusts_the_values(tmp_path):
    # A `_fixed` name holding raw values, and a v1 name holding HU values.
    tree = build_tree(tmp_path, {"train_3_a_1_fixed.nii.gz": "raw", "train_4_b_2.nii.gz": "hu"})
    result = import_ctrate(tmp_path, tree["reports"], metadata_csv=tree["metadata"])
    by_id = {s.id: s for s in result.samples}
    assert by_id["train_3_a_1_fixed"].hu_source == "raw"
    assert by_id["train_3_a_1_fixed"].rescale_intercept == -1024.0
    assert by_id["train_4_b_2"].hu_source == "hu"
    assert by_id["train_4_b_2"].hu_check["decided_by"] == "values"
    assert len(result.warnings) == 2
    assert all("trusting the values" in w for w in result.warnings)


def test_values_that_decide_nothing_fall_back_to_the_name_with_a_warning(tmp_path):
    path = volume_path(tmp_path, "valid_5_a_1.nii.gz")
    write_nifti(path, np.full((8, 8, 8), 600, dtype=np.int16))  # no air, raw or HU
    (tmp_path / "r.csv").write_text("VolumeName,Findings_EN,Impressions_EN\nvalid_5_a_1.nii.gz,F,I\n")
    result = import_ctrate(tmp_path, tmp_path / "r.csv")
    (sample,) = result.samples
    assert sample.hu_source == "raw" and sample.split == "valid"
    assert "cannot confirm" in result.warnings[0]
    assert "no metadata row" in result.warnings[1]


def test_missing_volumes_are_skipped_or_refused(tmp_path):
    tree = build_tree(tmp_path, {"train_1_a_1.nii.gz": "raw"})
    with open(tree["reports"], "a") as f:
        f.write("train_9_a_1.nii.gz,,,F,I\n")
    result = import_ctrate(tmp_path, tree["reports"], check_values=False)
    assert [s.id for s in result.samples] == ["train_1_a_1"] and result.skipped == ["train_9_a_1.nii.gz"]
    assert result.samples[0].hu_check["decided_by"] == "name"
    with pytest.raises(CtscribeError, match="train_9_a_1"):
        import_ctrate(tmp_path, tree["reports"], missing="error")


def test_volume_outside_the_ctrate_folders_is_found_by_name(tmp_path):
    tree = build_tree(tmp_path, {"train_1_a_1.nii.gz": "hu"})
    moved = tmp_path / "elsewhere" / "train_1_a_1.nii.gz"
    moved.parent.mkdir()
    volume_path(tmp_path, "train_1_a_1.nii.gz").rename(moved)
    (sample,) = import_ctrate(tmp_path, tree["reports"]).samples
    assert Path(sample.volume) == moved.resolve()


def test_bad_csvs_are_clear_errors(tmp_path):
    tree = build_tree(tmp_path, {"train_1_a_1.nii.gz": "raw"})
    tree["labels"].write_text("VolumeName,Cardiomegaly\ntrain_1_a_1.nii.gz,1\n")
    with pytest.raises(CtscribeError, match="lacks column"):
        import_ctrate(tmp_path, tree["reports"], labels_csv=tree["labels"])
    tree["metadata"].write_text("VolumeName,RescaleSlope,RescaleIntercept\ntrain_1_a_1.nii.gz,x,0\n")
    with pytest.raises(CtscribeError, match="RescaleSlope"):
        import_ctrate(tmp_path, tree["reports"], metadata_csv=tree["metadata"])
    with pytest.raises(CtscribeError, match="not found"):
        import_ctrate(tmp_path, tmp_path / "none.csv")


def test_real_ctrate_metadata_parses():
    csv = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "reports" / "ctrate_validation_metadata.csv"
    if not csv.is_file():
        pytest.skip(f"real CT-RATE metadata not available at {csv}")
    from dataset.ctrate import _metadata_by_key

    meta = _metadata_by_key(csv)
    assert len(meta) > 3000
    slope, intercept, spacing = meta["valid_1_a_1"]
    # Values as published for valid_1_a_1 (1024x1024 HRCT, 1.5 mm slices).
    assert (slope, intercept) == (1.0, -1024.0)
    assert spacing == (1.5, 0.341796875, 0.341796875)
    assert parse_xy_spacing("[0.75, 0.7]") == (0.75, 0.7)
