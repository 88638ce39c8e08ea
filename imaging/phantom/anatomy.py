"""The normal chest as analytic shapes in patient millimetres (LPS, origin at the FOV centre).

All positions are in mm: +x patient Left, +y Posterior, +z Superior. The patient's RIGHT
lung therefore lies at NEGATIVE x (low x index), the heart is shifted to positive x (the
patient's left), and the spine is posterior (positive y). Every shape is a function of
broadcastable coordinate arrays (see `geometry`), so the same code samples points for
finding placement and masks the whole grid for rendering.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imaging.phantom.geometry import ellipsoid_norm, segment_distance

# Fixed anatomy (mm). Chosen to resemble an adult chest: ~300 x 230 mm body, ~225 mm wide
# thoracic cavity, heart ~100 mm wide (cardiothoracic ratio ~0.45).
RIB_ZONE_MM = 12.0  # ribs + intercostal muscle between chest-wall muscle and pleura
RIB_PERIOD_MM = 26.0  # cranio-caudal spacing of consecutive ribs
RIB_HALF_HEIGHT_MM = 5.0
RIB_ANTERIOR_DROP_MM = 110.0  # ribs run downwards from back to front
PARASPINAL_EXTRA_MM = 25.0  # extra muscle thickness at the posterior midline
MEDIASTINUM_X_MM = 3.0  # centre of the mediastinal slab between the lungs
MEDIASTINUM_HALF_WIDTH_MM = 24.0
LUNG_CENTRE_X_MM = 60.0  # |x| of each lung's apex axis
LUNG_APEX_Z_MM = 112.0
LUNG_CAP_BASE_Z_MM = 20.0  # above this the lungs narrow towards the apex
LUNG_CAP_RADIUS_MM = 72.0
SPINE_CENTRE_XY = (0.0, 62.0)
VERTEBRA_RADIUS_MM = 17.0
VERTEBRA_PERIOD_MM = 28.0
DISC_HEIGHT_MM = 6.0
CANAL_CENTRE_XY = (0.0, 88.0)
CANAL_RADIUS_MM = 7.0
TRACHEA_XY = (0.0, 15.0)
TRACHEA_RADIUS_MM = 9.0
CARINA_Z_MM = 25.0
BRONCHUS_END = {"right": (-38.0, 20.0, 2.0), "left": (40.0, 22.0, -4.0)}
BRONCHUS_RADIUS_MM = 6.5
ESOPHAGUS_XY = (3.0, 38.0)
ESOPHAGUS_RADIUS_MM = 8.0
SVC_XY = (-22.0, -12.0)
SVC_RADIUS_MM = 10.0
SVC_BOTTOM_Z_MM = -15.0
AORTA_ASC_XY = (5.0, -20.0)
AORTA_DESC_XY = (30.0, 50.0)
AORTA_ARCH_Z_MM = 45.0
AORTA_ASC_BOTTOM_Z_MM = -25.0
AORTA_RADII_MM = {"ascending": 15.0, "arch": 13.0, "descending": 12.0}
STERNUM_HALF_WIDTH_MM = 16.0
STERNUM_Z_RANGE_MM = (-75.0, 85.0)
HILUM_XYZ = {"right": (-45.0, 12.0, 0.0), "left": (47.0, 14.0, -4.0)}
FISSURE_Z0_MM = -10.0  # oblique fissure height at the body centre line (y = yc)
FISSURE_SLOPE = 0.75  # rises posteriorly: lower lobes are posterior-inferior
MINOR_FISSURE_Z_MM = -5.0
HERNIA_CENTRE_XYZ = (0.0, 30.0, -62.0)
HERNIA_SEMI_AXES_MM = (20.0, 15.0, 20.0)

LOBES: tuple[str, ...] = ("right upper", "right middle", "right lower", "left upper", "left lower")


@dataclass(frozen=True)
class AnatomyParams:
    """Per-case variation of the normal chest (mm unless stated)."""

    body_semi_axes_mm: tuple[float, float]
    """Half width (x) and half depth (y) of the elliptical body outline."""
    body_centre_y_mm: float
    """y of the body outline's centre (the ray origin for tissue depth)."""
    fat_mm: float
    """Subcutaneous fat thickness."""
    muscle_mm: float
    """Chest-wall muscle thickness (more at the posterior midline)."""
    heart_centre_mm: tuple[float, float, float]
    """Centre (x, y, z) of the normal heart ellipsoid; x > 0: shifted to the patient's left."""
    heart_semi_axes_mm: tuple[float, float, float]
    """Semi-axes (x, y, z) of the normal heart ellipsoid."""
    diaphragm_peak_z_mm: tuple[float, float]
    """Dome heights (right, left); the right dome sits higher, over the liver."""
    rib_phase_mm: float
    """Cranio-caudal offset of the rib pattern."""
    vertebra_phase_mm: float
    """Cranio-caudal offset of the vertebra/disc pattern."""
    noise_sigma_hu: float
    """Standard deviation of the image noise in HU."""


