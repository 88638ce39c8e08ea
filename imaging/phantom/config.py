"""Configuration of the synthetic chest CT phantom."""

from __future__ import annotations

from dataclasses import dataclass, field

from ctscribe.errors import ErrorCode, ImagingError

# Finding kinds the phantom can draw, with the CT-RATE label each one sets.
FINDING_LABELS: dict[str, str] = {
    "medical_material": "Medical material",
    "arterial_wall_calcification": "Arterial wall calcification",
    "cardiomegaly": "Cardiomegaly",
    "pericardial_effusion": "Pericardial effusion",
    "coronary_calcification": "Coronary artery wall calcification",
    "hiatal_hernia": "Hiatal hernia",
    "lymphadenopathy": "Lymphadenopathy",
    "emphysema": "Emphysema",
    "atelectasis": "Atelectasis",
    "lung_nodule": "Lung nodule",
    "lung_opacity": "Lung opacity",
    "pleural_effusion": "Pleural effusion",
    "consolidation": "Consolidation",
}
FINDING_KINDS: tuple[str, ...] = tuple(FINDING_LABELS)

# Per-finding probability in a case that is not drawn as all-normal. Chosen so both classes
# of every label appear in a few dozen cases (overall 25-45 % after the all-normal draw), not
# CT-RATE's true prevalence.
DEFAULT_PREVALENCE: tuple[tuple[str, float], ...] = (
    ("medical_material", 0.30),
    ("arterial_wall_calcification", 0.45),
    ("cardiomegaly", 0.35),
    ("pericardial_effusion", 0.30),
    ("coronary_calcification", 0.40),
    ("hiatal_hernia", 0.30),
    ("lymphadenopathy", 0.35),
    ("emphysema", 0.35),
    ("atelectasis", 0.35),
    ("lung_nodule", 0.50),
    ("lung_opacity", 0.35),
    ("pleural_effusion", 0.35),
    ("consolidation", 0.30),
)

# The default grid covers 320 mm in-plane and 256 mm cranio-caudally.
DEFAULT_SHAPE_ZYX = (64, 128, 128)
DEFAULT_SPACING_MM_ZYX = (4.0, 2.5, 2.5)


@dataclass(frozen=True)
class PhantomConfig:
    """Geometry, noise and finding statistics of generated cases."""

    shape_zyx: tuple[int, int, int] = DEFAULT_SHAPE_ZYX
    """Voxel grid (z, y, x); z from inferior to superior, y anterior to posterior, x right to left."""
    spacing_mm_zyx: tuple[float, float, float] = DEFAULT_SPACING_MM_ZYX
    """Voxel size (z, y, x) in millimetres. The anatomy is defined in millimetres, so a
    smaller field of view (shape x spacing) crops the body rather than shrinking it."""
    noise_sigma_hu: tuple[float, float] = (10.0, 20.0)
    """Range (HU) of the per-case standard deviation of the spatially correlated image noise."""
    noise_correlation_mm: float = 1.5
    """Gaussian smoothing (sigma, mm, in-plane) applied to the white noise before scaling."""
    psf_sigma_mm: float = 1.0
    """Scanner point-spread (Gaussian sigma, mm) applied to the noiseless image: partial volume."""
    contrast_enhanced: bool = False
    """Blood at ~250 HU (arterial phase) instead of ~40 HU (unenhanced, as most CT-RATE scans)."""
    normal_fraction: float = 0.15
    """Probability that a case is drawn all-normal before the per-finding draws."""
    prevalence: tuple[tuple[str, float], ...] = field(default=DEFAULT_PREVALENCE)
    """(finding kind, probability) for cases that are not all-normal."""

    def __post_init__(self) -> None:
        if len(self.shape_zyx) != 3 or any(int(n) < 8 for n in self.shape_zyx):
            raise ImagingError(
                ErrorCode.INVALID_REQUEST, f"phantom shape must be 3 sizes >= 8, got {self.shape_zyx}"
            )
        if len(self.spacing_mm_zyx) != 3 or any(not (0.1 <= float(s) <= 20.0) for s in self.spacing_mm_zyx):
            raise ImagingError(
                ErrorCode.INVALID_REQUEST,
                f"phantom spacing must be 3 values in 0.1..20 mm, got {self.spacing_mm_zyx}",
            )
        unknown = [k for k, _ in self.prevalence if k not in FINDING_LABELS]
        if unknown:
            raise ImagingError(ErrorCode.INVALID_REQUEST, f"unknown phantom finding kinds: {unknown}")
        if not 0.0 <= self.normal_fraction <= 1.0:
            raise ImagingError(ErrorCode.INVALID_REQUEST, "normal_fraction must lie in [0, 1]")

    def prevalence_of(self, kind: str) -> float:
        return dict(self.prevalence).get(kind, 0.0)

    @classmethod
    def with_shape(cls, shape_zyx: tuple[int, int, int], **kwargs) -> PhantomConfig:
        """A config whose spacing keeps the default field of view (320 x 320 x 256 mm) at `shape_zyx`."""
        fov = [n * s for n, s in zip(DEFAULT_SHAPE_ZYX, DEFAULT_SPACING_MM_ZYX, strict=True)]
        spacing = tuple(round(f / max(int(n), 1), 4) for f, n in zip(fov, shape_zyx, strict=True))
        return cls(shape_zyx=tuple(int(n) for n in shape_zyx), spacing_mm_zyx=spacing, **kwargs)  # type: ignore[arg-type]
