"""Pixel decoding: rescale per slice, encodings, unsupported syntaxes, corrupt data, size caps."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from ctscribe.errors import ErrorCode, ImagingError
from imaging.dicom import read_dicom_series
from imaging.dicom.headers import read_headers
from imaging.dicom.pixels import read_pixels
from imaging.options import ReadOptions
from tests.imaging.dicom_factory import random_hu_volume, write_ct_series, write_junk

SPACING = (2.0, 0.7, 0.7)
MPEG2_MAIN_PROFILE = "1.2.840.10008.1.2.4.100"  # video: no pixel decoder for it


def _read(paths, **options):
    return read_dicom_series(paths, ReadOptions(**options))


def test_per_slice_rescale_applied_to_each_slice(tmp_path):
    vol = random_hu_volume((10, 16, 16), seed=9)
    vol -= vol % 4  # multiples of 4 HU: exact under every slope below
    slopes = [1.0, 2.0, 0.5, 4.0, 1.0, 2.0, 1.0, 0.5, 4.0, 1.0]
    paths = write_ct_series(tmp_path, vol, SPACING, per_slice_slope=slopes, intercept=-2048.0, shuffle=True)
    stored = {float(pydicom.dcmread(p).RescaleSlope) for p in paths}
    assert stored == {0.5, 1.0, 2.0, 4.0}  # the files really differ
    volume = _read(paths)
    assert volume.hu.dtype == np.float32
    np.testing.assert_array_equal(volume.hu, vol)


@pytest.mark.parametrize(
    "syntax",
    [ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, RLELossless, JPEG2000Lossless],
    ids=lambda s: s.name,
)
def test_encodings_round_trip(tmp_path, syntax):
    vol = random_hu_volume((9, 32, 32), seed=10)
    paths = write_ct_series(tmp_path, vol, SPACING, transfer_syntax=syntax)
    assert pydicom.dcmread(paths[0], stop_before_pixels=True).file_meta.TransferSyntaxUID == syntax
    volume = _read(paths)
    np.testing.assert_array_equal(volume.hu, vol)
    assert volume.meta["transfer_syntax"] == syntax.name


def test_jpeg_ls_decodes(tmp_path):
    # No JPEG-LS encoder is installed: reuse the JPEG-LS codestream pydicom ships as a test file
    # (MR_small, 64x64 int16) as the pixel data of CT slices, and compare with its raw twin.
    jls = pydicom.dcmread(get_testdata_file("MR_small_jpeg_ls_lossless.dcm"))
    raw = pydicom.dcmread(get_testdata_file("MR_small.dcm")).pixel_array.astype(np.float32)
    assert jls.file_meta.TransferSyntaxUID == JPEGLSLossless
    template = write_ct_series(tmp_path, np.zeros((9, 64, 64)), SPACING, intercept=0.0)
    for path in template:
        ds = pydicom.dcmread(path)
        ds.file_meta.TransferSyntaxUID = JPEGLSLossless
        ds.PixelData = jls.PixelData
        ds["PixelData"].VR = "OB"
        for tag in ("BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation"):
            setattr(ds, tag, getattr(jls, tag))
        ds.save_as(path, enforce_file_format=True)
    volume = _read(template)
    for k in range(9):
        np.testing.assert_array_equal(volume.hu[k], raw)


def test_unsupported_transfer_syntax(tmp_path):
    paths = write_ct_series(
        tmp_path, random_hu_volume((9, 16, 16)), SPACING, transfer_syntax=MPEG2_MAIN_PROFILE
    )
    with pytest.raises(ImagingError) as err:
        _read(paths)
    assert err.value.code is ErrorCode.UNSUPPORTED_TRANSFER_SYNTAX
    assert "MPEG2" in err.value.message


def test_junk_file_among_slices_is_skipped_with_warning(tmp_path):
    vol = random_hu_volume((9, 16, 16), seed=11)
    paths = write_ct_series(tmp_path, vol, SPACING)
    paths.append(write_junk(tmp_path / "junk.dcm"))
    volume = _read(paths)
    np.testing.assert_array_equal(volume.hu, vol)
    assert any("1 file(s) are not DICOM" in w for w in volume.warnings)


@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2.1", RLELossless], ids=["native", "rle"])
@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom notes the truncation before we refuse it
def test_truncated_pixel_data_is_corrupt(tmp_path, syntax):
    paths = write_ct_series(tmp_path, random_hu_volume((9, 16, 16)), SPACING, transfer_syntax=syntax)
    data = paths[4].read_bytes()
    paths[4].write_bytes(data[: len(data) - 200])
    with pytest.raises(ImagingError) as err:
        _read(paths)
    assert err.value.code is ErrorCode.CORRUPT_FILE


def test_voxel_cap_checked_before_decoding(tmp_path):
    paths = write_ct_series(tmp_path, random_hu_volume((9, 16, 16)), SPACING)
    for p in paths:  # garbage pixels: only a check made before decoding can give the cap's error
        data = p.read_bytes()
        p.write_bytes(data[: len(data) - 300])
    with pytest.raises(ImagingError) as err:
        _read(paths, max_voxels=9 * 16 * 16 - 1)
    assert err.value.code is ErrorCode.PAYLOAD_TOO_LARGE


@pytest.mark.parametrize(("bits_stored", "signed"), [(12, 1), (12, 0), (16, 0)])
def test_raw_fast_path_agrees_with_pydicom(tmp_path, bits_stored, signed):
    rng = np.random.default_rng(12)
    lo, hi = (-(1 << (bits_stored - 1)), 1 << (bits_stored - 1)) if signed else (0, 1 << bits_stored)
    stored = rng.integers(lo, hi, size=(9, 16, 16))
    paths = write_ct_series(tmp_path, stored.astype(float), SPACING, intercept=0.0)
    for k, p in enumerate(paths):
        ds = pydicom.dcmread(p)
        ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits_stored, bits_stored - 1, signed
        values = stored[k].astype(np.int16 if signed else np.uint16)
        if bits_stored < 16:
            # Junk in the unused high bits (overlays, old scanners): the reader must ignore them.
            values = values.view(np.uint16) ^ np.uint16(0xA000 if not signed else 0)
        ds.PixelData = values.tobytes()
        ds.save_as(p)
    headers = read_headers(paths).headers
    fast = read_pixels(headers, 16, 16)
    reference = np.stack([pydicom.dcmread(h.path).pixel_array.astype(np.float32) for h in headers])
    np.testing.assert_array_equal(fast, reference)
    np.testing.assert_array_equal(fast, stored.astype(np.float32))
