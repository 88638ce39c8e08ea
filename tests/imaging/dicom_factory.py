"""Synthetic DICOM writers for tests: CT/MR series with controllable geometry and encoding.

`write_ct_series` stores `volume_hu_zyx[k]` as slice k with rows along the array's second
axis and columns along its third; where that slice sits in patient space is set by
`orientation` (ImageOrientationPatient), `origin_mm` and `spacing_mm_zyx`. With the default
axial orientation the stored array is already canonical (z, y, x) LPS, slice 0 inferior.
Every other option breaks one thing a reader must cope with (order, gaps, duplicates,
per-slice rescale, gantry tilt, encodings). Nothing here reads the files back.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
BASIC_TEXT_SR_STORAGE = "1.2.840.10008.5.1.4.1.1.88.11"
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
_NATIVE_SYNTAXES = {ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian}
# Syntaxes pydicom can encode itself or through the installed pylibjpeg plugins.
_ENCODABLE_SYNTAXES = {
    "1.2.840.10008.1.2.5",  # RLE Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
}


def _file_meta(sop_class: str, sop_instance: str, transfer_syntax: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return meta


def _base_dataset(sop_class: str, transfer_syntax: str, study_uid: str, series_uid: str) -> Dataset:
    sop_instance = generate_uid()
    ds = Dataset()
    ds.file_meta = _file_meta(sop_class, sop_instance, transfer_syntax)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_instance
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = study_uid
    ds.PatientName = "Phantom^Synthetic"
    ds.PatientID = "SYNTH-0001"
    ds.StudyDate = date(2024, 1, 2).strftime("%Y%m%d")
    ds.AccessionNumber = "ACC0001"
    return ds


def _save(ds: Dataset, path: Path, raw: np.ndarray | None, transfer_syntax: str) -> None:
    if raw is not None:
        if transfer_syntax in _NATIVE_SYNTAXES:
            ds.PixelData = raw.tobytes()
        elif transfer_syntax in _ENCODABLE_SYNTAXES:
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.PixelData = raw.tobytes()
            ds.compress(transfer_syntax, raw)
        else:
            # A syntax nobody here can encode: wrap the raw bytes as one fragment so the file is
            # well formed; a reader must refuse it on the transfer syntax, not by crashing.
            ds.PixelData = encapsulate([raw.tobytes()])
            ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)


def write_ct_series(
    out_dir: Path,
    volume_hu_zyx: np.ndarray,
    spacing_mm_zyx: Sequence[float],
    *,
    series_uid: str | None = None,
    study_uid: str | None = None,
    modality: str = "CT",
    image_type: Sequence[str] = ("ORIGINAL", "PRIMARY", "AXIAL"),
    description: str = "synthetic chest",
    slope: float = 1.0,
    intercept: float = -1024.0,
    tilt_deg: float = 0.0,
    orientation: Sequence[float] = AXIAL,
    origin_mm: Sequence[float] = (0.0, 0.0, 0.0),
    transfer_syntax: str = ExplicitVRLittleEndian,
    shuffle: bool = False,
    drop_index: int | Sequence[int] | None = None,
    duplicate_index: int | None = None,
    per_slice_slope: Sequence[float] | None = None,
    positions_mm: Sequence[Sequence[float]] | None = None,
    prefix: str = "img",
    seed: int = 0,
) -> list[Path]:
    """Write `volume_hu_zyx` (Z, Rows, Columns) as one DICOM series; returns the paths in file order.

    spacing_mm_zyx: (slice step along the stack, row spacing, column spacing) in mm.
    slope / intercept: stored = round((HU - intercept) / slope) as int16; `per_slice_slope`
        gives every slice its own slope instead (a reader must apply each slice's own).
    tilt_deg: gantry tilt; the image plane is tilted about the row direction while the table
        still moves along the untilted normal, so positions are off the slice normal.
    orientation: ImageOrientationPatient (row cosines, then column cosines).
    positions_mm: explicit ImagePositionPatient per slice (overrides the computed stack).
    shuffle: random file order and InstanceNumbers (a reader must sort by position).
    drop_index: slices left out (a gap); duplicate_index: a slice written twice, same position.
    transfer_syntax: native (incl. deflated), RLE / JPEG 2000 lossless (encoded; openjpeg needs >= 32x32 images),
        or any other UID (written encapsulated but not actually encoded, for "unsupported
        syntax" tests).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vol = np.asarray(volume_hu_zyx, dtype=np.float64)
    if vol.ndim != 3:
        raise ValueError("volume_hu_zyx must be (Z, Rows, Columns)")
    n_slices, n_rows, n_cols = vol.shape
    step_mm, row_mm, col_mm = (float(s) for s in spacing_mm_zyx)
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    row_dir = np.asarray(orientation[:3], dtype=np.float64)
    col_dir = np.asarray(orientation[3:], dtype=np.float64)
    normal = np.cross(row_dir, col_dir)
    if tilt_deg:
        t = np.radians(tilt_deg)
        col_dir = np.cos(t) * col_dir + np.sin(t) * normal  # plane tilts, table direction does not
    if positions_mm is None:
        positions = [np.asarray(origin_mm, dtype=np.float64) + k * step_mm * normal for k in range(n_slices)]
    else:
        positions = [np.asarray(p, dtype=np.float64) for p in positions_mm]
    slopes = list(per_slice_slope) if per_slice_slope is not None else [slope] * n_slices

    dropped = {drop_index} if isinstance(drop_index, int) else set(drop_index or ())
    order = [k for k in range(n_slices) if k not in dropped]
    if duplicate_index is not None:
        order.insert(order.index(duplicate_index) + 1, duplicate_index)
    rng = np.random.default_rng(seed)
    instance_numbers = list(range(1, len(order) + 1))
    if shuffle:
        order = [order[i] for i in rng.permutation(len(order))]
        instance_numbers = [int(n) for n in rng.permutation(instance_numbers)]

    sop_class = MR_IMAGE_STORAGE if modality == "MR" else CT_IMAGE_STORAGE
    paths = []
    for n, k in enumerate(order):
        ds = _base_dataset(sop_class, transfer_syntax, study_uid, series_uid)
        ds.Modality = modality
        ds.ImageType = list(image_type)
        ds.SeriesDescription = description
        ds.SeriesNumber = 2
        ds.InstanceNumber = instance_numbers[n]
        ds.Manufacturer = "SyntheticVendor"
        ds.ManufacturerModelName = "FactoryScanner"
        ds.ConvolutionKernel = "B30f"
        ds.KVP = "120"
        ds.SliceThickness = f"{step_mm:g}"
        ds.GantryDetectorTilt = f"{tilt_deg:g}"
        ds.PatientPosition = "HFS"
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*row_dir, *col_dir)]
        ds.ImagePositionPatient = [f"{v:.4f}" for v in positions[k]]
        ds.PixelSpacing = [f"{row_mm:g}", f"{col_mm:g}"]
        ds.Rows, ds.Columns = n_rows, n_cols
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation = 1
        ds.RescaleSlope = f"{slopes[k]:g}"
        ds.RescaleIntercept = f"{intercept:g}"
        ds.RescaleType = "HU"
        raw = np.clip(np.round((vol[k] - intercept) / slopes[k]), -32768, 32767).astype(np.int16)
        path = out_dir / f"{prefix}_{n:04d}.dcm"
        _save(ds, path, raw, transfer_syntax)
        paths.append(path)
    return paths


