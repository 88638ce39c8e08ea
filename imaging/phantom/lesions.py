"""Painters that draw each finding into the HU image, grouped by render stage (see `render`)."""

from __future__ import annotations

import numpy as np

from imaging.phantom import anatomy as A
from imaging.phantom.findings import Finding, effusion_region
from imaging.phantom.geometry import ball, paint, smooth_field, tube

LESION_HU = {
    "emphysema": -975.0,
    "ground_glass": -600.0,
    "consolidation": 35.0,
    "atelectasis": 25.0,
    "nodule": 35.0,
    "effusion": 12.0,
    "pericardial_fluid": 10.0,
    "node": 42.0,
    "hernia_wall": 45.0,
    "calcification": 800.0,
    "metal": 3000.0,
    "port_chamber": 1800.0,
    "catheter": 2500.0,
}


def _sub(mesh, sl):
    X, Y, Z = mesh
    return X[:, :, sl[2]], Y[:, sl[1], :], Z[sl[0]]


def _lobe_ball(ctx, f: Finding, radius_mm: float):
    """(slices, inside) of the ball around the finding's centre, clipped to its lobe."""
    region = ball(ctx.grid, f.details["centre_mm_xyz"], radius_mm)
    if region is None:
        return None
    sl, inside = region
    lobe = f.details["lobe"]
    X, Y, Z = _sub(ctx.mesh, sl)
    return sl, inside & ctx.lungs[lobe.split()[0]][sl] & ctx.anatomy.lobe_region(lobe, X, Y, Z)


def _emphysema(ctx, f: Finding) -> None:
    rng = np.random.default_rng(f.details["texture_seed"])
    blobs = smooth_field(rng, ctx.hu.shape, (1.5, 2.5, 2.5))
    Z = ctx.mesh[2]
    upper = np.clip((Z + 40.0) / 120.0, 0.25, 1.0)  # centrilobular emphysema: upper zones first
    threshold = 1.2 if f.details["severity"] == "mild" else 0.8
    low = (blobs * upper > threshold) & (ctx.lungs["right"] | ctx.lungs["left"])
    ctx.hu[low] = LESION_HU["emphysema"]


def _lung_opacity(ctx, f: Finding) -> None:
    region = _lobe_ball(ctx, f, f.details["radius_mm"])
    if region is None:
        return
    sl, inside = region
    rng = np.random.default_rng(f.details["texture_seed"])
    patchy = np.random.default_rng(rng.integers(2**31)).standard_normal(inside.shape).astype(np.float32)
    ctx.hu[sl][inside] = (LESION_HU["ground_glass"] + 40.0 * patchy)[inside]


def _consolidation(ctx, f: Finding) -> None:
    region = _lobe_ball(ctx, f, f.details["radius_mm"])
    if region is None:
        return
    sl, inside = region
    ctx.hu[sl][inside] = LESION_HU["consolidation"]
    # An air bronchogram running from the hilum side through the consolidation.
    side = f.details["lobe"].split()[0]
    c = np.asarray(f.details["centre_mm_xyz"], np.float32)
    towards_hilum = np.asarray(A.HILUM_XYZ[side], np.float32) - c
    towards_hilum /= np.linalg.norm(towards_hilum) + 1e-6
    r = f.details["radius_mm"]
    consolidated = np.zeros(ctx.hu.shape, bool)
    consolidated[sl] = inside
    paint(
        ctx.hu,
        tube(ctx.grid, c + 0.8 * r * towards_hilum, c - 0.6 * r * towards_hilum, 1.8),
        -900.0,
        within=consolidated,
    )


def _atelectasis(ctx, f: Finding) -> None:
    cx, cy, cz = f.details["centre_mm_xyz"]
    hx, hz = f.details["half_extent_mm_xz"]
    half_t = f.details["thickness_mm"] / 2
    found = ctx.grid.box((cx - hx, cy - half_t, cz - hz), (cx + hx, cy + half_t, cz + hz))
    if found is None:
        return
    sl, (X, Y, Z) = found
    lobe = f.details["lobe"]
    # A plate perpendicular to y: a band across the lung on every axial slice it crosses.
    inside = ctx.lungs[lobe.split()[0]][sl] & ctx.anatomy.lobe_region(lobe, X, Y, Z)
    ctx.hu[sl][inside] = LESION_HU["atelectasis"]


def _lung_nodule(ctx, f: Finding) -> None:
    paint(
        ctx.hu,
        ball(ctx.grid, f.details["centre_mm_xyz"], f.details["size_mm"] / 2),
        LESION_HU["nodule"],
        within=ctx.lungs[f.details["side"]],
    )


