"""Group DICOM headers into series and pick the one chest CT volume to read.

Rules, in order: an explicit `ReadOptions.series_uid` (raw UID or its hash) wins; otherwise
image series only, modality CT, no localizers (scouts), then series with at least
`min_slices` images, then ImageType ORIGINAL/PRIMARY/AXIAL preferred, then the most slices. What the rules cannot separate is
`ambiguous_series`, with every candidate listed by hash so the user can pick one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ctscribe.errors import ErrorCode, ImagingError
from imaging.dicom.headers import SliceHeader, read_headers
from imaging.options import ReadOptions
from imaging.volume import SeriesInfo

_PREFERRED_IMAGE_TYPE = ("ORIGINAL", "PRIMARY", "AXIAL")
UID_HASH_CHARS = 12


def uid_hash(uid: str) -> str:
    """Short, stable, non-reversible name for a UID (sha256 hex prefix): safe to print and log."""
    return hashlib.sha256(uid.encode("utf-8")).hexdigest()[:UID_HASH_CHARS]


@dataclass(frozen=True)
class SeriesCandidate:
    """One SeriesInstanceUID's files, as found by the header pass."""

    series_uid: str = field(repr=False)
    """Raw UID: internal only, print `uid_hash`."""
    uid_hash: str
    modality: str
    description: str = field(repr=False)
    """SeriesDescription: free text, shown only with `ReadOptions.show_series_description`."""
    image_type: str
    slices: tuple[SliceHeader, ...] = field(repr=False)

    @property
    def n_slices(self) -> int:
        return sum(s.n_frames for s in self.slices)

    @property
    def is_image(self) -> bool:
        return any(s.is_image for s in self.slices)

    @property
    def is_localizer(self) -> bool:
        return all(s.is_localizer for s in self.slices)

    @property
    def preference(self) -> int:
        """How many of ORIGINAL / PRIMARY / AXIAL its ImageType carries (0..3)."""
        values = {v for s in self.slices for v in s.image_type[:3]}
        return sum(v in values for v in _PREFERRED_IMAGE_TYPE)

    def info(self, show_description: bool = False) -> SeriesInfo:
        return SeriesInfo(
            uid_hash=self.uid_hash,
            modality=self.modality,
            n_slices=self.n_slices if self.is_image else 0,
            image_type=self.image_type,
            description=self.description if show_description else None,
        )


def group_series(headers: Sequence[SliceHeader]) -> list[SeriesCandidate]:
    """One candidate per SeriesInstanceUID, largest first (stable order for listings)."""
    groups: dict[str, list[SliceHeader]] = {}
    for h in headers:
        groups.setdefault(h.series_uid, []).append(h)
    candidates = []
    for uid, slices in groups.items():
        first = slices[0]
        candidates.append(
            SeriesCandidate(
                series_uid=uid,
                uid_hash=uid_hash(uid) if uid else "no-series-uid",
                modality=first.modality,
                description=first.description,
                image_type="\\".join(first.image_type),
                slices=tuple(slices),
            )
        )
    candidates.sort(key=lambda c: (-c.n_slices, c.uid_hash))
    return candidates


def scan_series(files: Sequence[Path]) -> list[SeriesCandidate]:
    """Header pass + grouping, for `inspect`: every series among `files`, no pixels read."""
    return group_series(read_headers(files).headers)


def _listing(candidates: Sequence[SeriesCandidate], options: ReadOptions) -> str:
    def entry(c: SeriesCandidate) -> str:
        description = f"'{c.description}', " if options.show_series_description else ""
        return f"{c.uid_hash} ({c.modality or '?'}, {c.n_slices} images, {description}{c.image_type or '-'})"

    return "; ".join(entry(c) for c in candidates)


def _find_requested(
    candidates: Sequence[SeriesCandidate], requested: str, options: ReadOptions
) -> SeriesCandidate:
    wanted = requested.strip()
    by_uid = [c for c in candidates if c.series_uid == wanted]
    by_hash = [c for c in candidates if len(wanted) >= 6 and c.uid_hash.startswith(wanted.lower())]
    found = by_uid or by_hash
    if len(found) != 1:
        # Echo the hash of what was asked for, never the raw value (it may be a real UID).
        raise ImagingError(
            ErrorCode.NO_SERIES,
            f"requested series (hash {uid_hash(wanted)}) matches {len(found)} of the series found: "
            f"{_listing(candidates, options)}",
        )
    return found[0]


def select_series(candidates: Sequence[SeriesCandidate], options: ReadOptions) -> SeriesCandidate:
    """The series to read, by `options.series_uid` or by the rules in the module docstring."""
    if options.series_uid:
        chosen = _find_requested(candidates, options.series_uid, options)
        if not chosen.is_image:
            raise ImagingError(ErrorCode.NO_SERIES, f"series {chosen.uid_hash} holds no images")
        if chosen.modality != "CT":
            raise ImagingError(
                ErrorCode.NOT_CT, f"series {chosen.uid_hash} is {chosen.modality or 'unknown'}, not CT"
            )
        return chosen

    images = [c for c in candidates if c.is_image]
    if not images:
        raise ImagingError(
            ErrorCode.NO_SERIES, f"no image series among the DICOM files: {_listing(candidates, options)}"
        )
    ct = [c for c in images if c.modality == "CT"]
    if not ct:
        modalities = sorted({c.modality or "unknown" for c in images})
        raise ImagingError(ErrorCode.NOT_CT, f"no CT series; found modality {', '.join(modalities)}")
    volumetric = [c for c in ct if not c.is_localizer]
    if not volumetric:
        raise ImagingError(ErrorCode.NOT_3D, "only CT localizer (scout) images, no cross-sectional series")

    # A stack long enough to read beats a preferred ImageType on two slices.
    def rank(c: SeriesCandidate) -> tuple[bool, int, int]:
        return (c.n_slices >= options.min_slices, c.preference, c.n_slices)

    best_key = max(rank(c) for c in volumetric)
    best = [c for c in volumetric if rank(c) == best_key]
    if len(best) > 1:
        raise ImagingError(
            ErrorCode.AMBIGUOUS_SERIES,
            f"{len(best)} CT series are equally good; pick one with --series <hash>: {_listing(best, options)}",
        )
    return best[0]
