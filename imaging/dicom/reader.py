"""DICOM series -> canonical `Volume`: headers, series choice, geometry, pixels, orientation.

Nothing here writes to disk, and no tag value is ever used as a path or printed raw when
it could identify a patient or study (series are named by `uid_hash`).
"""

from __future__ import annotations

import warnings as _warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ctscribe.errors import ErrorCode, ImagingError
from imaging.dicom.geometry import canonicalise, plan_stack, regrid_uniform
from imaging.dicom.headers import read_headers, read_meta
from imaging.dicom.pixels import check_transfer_syntaxes, read_pixels, transfer_syntax_name
from imaging.dicom.series import group_series, select_series
from imaging.options import ReadOptions
from imaging.volume import PHANTOM_SOURCE_HINT, Volume, check_min_slices

# pydicom warns on every out-of-standard value (long UIDs, odd VRs, "expected explicit VR");
# real archives are full of them and they say nothing a user can act on. A filter scoped to
# pydicom's modules, set once: `catch_warnings` around each read is not thread-safe.
_warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom(\.|$)")


def _n_slices_after_regrid(offsets_mm: np.ndarray, step_mm: float) -> int:
    return int(round((offsets_mm[-1] - offsets_mm[0]) / step_mm)) + 1


def read_dicom_series(files: Sequence[Path], options: ReadOptions | None = None) -> Volume:
    """Read the CT series among `files` (one folder's, a zip's or an upload's) as a canonical Volume."""
    options = options or ReadOptions()
    files = [Path(f) for f in files]
    if not files:
        raise ImagingError(ErrorCode.UNSUPPORTED_FORMAT, "no files to read")
    return _read(files, options)


def _read(files: list[Path], options: ReadOptions) -> Volume:
    scan = read_headers(files)
    if not scan.headers:
        if scan.n_unreadable:
            raise ImagingError(
                ErrorCode.CORRUPT_FILE,
                f"{scan.n_unreadable} of {len(files)} file(s) look like DICOM but cannot be parsed",
            )
        if scan.n_directories:
            raise ImagingError(
                ErrorCode.NO_SERIES,
                "only a DICOMDIR (the index of a DICOM medium), no images: "
                "send the folder or the image files it lists",
            )
        raise ImagingError(ErrorCode.UNSUPPORTED_FORMAT, f"none of the {len(files)} file(s) is DICOM")
    warnings: list[str] = []
    if scan.n_not_dicom:
        warnings.append(f"{scan.n_not_dicom} file(s) are not DICOM and were skipped")
    if scan.n_unreadable:
        warnings.append(f"{scan.n_unreadable} DICOM file(s) could not be parsed and were skipped")

    candidates = group_series(scan.headers)
    chosen = select_series(candidates, options)
    others = [c for c in candidates if c is not chosen]
    if others:
        shown = f" ({chosen.description!r})" if options.show_series_description else ""
        warnings.append(f"{len(others)} other series present; read {chosen.uid_hash}{shown}")
    # Some scanners file the scout inside the axial series: stack only the cross-sections.
    slices = [s for s in chosen.slices if s.is_image and not s.is_localizer] or list(chosen.slices)
    if len(slices) < len(chosen.slices):
        warnings.append(
            f"{len(chosen.slices) - len(slices)} localizer/non-image object(s) in the series ignored"
        )
    plan = plan_stack(slices, options)
    warnings.extend(plan.warnings)

    rows, columns = int(plan.slices[0].rows), int(plan.slices[0].columns)  # type: ignore[arg-type]
    n_slices = len(plan.slices)
    if plan.regrid:
        n_slices = max(n_slices, _n_slices_after_regrid(plan.offsets_mm, plan.step_mm))
    n_voxels = rows * columns * n_slices
    if n_voxels > options.max_voxels:
        raise ImagingError(
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"{columns}x{rows}x{n_slices} = {n_voxels} voxels exceeds the limit of {options.max_voxels}",
        )
    check_transfer_syntaxes(plan.slices)

    voxels = read_pixels(plan.slices, rows, columns)  # (K, rows, cols) = [k, j, i]
    if plan.regrid:
        voxels = regrid_uniform(voxels, plan)
    hu, spacing_zyx, origin, orientation_in, orient_warnings = canonicalise(voxels, plan, options)
    check_min_slices(hu.shape, options.min_slices)  # the stack was counted; in-plane axes too
    warnings.extend(orient_warnings)

    meta = read_meta(plan.slices[0].path)
    meta["transfer_syntax"] = transfer_syntax_name(plan.slices[0].transfer_syntax)
    if meta.get("manufacturer") == "ctscribe" and meta.get("model") == "phantom":  # imaging/phantom/dicom_export.py
        meta["source_hint"] = PHANTOM_SOURCE_HINT
    return Volume(
        hu=np.ascontiguousarray(hu, dtype=np.float32),
        spacing_mm_zyx=tuple(float(s) for s in spacing_zyx),  # type: ignore[arg-type]
        origin_mm=tuple(float(o) for o in origin),  # type: ignore[arg-type]
        format="dicom",
        orientation_in=orientation_in,
        direction=np.eye(3),
        warnings=warnings,
        meta=meta,
        series=chosen.info(options.show_series_description),
        candidates=[c.info(options.show_series_description) for c in candidates],
    )
