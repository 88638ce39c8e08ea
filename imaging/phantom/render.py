"""Renders a case into Hounsfield units: tissues, findings, partial volume and noise.

Order matters: later paint wins. The chest wall, abdomen and lungs come first, findings
inside the lung next, then the pleural fluid, the mediastinal organs (and the findings on
them), bones and finally devices. The noiseless image is blurred by the scanner's
point-spread function (partial volume at every edge), then correlated Gaussian noise is
added. Randomness is split so that removing one finding changes only its own voxels: the
noise and lung texture come from the render seed, each finding's texture from its own seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from imaging.phantom import anatomy as A
from imaging.phantom.anatomy import Anatomy
from imaging.phantom.config import PhantomConfig
from imaging.phantom.geometry import Grid, paint, smooth_field, tube

# Tissue values (HU) before blur and noise.
HU = {
    "air": -1000.0,
    "lung": -860.0,
    "fat": -100.0,
    "muscle": 45.0,
    "soft": 35.0,
    "liver": 58.0,
    "spleen": 48.0,
    "fluid": 12.0,
    "blood": 40.0,
    "blood_contrast": 250.0,
    "myocardium_contrast": 110.0,
    "cortex": 1000.0,
    "marrow": 230.0,
    "disc": 85.0,
    "csf": 12.0,
}
HU_MIN, HU_MAX = -1024.0, 3071.0


@dataclass
class RenderContext:
    """What finding painters need: the image being painted, the grid and the case's anatomy."""

    hu: np.ndarray
    grid: Grid
    anatomy: Anatomy
    mesh: tuple[np.ndarray, np.ndarray, np.ndarray]
    lungs: dict[str, np.ndarray]
    blood_hu: float


def _paint_body(hu: np.ndarray, anat: Anatomy, X, Y, Z) -> None:
    depth = anat.depth_mm(X, Y)  # (1, ny, nx)
    cavity = anat.cavity_depth_mm(X, Y) > 0
    below = Z <= anat.diaphragm_z_mm(X, Y)  # (nz, ny, nx)
    hu[...] = np.where(depth > 0, HU["fat"], HU["air"])
    hu[np.broadcast_to((depth > anat.p.fat_mm) & ~cavity, hu.shape)] = HU["muscle"]
    hu[np.broadcast_to(cavity, hu.shape) & ~below] = HU["fat"]  # mediastinal fat, lungs come later
    abdomen = np.broadcast_to(cavity, hu.shape) & below
    hu[abdomen] = HU["soft"]
    hu[abdomen & np.broadcast_to(X < 15.0, hu.shape)] = HU["liver"]
    stomach = A.ellipsoid_norm(X, Y, Z, (62.0, -5.0, -108.0), (38.0, 34.0, 26.0)) <= 1.0
    hu[stomach & abdomen] = HU["fluid"]
    gas = (
        stomach
        & abdomen
        & (A.ellipsoid_norm(X, Y, Z, (62.0, -5.0, -108.0), (33.0, 29.0, 21.0)) <= 1.0)
        & (Y < -12.0)
    )
    hu[gas] = HU["air"]  # supine: gastric air rises anteriorly
    spleen = A.ellipsoid_norm(X, Y, Z, (80.0, 50.0, -100.0), (22.0, 30.0, 35.0)) <= 1.0
    hu[spleen & abdomen] = HU["spleen"]


def _paint_lungs(ctx: RenderContext, texture_rng: np.random.Generator) -> None:
    hu, anat = ctx.hu, ctx.anatomy
    X, Y, Z = ctx.mesh
    # Dependent (posterior) lung is denser in a supine patient: about +40 HU front to back.
    gradient = 40.0 * np.clip((Y - anat.p.body_centre_y_mm + 80.0) / 160.0, 0.0, 1.0)
    texture = 12.0 * smooth_field(texture_rng, hu.shape, (2, 3, 3))
    parenchyma = (HU["lung"] + gradient + texture).astype(np.float32)
    for lung in ctx.lungs.values():
        hu[lung] = parenchyma[lung]
    # Pulmonary vessels: tapering branches from each hilum towards the periphery.
    for side, hilum in A.HILUM_XYZ.items():
        sign = -1.0 if side == "right" else 1.0
        for k in range(9):
            angle = -np.pi / 2 + np.pi * k / 8  # fan from superior to inferior
            direction = np.array(
                [sign * 0.8, texture_rng.uniform(-0.6, 0.6), 1.3 * np.sin(angle)], np.float32
            )
            direction /= np.linalg.norm(direction)
            mid = np.asarray(hilum, np.float32) + 35.0 * direction
            end = mid + 40.0 * direction + texture_rng.uniform(-12, 12, 3).astype(np.float32)
            paint(hu, tube(ctx.grid, hilum, mid, 3.5), ctx.blood_hu, within=ctx.lungs[side])
            paint(hu, tube(ctx.grid, mid, end, 2.0), ctx.blood_hu, within=ctx.lungs[side])


