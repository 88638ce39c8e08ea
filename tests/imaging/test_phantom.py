"""The synthetic chest phantom: determinism, tissue HU, patient left/right, labels, config."""

import numpy as np
import pytest

from ctscribe.errors import ImagingError
from ctscribe.labels import CTRATE_LABELS
from imaging.phantom import FINDING_KINDS, PhantomConfig, generate_case, render_case, sample_case
from imaging.phantom.geometry import Grid

ALL = tuple(FINDING_KINDS)


@pytest.fixture(scope="module")
def normal():
    spec = sample_case(11, exclude=ALL)
    return spec, render_case(spec)


def _mean_ball(vol, centre_xyz, radius_mm):
    grid = Grid(vol.shape_zyx, vol.spacing_mm_zyx)
    X, Y, Z = grid.mesh()
    c = centre_xyz
    inside = (X - c[0]) ** 2 + (Y - c[1]) ** 2 + (Z - c[2]) ** 2 <= radius_mm**2
    return float(vol.hu[inside].mean()), float(vol.hu[inside].std())


def test_same_seed_is_byte_identical_and_other_seeds_differ():
    a = generate_case(5, 2)
    b = generate_case(5, 2)
    assert a.volume.hu.tobytes() == b.volume.hu.tobytes()
    assert a.report == b.report and a.questions == b.questions
    assert [f.to_dict() for f in a.findings] == [f.to_dict() for f in b.findings]
    c = generate_case(5, 3)
    assert not np.array_equal(a.volume.hu, c.volume.hu)


def test_volume_is_canonical_and_configurable():
    cfg = PhantomConfig(shape_zyx=(24, 40, 48), spacing_mm_zyx=(8.0, 5.0, 5.0))
    vol = render_case(sample_case(1, config=cfg))
    assert vol.hu.dtype == np.float32 and vol.shape_zyx == (24, 40, 48)
    assert vol.spacing_mm_zyx == (8.0, 5.0, 5.0)
    # Voxel 0 is the patient's right-anterior-inferior corner: negative LPS x, y and z.
    assert all(o < 0 for o in vol.origin_mm)
    assert vol.hu.min() >= -1024 and vol.hu.max() <= 3071


@pytest.mark.parametrize(
    "where,centre_xyz,lo,hi",
    [
        ("air outside the body", (-150.0, -150.0, 0.0), -1024.0, -975.0),
        ("right lung", (-75.0, 0.0, 20.0), -900.0, -780.0),
        ("left lung", (75.0, 0.0, 20.0), -900.0, -780.0),
        ("descending aorta (blood)", (30.0, 50.0, 0.0), 20.0, 65.0),
        ("heart", (25.0, -15.0, -35.0), 20.0, 65.0),
        ("liver", (-60.0, 0.0, -115.0), 40.0, 80.0),
    ],
)
def test_tissue_hu_at_known_positions(normal, where, centre_xyz, lo, hi):
    _, vol = normal
    mean, _ = _mean_ball(vol, centre_xyz, 5.0)
    assert lo <= mean <= hi, f"{where}: mean {mean:.0f} HU outside [{lo}, {hi}]"


def test_body_wall_fat_muscle_and_noise(normal):
    spec, vol = normal
    a, _ = spec.anatomy.body_semi_axes_mm
    fat = spec.anatomy.fat_mm
    # Lateral chest wall on the patient's left (x > 0): fat under the skin, then muscle.
    grid = Grid(vol.shape_zyx, vol.spacing_mm_zyx)
    # A column of voxels along the (vertical) lateral wall: same depth below the skin.
    k, j, i = grid.index_of((a - fat / 2, spec.anatomy.body_centre_y_mm, 0.0))
    fat_mean = float(vol.hu[k - 1 : k + 2, j - 3 : j + 4, i].mean())
    k, j, i = grid.index_of((a - fat - 6.0, spec.anatomy.body_centre_y_mm, 0.0))
    muscle_mean = float(vol.hu[k - 1 : k + 2, j - 3 : j + 4, i].mean())
    assert -140 <= fat_mean <= -60
    assert 15 <= muscle_mean <= 75
    liver_mean, liver_std = _mean_ball(vol, (-60.0, 0.0, -115.0), 8.0)
    assert 6.0 <= liver_std <= 25.0  # correlated noise of ~10-20 HU


def test_bone_cortex_is_dense(normal):
    _, vol = normal
    grid = Grid(vol.shape_zyx, vol.spacing_mm_zyx)
    X, Y, Z = grid.mesh()
    vertebra = np.broadcast_to((X - 0.0) ** 2 + (Y - 62.0) ** 2 <= 17.0**2, vol.hu.shape)
    peak = float(np.percentile(vol.hu[vertebra], 99))
    assert 650 <= peak <= 1300


def test_heart_on_patient_left_liver_on_patient_right(normal):
    spec, vol = normal
    grid = Grid(vol.shape_zyx, vol.spacing_mm_zyx)
    nx = vol.shape_zyx[2]
    k_heart, j_heart, _ = grid.index_of(spec.anatomy.heart_centre_mm)
    row = vol.hu[k_heart, j_heart]
    soft = np.nonzero((row > 0) & (row < 90))[0]
    assert soft.mean() > nx / 2 + 3  # x index grows towards the patient's Left
    k_liver, _, _ = grid.index_of((0.0, 0.0, -115.0))
    liver = np.nonzero((vol.hu[k_liver] > 45) & (vol.hu[k_liver] < 90))
    assert liver[1].mean() < nx / 2 - 3


def test_labels_follow_findings():
    for index in range(12):
        spec = sample_case(3, index)
        labels = spec.labels()
        assert list(labels) == list(CTRATE_LABELS)
        assert {name for name, v in labels.items() if v} == {f.label for f in spec.findings}
        for never in ("Pulmonary fibrotic sequela", "Mosaic attenuation pattern", "Bronchiectasis"):
            assert labels[never] == 0


def test_prevalence_gives_both_classes_and_some_normal_cases():
    specs = [sample_case(21, i) for i in range(80)]
    counts = {k: sum(k in s.kinds for s in specs) for k in FINDING_KINDS}
    assert all(8 <= c <= 60 for c in counts.values()), counts
    assert 3 <= sum(not s.findings for s in specs) <= 30


def test_force_and_exclude_pin_findings_without_moving_others():
    base = sample_case(8, exclude=("lung_nodule",), force=("consolidation",))
    more = sample_case(8, force=("consolidation", "lung_nodule"))
    assert "lung_nodule" not in base.kinds and "lung_nodule" in more.kinds
    assert base.finding("consolidation").details == more.finding("consolidation").details


def test_bad_config_is_an_imaging_error():
    with pytest.raises(ImagingError) as err:
        PhantomConfig(shape_zyx=(4, 64, 64))
    assert err.value.code.value == "invalid_request"
    with pytest.raises(ImagingError):
        PhantomConfig(prevalence=(("tumour", 0.5),))
