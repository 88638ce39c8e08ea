"""Enhanced (multi-frame) CT: one file, many slices, geometry in functional group sequences.

Each frame becomes its own `SliceHeader` (same path, `frame` set), so grouping, sorting,
gap and tilt checks treat it exactly like a classic one-file-per-slice series. Per-frame
values win over shared ones (DICOM PS3.3 C.7.6.16); a file without usable plane position
groups is returned as is, and the geometry checks refuse it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from pydicom import dcmread

if TYPE_CHECKING:
    from imaging.dicom.headers import SliceHeader

_GROUP_TAGS = ["SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"]


def _floats(value, n: int) -> tuple[float, ...] | None:
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


def _lookup(items, sequence: str, keyword: str):
    """First value of `keyword` inside `sequence` among `items` (per-frame item first, then shared)."""
    for item in items:
        if item is None:
            continue
        seq = item.get(sequence)
        if seq and keyword in seq[0]:
            return seq[0].get(keyword)
    return None


def expand_frames(header: SliceHeader) -> list[SliceHeader]:
    """One header per frame, positioned from the functional groups; `[header]` if they are unusable."""
    try:
        ds = dcmread(header.path, stop_before_pixels=True, specific_tags=_GROUP_TAGS)
    except Exception:  # noqa: BLE001 - the caller's geometry checks refuse the unexpanded file
        return [header]
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    shared_seq = ds.get("SharedFunctionalGroupsSequence")
    shared = shared_seq[0] if shared_seq else None
    if not per_frame or len(per_frame) != header.n_frames:
        return [header]
    frames = []
    for k, item in enumerate(per_frame):
        sources = (item, shared)
        position = _floats(_lookup(sources, "PlanePositionSequence", "ImagePositionPatient") or (), 3)
        orientation = _floats(
            _lookup(sources, "PlaneOrientationSequence", "ImageOrientationPatient") or (), 6
        )
        spacing = _floats(_lookup(sources, "PixelMeasuresSequence", "PixelSpacing") or (), 2)
        if position is None:
            return [header]
        frames.append(
            replace(
                header,
                position_mm=position,
                orientation=orientation or header.orientation,
                pixel_spacing_mm=spacing or header.pixel_spacing_mm,
                slope=_float(
                    _lookup(sources, "PixelValueTransformationSequence", "RescaleSlope"), header.slope
                ),
                intercept=_float(
                    _lookup(sources, "PixelValueTransformationSequence", "RescaleIntercept"), header.intercept
                ),
                instance_number=k + 1,
                n_frames=1,
                frame=k,
                pixel_offset=None,  # frames are decoded together by pydicom, not by the raw path
            )
        )
    return frames
