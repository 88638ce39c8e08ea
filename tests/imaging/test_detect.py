"""Format detection by content: names lie, magic bytes do not."""

from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from ctscribe.errors import ErrorCode, ImagingError
from imaging import detect


def _nifti_bytes(version: int = 1) -> bytes:
    data = np.zeros((4, 4, 4), dtype=np.int16)
    klass = nib.Nifti1Image if version == 1 else nib.Nifti2Image
    return klass(data, np.eye(4)).to_bytes()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("version", [1, 2])
def test_nifti_recognised_whatever_the_name(tmp_path, version):
    raw = _nifti_bytes(version)
    assert detect.detect_format(_write(tmp_path / "scan.dcm", raw)) == detect.NIFTI
    assert detect.detect_format(_write(tmp_path / "scan.bin", gzip.compress(raw))) == detect.NIFTI


def test_big_endian_nifti(tmp_path):
    header = nib.Nifti1Header(endianness=">")
    image = nib.Nifti1Image(np.zeros((3, 3, 3), dtype=np.int16), np.eye(4), header=header)
    raw = image.to_bytes()
    assert raw[:4] == (348).to_bytes(4, "big")
    assert detect.detect_format(_write(tmp_path / "be.nii", raw)) == detect.NIFTI


def test_nifti_pair_header_is_unsupported(tmp_path):
    pair = nib.Nifti1Pair(np.zeros((3, 3, 3), dtype=np.int16), np.eye(4))
    path = tmp_path / "x.hdr"
    pair.header.write_to(open(path, "wb"))
    with pytest.raises(ImagingError) as err:
        detect.detect_format(path)
    assert err.value.code is ErrorCode.UNSUPPORTED_FORMAT


def test_gzip_of_something_else_is_unsupported(tmp_path):
    path = _write(tmp_path / "notes.nii.gz", gzip.compress(b"hello world, not a header" * 40))
    with pytest.raises(ImagingError) as err:
        detect.detect_format(path)
    assert err.value.code is ErrorCode.UNSUPPORTED_FORMAT


def test_damaged_gzip_header_is_corrupt(tmp_path):
    # gzip magic, then garbage where the deflate stream should be
    path = _write(tmp_path / "x.nii.gz", b"\x1f\x8b\x08\x00" + bytes(range(250)) * 4)
    with pytest.raises(ImagingError) as err:
        detect.detect_format(path)
    assert err.value.code is ErrorCode.CORRUPT_FILE


def test_zip_nrrd_mha(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.txt", b"x")
    assert detect.detect_format(_write(tmp_path / "upload.nii", buf.getvalue())) == detect.ZIP
    empty = io.BytesIO()
    zipfile.ZipFile(empty, "w").close()
    assert detect.detect_format(_write(tmp_path / "empty.zip", empty.getvalue())) == detect.ZIP

    image = sitk.GetImageFromArray(np.zeros((3, 4, 5), dtype=np.int16))
    sitk.WriteImage(image, str(tmp_path / "v.nrrd"))
    sitk.WriteImage(image, str(tmp_path / "v.mha"))
    (tmp_path / "v.nrrd").rename(tmp_path / "v1.dat")
    (tmp_path / "v.mha").rename(tmp_path / "v2.dat")
    assert detect.detect_format(tmp_path / "v1.dat") == detect.NRRD
    assert detect.detect_format(tmp_path / "v2.dat") == detect.MHA


def test_dicom_with_and_without_preamble(tmp_path):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ImplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.Modality = "CT"
    ds.SeriesInstanceUID = generate_uid()
    with_preamble = tmp_path / "IM0001"
    ds.save_as(with_preamble, enforce_file_format=True)
    assert with_preamble.read_bytes()[128:132] == b"DICM"
    assert detect.detect_format(with_preamble) == detect.DICOM

    bare = tmp_path / "IM0002"
    ds.save_as(bare, implicit_vr=True, little_endian=True, enforce_file_format=False)
    assert b"DICM" not in bare.read_bytes()[:200]
    assert detect.detect_format(bare) == detect.DICOM


@pytest.mark.parametrize(
    "content, code",
    [
        (b"", ErrorCode.CORRUPT_FILE),
        (b"just some text\n" * 100, ErrorCode.UNSUPPORTED_FORMAT),
        (
            np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
            ErrorCode.UNSUPPORTED_FORMAT,
        ),
        # starts like a bare DICOM group 0008 element but is not one
        (b"\x08\x00\x05\x00" + b"\xff" * 500, ErrorCode.UNSUPPORTED_FORMAT),
        (b"ObjectType = Mesh\nNDims = 3\n", ErrorCode.UNSUPPORTED_FORMAT),
    ],
    ids=["empty", "text", "random", "fake-dicom-group", "metaimage-mesh"],
)
def test_unrecognised_content(tmp_path, content, code):
    path = _write(tmp_path / "scan.nii.gz", content)
    with pytest.raises(ImagingError) as err:
        detect.detect_format(path)
    assert err.value.code is code