def write_localizer(
    out_dir: Path, *, study_uid: str | None = None, size: int = 32, prefix: str = "loc"
) -> Path:
    """A one-image CT scout (ImageType LOCALIZER, coronal plane) in its own series."""
    vol = np.full((1, size, size), -500.0)
    return write_ct_series(
        out_dir,
        vol,
        (1.0, 1.0, 1.0),
        study_uid=study_uid,
        image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"),
        description="topogram",
        orientation=(1.0, 0.0, 0.0, 0.0, 0.0, -1.0),
        prefix=prefix,
    )[0]


def write_sr(out_dir: Path, *, study_uid: str | None = None, name: str = "report.dcm") -> Path:
    """A Basic Text SR document: DICOM, in the study, but no image."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ds = _base_dataset(
        BASIC_TEXT_SR_STORAGE, ExplicitVRLittleEndian, study_uid or generate_uid(), generate_uid()
    )
    ds.Modality = "SR"
    ds.SeriesDescription = "dose report"
    ds.ValueType = "CONTAINER"
    path = out_dir / name
    _save(ds, path, None, ExplicitVRLittleEndian)
    return path


def write_junk(path: Path, n_bytes: int = 4096, seed: int = 0) -> Path:
    """Random bytes under a .dcm name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, n_bytes, dtype=np.uint8).tobytes())
    return path


def random_hu_volume(shape_zyx: Sequence[int] = (10, 32, 32), seed: int = 0) -> np.ndarray:
    """Integer-valued HU in [-1024, 2000]: survives int16 storage with slope 1 exactly."""
    return np.random.default_rng(seed).integers(-1024, 2001, size=tuple(shape_zyx)).astype(np.float32)


ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"


