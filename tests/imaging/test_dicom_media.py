"""DICOM media exports and old files: a DICOMDIR is an index, not an unparsable image, and a
file without preamble or file meta (old GE / ACR-NEMA style) is read like any other."""

from __future__ import annotations

import numpy as np
import pytest

from ctscribe.errors import ErrorCode, ImagingError
from imaging.dicom.headers import read_headers
from imaging.dicom.pixels import _decode_with_pydicom
from imaging.read import read_volume
from tests.imaging.dicom_factory import (
    random_hu_volume,
    strip_to_bare_dataset,
    write_ct_series,
    write_dicomdir,
)

SPACING = (2.0, 0.7, 0.7)


@pytest.fixture
def medium(tmp_path):
    """A DICOM CD layout: DICOMDIR + PT000000/ST000000/SE000000/IM00000n."""
    series = write_ct_series(tmp_path / "series", random_hu_volume((10, 16, 16), seed=3), SPACING)
    return write_dicomdir(tmp_path / "medium", series)


def test_a_lone_dicomdir_is_no_series(medium):
    with pytest.raises(ImagingError) as err:
        read_volume(medium)
    assert err.value.code == ErrorCode.NO_SERIES
    assert "DICOMDIR" in err.value.message


def test_a_dicomdir_beside_its_images_is_no_warning(medium):
    volume = read_volume(medium.parent)
    assert volume.shape_zyx == (10, 16, 16)
    assert volume.warnings == []


def test_an_older_dirfile_name_is_recognised_by_content(medium):
    dirfile = medium.rename(medium.parent / "DIRFILE")
    scan = read_headers([dirfile])
    assert (scan.n_directories, scan.n_unreadable, scan.headers) == (1, 0, [])


@pytest.fixture
def bare_series(tmp_path):
    vol = random_hu_volume((9, 16, 16), seed=5)
    paths = write_ct_series(tmp_path, vol, SPACING, shuffle=True)
    for path in paths:
        strip_to_bare_dataset(path)
    return vol, paths


def test_files_without_preamble_or_file_meta_are_read(bare_series):
    vol, paths = bare_series
    head = paths[0].read_bytes()[:132]
    assert head[128:132] != b"DICM" and head[:2] == b"\x08\x00"  # really bare: group 0008 first
    volume = read_volume(paths[0].parent)
    np.testing.assert_array_equal(volume.hu, vol)
    assert volume.warnings == []


def test_pydicom_fallback_decodes_a_bare_file(bare_series):
    vol, paths = bare_series
    header = read_headers([paths[0]]).headers[0]
    assert header.transfer_syntax == "1.2.840.10008.1.2"  # implicit VR little endian, as parsed
    k = int(round(header.position_mm[2] / SPACING[0]))
    np.testing.assert_array_equal(_decode_with_pydicom(header) - 1024.0, vol[k])
