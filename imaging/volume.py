"""The canonical CT volume every reader returns (DESIGN.md §2)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ctscribe.errors import ErrorCode, ImagingError

PHANTOM_SOURCE_HINT = "ctscribe-phantom"
"""`Volume.meta["source_hint"]` of a ctscribe phantom, however it arrived: rendered in memory,
as NIfTI (header `descrip` = PHANTOM_NIFTI_DESCRIP) or as DICOM (Manufacturer "ctscribe",
ManufacturerModelName "phantom"). Readers set it only when they recognise one."""
PHANTOM_NIFTI_DESCRIP = "ctscribe phantom"
"""The NIfTI header `descrip` the phantom writer sets (imaging/phantom/dataset.py)."""


_PLANE_OF_AXIS = ("axial", "coronal", "sagittal")  # slices across z, y, x


def check_min_slices(shape_zyx, min_slices: int) -> None:
    """`too_few_slices` unless the canonical volume has `min_slices` along every axis.

    A stack of 2 sagittal images is no more a chest CT than 2 axial ones, whichever way the
    file stores it: the rule counts slices in all three planes (NIfTI, NRRD/MHA and DICOM alike).
    """
    for n, plane in zip(shape_zyx, _PLANE_OF_AXIS):
        if int(n) < min_slices:
            raise ImagingError(
                ErrorCode.TOO_FEW_SLICES,
                f"{int(n)} {plane} slices (shape z, y, x = {[int(m) for m in shape_zyx]}); "
                f"at least {min_slices} are needed along every axis",
            )


@dataclass(frozen=True)
class SeriesInfo:
    """One candidate series; identifiers are hashed, never echoed raw."""

    uid_hash: str
    modality: str
    n_slices: int
    image_type: str = ""
    description: str | None = None
    """SeriesDescription (free text that may identify someone): only with
    `ReadOptions.show_series_description`, else None and left out of `to_dict`."""

    def to_dict(self) -> dict:
        out = {
            "uid_hash": self.uid_hash,
            "modality": self.modality,
            "n_slices": self.n_slices,
            "image_type": self.image_type,
        }
        if self.description is not None:
            out["description"] = self.description
        return out


@dataclass
class Volume:
    """A CT in Hounsfield units on canonical axes.

    Array axes are (z, y, x): x towards patient Left, y towards Posterior, z towards
    Superior (DICOM LPS, identity direction); slice 0 is the most inferior.
    """

    hu: np.ndarray
    """(Z, Y, X) float32 Hounsfield units."""
    spacing_mm_zyx: tuple[float, float, float]
    """Voxel size along (z, y, x) in millimetres."""
    origin_mm: tuple[float, float, float]
    """LPS position (x, y, z) in millimetres of voxel [0, 0, 0] after canonicalisation."""
    format: str
    """Source format: nifti | dicom | nrrd | mha."""
    orientation_in: str = "LPS"
    """Orientation code of the source array axes before canonicalisation (e.g. "RAS")."""
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    """Direction cosines of the canonical array (identity once canonicalised)."""
    warnings: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    """Non-identifying acquisition metadata (manufacturer, kernel, kVp, ...); `source_hint` =
    PHANTOM_SOURCE_HINT when the reader recognised a ctscribe phantom."""
    series: SeriesInfo | None = None
    candidates: list[SeriesInfo] = field(default_factory=list)

    @property
    def source_hint(self) -> str:
        """PHANTOM_SOURCE_HINT for a recognised ctscribe phantom, else ""."""
        return str(self.meta.get("source_hint", ""))

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.hu.shape)  # type: ignore[return-value]

    def hu_stats(self) -> dict[str, float]:
        sample = self.hu[:: max(1, self.hu.shape[0] // 64)]
        p1, p99 = np.percentile(sample, [1, 99])
        return {
            "min": float(self.hu.min()),
            "max": float(self.hu.max()),
            "mean": float(self.hu.mean(dtype=np.float64)),
            "p1": float(p1),
            "p99": float(p99),
        }

    def summary(self) -> dict:
        """The `ctscribe inspect --json` document (DESIGN.md §3)."""
        return {
            "format": self.format,
            "shape_zyx": list(self.shape_zyx),
            "spacing_mm_zyx": [float(s) for s in self.spacing_mm_zyx],
            "origin_mm": [float(o) for o in self.origin_mm],
            "orientation_in": self.orientation_in,
            "hu": self.hu_stats(),
            "series": self.series.to_dict() if self.series else None,
            "candidates": [c.to_dict() for c in self.candidates],
            "warnings": list(self.warnings),
        }
