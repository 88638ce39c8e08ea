"""DICOM header pass: every candidate file's geometry and identity, no pixel data read.

Files that are not DICOM are skipped and counted, never fatal on their own: a folder of a
series often carries a README or a thumbnail. A DICOMDIR (the media index of a CD export,
named DIRFILE on older media) is recognised by its SOP class and skipped silently. Identifying values (names, IDs,
dates, UIDs) are read only where grouping needs them (the SeriesInstanceUID) and never
leave this package in clear.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from imaging.dicom.fastparse import parse_header
from imaging.dicom.multiframe import expand_frames

# Only these tags are converted; everything else is skipped while parsing (faster headers).
_HEADER_TAGS = [
    "SOPClassUID",
    "SeriesInstanceUID",
    "Modality",
    "ImageType",
    "SeriesDescription",
    "InstanceNumber",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "SamplesPerPixel",
    "BitsAllocated",
    "RescaleSlope",
    "RescaleIntercept",
    "GantryDetectorTilt",
    "BitsStored",
    "PixelRepresentation",
]
# Non-identifying acquisition tags copied into Volume.meta (DESIGN.md §2), read from one file of
# the chosen series only; never names, IDs, dates or UIDs.
META_TAGS = {
    "Manufacturer": "manufacturer",
    "ManufacturerModelName": "model",
    "ConvolutionKernel": "convolution_kernel",
    "KVP": "kvp",
    "SliceThickness": "slice_thickness_mm",
    "XRayTubeCurrent": "tube_current_ma",
    "ReconstructionDiameter": "reconstruction_diameter_mm",
    "PatientPosition": "patient_position",
    "BodyPartExamined": "body_part",
    "ContrastBolusAgent": "contrast_agent",
}
# SOP classes that are DICOM but never an image (structured reports, presentation states,
# DICOMDIR media directory, raw data, encapsulated PDF).
_NON_IMAGE_SOP_PREFIXES = (
    "1.2.840.10008.5.1.4.1.1.88.",
    "1.2.840.10008.5.1.4.1.1.11.",
    "1.2.840.10008.1.3.10",
)
_NON_IMAGE_SOP_CLASSES = {"1.2.840.10008.5.1.4.1.1.66", "1.2.840.10008.5.1.4.1.1.104.1"}
MEDIA_DIRECTORY_SOP_CLASS = "1.2.840.10008.1.3.10"
"""Media Storage Directory Storage: a DICOMDIR (DIRFILE on older media), an index of the
files on a medium that holds no image itself."""
DICOM_MAGIC_OFFSET = 128


@dataclass(frozen=True)
class SliceHeader:
    """What the reader needs from one DICOM file, before any pixel is touched."""

    path: Path
    series_uid: str = field(repr=False)
    """Raw SeriesInstanceUID: grouping key only, never printed (SeriesInfo carries its hash)."""
    sop_class_uid: str
    transfer_syntax: str
    modality: str
    image_type: tuple[str, ...]
    description: str
    instance_number: int | None
    position_mm: tuple[float, float, float] | None
    """ImagePositionPatient: LPS centre of the first transmitted pixel, mm."""
    orientation: tuple[float, ...] | None
    """ImageOrientationPatient: row cosines then column cosines."""
    pixel_spacing_mm: tuple[float, float] | None
    """PixelSpacing: (between rows, between columns) in mm."""
    rows: int | None
    columns: int | None
    n_frames: int
    samples_per_pixel: int
    slope: float
    intercept: float
    gantry_tilt_deg: float
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    """0 unsigned, 1 two's complement."""
    pixel_offset: int | None = None
    """File offset of the PixelData element (where the header pass stopped), for the raw fast path."""
    frame: int | None = None
    """Frame index inside a multi-frame (enhanced) file; None for a single-frame image."""

    @property
    def is_image(self) -> bool:
        if self.sop_class_uid in _NON_IMAGE_SOP_CLASSES or self.sop_class_uid.startswith(
            _NON_IMAGE_SOP_PREFIXES
        ):
            return False
        return bool(self.rows) and bool(self.columns)

    @property
    def is_localizer(self) -> bool:
        return "LOCALIZER" in self.image_type


