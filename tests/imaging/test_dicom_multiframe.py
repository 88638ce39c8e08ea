"""Enhanced (multi-frame) CT: frames placed by their functional groups, not by frame order."""

from __future__ import annotations

import numpy as np
import pytest

from ctscribe.errors import ErrorCode, ImagingError
from imaging.dicom import read_dicom_series, scan_series
from imaging.options import ReadOptions
from tests.imaging.dicom_factory import random_hu_volume, write_enhanced_ct, write_sr

SPACING = (2.5, 0.8, 0.8)


def test_frames_sorted_by_position_with_per_frame_rescale(tmp_path):
    vol = random_hu_volume((10, 16, 16), seed=21)
    vol -= vol % 2  # even HU: exact under slope 2
    order = list(np.random.default_rng(0).permutation(10))
    slopes = [1.0 if k % 2 else 2.0 for k in range(10)]
    path = write_enhanced_ct(
        tmp_path / "enh.dcm",
        vol,
        SPACING,
        frame_order=order,
        per_frame_slope=slopes,
        origin_mm=(-5.0, 7.0, 40.0),
    )
    volume = read_dicom_series([path, write_sr(tmp_path)], ReadOptions())
    np.testing.assert_array_equal(volume.hu, vol)
    assert volume.spacing_mm_zyx == pytest.approx(SPACING)
    assert volume.origin_mm == pytest.approx((-5.0, 7.0, 40.0))
    assert volume.series.n_slices == 10


def test_scan_counts_frames_as_slices(tmp_path):
    path = write_enhanced_ct(tmp_path / "enh.dcm", random_hu_volume((9, 8, 8)), SPACING)
    (candidate,) = scan_series([path])
    assert candidate.n_slices == 9 and candidate.modality == "CT"


def test_multiframe_without_plane_positions_is_refused(tmp_path):
    path = write_enhanced_ct(tmp_path / "enh.dcm", random_hu_volume((9, 8, 8)), SPACING, with_positions=False)
    with pytest.raises(ImagingError) as err:
        read_dicom_series([path], ReadOptions())
    assert err.value.code is ErrorCode.UNSUPPORTED_FORMAT
