"""Reader settings: what to reject, what to repair, and the safety caps on inputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

GeometryPolicy = Literal["reject", "resample"]


@dataclass(frozen=True)
class ReadOptions:
    series_uid: str | None = None
    """Pick this DICOM SeriesInstanceUID (raw UID or its uid_hash) instead of by rules."""
    show_series_description: bool = False
    """Put each DICOM series' SeriesDescription in summaries, warnings and error messages.
    Off by default: it is free text that may hold a patient's or a physician's name. The HTTP
    service never sets it; `ctscribe inspect --series-description` does, on the user's own files."""
    min_slices: int = 8
    """Fewer slices than this along any axis (axial, coronal or sagittal) is `too_few_slices`:
    no chest CT report from a scout or a thin stack, whichever way it was acquired."""
    spacing_rel_tolerance: float = 0.05
    """Slice gaps may differ from their median by this fraction before they count as non-uniform."""
    missing_slice_factor: float = 1.5
    """A gap over this many median spacings means slices are missing."""
    on_non_uniform: GeometryPolicy = "reject"
    """`reject` raises non_uniform_spacing / missing_slices; `resample` interpolates onto a
    uniform grid and warns."""
    on_gantry_tilt: GeometryPolicy = "reject"
    """`reject` raises gantry_tilt; `resample` shears the stack back to an orthogonal grid."""
    on_oblique: GeometryPolicy = "reject"
    """`reject` raises oblique_orientation; `resample` rotates onto the nearest canonical axes."""
    oblique_tolerance_deg: float = 3.0
    """Direction cosines within this angle of a canonical axis count as axis-aligned."""
    rescale_slope: float | None = None
    """Override NIfTI scl_slope (e.g. CT-RATE v1 metadata); None keeps the file's."""
    rescale_intercept: float | None = None
    """Override NIfTI scl_inter; None keeps the file's."""
    max_voxels: int = 1024 * 1024 * 1024
    """Volumes with more voxels than this are refused before their pixels are read."""
    max_archive_bytes: int = 4 * 1024**3
    """Total uncompressed size a zip may expand to."""
    max_archive_members: int = 10_000
    max_compression_ratio: float = 200.0
    """Per member and overall; above this a zip is treated as a bomb."""
    max_archive_depth: int = 1
    """Zips inside zips: how many levels are opened (1 = the top zip only)."""
