"""NIfTI reading: real CTs against SimpleITK, marked voxels on known affines, HU scaling."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from ctscribe.errors import ErrorCode, ImagingError
from imaging.nifti import read_nifti
from imaging.options import ReadOptions

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "ct"
REAL_NIFTIS = [
    "abdomen_ct.nii.gz",
    "abdomen_ct_30slices.nii.gz",
    "chest_cta_crop.nii.gz",
    "thorax_crop.nii.gz",
]
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])
# i -> Left, j -> Posterior, k -> Superior: the canonical array is the data transposed, no flips
LPS_AFFINE = np.diag([-1.0, -1.0, 1.0, 1.0])


def _real(name: str) -> Path:
    path = DATA / name
    if not path.exists():
        pytest.skip(f"real CT data not present at {DATA} (see shared/data/README.md)")
    return path


def _save(tmp_path: Path, data: np.ndarray, affine: np.ndarray, name: str = "v.nii.gz", **header) -> Path:
    image = nib.Nifti1Image(data, affine)
    for key, value in header.items():
        image.header[key] = value
    path = tmp_path / name
    nib.save(image, path)
    return path


@pytest.mark.parametrize("name", REAL_NIFTIS)
def test_real_nifti_matches_simpleitk_in_canonical_lps(name):
    path = _real(name)
    volume = read_nifti(path)

    # Independent reference: SimpleITK's own reader, reoriented by SimpleITK to LPS.
    reference = sitk.DICOMOrient(sitk.ReadImage(str(path)), "LPS")
    np.testing.assert_allclose(reference.GetDirection(), np.eye(3).ravel(), atol=1e-6)
    expected = sitk.GetArrayFromImage(reference).astype(np.float32)  # (z, y, x)
    assert volume.hu.dtype == np.float32 and volume.hu.flags.c_contiguous
    assert volume.shape_zyx == expected.shape
    np.testing.assert_array_equal(volume.hu, expected)
    np.testing.assert_allclose(volume.spacing_mm_zyx, reference.GetSpacing()[::-1], rtol=1e-5)
    np.testing.assert_allclose(volume.origin_mm, reference.GetOrigin(), atol=1e-3)
    assert volume.orientation_in == "".join(nib.aff2axcodes(nib.load(path).affine))
    assert volume.format == "nifti"

    stats = volume.hu_stats()
    assert stats["p1"] < -800  # air
    assert stats["max"] > 300  # bone / contrast
    assert stats["min"] > -3100  # HU, not raw or wrapped values
    assert not any("raw" in w for w in volume.warnings)


def test_real_geometry_matches_the_data_readme():
    volume = read_nifti(_real("abdomen_ct.nii.gz"))
    assert volume.shape_zyx == (112, 101, 122)  # README: 122×101×112 (x, y, z)
    assert volume.spacing_mm_zyx == pytest.approx((3.0, 3.0, 3.0), rel=1e-4)
    thorax = read_nifti(_real("thorax_crop.nii.gz"))
    assert thorax.shape_zyx == (164, 126, 120)
    assert thorax.spacing_mm_zyx == pytest.approx((1.5, 1.5, 1.5), rel=1e-4)


def _position_lps(volume, index_zyx) -> np.ndarray:
    # canonical: LPS position = origin + (x, y, z) * spacing (identity direction)
    z, y, x = index_zyx
    dz, dy, dx = volume.spacing_mm_zyx
    return np.asarray(volume.origin_mm) + np.array([x * dx, y * dy, z * dz])


AFFINES = {
    # the usual NIfTI layout: +i towards the patient's Right, +j Anterior, +k Superior
    "ras": np.array([[2.0, 0, 0, 10], [0, 3.0, 0, 20], [0, 0, 4.0, 30], [0, 0, 0, 1]]),
    "lps": np.array([[-2.0, 0, 0, 10], [0, -3.0, 0, 20], [0, 0, 4.0, 30], [0, 0, 0, 1]]),
    # i -> Inferior, j -> Left, k -> Anterior: every axis permuted, two of them flipped
    "permuted-flipped": np.array([[0, -3.0, 0, 50], [0, 0, 4.0, -60], [-2.0, 0, 0, 70], [0, 0, 0, 1]]),
    "sagittal": np.array([[0, 0, 2.5, -40], [1.0, 0, 0, 5], [0, -1.5, 0, 12], [0, 0, 0, 1]]),
}


@pytest.mark.parametrize("name", list(AFFINES))
def test_marked_voxels_land_at_their_patient_position(tmp_path, name):
    affine = AFFINES[name]
    data = np.full((9, 10, 11), -1000, dtype=np.int16)  # (i, j, k): air
    marks = {(1, 2, 3): 1000, (7, 8, 9): 2000}
    for ijk, value in marks.items():
        data[ijk] = value
    volume = read_nifti(_save(tmp_path, data, affine), ReadOptions(min_slices=2))

    for ijk, value in marks.items():
        found = np.argwhere(volume.hu == value)
        assert len(found) == 1
        expected_lps = RAS_TO_LPS @ (affine @ np.array([*ijk, 1.0]))[:3]
        np.testing.assert_allclose(_position_lps(volume, found[0]), expected_lps, atol=1e-4)
    # canonical spacing is each patient axis' voxel size, whichever index axis carried it
    column_mm = np.linalg.norm(affine[:3, :3], axis=0)
    patient_axis_of_column = np.argmax(np.abs(affine[:3, :3]), axis=0)  # 0=x, 1=y, 2=z
    expected_zyx = [column_mm[list(patient_axis_of_column).index(a)] for a in (2, 1, 0)]
    np.testing.assert_allclose(volume.spacing_mm_zyx, expected_zyx)
    assert volume.orientation_in == "".join(nib.aff2axcodes(affine))


def test_scl_slope_and_inter_from_the_header(tmp_path):
    raw = np.full((8, 8, 10), 1024, dtype=np.int16)
    raw[0] = 0
    image = nib.Nifti1Image(raw, np.eye(4))
    image.header.set_slope_inter(2.0, -2048.0)
    path = tmp_path / "scaled.nii"
    nib.save(image, path)
    volume = read_nifti(path)
    assert set(np.unique(volume.hu)) == {-2048.0, 0.0}


def test_raw_values_warn_and_override_fixes_them(tmp_path):
    # CT-RATE v1 style: unsigned stored values (air 0, tissue ~1040), header says slope 1 inter 0
    raw = np.full((20, 20, 12), 1040, dtype=np.int16)
    raw[:5] = 0
    path = _save(tmp_path, raw, np.eye(4))
    volume = read_nifti(path)
    assert any("raw stored CT values" in w for w in volume.warnings)
    assert volume.hu.min() == 0

    fixed = read_nifti(path, ReadOptions(rescale_slope=1.0, rescale_intercept=-1024.0))
    assert fixed.hu.min() == -1024 and fixed.hu.max() == 16
    assert not any("raw" in w for w in fixed.warnings)


def test_override_on_data_already_in_hu_warns_of_double_rescale(tmp_path):
    hu = np.full((20, 20, 12), 40, dtype=np.int16)
    hu[:5] = -1000
    volume = read_nifti(_save(tmp_path, hu, np.eye(4)), ReadOptions(rescale_intercept=-1024.0))
    assert volume.hu.min() == -2024  # the caller asked for it; we only warn
    assert any("rescaled twice" in w for w in volume.warnings)


def test_four_d_with_one_time_point_is_read(tmp_path):
    data = (np.arange(8 * 9 * 10, dtype=np.int16) - 1000).reshape(8, 9, 10, 1)
    volume = read_nifti(_save(tmp_path, data, LPS_AFFINE))
    assert volume.shape_zyx == (10, 9, 8)
    np.testing.assert_array_equal(volume.hu, data[..., 0].transpose(2, 1, 0))


@pytest.mark.parametrize("shape", [(4, 5, 9, 2), (40, 50)], ids=["4d-t2", "2d"])
def test_not_3d(tmp_path, shape):
    path = _save(tmp_path, np.zeros(shape, dtype=np.int16), np.eye(4))
    with pytest.raises(ImagingError) as err:
        read_nifti(path)
    assert err.value.code is ErrorCode.NOT_3D


def test_too_few_slices(tmp_path):
    path = _save(tmp_path, np.full((16, 16, 3), -1000, dtype=np.int16), np.eye(4))
    with pytest.raises(ImagingError) as err:
        read_nifti(path, ReadOptions(min_slices=8))
    assert err.value.code is ErrorCode.TOO_FEW_SLICES


def test_big_endian_float_data(tmp_path):
    header = nib.Nifti1Header(endianness=">")
    data = np.linspace(-1000, 1000, 8 * 9 * 10, dtype=np.float32).reshape(8, 9, 10)
    image = nib.Nifti1Image(data, LPS_AFFINE, header=header)
    path = tmp_path / "be.nii"
    nib.save(image, path)
    np.testing.assert_array_equal(read_nifti(path).hu, data.transpose(2, 1, 0))


def test_oblique_affine_rejected_or_resampled(tmp_path):
    angle = np.radians(20)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation
    path = _save(tmp_path, np.full((16, 16, 10), -1000, dtype=np.int16), affine)
    with pytest.raises(ImagingError) as err:
        read_nifti(path)
    assert err.value.code is ErrorCode.OBLIQUE_ORIENTATION
    volume = read_nifti(path, ReadOptions(on_oblique="resample"))
    assert any("oblique" in w for w in volume.warnings)


def test_gzip_decided_by_content_not_name(tmp_path):
    data = (np.arange(8 * 9 * 10, dtype=np.int16) - 1000).reshape(8, 9, 10)
    plain = _save(tmp_path, data, np.eye(4), name="v.nii")
    disguised = tmp_path / "upload.nii"  # gzip content under an uncompressed name
    disguised.write_bytes(gzip.compress(plain.read_bytes()))
    np.testing.assert_array_equal(read_nifti(disguised).hu, read_nifti(plain).hu)


def test_concatenated_gzip_members(tmp_path):
    # pigz/bgzip-style files: several gzip members back to back form one stream
    data = np.arange(16 * 16 * 10, dtype=np.int16).reshape(16, 16, 10)
    plain = _save(tmp_path, data, LPS_AFFINE, name="v.nii").read_bytes()
    cut = len(plain) // 3
    multi = tmp_path / "multi.nii.gz"
    multi.write_bytes(gzip.compress(plain[:cut]) + gzip.compress(plain[cut:]))
    np.testing.assert_array_equal(read_nifti(multi).hu, data.transpose(2, 1, 0))


def test_gzip_crc_mismatch_is_corrupt(tmp_path):
    data = np.arange(16 * 16 * 10, dtype=np.int16).reshape(16, 16, 10)
    packed = bytearray(gzip.compress(_save(tmp_path, data, LPS_AFFINE, name="v.nii").read_bytes()))
    packed[-8] ^= 0xFF  # the CRC32 in the gzip trailer
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(bytes(packed))
    with pytest.raises(ImagingError) as err:
        read_nifti(bad)
    assert err.value.code is ErrorCode.CORRUPT_FILE


def test_bytes_after_the_voxels_are_ignored(tmp_path):
    data = np.arange(16 * 16 * 10, dtype=np.int16).reshape(16, 16, 10)
    plain = _save(tmp_path, data, LPS_AFFINE, name="v.nii").read_bytes()
    padded = tmp_path / "padded.nii.gz"
    padded.write_bytes(gzip.compress(plain + b"\x7f" * 10_000))
    np.testing.assert_array_equal(read_nifti(padded).hu, data.transpose(2, 1, 0))
