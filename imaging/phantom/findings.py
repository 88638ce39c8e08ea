"""Abnormal findings: which are present in a case, where, and how large.

Each finding is drawn from its own random stream (one per kind), so forcing or removing one
finding never moves another. Positions are LPS millimetres (origin at the FOV centre, +x =
patient Left): a right-lung finding has x < 0. Small objects are snapped to voxel centres
so thick slices never miss them. The painters live in `lesions`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from imaging.phantom import anatomy as A
from imaging.phantom.anatomy import LOBES, Anatomy, AnatomyParams
from imaging.phantom.config import FINDING_KINDS, FINDING_LABELS, PhantomConfig
from imaging.phantom.geometry import Grid

NODULE_SIZES_MM = (4, 5, 6, 7, 8, 9, 10, 12, 14, 16, 18, 22, 26)
LYMPH_STATIONS_XYZ = {
    "right paratracheal": (-21.0, 6.0, 55.0),
    "subcarinal": (0.0, 24.0, 12.0),
    "prevascular": (2.0, -47.0, 60.0),
    "right hilar": (-50.0, 10.0, 12.0),
}
CORONARY_DIRECTIONS = {  # from the heart centre towards the artery on its surface
    "left anterior descending": (0.35, -0.9, 0.35),
    "right coronary": (-0.85, -0.45, 0.1),
    "circumflex": (0.85, 0.15, 0.45),
}
EFFUSION_APEX_TAPER = 0.25  # fluid depth at the apex relative to the base, supine layering
_LUNG_BOX = {
    "right": ((-135.0, -85.0, -115.0), (-25.0, 90.0, 115.0)),
    "left": ((25.0, -85.0, -115.0), (135.0, 90.0, 115.0)),
}


@dataclass(frozen=True)
class Finding:
    """One abnormality; `details` is JSON-ready (side, lobe, size_mm, centre_mm_xyz, ...)."""

    kind: str
    details: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return FINDING_LABELS[self.kind]

    def to_dict(self) -> dict:
        return {"kind": self.kind, "label": self.label, **self.details}


def _r(v, nd: int = 1):
    return [round(float(x), nd) for x in v] if np.ndim(v) else round(float(v), nd)


def anatomy_for(params: AnatomyParams, findings) -> Anatomy:
    """The case's anatomy with the shape-changing findings applied."""
    by_kind = {f.kind: f for f in findings}
    scale = (
        tuple(by_kind["cardiomegaly"].details["heart_scale_xyz"])
        if "cardiomegaly" in by_kind
        else (1.0, 1.0, 1.0)
    )
    peri = (
        3.0 + by_kind["pericardial_effusion"].details["thickness_mm"]
        if "pericardial_effusion" in by_kind
        else 0.0
    )
    return Anatomy(params, heart_scale=scale, pericardial_mm=peri, hernia="hiatal_hernia" in by_kind)


def effusion_region(anat: Anatomy, details: dict, side: str, X, Y, Z, lung=None):
    """Dependent (posterior) pleural fluid: a horizontal level in a supine patient, deepest at
    the base. `lung`: the side's lung mask on the same points, if already computed."""
    if side not in details["thickness_mm"]:
        return np.zeros(np.broadcast_shapes(np.shape(X), np.shape(Y), np.shape(Z)), bool)
    depth = details["thickness_mm"][side]
    taper = np.clip((A.LUNG_APEX_Z_MM - Z) / (A.LUNG_APEX_Z_MM + 100.0), EFFUSION_APEX_TAPER, 1.0)
    level = details["posterior_limit_mm"][side] - depth * taper
    return (anat.lung(side, X, Y, Z) if lung is None else lung) & (Y > level)


def _posterior_limit(anat: Anatomy, side: str) -> float:
    """Most posterior y of the hemithorax at mid-chest (the paravertebral gutter)."""
    x = np.arange(-150.0, 150.0, 2.0, dtype=np.float32)[None, :]
    y = np.arange(0.0, 130.0, 1.0, dtype=np.float32)[:, None]
    inside = anat.lung_envelope(side, x, y, np.float32(-20.0))
    return float(y[np.any(inside, axis=1), 0].max())


