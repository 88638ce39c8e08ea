"""Training volumes -> canonical HU arrays, and the raw-vs-HU decision for CT-RATE files.

CT-RATE v1 volumes store scanner values (HU = value * RescaleSlope + RescaleIntercept from
the metadata CSV); v2 volumes (`*_fixed`) are HU already, and applying slope/intercept to
them a second time shifts every voxel by ~ -1024 HU. The file name says which release a
file claims to be; the values say what it is: a chest CT always holds air (lungs, outside
the body, padding outside the reconstruction circle), which is ~ -1000 HU and ~ 0 raw.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctscribe.errors import ErrorCode, ImagingError

# Air sits at -1000 HU; anything this low can only be HU data (raw CT values are >= 0).
HU_AIR_THRESHOLD = -500.0
# Raw data is plausible when its air level, converted with slope/intercept, lands here.
RAW_AIR_RANGE_HU = (-1300.0, -700.0)
# Robust "air level": a low percentile, so a few corrupt voxels cannot decide.
AIR_PERCENTILE = 0.5
_NIFTI_SUFFIX = re.compile(r"\.nii(\.gz)?$")


def volume_stem(path_or_name: str | Path) -> str:
    """`train_1_a_1_fixed.nii.gz` -> `train_1_a_1_fixed`."""
    return _NIFTI_SUFFIX.sub("", Path(path_or_name).name)


def name_rule(path_or_name: str | Path) -> str:
    """What the CT-RATE file name claims: `hu` for v2 `*_fixed` files, `raw` for v1 names."""
    return "hu" if volume_stem(path_or_name).endswith("_fixed") else "raw"


@dataclass(frozen=True)
class ValueStats:
    """Statistics of the stored values (after any NIfTI header scaling) of a few slices."""

    min: float
    air_level: float
    """The AIR_PERCENTILE-th percentile of the sampled values."""
    median: float
    dtype: str
    header_scaling: tuple[float, float] | None
    """(scl_slope, scl_inter) when the header scales the stored integers, else None."""


def _open_nifti(path: Path):
    import nibabel as nib

    try:
        return nib.load(str(path))
    except FileNotFoundError:
        raise ImagingError(ErrorCode.CORRUPT_FILE, f"volume file not found: {path}") from None
    except Exception as exc:  # nibabel raises many types for damaged files
        raise ImagingError(ErrorCode.CORRUPT_FILE, f"cannot read NIfTI {path.name}: {exc}") from None


def value_stats(path: str | Path) -> ValueStats:
    """Read the first and the middle slice along the file's third axis and summarise them.

    The first slice is cheap even in a .nii.gz (no seek through the stream); the middle one
    passes through the lungs of a chest CT.
    """
    path = Path(path)
    img = _open_nifti(path)
    if len(img.shape) < 3:
        raise ImagingError(ErrorCode.NOT_3D, f"{path.name} is not a 3D volume (shape {img.shape})")
    n_k = img.shape[2]
    try:
        slices = [np.asarray(img.dataobj[:, :, k], dtype=np.float32) for k in sorted({0, n_k // 2})]
    except Exception as exc:
        raise ImagingError(ErrorCode.CORRUPT_FILE, f"cannot read the pixels of {path.name}: {exc}") from None
    values = np.concatenate([s.ravel() for s in slices])
    slope, inter = img.header.get_slope_inter()
    scaling = None
    if slope is not None and (slope != 1 or (inter or 0) != 0):
        scaling = (float(slope), float(inter or 0.0))
    return ValueStats(
        min=float(values.min()),
        air_level=float(np.percentile(values, AIR_PERCENTILE)),
        median=float(np.median(values)),
        dtype=str(img.get_data_dtype()),
        header_scaling=scaling,
    )


def value_rule(stats: ValueStats, slope: float, intercept: float) -> tuple[str, str]:
    """(`hu` | `raw` | `unknown`, reason) from the values alone."""
    if stats.air_level <= HU_AIR_THRESHOLD:
        return "hu", f"air level {stats.air_level:.0f} is already in HU (<= {HU_AIR_THRESHOLD:g})"
    converted = stats.air_level * slope + intercept
    lo, hi = RAW_AIR_RANGE_HU
    if stats.min >= 0 and lo <= converted <= hi:
        return "raw", (
            f"values are >= 0 and the air level {stats.air_level:.0f} becomes {converted:.0f} HU "
            f"with slope {slope:g} / intercept {intercept:g}"
        )
    return "unknown", (
        f"air level {stats.air_level:.0f} (min {stats.min:.0f}) is neither HU air nor raw air "
        f"that slope {slope:g} / intercept {intercept:g} map to about -1000 HU"
    )


@dataclass(frozen=True)
class HuDecision:
    hu_source: str
    """`hu` or `raw`: the decision recorded in the manifest."""
    warning: str | None
    evidence: dict


def decide_hu_source(
    path: str | Path, slope: float, intercept: float, *, check_values: bool = True, declared: str | None = None
) -> HuDecision:
    """Decide raw vs HU from the name and (unless disabled) the values; values win on conflict.

    `declared` replaces the name rule when the dataset states its convention (a `ctscribe
    synth` set stores HU under v1-style names); the values are still checked.
    """
    path = Path(path)
    by_name = declared or name_rule(path)
    evidence: dict = {
        "name_rule" if declared is None else "declared": by_name,
        "metadata_slope": slope,
        "metadata_intercept": intercept,
    }
    if not check_values:
        evidence.update(value_rule="not_checked", decided_by="name")
        return HuDecision(by_name, None, evidence)
    stats = value_stats(path)
    by_values, reason = value_rule(stats, slope, intercept)
    evidence.update(
        value_rule=by_values,
        value_reason=reason,
        air_level=stats.air_level,
        min=stats.min,
        dtype=stats.dtype,
        header_scaling=list(stats.header_scaling) if stats.header_scaling else None,
    )
    warning = None
    if by_values == "unknown":
        decided = by_name
        warning = f"{path.name}: cannot confirm raw vs HU from the values ({reason}); using {'the name rule' if declared is None else 'the declared convention'}: {by_name}"
        evidence["decided_by"] = "name"
    elif by_values != by_name:
        decided = by_values
        warning = (
            f"{path.name}: the {'name' if declared is None else 'dataset'} says {by_name!r} but the values say "
            f"{by_values!r} ({reason}); "
            f"trusting the values"
        )
        evidence["decided_by"] = "values"
    else:
        decided = by_values
        evidence["decided_by"] = "name+values"
    evidence["decided"] = decided
    return HuDecision(decided, warning, evidence)


def load_hu(
    path: str | Path,
    *,
    hu_source: str = "hu",
    rescale_slope: float = 1.0,
    rescale_intercept: float = 0.0,
    spacing_mm_zyx: tuple[float, float, float] | None = None,
) -> tuple[np.ndarray, tuple[float, float, float], str]:
    """Load a training volume through `imaging.read_volume` as canonical (z, y, x) HU.

    Returns (hu_zyx float32, spacing_mm_zyx, orientation_in). Slope/intercept are applied
    only for `hu_source == "raw"` (replacing any header scaling); `hu` volumes are read as
    stored. `spacing_mm_zyx` overrides the header's spacing (CT-RATE v1 metadata).
    """
    from imaging.options import ReadOptions
    from imaging.read import read_volume

    if hu_source == "raw":
        options = ReadOptions(rescale_slope=rescale_slope, rescale_intercept=rescale_intercept, on_oblique="resample")
    elif hu_source == "hu":
        options = ReadOptions(on_oblique="resample")
    else:
        raise ValueError(f"hu_source must be 'hu' or 'raw', got {hu_source!r}")
    volume = read_volume(Path(path), options)
    spacing = volume.spacing_mm_zyx
    if spacing_mm_zyx is not None:
        spacing = tuple(float(s) for s in spacing_mm_zyx)
    return volume.hu.astype(np.float32, copy=False), spacing, volume.orientation_in
