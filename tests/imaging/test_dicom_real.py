"""The DICOM reader on a real Siemens CT series, checked voxel for voxel against SimpleITK."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imaging.dicom import read_dicom_series, scan_series
from imaging.options import ReadOptions

SERIES_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "ct" / "abdomen_dicom_series"


@pytest.fixture(scope="module")
def files() -> list[Path]:
    if not SERIES_DIR.is_dir():
        pytest.skip(f"real CT data not present at {SERIES_DIR} (../shared/data is provided in CI)")
    return sorted(SERIES_DIR.iterdir())


@pytest.fixture(scope="module")
def volume(files):
    return read_dicom_series(files, ReadOptions())


def test_shape_spacing_and_hu(volume):
    assert volume.format == "dicom"
    assert volume.shape_zyx == (20, 512, 512)  # data README: 512x512x20
    assert volume.hu.dtype == np.float32
    np.testing.assert_allclose(volume.spacing_mm_zyx, (2.0, 0.9765625, 0.9765625), atol=1e-6)
    stats = volume.hu_stats()
    # Air outside the body sits at the -1024 floor; soft tissue median near 0-60 HU; bone < 3000.
    assert stats["min"] >= -1025 and stats["p1"] <= -900
    assert 200 < stats["max"] < 3100
    body = volume.hu[volume.hu > -200]
    assert -100 < float(np.median(body)) < 150
    assert volume.orientation_in == "LPS"
    assert volume.warnings == []


def test_meta_has_acquisition_tags_and_nothing_identifying(volume):
    assert volume.meta["manufacturer"] == "SIEMENS"
    assert "kvp" in volume.meta and "convolution_kernel" in volume.meta
    text = repr(volume.meta) + repr(volume.summary())
    assert "1.3.12.2" not in text  # the files' UID root, also in their names
    for forbidden in ("patient_name", "patient_id", "study_date", "accession"):
        assert forbidden not in volume.meta


def test_matches_simpleitk_voxel_for_voxel(files, volume):
    sitk = pytest.importorskip("SimpleITK")
    reader = sitk.ImageSeriesReader()
    # SimpleITK/GDCM sort the files themselves; hand them over in name order (not slice order).
    reader.SetFileNames([str(f) for f in files])
    image = reader.Execute()
    ref = sitk.GetArrayFromImage(image).astype(np.float32)  # [k, j, i]
    direction = np.array(image.GetDirection()).reshape(3, 3)
    spacing = np.array(image.GetSpacing())
    origin = np.array(image.GetOrigin())

    # Canonical index (x, y, z) -> LPS -> SimpleITK's (i, j, k) through its own geometry. The map
    # is affine; solve it on the grid's origin and unit steps, then gather every voxel.
    steps_lps = np.diag(np.asarray(volume.spacing_mm_zyx)[::-1])  # columns: one step in x, y, z
    to_ijk = np.linalg.solve(direction * spacing, steps_lps)  # (3 ijk, 3 xyz)
    offset_ijk = np.linalg.solve(direction * spacing, np.asarray(volume.origin_mm) - origin)
    assert np.allclose(to_ijk, np.rint(to_ijk), atol=1e-4) and np.allclose(
        offset_ijk, np.rint(offset_ijk), atol=1e-3
    )
    to_ijk, offset_ijk = np.rint(to_ijk).astype(int), np.rint(offset_ijk).astype(int)
    nz, ny, nx = volume.shape_zyx
    z, y, x = np.arange(nz)[:, None, None], np.arange(ny)[None, :, None], np.arange(nx)[None, None, :]
    i, j, k = (to_ijk[r, 0] * x + to_ijk[r, 1] * y + to_ijk[r, 2] * z + offset_ijk[r] for r in range(3))
    np.testing.assert_array_equal(volume.hu, ref[k, j, i])


def test_scan_lists_the_series_without_raw_uids(files):
    candidates = scan_series(files)
    assert len(candidates) == 1
    info = candidates[0].info()
    assert info.modality == "CT" and info.n_slices == 20
    assert "ORIGINAL" in info.image_type
    assert "1.3.12.2" not in repr(info)