def _sample_point(rng, inside_fn, side: str, margin_mm: float) -> np.ndarray | None:
    """A point where `inside_fn` holds at the point and at +-margin along each axis (None if not found)."""
    lo, hi = (np.asarray(b, np.float32) for b in _LUNG_BOX[side])
    offsets = np.array(
        [[0, 0, 0]] + [[s * margin_mm * (a == i) for i in range(3)] for a in range(3) for s in (-1, 1)],
        np.float32,
    )  # (7, 3)
    for _ in range(25):
        c = lo + (hi - lo) * rng.random((256, 3), dtype=np.float32)  # (N, 3)
        pts = c[:, None, :] + offsets[None]  # (N, 7, 3)
        ok = inside_fn(pts[..., 0], pts[..., 1], pts[..., 2]).all(axis=1)
        if ok.any():
            return c[int(np.argmax(ok))]
    return None


def _lobe_sampler(anat: Anatomy, lobe: str, avoid):
    side = lobe.split()[0]

    def inside(X, Y, Z):
        ok = anat.lobe(lobe, X, Y, Z)
        if avoid is not None:
            ok &= ~avoid(side, X, Y, Z)
        return ok

    return inside


def sample_findings(
    rng_streams, params: AnatomyParams, grid: Grid, cfg: PhantomConfig, force=(), exclude=()
) -> tuple[Finding, ...]:
    """Draw the case's findings. `rng_streams[0]` decides presence, stream i+1 the details of kind i."""
    presence_rng = rng_streams[0]
    normal = presence_rng.random() < cfg.normal_fraction
    draws = presence_rng.random(len(FINDING_KINDS))  # always drawn: streams stay aligned
    present = {
        k for k, u in zip(FINDING_KINDS, draws, strict=True) if not normal and u < cfg.prevalence_of(k)
    }
    present = (present | set(force)) - set(exclude)
    rngs = dict(zip(FINDING_KINDS, rng_streams[1:], strict=True))
    found: dict[str, Finding] = {}
    # Shape-changing findings first: the later ones are placed in the anatomy they produce.
    for kind in ("cardiomegaly", "pericardial_effusion", "hiatal_hernia"):
        if kind in present:
            found[kind] = SAMPLERS[kind](rngs[kind], None, grid)
    anat = anatomy_for(params, found.values())
    if "pleural_effusion" in present:
        found["pleural_effusion"] = _pleural_effusion(rngs["pleural_effusion"], anat, grid)
    avoid = None
    if "pleural_effusion" in found:
        details = found["pleural_effusion"].details

        def avoid(side, X, Y, Z):
            return effusion_region(anat, details, side, X, Y, Z)

    for kind in FINDING_KINDS:
        if kind in present and kind not in found:
            found[kind] = SAMPLERS[kind](rngs[kind], (anat, avoid), grid)
    return tuple(found[k] for k in FINDING_KINDS if k in found)


# --- per-kind samplers: (rng, (anatomy, avoid) or None, grid) -> Finding -----------------


def _cardiomegaly(rng, _ctx, _grid):
    scale = (float(rng.uniform(1.28, 1.4)), float(rng.uniform(1.08, 1.18)), float(rng.uniform(1.08, 1.18)))
    return Finding("cardiomegaly", {"heart_scale_xyz": _r(scale, 3), "location": "heart"})


def _pericardial_effusion(rng, _ctx, _grid):
    return Finding(
        "pericardial_effusion", {"thickness_mm": int(rng.integers(8, 17)), "location": "pericardium"}
    )


def _hiatal_hernia(rng, _ctx, grid):
    return Finding(
        "hiatal_hernia",
        {
            "centre_mm_xyz": _r(A.HERNIA_CENTRE_XYZ),
            "semi_axes_mm": _r(A.HERNIA_SEMI_AXES_MM),
            "size_mm": int(2 * A.HERNIA_SEMI_AXES_MM[0]),
            "location": "esophageal hiatus",
            "type": "sliding",
        },
    )


