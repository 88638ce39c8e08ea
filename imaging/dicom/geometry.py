"""Slice-stack geometry of one DICOM series: order, duplicates, gaps, tilt, obliquity.

Slices are ordered by ImagePositionPatient projected on the slice normal (the cross product
of the ImageOrientationPatient row and column cosines), never by InstanceNumber, which
scanners number in either direction and exporters renumber. Every geometric problem is
checked here, from headers alone, so a series that will be refused is refused before any
pixel is decoded; the repairs (`regrid_uniform`, `canonicalise`) run on the pixels later.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ctscribe.errors import ErrorCode, ImagingError
from imaging.dicom.headers import SliceHeader
from imaging.options import ReadOptions
from imaging.orientation import (
    max_axis_deviation_deg,
    orientation_code,
    resample_to_canonical,
    to_canonical,
)

DUPLICATE_TOLERANCE_MM = 0.01
"""Slices whose positions along the normal differ by less than this are the same slice."""
ORIENTATION_TOLERANCE = 1e-3
"""Largest difference between two slices' direction cosines that still counts as one plane."""


@dataclass(frozen=True)
class StackPlan:
    """The checked geometry of one series, slices in stack order (inferior-most first for axials)."""

    slices: tuple[SliceHeader, ...]
    offsets_mm: np.ndarray = field(repr=False)
    """(n,) position of each slice along the normal, ascending."""
    row_cos: np.ndarray = field(repr=False)
    """Direction of increasing column index (along a row)."""
    col_cos: np.ndarray = field(repr=False)
    """Direction of increasing row index (down a column)."""
    normal: np.ndarray = field(repr=False)
    stack_dir: np.ndarray = field(repr=False)
    """Unit vector from the first slice position to the last: the normal unless tilted."""
    pixel_spacing_mm: tuple[float, float]
    """(between rows, between columns) in mm."""
    step_mm: float
    """Median distance between adjacent slice planes, mm."""
    regrid: bool
    """Gaps are missing or non-uniform and the policy says interpolate onto `step_mm`."""
    tilt_deg: float
    shear: bool
    """Positions drift in-plane (gantry tilt) and the policy says shear back to a straight grid."""
    warnings: tuple[str, ...] = ()

    @property
    def origin_mm(self) -> np.ndarray:
        return np.asarray(self.slices[0].position_mm, dtype=np.float64)


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    if n < 1e-6:
        raise ImagingError(ErrorCode.CORRUPT_FILE, "ImageOrientationPatient has a zero-length direction")
    return v / n


def _check_consistent(slices: Sequence[SliceHeader]) -> None:
    first = slices[0]
    if any(s.position_mm is None or s.orientation is None or s.pixel_spacing_mm is None for s in slices):
        raise ImagingError(
            ErrorCode.NOT_3D,
            "images lack ImagePositionPatient / ImageOrientationPatient / PixelSpacing: cannot be stacked in 3D",
        )
    if any(s.samples_per_pixel != 1 for s in slices):
        raise ImagingError(ErrorCode.NOT_CT, "colour images (SamplesPerPixel > 1) are not CT slices")
    if any((s.rows, s.columns) != (first.rows, first.columns) for s in slices):
        raise ImagingError(ErrorCode.NOT_3D, "the images of the series differ in Rows x Columns")
    orientation = np.asarray(first.orientation)
    if any(np.abs(np.asarray(s.orientation) - orientation).max() > ORIENTATION_TOLERANCE for s in slices):
        raise ImagingError(
            ErrorCode.NOT_3D, "the images of the series lie in different planes (mixed orientations)"
        )
    spacing = np.asarray(first.pixel_spacing_mm)
    if np.any(spacing <= 0):
        raise ImagingError(ErrorCode.CORRUPT_FILE, "PixelSpacing is not positive")
    if any(np.abs(np.asarray(s.pixel_spacing_mm) - spacing).max() > 1e-4 * spacing.max() for s in slices):
        raise ImagingError(ErrorCode.NON_UNIFORM_SPACING, "the images of the series differ in PixelSpacing")


