"""Slice order, duplicates, gaps, non-uniform spacing and gantry tilt, built with the factory."""

from __future__ import annotations

import numpy as np
import pytest

from ctscribe.errors import ErrorCode, ImagingError
from imaging.dicom import read_dicom_series
from imaging.options import ReadOptions
from tests.imaging.dicom_factory import random_hu_volume, write_ct_series

SPACING = (2.0, 0.7, 0.7)


def _expect_error(paths, code: ErrorCode, options: ReadOptions | None = None) -> ImagingError:
    with pytest.raises(ImagingError) as err:
        read_dicom_series(paths, options or ReadOptions())
    assert err.value.code is code, err.value.message
    return err.value


def test_shuffled_files_and_instance_numbers_sorted_by_position(tmp_path):
    vol = random_hu_volume((12, 32, 32), seed=3)
    paths = write_ct_series(tmp_path, vol, SPACING, shuffle=True, origin_mm=(0, 0, -50.0))
    volume = read_dicom_series(paths, ReadOptions())
    np.testing.assert_array_equal(volume.hu, vol)
    assert volume.spacing_mm_zyx == pytest.approx((2.0, 0.7, 0.7))
    assert volume.origin_mm == pytest.approx((0.0, 0.0, -50.0))
    assert volume.warnings == []


def test_duplicate_position_dropped_with_warning(tmp_path):
    vol = random_hu_volume((10, 32, 32), seed=4)
    paths = write_ct_series(tmp_path, vol, SPACING, duplicate_index=5, shuffle=True)
    assert len(paths) == 11
    volume = read_dicom_series(paths, ReadOptions())
    np.testing.assert_array_equal(volume.hu, vol)
    assert any("repeat a slice position" in w for w in volume.warnings)


def test_missing_slice_rejected_by_default(tmp_path):
    vol = random_hu_volume((12, 32, 32), seed=5)
    paths = write_ct_series(tmp_path, vol, SPACING, drop_index=6)
    err = _expect_error(paths, ErrorCode.MISSING_SLICES)
    assert "4.00 mm" in err.message  # the gap, twice the 2 mm median


def test_missing_slice_interpolated_when_asked(tmp_path):
    # Linear in z, so linear interpolation restores the dropped slice exactly.
    z = np.arange(12, dtype=np.float64)[:, None, None]
    vol = np.broadcast_to(-500.0 + 40.0 * z, (12, 16, 16)).copy()
    paths = write_ct_series(tmp_path, vol, SPACING, drop_index=6)
    volume = read_dicom_series(paths, ReadOptions(on_non_uniform="resample"))
    assert volume.shape_zyx == (12, 16, 16)
    np.testing.assert_allclose(volume.hu, vol, atol=1e-3)
    assert any("missing" in w for w in volume.warnings)


def test_non_uniform_spacing(tmp_path):
    steps = [0, 2, 4, 6, 8, 10.6, 12.6, 14.6, 16.6, 18.6]  # one 2.6 mm gap: 30 % off, not "missing"
    positions = [(0.0, 0.0, s) for s in steps]
    vol = np.broadcast_to(np.array(steps)[:, None, None] * 10.0, (10, 8, 8)).copy()
    paths = write_ct_series(tmp_path, vol, SPACING, positions_mm=positions)
    _expect_error(paths, ErrorCode.NON_UNIFORM_SPACING)
    volume = read_dicom_series(paths, ReadOptions(on_non_uniform="resample"))
    assert volume.spacing_mm_zyx[0] == pytest.approx(2.0)
    assert volume.shape_zyx[0] == int(round(18.6 / 2.0)) + 1
    # Values were a linear function of z (10 HU per mm): the regridded slices keep it.
    z_mm = np.arange(volume.shape_zyx[0]) * 2.0
    np.testing.assert_allclose(volume.hu[:, 0, 0], z_mm * 10.0, atol=1e-3)
    assert any("interpolated" in w for w in volume.warnings)


