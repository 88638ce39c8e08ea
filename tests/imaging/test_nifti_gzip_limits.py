"""A .nii.gz is held to the zip limits from its header, before anything is inflated: the
compression ratio (`max_compression_ratio`) and the inflated size (`max_archive_bytes`)."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from ctscribe.errors import ErrorCode, ImagingError
from imaging.options import ReadOptions
from imaging.read import read_volume


def _nii_gz(path: Path, data: np.ndarray) -> Path:
    raw = nib.Nifti1Image(data, np.eye(4)).to_bytes()
    path.write_bytes(gzip.compress(raw, compresslevel=9))
    return path


def _bomb(tmp_path: Path) -> Path:
    """256 x 256 x 64 int16 of air with one soft-tissue block: 8 MiB from about 10 KiB (~800:1)."""
    data = np.full((256, 256, 64), -1000, np.int16)
    data[100:150, 100:150, 20:40] = 40
    return _nii_gz(tmp_path / "bomb.nii.gz", data)


def _noise(tmp_path: Path) -> Path:
    """A CT-like 64^3 int16 volume of noise: ~1.2:1, as real CT (2-5:1) never comes near the cap."""
    data = np.random.default_rng(0).integers(-1024, 1500, (64, 64, 64)).astype(np.int16)
    return _nii_gz(tmp_path / "noise.nii.gz", data)


def test_a_high_ratio_is_refused_from_the_header(tmp_path):
    path = _bomb(tmp_path)
    assert 200 < 8 * 2**20 / path.stat().st_size < 1032  # possible for deflate, past the cap
    with pytest.raises(ImagingError) as err:
        read_volume(path)
    assert err.value.code is ErrorCode.ARCHIVE_LIMITS_EXCEEDED
    assert "compression ratio" in err.value.message


def test_the_ratio_cap_is_the_zip_setting(tmp_path):
    assert read_volume(_bomb(tmp_path), ReadOptions(max_compression_ratio=1000)).shape_zyx == (64, 256, 256)


def test_the_inflated_size_cap_applies_before_inflating(tmp_path):
    path = _noise(tmp_path)
    assert read_volume(path).shape_zyx == (64, 64, 64)
    with pytest.raises(ImagingError) as err:
        read_volume(path, ReadOptions(max_archive_bytes=300_000))  # 512 KiB declared
    assert err.value.code is ErrorCode.ARCHIVE_LIMITS_EXCEEDED
