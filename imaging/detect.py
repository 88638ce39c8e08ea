"""Which CT file format a file holds, decided by its bytes, never by its name.

Uploads arrive with arbitrary names (and archive members are re-named `0000.dcm`, ...), so
the format comes from magic numbers: gzip (NIfTI inside), NIfTI-1/-2, DICOM (`DICM` at
offset 128, or a bare DICOM data set without the preamble), zip, NRRD and MetaImage.
"""

from __future__ import annotations

import gzip
import struct
import warnings
import zlib
from pathlib import Path

from ctscribe.errors import ErrorCode, ImagingError

NIFTI = "nifti"
DICOM = "dicom"
ZIP = "zip"
NRRD = "nrrd"
MHA = "mha"

VOLUME_FORMATS = (NIFTI, NRRD, MHA)
"""Formats where one file is one whole volume."""

_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a member first, or an empty archive
_NRRD_MAGIC = b"NRRD000"
_NIFTI1_HEADER_BYTES = 348
_NIFTI2_HEADER_BYTES = 540
_NIFTI1_MAGICS = (b"n+1\x00",)
_NIFTI1_PAIR_MAGIC = b"ni1\x00"
_NIFTI2_MAGICS = (b"n+2\x00\r\n\x1a\n",)
_NIFTI2_PAIR_MAGIC = b"ni2\x00\r\n\x1a\n"
_PROBE_BYTES = 1024
# The first element of a bare (preamble-less) data set: file meta (0002) or identifying (0008) group.
_BARE_DICOM_GROUPS = (0x0002, 0x0008)


def detect_format(path: str | Path) -> str:
    """Return one of nifti | dicom | zip | nrrd | mha for the file at `path`.

    Raises ImagingError: `corrupt_file` for an empty file or a damaged gzip stream,
    `unsupported_format` for anything else not recognised.
    """
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(_PROBE_BYTES)
    if not head:
        raise ImagingError(ErrorCode.CORRUPT_FILE, "the file is empty")
    if head.startswith(_GZIP_MAGIC):
        return _detect_gzipped(path)
    nifti = _nifti_version(head)
    if nifti:
        return NIFTI
    if len(head) >= 132 and head[128:132] == b"DICM":
        return DICOM
    if head.startswith(_ZIP_MAGICS):
        return ZIP
    if head.startswith(_NRRD_MAGIC):
        return NRRD
    if _is_metaimage(head):
        return MHA
    if _looks_like_bare_dicom(head) and _pydicom_accepts(path):
        return DICOM
    raise ImagingError(
        ErrorCode.UNSUPPORTED_FORMAT,
        "not a NIfTI, DICOM, NRRD, MetaImage or zip file (recognised by content, not by name)",
    )


def is_gzip(path: str | Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == _GZIP_MAGIC


def _detect_gzipped(path: Path) -> str:
    # Only the header is decompressed: a gzip bomb costs us 540 bytes here.
    try:
        with gzip.open(path, "rb") as f:
            head = f.read(_NIFTI2_HEADER_BYTES)
    except (OSError, EOFError, zlib.error) as exc:
        raise ImagingError(ErrorCode.CORRUPT_FILE, f"damaged gzip stream: {exc}") from None
    if not head:
        raise ImagingError(ErrorCode.CORRUPT_FILE, "the gzip stream is empty")
    if _nifti_version(head):
        return NIFTI
    raise ImagingError(ErrorCode.UNSUPPORTED_FORMAT, "a gzip-compressed file that is not NIfTI")


def nifti_version(head: bytes) -> int:
    """1 or 2 for a single-file NIfTI header at the start of `head`, else 0."""
    return _nifti_version(head)


def _nifti_version(head: bytes) -> int:
    if len(head) < 4:
        return 0
    sizes = {struct.unpack("<i", head[:4])[0], struct.unpack(">i", head[:4])[0]}
    if _NIFTI1_HEADER_BYTES in sizes and len(head) >= _NIFTI1_HEADER_BYTES:
        magic = head[344:348]
        if magic in _NIFTI1_MAGICS:
            return 1
        if magic == _NIFTI1_PAIR_MAGIC:
            raise ImagingError(
                ErrorCode.UNSUPPORTED_FORMAT,
                "a NIfTI header/image pair (.hdr/.img); convert it to a .nii file",
            )
    if _NIFTI2_HEADER_BYTES in sizes and len(head) >= 12:
        magic = head[4:12]
        if magic in _NIFTI2_MAGICS:
            return 2
        if magic == _NIFTI2_PAIR_MAGIC:
            raise ImagingError(
                ErrorCode.UNSUPPORTED_FORMAT, "a NIfTI-2 header/image pair; convert it to a .nii file"
            )
    return 0


def _is_metaimage(head: bytes) -> bool:
    # MetaImage headers are `Key = Value` text lines; ObjectType is conventionally first but
    # writers differ, so look at the first lines for it. latin-1 decodes any byte.
    for line in head.decode("latin-1").splitlines()[:16]:
        key, sep, value = line.partition("=")
        if sep and key.strip() == "ObjectType":
            return value.strip().lower() == "image"
    return False


def _looks_like_bare_dicom(head: bytes) -> bool:
    if len(head) < 8:
        return False
    group, element = struct.unpack("<HH", head[:4])
    return group in _BARE_DICOM_GROUPS and element < 0x0100


def _pydicom_accepts(path: Path) -> bool:
    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom complains loudly about the junk it is probing
            ds = pydicom.dcmread(path, force=True, stop_before_pixels=True)
    except Exception:
        return False
    # force=True parses almost anything; insist on elements every CT image carries.
    return any(tag in ds for tag in ("SOPClassUID", "Modality", "ImagePositionPatient", "SeriesInstanceUID"))