def write_enhanced_ct(
    path: Path,
    volume_hu_zyx: np.ndarray,
    spacing_mm_zyx: Sequence[float],
    *,
    frame_order: Sequence[int] | None = None,
    per_frame_slope: Sequence[float] | None = None,
    intercept: float = -1024.0,
    origin_mm: Sequence[float] = (0.0, 0.0, 0.0),
    series_uid: str | None = None,
    with_positions: bool = True,
) -> Path:
    """One Enhanced CT file holding every slice as a frame (axial, identity orientation).

    frame_order: which slice each frame holds (default 0..Z-1; shuffle it to check sorting).
    per_frame_slope: a RescaleSlope per slice, stored in each frame's own functional group.
    with_positions: False leaves out the plane positions (an unreadable multi-frame).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    vol = np.asarray(volume_hu_zyx, dtype=np.float64)
    n_slices, n_rows, n_cols = vol.shape
    step_mm, row_mm, col_mm = (float(s) for s in spacing_mm_zyx)
    order = list(frame_order) if frame_order is not None else list(range(n_slices))
    slopes = list(per_frame_slope) if per_frame_slope is not None else [1.0] * n_slices
    ds = _base_dataset(
        ENHANCED_CT_IMAGE_STORAGE, ExplicitVRLittleEndian, generate_uid(), series_uid or generate_uid()
    )
    ds.Modality = "CT"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.SeriesDescription = "enhanced synthetic"
    ds.Manufacturer = "SyntheticVendor"
    ds.NumberOfFrames = len(order)
    ds.Rows, ds.Columns = n_rows, n_cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 1

    shared = Dataset()
    orientation = Dataset()
    orientation.ImageOrientationPatient = [f"{v:g}" for v in AXIAL]
    measures = Dataset()
    measures.PixelSpacing = [f"{row_mm:g}", f"{col_mm:g}"]
    measures.SliceThickness = f"{step_mm:g}"
    shared.PlaneOrientationSequence = [orientation]
    shared.PixelMeasuresSequence = [measures]
    ds.SharedFunctionalGroupsSequence = [shared]

    per_frame, frames = [], []
    for k in order:
        item = Dataset()
        if with_positions:
            position = Dataset()
            position.ImagePositionPatient = [
                f"{v:.4f}" for v in (origin_mm[0], origin_mm[1], origin_mm[2] + k * step_mm)
            ]
            item.PlanePositionSequence = [position]
        transform = Dataset()
        transform.RescaleSlope = f"{slopes[k]:g}"
        transform.RescaleIntercept = f"{intercept:g}"
        transform.RescaleType = "HU"
        item.PixelValueTransformationSequence = [transform]
        per_frame.append(item)
        frames.append(np.clip(np.round((vol[k] - intercept) / slopes[k]), -32768, 32767).astype(np.int16))
    ds.PerFrameFunctionalGroupsSequence = per_frame
    _save(ds, path, np.stack(frames), ExplicitVRLittleEndian)  # (frames, rows, cols)
    return path


def strip_to_bare_dataset(path: Path) -> Path:
    """Rewrite a Part 10 file as old scanners (ACR-NEMA era) wrote them: no 128-byte preamble,
    no 'DICM', no file meta group, the data set in implicit VR little endian."""
    from pydicom import dcmread, dcmwrite

    ds = dcmread(path)
    bare = Dataset()
    bare.update(ds)  # the data set's elements only: file_meta is not carried over
    dcmwrite(path, bare, implicit_vr=True, little_endian=True, enforce_file_format=False)
    return Path(path)


def write_dicomdir(out_dir: Path, image_paths: Sequence[Path]) -> Path:
    """A DICOM medium (pydicom's FileSet): the images copied under PT*/ST*/SE*/IM* and the
    DICOMDIR index that lists them. Returns the DICOMDIR's path."""
    from pydicom import dcmread
    from pydicom.fileset import FileSet

    fileset = FileSet()
    for number, path in enumerate(image_paths, start=1):
        ds = dcmread(path)
        # The STUDY/SERIES/IMAGE records require these (PS3.3 F.5).
        ds.StudyTime = "120000"
        ds.StudyID = "1"
        ds.SeriesNumber = 1
        ds.InstanceNumber = ds.get("InstanceNumber") or number
        fileset.add(ds)
    out_dir = Path(out_dir)
    fileset.write(out_dir)
    return out_dir / "DICOMDIR"
