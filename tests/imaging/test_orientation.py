"""imaging.orientation: axis codes, permute/flip canonicalisation, oblique handling."""

from __future__ import annotations

from itertools import permutations, product

import numpy as np
import pytest

from ctscribe.errors import ErrorCode, ImagingError
from imaging.orientation import orientation_code, to_canonical


def _signed_permutations():
    for perm in permutations(range(3)):
        for signs in product((1, -1), repeat=3):
            d = np.zeros((3, 3))
            for m in range(3):
                d[perm[m], m] = signs[m]
            yield d


def _lps_of_index(ijk, direction, origin, spacing_ijk):
    """DICOM/ITK physical point of a continuous index: origin + D diag(spacing) ijk."""
    return np.asarray(origin) + np.asarray(direction) @ (np.asarray(spacing_ijk) * np.asarray(ijk))


def _rotation_x(deg: float) -> np.ndarray:
    t = np.radians(deg)
    return np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])


def test_codes_of_common_layouts():
    assert orientation_code(np.eye(3)) == "LPS"
    assert orientation_code(np.diag([-1.0, -1.0, 1.0])) == "RAS"
    # Sagittal stack: i runs Posterior, j runs Inferior (rows go down), k runs Left.
    sag = np.array([[0, 0, 1], [1, 0, 0], [0, -1, 0]], dtype=float)
    assert orientation_code(sag) == "PIL"


@pytest.mark.parametrize("direction", list(_signed_permutations()))
def test_code_matches_nibabel(direction):
    nib = pytest.importorskip("nibabel")
    # nibabel works in RAS: negate the x and y rows of the LPS direction.
    affine = np.eye(4)
    affine[:3, :3] = np.diag([-1.0, -1.0, 1.0]) @ direction
    assert orientation_code(direction) == "".join(nib.aff2axcodes(affine))


@pytest.mark.parametrize("direction", list(_signed_permutations()))
def test_marked_voxel_keeps_its_patient_position(direction):
    shape_kji = (5, 6, 7)
    spacing_ijk = (0.7, 0.9, 2.5)
    origin = (-10.0, 20.0, -30.0)
    vox = np.zeros(shape_kji, dtype=np.int16)
    k, j, i = 1, 4, 2
    vox[k, j, i] = 1000
    hu, spacing_zyx, origin_new, code, warnings = to_canonical(vox, direction, origin, spacing_ijk)
    assert warnings == []
    assert hu.dtype == vox.dtype and hu.sum() == 1000  # permute/flip only, values untouched
    z, y, x = np.argwhere(hu == 1000)[0]
    expected = _lps_of_index((i, j, k), direction, origin, spacing_ijk)
    got = np.asarray(origin_new) + np.asarray(spacing_zyx)[::-1] * np.array([x, y, z])
    np.testing.assert_allclose(got, expected, atol=1e-9)
    # Canonical axes increase towards L, P, S: the physical extent matches the input's.
    assert sorted(spacing_zyx) == sorted(spacing_ijk)
    assert code == orientation_code(direction)


def test_ras_flips_x_and_y_and_moves_origin():
    vox = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)  # [k, j, i]
    hu, spacing, origin, code, _ = to_canonical(vox, np.diag([-1.0, -1.0, 1.0]), (0, 0, 0), (1, 2, 3))
    assert code == "RAS"
    np.testing.assert_array_equal(hu, vox[:, ::-1, ::-1])
    assert spacing == (3.0, 2.0, 1.0)
    assert origin == (-3.0, -4.0, 0.0)  # far corner: i = 3 at 1 mm towards Right, j = 2 at 2 mm Anterior


def test_oblique_rejected_by_default():
    vox = np.zeros((4, 4, 4), dtype=np.float32)
    with pytest.raises(ImagingError) as err:
        to_canonical(vox, _rotation_x(10.0), (0, 0, 0), (1, 1, 1))
    assert err.value.code is ErrorCode.OBLIQUE_ORIENTATION


def test_small_obliquity_within_tolerance_is_not_resampled():
    vox = np.random.default_rng(0).normal(size=(3, 4, 5)).astype(np.float32)
    hu, *_, warnings = to_canonical(vox, _rotation_x(1.0), (0, 0, 0), (1, 1, 1), tolerance_deg=3.0)
    np.testing.assert_array_equal(hu, vox)
    assert len(warnings) == 1 and "1.00 deg" in warnings[0]


def test_oblique_resampled_blob_lands_at_its_patient_position():
    shape_kji = (24, 24, 24)
    spacing_ijk = (1.0, 1.0, 1.0)
    origin = (5.0, -3.0, 12.0)
    direction = _rotation_x(20.0)
    kk, jj, ii = np.meshgrid(*(np.arange(n) for n in shape_kji), indexing="ij")
    centre_ijk = np.array([9.0, 14.0, 11.0])
    blob = np.exp(-((ii - centre_ijk[0]) ** 2 + (jj - centre_ijk[1]) ** 2 + (kk - centre_ijk[2]) ** 2) / 4.0)
    vox = (blob * 1000.0 - 1000.0).astype(np.float32)
    hu, spacing_zyx, origin_new, code, warnings = to_canonical(
        vox, direction, origin, spacing_ijk, on_oblique="resample"
    )
    assert code == "LPS" and len(warnings) == 1 and "resampled" in warnings[0]
    weights = np.clip(hu + 1000.0, 0, None)
    z, y, x = (np.indices(hu.shape) * weights).reshape(3, -1).sum(axis=1) / weights.sum()
    got = np.asarray(origin_new) + np.asarray(spacing_zyx)[::-1] * np.array([x, y, z])
    expected = _lps_of_index(centre_ijk, direction, origin, spacing_ijk)
    np.testing.assert_allclose(got, expected, atol=0.25)
    assert hu.min() >= -1000.0 - 1e-3  # fill is the input minimum (air), never zero-padding