@dataclass(frozen=True)
class HeaderScan:
    headers: list[SliceHeader]
    n_not_dicom: int
    """Files that do not look like DICOM at all (skipped)."""
    n_unreadable: int
    """Files that look like DICOM (magic bytes) but whose header could not be parsed."""
    n_directories: int = 0
    """DICOMDIR media indexes (well-formed DICOM, never an image): skipped without a warning."""


def _floats(value, n: int) -> tuple[float, ...] | None:
    if isinstance(value, str):
        value = value.split("\\")
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return out if len(out) == n else None


def _float(value, default: float) -> float:
    try:
        return float(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def _int(value) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _has_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            fh.seek(DICOM_MAGIC_OFFSET)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def _looks_like_bare_dataset(path: Path) -> bool:
    """A DICOM data set without preamble (old ACR-NEMA style files) starts with group 0x0002 or 0x0008.

    Only such files are parsed with `force=True`: forcing arbitrary bytes through the parser is
    slow on large non-DICOM files and yields garbage data sets.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError:
        return False
    return len(head) == 4 and head[1] == 0 and head[0] in (0x02, 0x08) and head[3] == 0


def _read_one(path: Path):
    """(dataset, offset where parsing stopped: the pixel data element) or None if not DICOM."""
    with open(path, "rb") as fh:
        try:
            ds = dcmread(fh, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
        except InvalidDicomError:
            if not _looks_like_bare_dataset(path):
                return None
            fh.seek(0)
            ds = dcmread(fh, stop_before_pixels=True, force=True, specific_tags=_HEADER_TAGS)
        # The parser is lenient: garbage after a valid preamble can come back as an empty data
        # set. Without any identity it is not a usable DICOM object.
        if not any(tag in ds for tag in ("SOPClassUID", "SeriesInstanceUID", "Modality")):
            return None
        return ds, fh.tell()


def _is_media_directory(path: Path) -> bool:
    """A DICOMDIR / DIRFILE: its file meta names the Media Storage Directory SOP class."""
    try:
        ds = dcmread(path, stop_before_pixels=True, specific_tags=["FileSetID"])
    except Exception:  # noqa: BLE001 - not parseable as Part 10 at all: not a DICOMDIR either
        return False
    sop_class = getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "")
    return str(sop_class or "") == MEDIA_DIRECTORY_SOP_CLASS


def read_meta(path: Path) -> dict:
    """The non-identifying acquisition tags of one file (META_TAGS), as text; {} if unreadable."""
    try:
        ds = dcmread(path, stop_before_pixels=True, force=True, specific_tags=list(META_TAGS))
    except Exception:  # noqa: BLE001 - metadata is best effort; the pixels were readable
        return {}
    meta = {}
    for tag, key in META_TAGS.items():
        value = ds.get(tag)
        if value not in (None, ""):
            meta[key] = _text(value)
    return meta


_SYNTAX_OF_ENCODING = {  # (implicit VR, little endian) -> transfer syntax UID
    (True, True): "1.2.840.10008.1.2",
    (False, True): "1.2.840.10008.1.2.1",
    (False, False): "1.2.840.10008.1.2.2",
}


def header_from_dataset(path: Path, ds, pixel_offset: int | None = None) -> SliceHeader:
    file_meta = getattr(ds, "file_meta", None)
    transfer_syntax = str(getattr(file_meta, "TransferSyntaxUID", "") or "")
    if not transfer_syntax:
        # No file meta (ACR-NEMA style files from old scanners): the encoding pydicom found
        # while parsing is the data set's own, and so the pixels' (never compressed there).
        encoding = tuple(getattr(ds, "original_encoding", (None, None)))
        transfer_syntax = _SYNTAX_OF_ENCODING.get(encoding, "")  # type: ignore[call-overload]
    return _build_header(
        path,
        ds.get,
        transfer_syntax,
        str(getattr(file_meta, "MediaStorageSOPClassUID", "") or ""),
        # Without a known syntax the encoding is a guess: no raw reads at an offset.
        pixel_offset if transfer_syntax else None,
    )


def _build_header(
    path: Path, get, transfer_syntax: str, meta_sop_class: str, pixel_offset: int | None
) -> SliceHeader:
    """`get(keyword)` returns a tag's value (pydicom's, or fastparse's str / list of str / int)."""
    bits_allocated = _int(get("BitsAllocated")) or 16
    return SliceHeader(
        path=Path(path),
        series_uid=str(get("SeriesInstanceUID") or ""),
        sop_class_uid=str(get("SOPClassUID") or meta_sop_class or ""),
        transfer_syntax=transfer_syntax or "1.2.840.10008.1.2",
        modality=_text(get("Modality")).upper(),
        image_type=tuple(v.strip().upper() for v in _text(get("ImageType")).split("\\") if v.strip()),
        description=_text(get("SeriesDescription")),
        instance_number=_int(get("InstanceNumber")),
        position_mm=_floats(get("ImagePositionPatient"), 3),  # type: ignore[arg-type]
        orientation=_floats(get("ImageOrientationPatient"), 6),
        pixel_spacing_mm=_floats(get("PixelSpacing"), 2),  # type: ignore[arg-type]
        rows=_int(get("Rows")),
        columns=_int(get("Columns")),
        n_frames=_int(get("NumberOfFrames")) or 1,
        samples_per_pixel=_int(get("SamplesPerPixel")) or 1,
        slope=_float(get("RescaleSlope"), 1.0),
        intercept=_float(get("RescaleIntercept"), 0.0),
        gantry_tilt_deg=_float(get("GantryDetectorTilt"), 0.0),
        bits_allocated=bits_allocated,
        bits_stored=_int(get("BitsStored")) or bits_allocated,
        pixel_representation=_int(get("PixelRepresentation")) or 0,
        pixel_offset=pixel_offset,
    )


def _fast_header(path: Path) -> SliceHeader | None:
    try:
        parsed = parse_header(path)
    except OSError:
        return None
    if parsed is None:
        return None
    values, pixel_offset = parsed
    if not any(k in values for k in ("SOPClassUID", "SeriesInstanceUID", "Modality")):
        return None
    return _build_header(
        path,
        values.get,
        values.get("TransferSyntaxUID", ""),
        values.get("MediaStorageSOPClassUID", ""),
        pixel_offset,
    )


def read_headers(files: Sequence[Path], *, use_fast_parser: bool = True) -> HeaderScan:
    """Parse every file's header up to the pixel data; skip and count what is not DICOM.

    `imaging.dicom.fastparse` handles the common layouts; pydicom (`stop_before_pixels`,
    `specific_tags`) everything else.
    """
    headers: list[SliceHeader] = []
    n_not_dicom = n_unreadable = n_directories = 0
    for path in files:
        path = Path(path)
        fast = _fast_header(path) if use_fast_parser else None
        if fast is not None:
            headers.extend(expand_frames(fast) if fast.n_frames > 1 else [fast])
            continue
        try:
            found = _read_one(path)
        except Exception:  # noqa: BLE001 - any parser failure on user bytes means "unreadable"
            found = None
        if found is None:
            if _has_magic(path) and _is_media_directory(path):
                n_directories += 1
            elif _has_magic(path):
                n_unreadable += 1
            else:
                n_not_dicom += 1
            continue
        try:
            header = header_from_dataset(path, *found)
            headers.extend(expand_frames(header) if header.n_frames > 1 else [header])
        except Exception:  # noqa: BLE001 - malformed values in an otherwise parsed header
            n_unreadable += 1
    return HeaderScan(
        headers=headers, n_not_dicom=n_not_dicom, n_unreadable=n_unreadable, n_directories=n_directories
    )