def _paint_heart(ctx: RenderContext, contrast: bool) -> None:
    hu, anat = ctx.hu, ctx.anatomy
    X, Y, Z = ctx.mesh
    hu[anat.heart_norm(X, Y, Z, extra_mm=3.0) <= 1.0] = HU["fat"]  # epicardial fat
    heart = anat.heart_norm(X, Y, Z) <= 1.0
    if contrast:
        hu[heart] = HU["myocardium_contrast"]
        hu[anat.heart_norm(X, Y, Z, extra_mm=-9.0) <= 1.0] = HU["blood_contrast"]
    else:
        hu[heart] = HU["blood"]


def _paint_great_vessels(ctx: RenderContext) -> None:
    hu, anat = ctx.hu, ctx.anatomy
    X, Y, Z = ctx.mesh
    hu[anat.aorta(X, Y, Z)] = ctx.blood_hu
    hu[anat.svc(X, Y, Z)] = ctx.blood_hu


def _paint_airway_esophagus(ctx: RenderContext) -> None:
    hu, anat = ctx.hu, ctx.anatomy
    X, Y, Z = ctx.mesh
    esophagus = anat.esophagus(X, Y, Z)
    hu[esophagus] = HU["muscle"]
    lumen = ((X - A.ESOPHAGUS_XY[0]) ** 2 + (Y - A.ESOPHAGUS_XY[1]) ** 2 <= 2.5**2) & esophagus
    hu[lumen] = HU["air"]
    hu[anat.airway(X, Y, Z)] = HU["air"]


def _paint_bones(ctx: RenderContext) -> None:
    hu, anat = ctx.hu, ctx.anatomy
    X, Y, Z = ctx.mesh
    full = hu.shape
    # Vertebrae: bodies separated by discs, a canal and the posterior arch behind.
    in_disc = np.mod(Z - anat.p.vertebra_phase_mm, A.VERTEBRA_PERIOD_MM) < A.DISC_HEIGHT_MM  # (nz, 1, 1)
    r_body = np.sqrt((X - A.SPINE_CENTRE_XY[0]) ** 2 + (Y - A.SPINE_CENTRE_XY[1]) ** 2)
    body = np.broadcast_to(r_body <= A.VERTEBRA_RADIUS_MM, full)
    cortex = np.broadcast_to(r_body > A.VERTEBRA_RADIUS_MM - 3.5, full)
    hu[body & ~in_disc] = HU["marrow"]
    hu[body & cortex & ~in_disc] = HU["cortex"]
    hu[body & in_disc] = HU["disc"]
    r_canal = np.sqrt((X - A.CANAL_CENTRE_XY[0]) ** 2 + (Y - A.CANAL_CENTRE_XY[1]) ** 2)
    arch = (r_canal <= A.CANAL_RADIUS_MM + 6.0) | (
        (np.abs(X) <= 4.0) & (Y > A.CANAL_CENTRE_XY[1]) & (Y < A.CANAL_CENTRE_XY[1] + 28.0)
    )
    arch = arch & (anat.depth_mm(X, Y) > anat.p.fat_mm + 3.0)
    hu[np.broadcast_to(arch, full) & ~in_disc] = 700.0
    hu[np.broadcast_to(r_canal <= A.CANAL_RADIUS_MM, full)] = HU["csf"]
    # Ribs: bands in the rib zone that run lower anteriorly, absent at the midlines.
    depth = anat.depth_mm(X, Y)
    wall = anat.p.fat_mm + anat.muscle_mm(X, Y)
    in_zone = (depth > wall) & (depth <= wall + A.RIB_ZONE_MM)
    sine = anat.posterior_sine(X, Y)
    midline = (np.abs(X) < A.STERNUM_HALF_WIDTH_MM + 10.0) & (sine < 0) | (np.abs(X) < 22.0) & (sine > 0)
    drop = A.RIB_ANTERIOR_DROP_MM * (1.0 - sine) / 2.0  # 0 at the back, full at the front
    phase = np.mod(Z + drop - anat.p.rib_phase_mm, A.RIB_PERIOD_MM)
    dz_edge = A.RIB_HALF_HEIGHT_MM - np.abs(phase - A.RIB_PERIOD_MM / 2)
    rib = (dz_edge > 0) & (in_zone & ~midline) & (Z > -100.0) & (Z < 105.0)
    r_edge = np.minimum(depth - wall, wall + A.RIB_ZONE_MM - depth)
    edge = np.minimum(dz_edge, r_edge)
    hu[rib] = np.where(edge < 3.0, HU["cortex"], HU["marrow"])[rib]
    # Sternum: anterior midline plate in the chest-wall muscle layer.
    sternum = (
        (np.abs(X) <= A.STERNUM_HALF_WIDTH_MM) & (sine < 0) & (depth > anat.p.fat_mm) & (depth <= wall + 4.0)
    )
    sternum = sternum & (Z >= A.STERNUM_Z_RANGE_MM[0]) & (Z <= A.STERNUM_Z_RANGE_MM[1])
    s_edge = np.minimum(
        np.minimum(depth - anat.p.fat_mm, wall + 4.0 - depth), A.STERNUM_HALF_WIDTH_MM - np.abs(X)
    )
    hu[sternum] = np.broadcast_to(np.where(s_edge < 3.0, HU["cortex"], HU["marrow"]), full)[sternum]