def _pleural_effusion(ctx, f: Finding) -> None:
    X, Y, Z = ctx.mesh
    for side in f.details["thickness_mm"]:
        fluid = effusion_region(ctx.anatomy, f.details, side, X, Y, Z, lung=ctx.lungs[side])
        ctx.hu[fluid] = LESION_HU["effusion"]


def _pericardial_effusion(ctx, f: Finding) -> None:
    X, Y, Z = ctx.mesh
    anat = ctx.anatomy
    shell = (anat.heart_norm(X, Y, Z, extra_mm=3.0 + f.details["thickness_mm"]) <= 1.0) & (
        anat.heart_norm(X, Y, Z, extra_mm=3.0) > 1.0
    )
    ctx.hu[shell] = LESION_HU["pericardial_fluid"]


def _plaques(ctx, f: Finding) -> None:
    for p in f.details["plaques"]:
        paint(ctx.hu, ball(ctx.grid, p["centre_mm_xyz"], p["radius_mm"]), LESION_HU["calcification"])


def _lymphadenopathy(ctx, f: Finding) -> None:
    for node in f.details["nodes"]:
        paint(ctx.hu, ball(ctx.grid, node["centre_mm_xyz"], node["short_axis_mm"] / 2), LESION_HU["node"])


def _hiatal_hernia(ctx, f: Finding) -> None:
    c = f.details["centre_mm_xyz"]
    axes = np.asarray(f.details["semi_axes_mm"], np.float32)
    found = ctx.grid.box(np.asarray(c) - axes, np.asarray(c) + axes)
    if found is None:
        return
    sl, (X, Y, Z) = found
    outer = A.ellipsoid_norm(X, Y, Z, c, axes) <= 1.0
    inner = A.ellipsoid_norm(X, Y, Z, c, axes - 3.0) <= 1.0
    view = ctx.hu[sl]
    view[outer] = LESION_HU["hernia_wall"]
    view[inner] = LESION_HU["effusion"]  # gastric fluid
    view[inner & (Y < c[1] - 2.0)] = -1000.0  # gastric air rises anteriorly (supine)


def _medical_material(ctx, f: Finding) -> None:
    if f.details["device"] == "sternotomy wires":
        X, Y, Z = ctx.mesh
        anat = ctx.anatomy
        depth = anat.depth_mm(X, Y)
        wall = anat.p.fat_mm + anat.muscle_mm(X, Y)
        # A wire loop around the sternum's cross-section on one slice per level.
        around = (
            (np.abs(X) <= A.STERNUM_HALF_WIDTH_MM + 2.5)
            & (depth > anat.p.fat_mm - 2.5)
            & (depth <= wall + 6.5)
        )
        inner = (np.abs(X) < A.STERNUM_HALF_WIDTH_MM) & (depth > anat.p.fat_mm) & (depth <= wall + 4.0)
        loop = around & ~inner & (Y < anat.p.body_centre_y_mm)
        dz = ctx.grid.spacing_mm_zyx[0] / 2
        for z in f.details["levels_z_mm"]:
            k = int(np.argmin(np.abs(Z[:, 0, 0] - z)))
            if abs(float(Z[k, 0, 0]) - z) <= dz:
                ctx.hu[k][loop[0]] = LESION_HU["metal"]
        return
    path = f.details["path_mm_xyz"]
    paint(ctx.hu, ball(ctx.grid, path[0], 9.0), LESION_HU["port_chamber"])
    for p0, p1 in zip(path[:-1], path[1:], strict=True):
        paint(ctx.hu, tube(ctx.grid, p0, p1, 1.6), LESION_HU["catheter"])


PAINTERS = {
    # stage -> [(kind, painter)] in paint order
    "lung": [
        ("emphysema", _emphysema),
        ("lung_opacity", _lung_opacity),
        ("consolidation", _consolidation),
        ("atelectasis", _atelectasis),
        ("lung_nodule", _lung_nodule),
    ],
    "pleura": [("pleural_effusion", _pleural_effusion)],
    "heart": [("pericardial_effusion", _pericardial_effusion), ("coronary_calcification", _plaques)],
    "mediastinum": [("lymphadenopathy", _lymphadenopathy)],
    "vessels": [("arterial_wall_calcification", _plaques)],
    "hernia": [("hiatal_hernia", _hiatal_hernia)],
    "devices": [("medical_material", _medical_material)],
}


def paint_stage(stage: str, ctx, findings) -> None:
    by_kind = {f.kind: f for f in findings}
    for kind, painter in PAINTERS[stage]:
        if kind in by_kind:
            painter(ctx, by_kind[kind])
