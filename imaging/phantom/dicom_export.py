"""Writes a canonical `Volume` as a DICOM CT series (one file per axial slice) with pydicom.

Geometry follows the canonical LPS array exactly: rows run along +y (posterior), columns
along +x (patient left), so ImageOrientationPatient is [1,0,0, 0,1,0]; slice k (0 = most
inferior) sits at ImagePositionPatient = origin + k * z-spacing. Pixels are stored as
unsigned 16-bit `HU + 1024` with RescaleSlope 1 and RescaleIntercept -1024, the common
scanner layout, so a reader that forgets the rescale is caught. UIDs are derived from the
caller's entropy with `pydicom.uid.generate_uid`, so the same case gets the same UIDs.
The folder appears atomically: files are written into a temporary sibling, then renamed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from imaging.volume import Volume

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
RESCALE_INTERCEPT = -1024.0


def write_dicom_series(
    volume: Volume,
    out_dir: str | Path,
    uid_entropy: list[str],
    patient_id: str = "PHANTOM",
    description: str = "ctscribe phantom",
) -> Path:
    """Write `volume` into `out_dir` (replaced if it exists) and return it."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    out_dir = Path(out_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)

    def uid(*parts: str) -> str:
        return generate_uid(entropy_srcs=[*uid_entropy, *parts])

    study_uid, series_uid, frame_uid = uid("study"), uid("series"), uid("frame")
    sz, sy, sx = (float(s) for s in volume.spacing_mm_zyx)
    ox, oy, oz = (float(o) for o in volume.origin_mm)
    stored = np.clip(np.rint(volume.hu) - RESCALE_INTERCEPT, 0, 65535).astype(np.uint16)  # (Z, Y, X)
    nz, ny, nx = stored.shape
    # One dataset, re-used: only the per-slice elements change between files (pydicom's
    # element construction dominates the cost otherwise).
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = frame_uid
    ds.Modality = "CT"
    ds.Manufacturer = "ctscribe"
    ds.ManufacturerModelName = "phantom"
    ds.PatientName = f"PHANTOM^{patient_id}"
    ds.PatientID = patient_id
    ds.PatientPosition = "HFS"
    ds.SeriesDescription = description
    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
    ds.SeriesNumber = 1
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [round(sy, 6), round(sx, 6)]  # [row spacing (y), column spacing (x)]
    ds.SliceThickness = round(sz, 6)
    ds.SpacingBetweenSlices = round(sz, 6)
    ds.Rows, ds.Columns = ny, nx
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = RESCALE_INTERCEPT
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    ds.WindowCenter = 40
    ds.WindowWidth = 400
    ds.KVP = 120
    for k in range(nz):
        sop_uid = uid("instance", str(k))
        meta.MediaStorageSOPInstanceUID = sop_uid
        ds.SOPInstanceUID = sop_uid
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [round(ox, 6), round(oy, 6), round(oz + k * sz, 6)]
        ds.SliceLocation = round(oz + k * sz, 6)
        ds.PixelData = stored[k].tobytes()
        ds.save_as(tmp / f"slice_{k + 1:04d}.dcm", enforce_file_format=True)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return out_dir
