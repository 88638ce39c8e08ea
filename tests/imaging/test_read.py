"""`read_volume` dispatch: files, folders, zips and file lists, each format, against references."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from ctscribe.errors import ErrorCode, ImagingError
from imaging import ReadOptions, inspect_source, read_volume
from tests.imaging.dicom_factory import write_ct_series

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "ct"
SUMMARY_KEYS = {
    "format", "shape_zyx", "spacing_mm_zyx", "origin_mm", "orientation_in", "hu", "series", "candidates", "warnings",
}  # fmt: skip


def _real(name: str) -> Path:
    path = DATA / name
    if not path.exists():
        pytest.skip(f"real CT data not present at {DATA} (see shared/data/README.md)")
    return path


def _zip_folder(folder: Path, archive: Path, prefix: str = "export/series") -> Path:
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, f"{prefix}/{path.relative_to(folder)}")
    return archive


def _phantom(n_slices: int = 10, size: int = 24) -> np.ndarray:
    zz, yy, xx = np.mgrid[:n_slices, :size, :size]
    hu = np.full((n_slices, size, size), -1000.0)
    hu[(yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 3) ** 2] = 40.0
    hu[2, 5, 7] = 1500.0  # a marked voxel: slice 2 (inferior end), row 5, column 7
    return hu


@pytest.fixture(scope="module")
def real_dicom_volume():
    """The real series read once from its folder (JPEG 2000: each read costs about a second)."""
    return read_volume(_real("abdomen_dicom_series"))


def test_real_dicom_folder_matches_simpleitk(real_dicom_volume):
    folder = _real("abdomen_dicom_series")
    volume = real_dicom_volume
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    reference = sitk.DICOMOrient(reader.Execute(), "LPS")
    assert volume.format == "dicom"
    np.testing.assert_array_equal(volume.hu, sitk.GetArrayFromImage(reference).astype(np.float32))
    np.testing.assert_allclose(volume.spacing_mm_zyx, reference.GetSpacing()[::-1], rtol=1e-5)
    np.testing.assert_allclose(volume.origin_mm, reference.GetOrigin(), atol=1e-3)
    assert volume.hu_stats()["p1"] < -900 and volume.hu_stats()["max"] > 300
    assert volume.series is not None and volume.series.n_slices == 20


def test_real_dicom_as_zip_and_as_file_list_equal_the_folder(tmp_path, real_dicom_volume):
    folder = _real("abdomen_dicom_series")
    from_folder = real_dicom_volume
    from_zip = read_volume(_zip_folder(folder, tmp_path / "upload.bin"))
    from_list = read_volume(sorted(p for p in folder.iterdir() if p.is_file()))
    for other in (from_zip, from_list):
        np.testing.assert_array_equal(other.hu, from_folder.hu)
        assert other.origin_mm == from_folder.origin_mm and other.spacing_mm_zyx == from_folder.spacing_mm_zyx
    assert from_zip.meta["container"] == "zip"


def test_synthetic_series_in_a_nested_folder_with_stray_files(tmp_path):
    hu = _phantom()
    series_dir = tmp_path / "patient" / "study" / "series"
    write_ct_series(series_dir, hu, (2.5, 0.8, 0.8), origin_mm=(-10.0, -20.0, 100.0), shuffle=True)
    (tmp_path / "patient" / "README.txt").write_text("exported by a PACS")
    (tmp_path / "patient" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    volume = read_volume(tmp_path / "patient", ReadOptions(min_slices=4))
    np.testing.assert_allclose(volume.hu, hu, atol=0.5)  # stored as int16 via slope/intercept
    assert volume.spacing_mm_zyx == pytest.approx((2.5, 0.8, 0.8))
    assert volume.origin_mm == pytest.approx((-10.0, -20.0, 100.0))
    assert any("ignored 1 file" in w for w in volume.warnings)  # README.txt; hidden files are not counted


def test_folder_with_dicom_and_nifti_is_ambiguous(tmp_path):
    write_ct_series(tmp_path / "dcm", _phantom(), (2.0, 1.0, 1.0))
    shutil.copy(_real("abdomen_ct_30slices.nii.gz"), tmp_path / "scan.nii.gz")
    with pytest.raises(ImagingError) as err:
        read_volume(tmp_path)
    assert err.value.code is ErrorCode.AMBIGUOUS_SERIES


def test_folder_with_one_nifti_and_junk_reads_the_nifti(tmp_path):
    shutil.copy(_real("abdomen_ct_30slices.nii.gz"), tmp_path / "scan.nii.gz")
    (tmp_path / "notes.txt").write_text("hello")
    volume = read_volume(tmp_path)
    assert volume.format == "nifti" and volume.shape_zyx == (30, 101, 122)
    shutil.copy(_real("abdomen_ct_30slices.nii.gz"), tmp_path / "again.nii.gz")
    with pytest.raises(ImagingError) as err:
        read_volume(tmp_path)
    assert err.value.code is ErrorCode.AMBIGUOUS_SERIES


def test_nifti_inside_a_zip_under_any_name(tmp_path):
    source = _real("chest_cta_crop.nii.gz")
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(source, "whatever/name.dat")
    np.testing.assert_array_equal(read_volume(archive).hu, read_volume(source).hu)


def _sitk_image(direction: np.ndarray) -> tuple[sitk.Image, tuple[int, int, int]]:
    data = np.full((12, 10, 8), -1000, dtype=np.int16)  # [k, j, i]
    marked_ijk = (2, 6, 9)
    data[marked_ijk[::-1]] = 1234
    image = sitk.GetImageFromArray(data)
    image.SetSpacing((0.7, 1.3, 2.9))
    image.SetOrigin((11.0, -22.0, 33.0))
    image.SetDirection(direction.ravel().tolist())
    return image, marked_ijk


DIRECTIONS = {
    "identity": np.eye(3),
    "ras": np.diag([-1.0, -1.0, 1.0]),
    "permuted": np.array([[0.0, 0, -1], [1, 0, 0], [0, -1, 0]]),  # i -> Posterior, j -> Inferior, k -> Right
}


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
@pytest.mark.parametrize("direction", list(DIRECTIONS))
def test_nrrd_and_mha_round_trip_with_a_marked_voxel(tmp_path, suffix, direction):
    image, marked_ijk = _sitk_image(DIRECTIONS[direction])
    path = tmp_path / f"v{suffix}"
    sitk.WriteImage(image, str(path), True)  # compressed, as people ship them
    volume = read_volume(path)
    assert volume.format == suffix[1:]
    found = np.argwhere(volume.hu == 1234)
    assert len(found) == 1
    z, y, x = found[0]
    dz, dy, dx = volume.spacing_mm_zyx
    position = np.asarray(volume.origin_mm) + np.array([x * dx, y * dy, z * dz])
    np.testing.assert_allclose(position, image.TransformIndexToPhysicalPoint(marked_ijk), atol=1e-4)
    expected = sitk.DICOMOrient(image, "LPS")
    np.testing.assert_array_equal(volume.hu, sitk.GetArrayFromImage(expected))


def test_mhd_with_detached_raw_file(tmp_path):
    image, _ = _sitk_image(np.eye(3))
    sitk.WriteImage(image, str(tmp_path / "scan.mhd"))
    assert (tmp_path / "scan.raw").exists() or (tmp_path / "scan.zraw").exists()
    assert read_volume(tmp_path / "scan.mhd").shape_zyx == (12, 10, 8)
    assert read_volume(tmp_path).shape_zyx == (12, 10, 8)  # the .raw alone is skipped, not an error


def test_inputs_that_are_not_there(tmp_path):
    with pytest.raises(ImagingError) as err:
        read_volume(tmp_path / "missing.nii.gz")
    assert err.value.code is ErrorCode.INVALID_REQUEST
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImagingError) as err:
        read_volume(tmp_path / "empty")
    assert err.value.code is ErrorCode.NO_SERIES
    with pytest.raises(ImagingError) as err:
        read_volume([])
    assert err.value.code is ErrorCode.INVALID_REQUEST


def test_unexpected_reader_exception_becomes_corrupt_file(tmp_path, monkeypatch):
    # Stands in for a third-party reader bug on a hostile file: no traceback may escape.
    import imaging.nifti

    def boom(path, options):
        raise IndexError("index 7 is out of bounds")

    monkeypatch.setattr(imaging.nifti, "read_nifti", boom)
    with pytest.raises(ImagingError) as err:
        read_volume(_real("abdomen_ct_30slices.nii.gz"))
    assert err.value.code is ErrorCode.CORRUPT_FILE
    assert "IndexError" in err.value.message


def test_inspect_source_summary(tmp_path):
    hu = _phantom()
    write_ct_series(tmp_path, hu, (2.0, 1.0, 1.0), description="chest 1mm")
    summary = inspect_source(tmp_path, ReadOptions(min_slices=4))
    assert set(summary) == SUMMARY_KEYS
    assert summary["format"] == "dicom" and summary["shape_zyx"] == [10, 24, 24]
    assert summary["hu"]["max"] == pytest.approx(1500.0) and summary["hu"]["min"] == pytest.approx(-1000.0)
    assert summary["series"]["n_slices"] == 10 and "description" not in summary["series"]
    assert len(summary["candidates"]) == 1
