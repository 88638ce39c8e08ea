"""NRRD and MetaImage (.mha/.mhd) -> canonical `Volume`, through SimpleITK.

The ImageIO is chosen from the detected format (not the file name, which may be
`0003.dcm` for an archive member). Image information is read first so size and dimension
are checked before pixels are allocated. A header may name a detached data file; only a
plain file name next to the header is followed, never a path (an upload must not make us
read `/etc/passwd` as voxels).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ctscribe.errors import ErrorCode, ImagingError
from imaging.detect import MHA, NRRD
from imaging.intensity import check_ct_intensities
from imaging.nifti import canonical_volume, check_voxel_count
from imaging.options import ReadOptions
from imaging.volume import Volume

_IMAGE_IO = {NRRD: "NrrdImageIO", MHA: "MetaImageIO"}
_HEADER_PROBE_BYTES = 64 * 1024
# Header keys naming a detached data file: NRRD `data file:` / `datafile:`, MetaImage `ElementDataFile =`.
_DATA_FILE_KEYS = {
    NRRD: re.compile(r"^\s*data ?file\s*:\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE),
    MHA: re.compile(r"^\s*ElementDataFile\s*=\s*(.+?)\s*$", re.MULTILINE),
}


def read_sitk(path: str | Path, fmt: str, options: ReadOptions = ReadOptions()) -> Volume:
    """Read a NRRD or MetaImage file (fmt = "nrrd" | "mha") as a canonical HU volume."""
    import SimpleITK as sitk

    path = Path(path)
    if fmt not in _IMAGE_IO:
        raise ImagingError(ErrorCode.UNSUPPORTED_FORMAT, f"{fmt} is not read through SimpleITK here")
    _check_data_file_reference(path, fmt)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.SetImageIO(_IMAGE_IO[fmt])
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise ImagingError(ErrorCode.CORRUPT_FILE, f"cannot read {fmt} header: {_first_line(exc)}") from None
    size = list(reader.GetSize())
    if reader.GetNumberOfComponents() != 1:
        raise ImagingError(
            ErrorCode.UNSUPPORTED_FORMAT,
            f"{reader.GetNumberOfComponents()}-component pixels are not a CT image",
        )
    if len(size) == 4 and size[3] == 1:
        size = size[:3]
    if len(size) != 3:
        raise ImagingError(ErrorCode.NOT_3D, f"expected a 3D volume, got size {list(reader.GetSize())}")
    check_voxel_count(size, options)
    spacing = np.asarray(reader.GetSpacing()[:3], dtype=np.float64)
    origin = np.asarray(reader.GetOrigin()[:3], dtype=np.float64)
    n_dims = len(reader.GetSize())
    direction = np.asarray(reader.GetDirection(), dtype=np.float64).reshape(n_dims, n_dims)[:3, :3]
    if not (np.all(np.isfinite(spacing)) and np.all(np.isfinite(origin)) and np.all(np.isfinite(direction))):
        raise ImagingError(ErrorCode.CORRUPT_FILE, f"{fmt} geometry (spacing/origin/direction) is not finite")
    if np.any(spacing <= 0):
        raise ImagingError(
            ErrorCode.CORRUPT_FILE, f"{fmt} voxel size must be positive, got {spacing.tolist()}"
        )

    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise ImagingError(ErrorCode.CORRUPT_FILE, f"cannot read {fmt} voxels: {_first_line(exc)}") from None
    view = sitk.GetArrayViewFromImage(image)  # [k, j, i] (or [t, k, j, i] with t == 1)
    voxels_kji = view.reshape(view.shape[-3:]).astype(np.float32)  # one copy, then `image` can go
    del view, image
    lo, hi = float(voxels_kji.min()), float(voxels_kji.max())
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ImagingError(ErrorCode.CORRUPT_FILE, f"{fmt} voxels contain NaN or infinite values")
    warnings = check_ct_intensities(voxels_kji, fmt)
    meta = {"pixel_type": sitk.GetPixelIDValueAsString(reader.GetPixelID())}
    return canonical_volume(voxels_kji, direction, origin, spacing, fmt, options, warnings, meta)


def _check_data_file_reference(path: Path, fmt: str) -> None:
    with open(path, "rb") as f:
        head = f.read(_HEADER_PROBE_BYTES)
    header_text = head.split(b"\n\n", 1)[0] if fmt == NRRD else head
    match = _DATA_FILE_KEYS[fmt].search(header_text.decode("latin-1"))
    if not match:
        return
    target = match.group(1)
    if fmt == MHA and target.upper() == "LOCAL":
        return
    # A list form (`LIST`, `%d` patterns, NRRD's multi-file syntax) or any path component is refused.
    name_ok = (
        re.fullmatch(r"[A-Za-z0-9._-]+", target) is not None
        and target not in (".", "..")
        and target.upper() != "LIST"
    )
    if not name_ok:
        raise ImagingError(
            ErrorCode.UNSUPPORTED_FORMAT,
            f"{fmt} header names a detached data file that is not a plain file name next to the header",
        )
    if not (path.parent / target).is_file():
        raise ImagingError(ErrorCode.CORRUPT_FILE, f"{fmt} detached data file {target!r} is missing")


def _first_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    # ITK messages start with the source file and line; the last line is the readable reason.
    return lines[-1][:200] if lines else type(exc).__name__