def _pleural_effusion(rng, anat, _grid):
    side = ("right", "left", "bilateral")[int(rng.choice(3, p=[0.4, 0.3, 0.3]))]
    sides = ("right", "left") if side == "bilateral" else (side,)
    thickness = {s: int(rng.integers(15, 41)) for s in ("right", "left")}
    return Finding(
        "pleural_effusion",
        {
            "side": side,
            "thickness_mm": {s: thickness[s] for s in sides},
            "posterior_limit_mm": {s: round(_posterior_limit(anat, s), 1) for s in sides},
            "location": "dependent pleural space",
        },
    )


def _lymphadenopathy(rng, _ctx, grid):
    names = list(LYMPH_STATIONS_XYZ)
    chosen = sorted(rng.choice(len(names), size=int(rng.integers(1, 4)), replace=False).tolist())
    nodes = [
        {
            "station": names[i],
            "centre_mm_xyz": _r(grid.snap(LYMPH_STATIONS_XYZ[names[i]])),
            "short_axis_mm": int(rng.integers(12, 25)),
        }
        for i in chosen
    ]
    return Finding(
        "lymphadenopathy",
        {
            "stations": [n["station"] for n in nodes],
            "nodes": nodes,
            "short_axis_mm": max(n["short_axis_mm"] for n in nodes),
            "location": "mediastinum",
        },
    )


def _emphysema(rng, _ctx, _grid):
    severity = "mild" if rng.random() < 0.6 else "moderate"
    return Finding(
        "emphysema",
        {
            "severity": severity,
            "side": "bilateral",
            "distribution": "upper lobe predominant",
            "texture_seed": int(rng.integers(2**31)),
        },
    )


def _lobe_finding(rng, ctx, grid, margin_mm, lobes=LOBES):
    anat, avoid = ctx
    first = int(rng.integers(len(lobes)))
    # A thin lobe (or one squeezed by an effusion or a big heart) may not fit the margin:
    # relax the margin, then move to the next lobe.
    for lobe in lobes[first:] + lobes[:first]:
        for margin in (margin_mm, margin_mm / 2, 2.0):
            centre = _sample_point(rng, _lobe_sampler(anat, lobe, avoid), lobe.split()[0], margin)
            if centre is not None:
                return lobe, _r(grid.snap(centre))
    raise RuntimeError("could not place a finding inside the lungs")  # geometry bug, not user input


def _lung_nodule(rng, ctx, grid):
    size = int(NODULE_SIZES_MM[int(rng.integers(len(NODULE_SIZES_MM)))])
    lobe, centre = _lobe_finding(rng, ctx, grid, margin_mm=size / 2 + 4.0)
    return Finding(
        "lung_nodule",
        {"lobe": lobe, "side": lobe.split()[0], "size_mm": size, "centre_mm_xyz": centre, "type": "solid"},
    )


def _consolidation(rng, ctx, grid):
    radius = round(float(rng.uniform(16.0, 28.0)), 1)
    lobe, centre = _lobe_finding(rng, ctx, grid, margin_mm=10.0)
    return Finding(
        "consolidation", {"lobe": lobe, "side": lobe.split()[0], "radius_mm": radius, "centre_mm_xyz": centre}
    )


def _lung_opacity(rng, ctx, grid):
    radius = round(float(rng.uniform(24.0, 40.0)), 1)
    lobe, centre = _lobe_finding(rng, ctx, grid, margin_mm=10.0)
    return Finding(
        "lung_opacity",
        {
            "lobe": lobe,
            "side": lobe.split()[0],
            "radius_mm": radius,
            "centre_mm_xyz": centre,
            "pattern": "ground glass",
            "texture_seed": int(rng.integers(2**31)),
        },
    )


def _atelectasis(rng, ctx, grid):
    lobe, centre = _lobe_finding(
        rng, ctx, grid, margin_mm=8.0, lobes=("right middle", "right lower", "left lower")
    )
    return Finding(
        "atelectasis",
        {
            "lobe": lobe,
            "side": lobe.split()[0],
            "centre_mm_xyz": centre,
            "type": "linear",
            "half_extent_mm_xz": [28.0, 20.0],
            "thickness_mm": 6.0,
        },
    )


