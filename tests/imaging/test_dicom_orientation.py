"""A bright voxel at a known LPS position lands where the canonical layout says, whatever the IOP."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from ctscribe.errors import ErrorCode, ImagingError
from imaging.dicom import read_dicom_series
from imaging.options import ReadOptions
from tests.imaging.dicom_factory import write_ct_series

# (name, ImageOrientationPatient, expected orientation code of the stored (col, row, slice) axes)
ORIENTATIONS = [
    ("axial", (1, 0, 0, 0, 1, 0), "LPS"),
    ("axial_flipped_rows", (-1, 0, 0, 0, 1, 0), "RPI"),
    ("axial_flipped_cols", (1, 0, 0, 0, -1, 0), "LAI"),
    ("coronal", (1, 0, 0, 0, 0, -1), "LIP"),
    ("sagittal", (0, 1, 0, 0, 0, -1), "PIR"),
]
SHAPE = (9, 12, 16)  # (slices, rows, columns): all different so a swapped axis cannot pass
SPACING = (2.5, 0.8, 0.6)  # (slice step, row spacing, column spacing) mm
MARK = (6, 3, 11)  # stored (slice, row, column) of the bright voxel


def _lps_of_stored_voxel(path, row: int, col: int) -> np.ndarray:
    """DICOM PS3.3 C.7.6.2.1.1: P = IPP + col * dc * rowcos + row * dr * colcos (read with pydicom)."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    ipp = np.array(ds.ImagePositionPatient, dtype=float)
    iop = np.array(ds.ImageOrientationPatient, dtype=float)
    dr, dc = (float(v) for v in ds.PixelSpacing)
    return ipp + col * dc * iop[:3] + row * dr * iop[3:]


@pytest.mark.parametrize(("name", "iop", "code"), ORIENTATIONS, ids=[o[0] for o in ORIENTATIONS])
def test_marked_voxel(tmp_path, name, iop, code):
    vol = np.full(SHAPE, -1000.0)
    vol[MARK] = 1500.0
    paths = write_ct_series(
        tmp_path, vol, SPACING, orientation=iop, origin_mm=(-20.0, 35.0, 100.0), shuffle=True
    )
    mark_file = next(p for p in paths if pydicom.dcmread(p).pixel_array.max() > 1000)
    expected_lps = _lps_of_stored_voxel(mark_file, MARK[1], MARK[2])

    volume = read_dicom_series(paths, ReadOptions())
    assert volume.orientation_in == code
    got = np.argwhere(volume.hu > 1000)
    assert got.shape == (1, 3)
    z, y, x = got[0]
    lps = np.asarray(volume.origin_mm) + np.asarray(volume.spacing_mm_zyx)[::-1] * np.array([x, y, z])
    np.testing.assert_allclose(lps, expected_lps, atol=1e-3)

    # Canonical axes run L, P, S from the origin: the origin is the minimum corner of all voxel centres.
    corners = []
    for p in paths:
        for r in (0, SHAPE[1] - 1):
            for c in (0, SHAPE[2] - 1):
                corners.append(_lps_of_stored_voxel(p, r, c))
    np.testing.assert_allclose(volume.origin_mm, np.min(corners, axis=0), atol=1e-3)
    extent = np.max(corners, axis=0) - np.min(corners, axis=0)
    np.testing.assert_allclose(
        (np.array(volume.shape_zyx)[::-1] - 1) * np.asarray(volume.spacing_mm_zyx)[::-1], extent, atol=1e-3
    )


def _rotated_axial(deg: float) -> tuple[float, ...]:
    t = np.radians(deg)
    return (np.cos(t), np.sin(t), 0.0, -np.sin(t), np.cos(t), 0.0)


def test_oblique_rejected_by_default(tmp_path):
    paths = write_ct_series(tmp_path, np.zeros(SHAPE), SPACING, orientation=_rotated_axial(15.0))
    with pytest.raises(ImagingError) as err:
        read_dicom_series(paths, ReadOptions())
    assert err.value.code is ErrorCode.OBLIQUE_ORIENTATION


def test_oblique_resampled_with_warning(tmp_path):
    vol = np.full((10, 24, 24), -1000.0)
    vol[4:7, 10:14, 10:14] = 1000.0
    paths = write_ct_series(tmp_path, vol, (1.0, 1.0, 1.0), orientation=_rotated_axial(15.0))
    centre_lps = _lps_of_stored_voxel(paths[0], 11.5, 11.5) + np.array([0, 0, 5.0])
    volume = read_dicom_series(paths, ReadOptions(on_oblique="resample"))
    assert any("oblique" in w for w in volume.warnings)
    weights = np.clip(volume.hu + 1000.0, 0, None)
    zyx = (np.indices(volume.shape_zyx) * weights).reshape(3, -1).sum(axis=1) / weights.sum()
    lps = np.asarray(volume.origin_mm) + np.asarray(volume.spacing_mm_zyx)[::-1] * zyx[::-1]
    np.testing.assert_allclose(lps, centre_lps, atol=0.3)


def test_slight_obliquity_within_tolerance_is_read_as_is(tmp_path):
    vol = np.random.default_rng(1).integers(-1000, 1000, SHAPE).astype(float)
    paths = write_ct_series(tmp_path, vol, SPACING, orientation=_rotated_axial(1.0))
    volume = read_dicom_series(paths, ReadOptions())
    np.testing.assert_array_equal(volume.hu, vol)
    assert any("off the patient axes" in w for w in volume.warnings)