def _apply_policy(policy: str, code: ErrorCode, message: str, repair: str, warnings: list[str]) -> bool:
    """Raise for `reject`; for `resample` record the warning and say a repair is due."""
    if policy != "resample":
        raise ImagingError(code, message)
    warnings.append(f"{message}; {repair}")
    return True


def plan_stack(slices: Sequence[SliceHeader], options: ReadOptions) -> StackPlan:
    """Sort, deduplicate and check a series' slices; raise what the policies reject."""
    if any(s.n_frames > 1 for s in slices):
        raise ImagingError(
            ErrorCode.UNSUPPORTED_FORMAT, "multi-frame DICOM image without per-frame plane positions"
        )
    if len(slices) == 1 and (slices[0].position_mm is None or slices[0].orientation is None):
        raise ImagingError(ErrorCode.NOT_3D, "a single 2D image, not a volume")
    _check_consistent(slices)
    first = slices[0]
    row_cos = _unit(np.asarray(first.orientation[:3], dtype=np.float64))  # type: ignore[index]
    col_cos = _unit(np.asarray(first.orientation[3:], dtype=np.float64))  # type: ignore[index]
    normal = _unit(np.cross(row_cos, col_cos))
    warnings: list[str] = []

    positions = np.array([s.position_mm for s in slices], dtype=np.float64)  # (n, 3)
    offsets = positions @ normal
    order = sorted(
        range(len(slices)),
        key=lambda i: (
            offsets[i],
            slices[i].instance_number if slices[i].instance_number is not None else 1 << 31,
        ),
    )
    keep = [order[0]]
    for i in order[1:]:
        if offsets[i] - offsets[keep[-1]] >= DUPLICATE_TOLERANCE_MM:
            keep.append(i)
    if len(keep) < len(order):
        warnings.append(
            f"{len(order) - len(keep)} image(s) repeat a slice position already present; "
            "dropped (kept the lowest InstanceNumber)"
        )
    if len(keep) < max(2, options.min_slices):
        raise ImagingError(
            ErrorCode.TOO_FEW_SLICES,
            f"{len(keep)} distinct slice position(s); at least {max(2, options.min_slices)} are needed for a CT volume",
        )
    slices = [slices[i] for i in keep]
    positions, offsets = positions[keep], offsets[keep]

    gaps = np.diff(offsets)
    step = float(np.median(gaps))
    regrid = False
    n_missing = int(np.sum(gaps > options.missing_slice_factor * step))
    if n_missing:
        regrid = _apply_policy(
            options.on_non_uniform,
            ErrorCode.MISSING_SLICES,
            f"{n_missing} gap(s) up to {gaps.max():.2f} mm exceed {options.missing_slice_factor:g} x the median "
            f"slice spacing {step:.2f} mm: slices are missing",
            f"interpolated onto a uniform {step:.2f} mm grid (gaps filled linearly)",
            warnings,
        )
    else:
        deviation = np.abs(gaps - step) / step
        if np.any(deviation > options.spacing_rel_tolerance):
            regrid = _apply_policy(
                options.on_non_uniform,
                ErrorCode.NON_UNIFORM_SPACING,
                f"slice spacing varies from {gaps.min():.3f} to {gaps.max():.3f} mm (median {step:.3f} mm, "
                f"tolerance {options.spacing_rel_tolerance:.0%})",
                f"interpolated onto a uniform {step:.3f} mm grid",
                warnings,
            )

    travel = positions[-1] - positions[0]
    along = float(travel @ normal)
    drift_mm = float(np.linalg.norm(travel - along * normal))
    tilt_deg = float(np.degrees(np.arctan2(drift_mm, abs(along))))
    pixel_spacing = tuple(float(v) for v in first.pixel_spacing_mm)  # type: ignore[union-attr]
    # Tilt matters once the stack drifts sideways by half a pixel over its length.
    shear = drift_mm > 0.5 * min(pixel_spacing)
    if shear:
        shear = _apply_policy(
            options.on_gantry_tilt,
            ErrorCode.GANTRY_TILT,
            f"gantry tilt: slice positions run {tilt_deg:.1f} deg off the slice normal "
            f"(header GantryDetectorTilt {first.gantry_tilt_deg:g} deg)",
            "sheared back onto an orthogonal grid (trilinear)",
            warnings,
        )
    elif abs(first.gantry_tilt_deg) > 1e-3:
        warnings.append(
            f"header declares gantry tilt {first.gantry_tilt_deg:g} deg but slice positions lie along the "
            "normal; read without correction"
        )
    stack_dir = _unit(travel)

    # Obliquity of the grid the volume will be resampled from: with a tilt, the tilted plane
    # is the tilt itself, so only the row direction and the table direction are judged.
    if shear:
        deviation_deg = max(_deviation_of(row_cos), _deviation_of(stack_dir))
    else:
        deviation_deg = max_axis_deviation_deg(np.stack([row_cos, col_cos, normal], axis=1))
    if deviation_deg > options.oblique_tolerance_deg and options.on_oblique != "resample":
        raise ImagingError(
            ErrorCode.OBLIQUE_ORIENTATION,
            f"slices are oblique: {deviation_deg:.1f} deg off the patient axes "
            f"(tolerance {options.oblique_tolerance_deg:g} deg)",
        )
    return StackPlan(
        slices=tuple(slices),
        offsets_mm=offsets,
        row_cos=row_cos,
        col_cos=col_cos,
        normal=normal,
        stack_dir=stack_dir,
        pixel_spacing_mm=pixel_spacing,  # type: ignore[arg-type]
        step_mm=step,
        regrid=regrid,
        tilt_deg=tilt_deg,
        shear=shear,
        warnings=tuple(warnings),
    )