def render_hu(
    grid: Grid, anat: Anatomy, findings, cfg: PhantomConfig, render_seed: np.random.SeedSequence
) -> np.ndarray:
    """The case as a float32 (z, y, x) HU array."""
    from imaging.phantom import lesions as F  # the painters, by stage

    noise_rng, texture_rng = (np.random.default_rng(s) for s in render_seed.spawn(2))
    shape = grid.shape_zyx
    # Noise is drawn first so that it is identical with and without any finding.
    white = noise_rng.standard_normal(shape, dtype=np.float32)
    X, Y, Z = grid.mesh()
    hu = np.empty(shape, np.float32)
    _paint_body(hu, anat, X, Y, Z)
    lungs = anat.lungs(X, Y, Z)
    blood = HU["blood_contrast"] if cfg.contrast_enhanced else HU["blood"]
    ctx = RenderContext(hu=hu, grid=grid, anatomy=anat, mesh=(X, Y, Z), lungs=lungs, blood_hu=blood)
    _paint_lungs(ctx, texture_rng)
    F.paint_stage("lung", ctx, findings)
    F.paint_stage("pleura", ctx, findings)
    _paint_heart(ctx, cfg.contrast_enhanced)
    F.paint_stage("heart", ctx, findings)
    F.paint_stage("mediastinum", ctx, findings)  # nodes: before vessels and airway
    _paint_great_vessels(ctx)
    F.paint_stage("vessels", ctx, findings)
    _paint_airway_esophagus(ctx)
    F.paint_stage("hernia", ctx, findings)
    _paint_bones(ctx)
    F.paint_stage("devices", ctx, findings)

    sz, sy, sx = grid.spacing_mm_zyx
    psf = [cfg.psf_sigma_mm / s for s in (sz, sy, sx)]
    image = ndimage.gaussian_filter(hu, psf, mode="nearest")
    corr = cfg.noise_correlation_mm
    noise = ndimage.gaussian_filter(white, [0.0, corr / sy, corr / sx], mode="wrap")
    # float64 reductions: the scale factor does not depend on the CPU's SIMD summation order.
    noise *= np.float32(anat.p.noise_sigma_hu / (float(noise.std(dtype=np.float64)) + 1e-6))
    image += noise
    np.clip(image, HU_MIN, HU_MAX, out=image)
    return image
