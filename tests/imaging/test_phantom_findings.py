"""Every rendered finding changes the voxels where its record says it is, and only there.

Each test renders one case with a single finding and the same case without it (same seed:
same anatomy and the same noise), so the difference image is the finding alone.
"""

import numpy as np
import pytest

from imaging.phantom import FINDING_KINDS, render_case, sample_case
from imaging.phantom.geometry import Grid

SEED = 4


@pytest.fixture(scope="module")
def baseline():
    spec = sample_case(SEED, exclude=FINDING_KINDS)
    return render_case(spec)


def with_only(kind, seed=SEED):
    spec = sample_case(seed, force=(kind,), exclude=tuple(k for k in FINDING_KINDS if k != kind))
    assert spec.kinds == {kind}
    return spec, render_case(spec)


def mesh(vol):
    return Grid(vol.shape_zyx, vol.spacing_mm_zyx).mesh()


def ball_mask(vol, centre_xyz, radius_mm):
    X, Y, Z = mesh(vol)
    c = centre_xyz
    return (X - c[0]) ** 2 + (Y - c[1]) ** 2 + (Z - c[2]) ** 2 <= radius_mm**2


def changed(vol, base, threshold_hu=150.0):
    return np.abs(vol.hu - base.hu) > threshold_hu


def test_noise_and_anatomy_identical_without_findings(baseline):
    spec, vol = with_only("lung_nodule")
    again = render_case(spec.without("lung_nodule"))
    assert again.hu.tobytes() == baseline.hu.tobytes()


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_lung_nodule_sits_in_its_lobe_on_its_side(seed):
    spec, vol = with_only("lung_nodule", seed)
    base = render_case(spec.without("lung_nodule"))
    d = spec.finding("lung_nodule").details
    inside = ball_mask(vol, d["centre_mm_xyz"], max(d["size_mm"] / 2 - 1.0, 1.5))
    assert vol.hu[inside].mean() > base.hu[inside].mean() + 300
    # Every changed voxel is on the stated side: right = patient right = low x index.
    _, _, xs = np.nonzero(changed(vol, base))
    nx = vol.shape_zyx[2]
    assert (xs < nx / 2).all() if d["side"] == "right" else (xs >= nx / 2).all()
    from imaging.phantom.findings import anatomy_for

    anat = anatomy_for(spec.anatomy, spec.findings)
    assert bool(anat.lobe(d["lobe"], *[np.float32(v) for v in d["centre_mm_xyz"]]))


def test_pleural_effusion_is_dependent_on_the_stated_side(baseline):
    spec, vol = with_only("pleural_effusion")
    d = spec.finding("pleural_effusion").details
    diff = changed(vol, baseline)
    zs, ys, xs = np.nonzero(diff)
    X, Y, Z = mesh(vol)
    nx = vol.shape_zyx[2]
    assert len(xs) > 200
    sides = {"right": xs < nx / 2, "left": xs >= nx / 2}
    for side, on_side in sides.items():
        if side in d["thickness_mm"]:
            assert on_side.sum() > 100
        else:
            assert on_side.sum() == 0
    assert (Y[0, ys, 0] > 0).mean() > 0.95  # posterior: the dependent pleural space when supine
    assert -40 < vol.hu[diff].mean() < 60  # fluid


def test_pericardial_effusion_rims_the_heart(baseline):
    spec, vol = with_only("pericardial_effusion")
    diff = changed(vol, baseline, 60.0)
    anat_heart = np.asarray(spec.anatomy.heart_centre_mm)
    X, Y, Z = mesh(vol)
    zs, ys, xs = np.nonzero(diff)
    dist = np.sqrt((X[0, 0, xs] - anat_heart[0]) ** 2 + (Y[0, ys, 0] - anat_heart[1]) ** 2)
    assert len(xs) > 100
    assert np.median(dist) > 30  # a rim around the heart, not its centre
    assert -30 < vol.hu[diff].mean() < 50


def _heart_width_mm(vol, spec):
    grid = Grid(vol.shape_zyx, vol.spacing_mm_zyx)
    k, j, i = grid.index_of(spec.anatomy.heart_centre_mm)
    row = vol.hu[k, j - 1 : j + 2].mean(axis=0) > -300  # soft tissue, not aerated lung
    lo = hi = i
    while lo > 0 and row[lo - 1]:
        lo -= 1
    while hi < len(row) - 1 and row[hi + 1]:
        hi += 1
    return (hi - lo + 1) * vol.spacing_mm_zyx[2]


