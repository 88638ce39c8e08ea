"""Series grouping and selection: mixed studies, explicit picks, wrong modality, ambiguity."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.uid import generate_uid

from ctscribe.errors import ErrorCode, ImagingError
from imaging.dicom import read_dicom_series, scan_series, uid_hash
from imaging.options import ReadOptions
from tests.imaging.dicom_factory import (
    random_hu_volume,
    write_ct_series,
    write_junk,
    write_localizer,
    write_sr,
)

SPACING = (2.0, 0.7, 0.7)


@pytest.fixture
def mixed_study(tmp_path):
    """Two CT series (12 and 9 slices), a localizer, an SR document and a junk file in one folder."""
    study = generate_uid()
    big_uid, small_uid = generate_uid(), generate_uid()
    big = random_hu_volume((12, 16, 16), seed=1)
    small = random_hu_volume((9, 16, 16), seed=2)
    paths = write_ct_series(tmp_path, big, SPACING, series_uid=big_uid, study_uid=study, prefix="a")
    paths += write_ct_series(
        tmp_path,
        small,
        (3.0, 0.7, 0.7),
        series_uid=small_uid,
        study_uid=study,
        prefix="b",
        description="lung",
    )
    paths.append(write_localizer(tmp_path, study_uid=study))
    paths.append(write_sr(tmp_path, study_uid=study))
    paths.append(write_junk(tmp_path / "notes.dcm"))
    return {"paths": sorted(paths), "big": (big_uid, big), "small": (small_uid, small)}


def test_mixed_study_picks_the_largest_ct(mixed_study):
    volume = read_dicom_series(mixed_study["paths"], ReadOptions())
    big_uid, big = mixed_study["big"]
    np.testing.assert_array_equal(volume.hu, big)
    assert volume.series.uid_hash == uid_hash(big_uid)
    assert volume.series.n_slices == 12
    modalities = sorted(c.modality for c in volume.candidates)
    assert modalities == ["CT", "CT", "CT", "SR"]
    assert any("not DICOM" in w for w in volume.warnings)
    summary = repr(volume.summary())
    for uid in (big_uid, mixed_study["small"][0]):
        assert uid not in summary  # only hashes leave the reader


@pytest.mark.parametrize("by", ["uid", "hash"])
def test_explicit_series_pick(mixed_study, by):
    small_uid, small = mixed_study["small"]
    pick = small_uid if by == "uid" else uid_hash(small_uid)
    volume = read_dicom_series(mixed_study["paths"], ReadOptions(series_uid=pick))
    np.testing.assert_array_equal(volume.hu, small)
    assert volume.spacing_mm_zyx[0] == pytest.approx(3.0)


def test_unknown_series_pick_is_no_series_and_does_not_echo_the_uid(mixed_study):
    wanted = generate_uid()
    with pytest.raises(ImagingError) as err:
        read_dicom_series(mixed_study["paths"], ReadOptions(series_uid=wanted))
    assert err.value.code is ErrorCode.NO_SERIES
    assert wanted not in err.value.message
    assert uid_hash(mixed_study["big"][0]) in err.value.message  # candidates listed by hash


def test_scan_series_lists_every_candidate(mixed_study):
    candidates = scan_series(mixed_study["paths"])
    by_kind = {(c.modality, c.is_localizer, c.is_image): c.n_slices for c in candidates}
    assert by_kind[("CT", True, True)] == 1
    assert by_kind[("SR", False, False)] == 1
    assert sorted(c.n_slices for c in candidates if c.modality == "CT" and not c.is_localizer) == [9, 12]


def test_original_primary_preferred_over_a_larger_derived_series(tmp_path):
    original = random_hu_volume((10, 16, 16), seed=5)
    write_ct_series(tmp_path, original, SPACING, prefix="o")
    write_ct_series(
        tmp_path,
        random_hu_volume((20, 16, 16), seed=6),
        (1.0, 0.7, 0.7),
        prefix="d",
        image_type=("DERIVED", "SECONDARY", "AXIAL"),
    )
    volume = read_dicom_series(sorted(tmp_path.iterdir()), ReadOptions())
    np.testing.assert_array_equal(volume.hu, original)


def test_equal_series_are_ambiguous(tmp_path):
    write_ct_series(tmp_path, random_hu_volume((10, 16, 16), seed=7), SPACING, prefix="s", description="soft")
    write_ct_series(tmp_path, random_hu_volume((10, 16, 16), seed=8), SPACING, prefix="l", description="lung")
    with pytest.raises(ImagingError) as err:
        read_dicom_series(sorted(tmp_path.iterdir()), ReadOptions())
    assert err.value.code is ErrorCode.AMBIGUOUS_SERIES
    assert all(c.uid_hash in err.value.message for c in scan_series(sorted(tmp_path.iterdir())))


def test_mr_only_is_not_ct(tmp_path):
    paths = write_ct_series(tmp_path, random_hu_volume((10, 16, 16)), SPACING, modality="MR")
    with pytest.raises(ImagingError) as err:
        read_dicom_series(paths, ReadOptions())
    assert err.value.code is ErrorCode.NOT_CT


def test_explicit_pick_of_an_mr_series_is_not_ct(tmp_path):
    uid = generate_uid()
    write_ct_series(tmp_path, random_hu_volume((10, 16, 16)), SPACING, prefix="c")
    write_ct_series(
        tmp_path, random_hu_volume((10, 16, 16)), SPACING, modality="MR", series_uid=uid, prefix="m"
    )
    with pytest.raises(ImagingError) as err:
        read_dicom_series(sorted(tmp_path.iterdir()), ReadOptions(series_uid=uid_hash(uid)))
    assert err.value.code is ErrorCode.NOT_CT


def test_localizer_only_is_not_3d(tmp_path):
    path = write_localizer(tmp_path)
    with pytest.raises(ImagingError) as err:
        read_dicom_series([path], ReadOptions())
    assert err.value.code is ErrorCode.NOT_3D


def test_sr_only_is_no_series(tmp_path):
    with pytest.raises(ImagingError) as err:
        read_dicom_series([write_sr(tmp_path)], ReadOptions())
    assert err.value.code is ErrorCode.NO_SERIES


def test_nothing_dicom_is_unsupported_format(tmp_path):
    junk = [write_junk(tmp_path / f"x{i}.dcm", seed=i) for i in range(3)]
    (tmp_path / "readme.txt").write_text("not an image")
    with pytest.raises(ImagingError) as err:
        read_dicom_series([*junk, tmp_path / "readme.txt"], ReadOptions())
    assert err.value.code is ErrorCode.UNSUPPORTED_FORMAT


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom complains while parsing the garbage
def test_dicom_magic_with_garbage_after_is_corrupt(tmp_path):
    path = tmp_path / "broken.dcm"
    path.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\xff" + b"\xff" * 64)
    with pytest.raises(ImagingError) as err:
        read_dicom_series([path], ReadOptions())
    assert err.value.code is ErrorCode.CORRUPT_FILE


def test_long_enough_series_beats_preferred_image_type_on_two_slices(tmp_path):
    write_ct_series(tmp_path, random_hu_volume((2, 16, 16), seed=9), SPACING, prefix="o")
    derived = random_hu_volume((10, 16, 16), seed=10)
    write_ct_series(tmp_path, derived, SPACING, prefix="d", image_type=("DERIVED", "SECONDARY", "AXIAL"))
    volume = read_dicom_series(sorted(tmp_path.iterdir()), ReadOptions())
    np.testing.assert_array_equal(volume.hu, derived)


def test_localizer_inside_the_axial_series_is_ignored(tmp_path):
    uid = generate_uid()
    vol = random_hu_volume((10, 16, 16), seed=11)
    paths = write_ct_series(tmp_path, vol, SPACING, series_uid=uid)
    paths += write_ct_series(
        tmp_path,
        np.zeros((1, 16, 16)),
        SPACING,
        series_uid=uid,
        prefix="scout",
        image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"),
        orientation=(1, 0, 0, 0, 0, -1),
    )
    volume = read_dicom_series(paths, ReadOptions())
    np.testing.assert_array_equal(volume.hu, vol)
    assert any("localizer" in w for w in volume.warnings)