def test_gantry_tilt_rejected_by_default(tmp_path):
    paths = write_ct_series(tmp_path, random_hu_volume((10, 32, 32)), SPACING, tilt_deg=15.0)
    err = _expect_error(paths, ErrorCode.GANTRY_TILT)
    assert "15.0 deg" in err.message


def test_gantry_tilt_sheared_back(tmp_path):
    # A vertical rod in the patient (fixed x, y for all z): tilted slices see it at moving rows;
    # after the correction it must be straight again, at its true LPS position.
    n_slices, n_rows, n_cols, tilt = 12, 40, 24, 20.0
    step_mm, row_mm = 2.0, 1.0
    rod_y_mm, rod_x_col = 20.0, 12
    vol = np.full((n_slices, n_rows, n_cols), -1000.0)
    t = np.radians(tilt)
    for k in range(n_slices):
        # Pixel (row r) of slice k sits at y = r cos t, z = k step + r sin t (column cosines tilted).
        r = rod_y_mm / (row_mm * np.cos(t))
        vol[k, int(round(r)), rod_x_col] = 1000.0
    paths = write_ct_series(tmp_path, vol, (step_mm, row_mm, 1.0), tilt_deg=tilt)
    volume = read_dicom_series(paths, ReadOptions(on_gantry_tilt="resample"))
    assert any("gantry tilt" in w for w in volume.warnings)
    weights = np.clip(volume.hu + 1000.0, 0, None)
    zyx = np.indices(volume.shape_zyx).reshape(3, -1)
    ys_mm = volume.origin_mm[1] + zyx[1] * volume.spacing_mm_zyx[1]
    bright = weights.reshape(-1) > 100.0
    assert bright.sum() > n_slices  # the rod survives resampling
    np.testing.assert_allclose(ys_mm[bright], rod_y_mm, atol=1.0)  # straight, at its true y
    assert volume.spacing_mm_zyx[0] == pytest.approx(step_mm)


def test_declared_tilt_without_position_drift_only_warns(tmp_path):
    vol = random_hu_volume((10, 16, 16))
    positions = [(0.0, 0.0, 2.0 * k) for k in range(10)]
    paths = write_ct_series(tmp_path, vol, SPACING, positions_mm=positions)
    for p in paths:  # header says tilted, geometry says not
        import pydicom

        ds = pydicom.dcmread(p)
        ds.GantryDetectorTilt = "12"
        ds.save_as(p)
    volume = read_dicom_series(paths, ReadOptions())
    np.testing.assert_array_equal(volume.hu, vol)
    assert any("declares gantry tilt 12" in w for w in volume.warnings)


def test_too_few_slices(tmp_path):
    paths = write_ct_series(tmp_path, random_hu_volume((5, 16, 16)), SPACING)
    _expect_error(paths, ErrorCode.TOO_FEW_SLICES)
    assert read_dicom_series(paths, ReadOptions(min_slices=5)).shape_zyx == (5, 16, 16)


def test_single_slice_is_too_few(tmp_path):
    paths = write_ct_series(tmp_path, random_hu_volume((1, 16, 16)), SPACING)
    _expect_error(paths, ErrorCode.TOO_FEW_SLICES, ReadOptions(min_slices=1))


def test_image_without_patient_geometry_is_not_3d(tmp_path):
    import pydicom

    paths = write_ct_series(tmp_path, random_hu_volume((1, 16, 16)), SPACING)
    ds = pydicom.dcmread(paths[0])
    del ds.ImagePositionPatient
    del ds.ImageOrientationPatient
    ds.save_as(paths[0])
    _expect_error(paths, ErrorCode.NOT_3D)


def test_reject_happens_before_pixels_are_decoded(tmp_path):
    # A missing slice is refused from headers alone: the pixel data may even be garbage.
    paths = write_ct_series(tmp_path, random_hu_volume((12, 16, 16)), SPACING, drop_index=4)
    for p in paths:
        data = p.read_bytes()
        p.write_bytes(data[: len(data) - 100])  # truncated pixel data
    _expect_error(paths, ErrorCode.MISSING_SLICES)
    _expect_error(paths, ErrorCode.CORRUPT_FILE, ReadOptions(on_non_uniform="resample"))