def sample_anatomy(rng: np.random.Generator, noise_sigma_hu: tuple[float, float]) -> AnatomyParams:
    scale = float(rng.uniform(0.93, 1.05))
    return AnatomyParams(
        body_semi_axes_mm=(round(150.0 * scale, 2), round(115.0 * scale, 2)),
        body_centre_y_mm=5.0,
        fat_mm=round(float(rng.uniform(8.0, 22.0)), 2),
        muscle_mm=12.0,
        heart_centre_mm=(25.0, -15.0, -35.0),
        heart_semi_axes_mm=tuple(round(a * float(rng.uniform(0.95, 1.05)), 2) for a in (50.0, 45.0, 48.0)),  # type: ignore[arg-type]
        diaphragm_peak_z_mm=(-55.0 + float(rng.uniform(-6, 6)), -65.0 + float(rng.uniform(-6, 6))),
        rib_phase_mm=round(float(rng.uniform(0, RIB_PERIOD_MM)), 2),
        vertebra_phase_mm=round(float(rng.uniform(0, VERTEBRA_PERIOD_MM)), 2),
        noise_sigma_hu=round(float(rng.uniform(*noise_sigma_hu)), 2),
    )


class Anatomy:
    """Shape functions of one case; `heart_scale` > 1 draws cardiomegaly, `pericardial_mm` a
    pericardial effusion rim, `hernia` a hiatal hernia (all kept out of the lungs)."""

    def __init__(
        self,
        params: AnatomyParams,
        heart_scale=(1.0, 1.0, 1.0),
        pericardial_mm: float = 0.0,
        hernia: bool = False,
    ):
        self.p = params
        self.heart_axes = tuple(a * s for a, s in zip(params.heart_semi_axes_mm, heart_scale, strict=True))
        self.pericardial_mm = pericardial_mm
        self.hernia = hernia

    # --- body wall -------------------------------------------------------------------
    def depth_mm(self, X, Y):
        """Depth below the skin along the ray from the body centre (< 0 outside the body)."""
        a, b = self.p.body_semi_axes_mm
        dy = Y - self.p.body_centre_y_mm
        r = np.sqrt(X**2 + dy**2)
        denom = np.sqrt((b * X) ** 2 + (a * dy) ** 2)
        # Polar radius of the ellipse in the ray's direction; the centre itself is deepest.
        radius = np.where(denom > 1e-6, a * b * r / np.maximum(denom, 1e-6), min(a, b))
        return radius - r

    def posterior_sine(self, X, Y):
        dy = Y - self.p.body_centre_y_mm
        return dy / np.maximum(np.sqrt(X**2 + dy**2), 1e-6)

    def muscle_mm(self, X, Y):
        # Paraspinal muscles: thick only near the posterior midline.
        return self.p.muscle_mm + PARASPINAL_EXTRA_MM * np.clip(self.posterior_sine(X, Y), 0, 1) ** 8

    def cavity_depth_mm(self, X, Y):
        """Depth inside the pleural/mediastinal cavity (> 0 inside)."""
        return self.depth_mm(X, Y) - self.p.fat_mm - self.muscle_mm(X, Y) - RIB_ZONE_MM

    def diaphragm_z_mm(self, X, Y):
        """Height of the diaphragm: two domes, lower at the periphery and posteriorly."""
        right = X < 0
        peak = np.where(right, self.p.diaphragm_peak_z_mm[0], self.p.diaphragm_peak_z_mm[1])
        dome_x = np.where(right, -55.0, 55.0)
        rho2 = ((X - dome_x) / 75.0) ** 2 + ((Y + 5.0) / 80.0) ** 2
        return peak - 45.0 * np.minimum(rho2, 1.6)

    # --- mediastinum -----------------------------------------------------------------
    def heart_norm(self, X, Y, Z, extra_mm: float = 0.0):
        axes = tuple(a + extra_mm for a in self.heart_axes)
        return ellipsoid_norm(X, Y, Z, self.p.heart_centre_mm, axes)

    def aorta_parts(self, X, Y, Z):
        """Distances (mm) to the ascending, arch and descending centre lines (inf where absent)."""
        inf = np.float32(np.inf)
        ax, ay = AORTA_ASC_XY
        dx_, dy_ = AORTA_DESC_XY
        asc = np.where(
            (Z >= AORTA_ASC_BOTTOM_Z_MM) & (Z <= AORTA_ARCH_Z_MM), np.sqrt((X - ax) ** 2 + (Y - ay) ** 2), inf
        )
        arch_yc = (ay + dy_) / 2
        arch_r = (dy_ - ay) / 2
        arch_x = ax + (dx_ - ax) * np.clip((Y - ay) / (arch_r * 1.0), 0.0, 1.0)
        ring = np.sqrt((Y - arch_yc) ** 2 + (Z - AORTA_ARCH_Z_MM) ** 2) - arch_r
        arch = np.where(Z >= AORTA_ARCH_Z_MM, np.sqrt(ring**2 + (X - arch_x) ** 2), inf)
        desc = np.where(Z <= AORTA_ARCH_Z_MM, np.sqrt((X - dx_) ** 2 + (Y - dy_) ** 2), inf)
        return {"ascending": asc, "arch": arch, "descending": desc}

    def aorta(self, X, Y, Z, extra_mm: float = 0.0):
        parts = self.aorta_parts(X, Y, Z)
        return np.logical_or.reduce([parts[k] <= AORTA_RADII_MM[k] + extra_mm for k in parts])

    def aorta_centreline(self, part: str, t: float) -> tuple[float, float, float]:
        """A point on the aortic centre line; t in [0, 1] along the part (used to place plaques)."""
        ax, ay = AORTA_ASC_XY
        dx_, dy_ = AORTA_DESC_XY
        if part == "ascending":
            return (ax, ay, AORTA_ASC_BOTTOM_Z_MM + t * (AORTA_ARCH_Z_MM - AORTA_ASC_BOTTOM_Z_MM))
        if part == "arch":
            angle = np.pi * (1.0 - t)  # from the ascending (anterior) to the descending end
            arch_r = (dy_ - ay) / 2
            y = (ay + dy_) / 2 - arch_r * np.cos(angle)
            x = ax + (dx_ - ax) * float(np.clip((y - ay) / arch_r, 0, 1))
            return (x, float(y), AORTA_ARCH_Z_MM + arch_r * float(np.sin(angle)))
        return (dx_, dy_, AORTA_ARCH_Z_MM - t * 120.0)

    def svc(self, X, Y, Z, extra_mm: float = 0.0):
        return ((X - SVC_XY[0]) ** 2 + (Y - SVC_XY[1]) ** 2 <= (SVC_RADIUS_MM + extra_mm) ** 2) & (
            Z >= SVC_BOTTOM_Z_MM
        )

    def esophagus(self, X, Y, Z, extra_mm: float = 0.0):
        inside = (X - ESOPHAGUS_XY[0]) ** 2 + (Y - ESOPHAGUS_XY[1]) ** 2 <= (
            ESOPHAGUS_RADIUS_MM + extra_mm
        ) ** 2
        return inside & (Z >= self.diaphragm_z_mm(X, Y) - 10.0)

    def vertebral_body(self, X, Y, Z, extra_mm: float = 0.0):
        r2 = (X - SPINE_CENTRE_XY[0]) ** 2 + (Y - SPINE_CENTRE_XY[1]) ** 2
        return (r2 <= (VERTEBRA_RADIUS_MM + extra_mm) ** 2) & (Z == Z)

    def hernia_norm(self, X, Y, Z):
        return ellipsoid_norm(X, Y, Z, HERNIA_CENTRE_XYZ, HERNIA_SEMI_AXES_MM)

    def airway(self, X, Y, Z):
        trachea = ((X - TRACHEA_XY[0]) ** 2 + (Y - TRACHEA_XY[1]) ** 2 <= TRACHEA_RADIUS_MM**2) & (
            Z >= CARINA_Z_MM
        )
        carina = (TRACHEA_XY[0], TRACHEA_XY[1], CARINA_Z_MM)
        bronchi = [
            segment_distance(X, Y, Z, carina, end) <= BRONCHUS_RADIUS_MM for end in BRONCHUS_END.values()
        ]
        return trachea | bronchi[0] | bronchi[1]

    # --- lungs -----------------------------------------------------------------------
    def lung_envelope(self, side: str, X, Y, Z):
        """The hemithorax the lung (and a pleural effusion) may occupy, before mediastinal organs."""
        sign = -1.0 if side == "right" else 1.0
        on_side = (X - MEDIASTINUM_X_MM) * sign > MEDIASTINUM_HALF_WIDTH_MM
        cap = (
            (X - sign * LUNG_CENTRE_X_MM) ** 2 + (Y - self.p.body_centre_y_mm) ** 2
        ) / LUNG_CAP_RADIUS_MM**2
        height = np.clip((Z - LUNG_CAP_BASE_Z_MM) / (LUNG_APEX_Z_MM - LUNG_CAP_BASE_Z_MM), 0, None)
        below_apex = cap <= 1.0 - height**2
        return on_side & below_apex & (self.cavity_depth_mm(X, Y) > 0) & (Z > self.diaphragm_z_mm(X, Y))

    def mediastinal_organs(self, X, Y, Z, margin_mm: float = 3.0):
        """Organs that displace lung, dilated by a pleural margin."""
        organs = (
            (self.heart_norm(X, Y, Z, extra_mm=self.pericardial_mm + margin_mm) <= 1.0)
            | self.aorta(X, Y, Z, extra_mm=margin_mm)
            | self.svc(X, Y, Z, extra_mm=margin_mm)
            | self.esophagus(X, Y, Z, extra_mm=margin_mm)
            | self.vertebral_body(X, Y, Z, extra_mm=margin_mm)
        )
        if self.hernia:
            organs = organs | (self.hernia_norm(X, Y, Z) <= (1.0 + margin_mm / min(HERNIA_SEMI_AXES_MM)) ** 2)
        return organs

    def lung(self, side: str, X, Y, Z):
        return self.lung_envelope(side, X, Y, Z) & ~self.mediastinal_organs(X, Y, Z)

    def lungs(self, X, Y, Z) -> dict[str, np.ndarray]:
        """Both lungs at once (the mediastinal organs are computed once)."""
        free = ~self.mediastinal_organs(X, Y, Z)
        return {side: self.lung_envelope(side, X, Y, Z) & free for side in ("right", "left")}

    def lobe_region(self, lobe: str, X, Y, Z):
        """The lobe's part of the lung, from the oblique and (right) minor fissures."""
        side, level = lobe.split()
        below_oblique = Z < FISSURE_Z0_MM + FISSURE_SLOPE * (Y - self.p.body_centre_y_mm)
        if level == "lower":
            part = below_oblique
        elif side == "left":
            part = ~below_oblique
        elif level == "middle":
            part = ~below_oblique & (Z < MINOR_FISSURE_Z_MM)
        else:
            part = ~below_oblique & (Z >= MINOR_FISSURE_Z_MM)
        return part

    def lobe(self, lobe: str, X, Y, Z):
        return self.lung(lobe.split()[0], X, Y, Z) & self.lobe_region(lobe, X, Y, Z)