def test_cardiomegaly_widens_the_heart(baseline):
    spec, vol = with_only("cardiomegaly")
    assert _heart_width_mm(vol, spec) > 1.2 * _heart_width_mm(baseline, spec)


def test_emphysema_adds_low_attenuation_areas(baseline):
    spec, vol = with_only("emphysema")
    from imaging.phantom.findings import anatomy_for

    lungs = anatomy_for(spec.anatomy, ()).lungs(*mesh(vol))
    lung = lungs["right"] | lungs["left"]
    laa_before = (baseline.hu[lung] < -950).mean()
    laa_after = (vol.hu[lung] < -950).mean()
    assert laa_before < 0.01 and laa_after > 0.03


@pytest.mark.parametrize("kind,lo,hi", [("consolidation", -250, 100), ("lung_opacity", -760, -420)])
def test_parenchymal_opacities_raise_lung_density(baseline, kind, lo, hi):
    spec, vol = with_only(kind)
    d = spec.finding(kind).details
    region = ball_mask(vol, d["centre_mm_xyz"], d["radius_mm"] / 3) & (baseline.hu < -600)
    assert region.sum() > 5
    assert baseline.hu[region].mean() < -750
    assert lo < vol.hu[region].mean() < hi


def test_atelectasis_band(baseline):
    spec, vol = with_only("atelectasis")
    d = spec.finding("atelectasis").details
    grid = Grid(vol.shape_zyx, vol.spacing_mm_zyx)
    k, j, i = grid.index_of(d["centre_mm_xyz"])
    band = (slice(k, k + 1), slice(j, j + 1), slice(i - 3, i + 4))
    assert vol.hu[band].mean() > baseline.hu[band].mean() + 400


@pytest.mark.parametrize("kind", ["arterial_wall_calcification", "coronary_calcification"])
def test_calcified_plaques_are_bright_where_recorded(baseline, kind):
    spec, vol = with_only(kind)
    for plaque in spec.finding(kind).details["plaques"]:
        near = ball_mask(vol, plaque["centre_mm_xyz"], 3.0)
        assert 200 <= vol.hu[near].max() <= 1100
        assert baseline.hu[near].max() < 160


def test_lymph_nodes_replace_fat_with_soft_tissue(baseline):
    spec, vol = with_only("lymphadenopathy")
    for node in spec.finding("lymphadenopathy").details["nodes"]:
        assert node["short_axis_mm"] > 10
        core = ball_mask(vol, node["centre_mm_xyz"], node["short_axis_mm"] / 4)
        assert baseline.hu[core].mean() < -60  # mediastinal fat or lung without the node
        assert 0 < vol.hu[core].mean() < 80


def test_hiatal_hernia_holds_gastric_air_and_fluid(baseline):
    spec, vol = with_only("hiatal_hernia")
    d = spec.finding("hiatal_hernia").details
    cx, cy, cz = d["centre_mm_xyz"]
    anterior = ball_mask(vol, (cx, cy - 8.0, cz), 4.0)
    posterior = ball_mask(vol, (cx, cy + 7.0, cz), 4.0)
    assert vol.hu[anterior].mean() < -600  # air rises anteriorly in a supine patient
    assert -40 < vol.hu[posterior].mean() < 60
    assert np.abs(vol.hu - baseline.hu)[ball_mask(vol, d["centre_mm_xyz"], 12.0)].mean() > 100


@pytest.mark.parametrize("seed", [4, 5])
def test_medical_material_is_metal_dense_and_anterior(baseline, seed):
    spec, vol = with_only("medical_material", seed)
    base = render_case(spec.without("medical_material"))
    assert base.hu.max() < 1400
    metal = vol.hu > 1500
    assert metal.sum() > 3
    _, ys, xs = np.nonzero(metal)
    X, Y, Z = mesh(vol)
    d = spec.finding("medical_material").details
    if d["device"] == "sternotomy wires":
        assert (Y[0, ys, 0] < 0).all() and (np.abs(X[0, 0, xs]) < 25).all()
    else:
        assert (X[0, 0, xs] < 0).all()  # a right-sided port and catheter