def _deviation_of(v: np.ndarray) -> float:
    """Angle (degrees) between a direction and the patient axis nearest to it."""
    return float(np.degrees(np.arccos(np.clip(np.abs(_unit(v)).max(), 0.0, 1.0))))


def regrid_uniform(voxels: np.ndarray, plan: StackPlan) -> np.ndarray:
    """Linear interpolation along the stack onto offsets first + k * step_mm (in place of gaps)."""
    offsets = plan.offsets_mm
    n_out = int(round((offsets[-1] - offsets[0]) / plan.step_mm)) + 1
    targets = offsets[0] + plan.step_mm * np.arange(n_out)
    upper = np.clip(np.searchsorted(offsets, targets, side="right"), 1, len(offsets) - 1)
    lower = upper - 1
    weight = np.clip((targets - offsets[lower]) / (offsets[upper] - offsets[lower]), 0.0, 1.0)
    out = np.empty((n_out, *voxels.shape[1:]), dtype=np.float32)  # (Z', rows, cols)
    for k in range(n_out):
        w = np.float32(weight[k])
        np.multiply(voxels[lower[k]], 1 - w, out=out[k])
        out[k] += w * voxels[upper[k]]
    return out


def canonicalise(voxels_kji: np.ndarray, plan: StackPlan, options: ReadOptions):
    """Stacked slices (k, row, column) -> (hu_zyx, spacing_mm_zyx, origin_mm, orientation_in, warnings)."""
    row_mm, col_mm = plan.pixel_spacing_mm
    if not plan.shear:
        direction = np.stack([plan.row_cos, plan.col_cos, plan.normal], axis=1)
        return to_canonical(
            voxels_kji,
            direction,
            plan.origin_mm,
            (col_mm, row_mm, plan.step_mm),
            tolerance_deg=options.oblique_tolerance_deg,
            on_oblique=options.on_oblique,
        )
    # Gantry tilt: k runs along the table, one plane every step_mm / cos(tilt) along it (the
    # table increment), which also becomes the output's slice spacing.
    direction = np.stack([plan.row_cos, plan.col_cos, plan.stack_dir], axis=1)
    step_along_stack = plan.step_mm / float(abs(plan.stack_dir @ plan.normal))
    hu, spacing_zyx, origin = resample_to_canonical(
        voxels_kji, direction, plan.origin_mm, (col_mm, row_mm, step_along_stack)
    )
    return hu, spacing_zyx, origin, orientation_code(direction), []