def _arterial_wall_calcification(rng, ctx, grid):
    anat = ctx[0]
    plaques = []
    for _ in range(int(rng.integers(3, 7))):
        part = ("arch", "descending")[int(rng.integers(2))]
        t = float(rng.uniform(0.1, 0.9))
        c = np.asarray(anat.aorta_centreline(part, t), np.float32)
        # Offset within the plane roughly perpendicular to the vessel: the plaque sits on the wall.
        d = rng.normal(size=3).astype(np.float32)
        d[2 if part == "descending" else 1] = 0.0
        d /= np.linalg.norm(d) + 1e-6
        centre = c + (A.AORTA_RADII_MM[part] - 1.0) * d
        plaques.append(
            {
                "segment": "aortic arch" if part == "arch" else "descending aorta",
                "centre_mm_xyz": _r(grid.snap(centre)),
                "radius_mm": round(float(rng.uniform(2.0, 3.0)), 1),
            }
        )
    segments = sorted({p["segment"] for p in plaques})
    return Finding(
        "arterial_wall_calcification",
        {"location": "thoracic aorta", "segments": segments, "plaques": plaques},
    )


def _coronary_calcification(rng, ctx, grid):
    anat = ctx[0]
    names = list(CORONARY_DIRECTIONS)
    chosen = sorted(rng.choice(len(names), size=int(rng.integers(1, 4)), replace=False).tolist())
    centre = np.asarray(anat.p.heart_centre_mm, np.float32)
    axes = np.asarray(anat.heart_axes, np.float32)
    plaques = []
    for i in chosen:
        base = np.asarray(CORONARY_DIRECTIONS[names[i]], np.float32)
        for _ in range(int(rng.integers(1, 4))):
            d = base + rng.normal(scale=0.12, size=3).astype(np.float32)
            surface = centre + d / np.sqrt(np.sum((d / axes) ** 2))
            out = surface + 1.5 * d / np.linalg.norm(d)  # in the epicardial fat groove
            plaques.append(
                {
                    "artery": names[i],
                    "centre_mm_xyz": _r(grid.snap(out)),
                    "radius_mm": round(float(rng.uniform(1.8, 2.6)), 1),
                }
            )
    return Finding(
        "coronary_calcification",
        {"arteries": [names[i] for i in chosen], "plaques": plaques, "location": "coronary arteries"},
    )


def _medical_material(rng, ctx, grid):
    anat = ctx[0]
    if rng.random() < 0.5:
        levels = np.linspace(
            A.STERNUM_Z_RANGE_MM[0] + 25, A.STERNUM_Z_RANGE_MM[1] - 25, int(rng.integers(4, 7))
        )
        return Finding(
            "medical_material",
            {
                "device": "sternotomy wires",
                "location": "sternum",
                "levels_z_mm": [grid.snap((0.0, 0.0, z))[2] for z in levels],
            },
        )
    # A right chest-wall port: chamber in the subcutaneous fat, catheter down the SVC.
    y = np.arange(-160.0, 0.0, 0.5, dtype=np.float32)
    depth = anat.depth_mm(np.float32(-70.0), y)
    y_chamber = float(y[np.argmin(np.abs(depth - 0.5 * anat.p.fat_mm - 3.0))])
    z_top = float(rng.uniform(80.0, 95.0))
    path = [
        (-70.0, y_chamber, z_top),
        (A.SVC_XY[0], A.SVC_XY[1], z_top + 6.0),
        (A.SVC_XY[0], A.SVC_XY[1], A.SVC_BOTTOM_Z_MM + 8.0),
    ]
    return Finding(
        "medical_material",
        {
            "device": "port catheter",
            "side": "right",
            "location": "superior vena cava",
            "chamber_centre_mm_xyz": _r(path[0]),
            "path_mm_xyz": [_r(p) for p in path],
        },
    )


SAMPLERS = {
    "cardiomegaly": _cardiomegaly,
    "pericardial_effusion": _pericardial_effusion,
    "hiatal_hernia": _hiatal_hernia,
    "lymphadenopathy": _lymphadenopathy,
    "emphysema": _emphysema,
    "lung_nodule": _lung_nodule,
    "consolidation": _consolidation,
    "lung_opacity": _lung_opacity,
    "atelectasis": _atelectasis,
    "arterial_wall_calcification": _arterial_wall_calcification,
    "coronary_calcification": _coronary_calcification,
    "medical_material": _medical_material,
}
