"""Preprocessing: ctscribe slices (DESIGN.md §4.1) and the samf-compat reproduction (§4.6)."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np
import pytest
import torch

from ctscribe.errors import CtscribeError, ErrorCode, ImagingError
from model.preprocess import (
    PreparedCT,
    PreprocessConfig,
    body_bbox,
    compat_image,
    compat_indices,
    preprocess,
    stored_array,
    wrap_uint8,
)

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "ct"
SPACING = (2.5, 1.0, 0.9)  # mm (z, y, x): thick slices, anisotropic in-plane
BODY = ((8, 31), (12, 51), (10, 61))  # inclusive voxel ranges (z, y, x) of the phantom's body
RAW = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))  # windows only, no normalisation


def phantom(shape=(40, 64, 72), body_hu=40.0) -> np.ndarray:
    """Air with a soft-tissue cuboid body at BODY."""
    hu = np.full(shape, -1000.0, dtype=np.float32)
    (z0, z1), (y0, y1), (x0, x1) = BODY
    hu[z0 : z1 + 1, y0 : y1 + 1, x0 : x1 + 1] = body_hu
    return hu


def test_output_shape_dtype_and_slice_metadata():
    ct = preprocess(phantom(), SPACING, PreprocessConfig())
    assert isinstance(ct, PreparedCT)
    assert ct.slices.shape == (64, 3, 224, 224) and ct.slices.dtype == torch.float32
    assert ct.plane_ids.tolist() == [0] * 32 + [1] * 16 + [2] * 16
    assert ct.positions.shape == ct.slice_index.shape == (64,)
    assert ct.slice_index.dtype == torch.long and ct.plane_ids.dtype == torch.long
    assert ((ct.positions >= 0) & (ct.positions <= 1)).all()
    for plane in range(3):
        sel = ct.plane_ids == plane
        assert (ct.positions[sel].diff() > 0).all() and (ct.slice_index[sel].diff() > 0).all()
    assert torch.isfinite(ct.slices).all()


def test_slice_counts_follow_the_config():
    cfg = PreprocessConfig(image_size=32, n_axial=5, n_coronal=0, n_sagittal=3)
    ct = preprocess(phantom(), SPACING, cfg)
    assert ct.plane_ids.tolist() == [0] * 5 + [2] * 3
    assert ct.slices.shape == (8, 3, 32, 32) and cfg.n_total == 8


def test_body_box_covers_the_body_and_ignores_air_and_specks():
    hu = phantom()
    hu[2, 2, 2] = 1000.0  # a bright speck outside the body (noise, a bit of table)
    box = body_bbox(hu, SPACING, threshold_hu=-500.0)
    for a, (lo, hi) in enumerate(BODY):
        step = max(1, round(4.0 / SPACING[a]))  # the search grid is ~4 mm
        assert box[a, 0] <= lo < box[a, 0] + step, a
        assert box[a, 1] - step < hi <= box[a, 1], a
    margin = body_bbox(hu, SPACING, threshold_hu=-500.0, margin_mm=5.0)
    assert (margin[:, 0] == np.maximum(0, box[:, 0] - np.ceil(5.0 / np.array(SPACING)))).all()


def test_no_body_means_the_whole_volume():
    box = body_bbox(np.full((10, 12, 14), -1000.0, dtype=np.float32), (1, 1, 1), threshold_hu=-500.0)
    assert box.tolist() == [[0, 9], [0, 11], [0, 13]]


def test_slices_are_placed_inside_the_body():
    cfg = PreprocessConfig(image_size=32, body_margin_mm=0.0)
    ct = preprocess(phantom(), SPACING, cfg)
    for plane in range(3):
        mm = ct.slice_index[ct.plane_ids == plane].numpy() * cfg.spacing_mm_zyx[plane]
        lo, hi = BODY[plane][0] * SPACING[plane], BODY[plane][1] * SPACING[plane]
        step = 4.0  # the body search grid may widen the box by up to one step
        assert mm.min() >= lo - step and mm.max() <= hi + step
        assert mm.min() < lo + (hi - lo) / 8 and mm.max() > hi - (hi - lo) / 8  # spread over the body


@pytest.mark.parametrize(
    "hu, expected",
    [
        (-1000.0, ((-1000 + 1350) / 1500, 0.0, 0.0)),
        (40.0, ((40 + 1350) / 1500, (40 + 160) / 400, (40 + 1000) / 2000)),
        (3000.0, (1.0, 1.0, 1.0)),
        (-2000.0, (0.0, 0.0, 0.0)),
    ],
)
def test_three_windows(hu, expected):
    cfg = PreprocessConfig(image_size=16, n_axial=2, n_coronal=1, n_sagittal=1, **RAW)
    # a 20 mm cube: square in every plane, so no padding shows
    ct = preprocess(np.full((10, 20, 20), hu, dtype=np.float32), (2.0, 1.0, 1.0), cfg)
    for c, value in enumerate(expected):
        torch.testing.assert_close(
            ct.slices[:, c], torch.full_like(ct.slices[:, c], value), atol=1e-5, rtol=0
        )


def test_imagenet_normalisation_by_default():
    ct = preprocess(
        np.full((12, 20, 20), -1000.0, dtype=np.float32), (2.0, 1.0, 1.0), PreprocessConfig(image_size=16)
    )
    lung = (350 / 1500 - 0.485) / 0.229
    mediastinum = (0.0 - 0.456) / 0.224
    torch.testing.assert_close(ct.slices[0, 0], torch.full((16, 16), lung), atol=1e-5, rtol=0)
    torch.testing.assert_close(ct.slices[0, 1], torch.full((16, 16), mediastinum), atol=1e-5, rtol=0)


def test_marked_blob_appears_where_it_is():
    """A bright blob in the body's anterior, patient-left, superior corner."""
    hu = phantom()
    cz, cy, cx = 27, 18, 52  # voxel centre of the blob
    zz, yy, xx = np.meshgrid(*(np.arange(n) for n in hu.shape), indexing="ij")
    r_mm = np.sqrt(
        ((zz - cz) * SPACING[0]) ** 2 + ((yy - cy) * SPACING[1]) ** 2 + ((xx - cx) * SPACING[2]) ** 2
    )
    hu[r_mm <= 4.0] = 3000.0
    cfg = PreprocessConfig(image_size=64, body_margin_mm=0.0, **RAW)
    ct = preprocess(hu, SPACING, cfg)
    wide = ct.slices[:, 2]  # (S, H, W), 40 HU -> 0.52, the blob -> 1.0
    peak = wide.amax(dim=(1, 2))

    axial = (ct.plane_ids == 0).nonzero().squeeze(1)
    z_mm = ct.slice_index[axial].numpy() * cfg.spacing_mm_zyx[0]
    nearest = axial[np.argmin(np.abs(z_mm - cz * SPACING[0]))]
    assert peak[nearest] > 0.9
    far = axial[np.abs(z_mm - cz * SPACING[0]) > 4.0 + 1.5]
    assert (peak[far] < 0.6).all()  # slices away from it do not show it

    def where(i):  # (row, col) of the brightest pixel, as fractions of the image
        flat = int(wide[i].argmax())
        return flat // 64 / 64, flat % 64 / 64

    row, col = where(nearest)
    assert row < 0.5 and col > 0.5  # axial: anterior at the top, patient left on the right
    for plane, expect_col_right in ((1, True), (2, False)):
        sel = (ct.plane_ids == plane).nonzero().squeeze(1)
        i = sel[int(peak[sel].argmax())]
        row, col = where(i)
        assert row < 0.5, plane  # superior at the top
        # coronal: patient left on the right; sagittal: anterior on the left
        assert (col > 0.5) == expect_col_right, plane


def test_aspect_ratio_is_kept_by_padding():
    """Coronal view of the cuboid: 60 mm tall (z) by 47 mm wide (x) stays 60:47."""
    cfg = PreprocessConfig(image_size=120, n_axial=1, n_coronal=1, n_sagittal=1, body_margin_mm=0.0, **RAW)
    ct = preprocess(phantom(), SPACING, cfg)
    coronal = ct.slices[ct.plane_ids == 1][0, 2]  # (H, W) wide window: body 0.52, air 0
    body_cols = (coronal > 0.26).any(dim=0).sum().item()
    body_rows = (coronal > 0.26).any(dim=1).sum().item()
    extent_z = (BODY[0][1] - BODY[0][0] + 1) * SPACING[0]
    extent_x = (BODY[2][1] - BODY[2][0] + 1) * SPACING[2]
    assert body_cols / body_rows == pytest.approx(extent_x / extent_z, rel=0.15)


def test_bad_inputs_are_ctscribe_errors():
    with pytest.raises(ImagingError) as err:
        preprocess(np.zeros((10, 10), dtype=np.float32), (1, 1, 1))
    assert err.value.code == ErrorCode.NOT_3D
    for spacing in [(0, 1, 1), (1, 1), (1, float("nan"), 1)]:
        with pytest.raises(CtscribeError) as err:
            preprocess(phantom(), spacing)
        assert err.value.code == ErrorCode.INVALID_REQUEST
    with pytest.raises(CtscribeError):
        preprocess(phantom(), SPACING, PreprocessConfig(mode="mip"))
    for code in ("XYZ", "RRS", "RA"):
        with pytest.raises(CtscribeError):
            preprocess(phantom(), SPACING, PreprocessConfig(mode="samf-compat"), orientation_in=code)


def test_config_round_trips_through_json():
    cfg = PreprocessConfig(mode="samf-compat", spacing_mm_zyx=(2.0, 1.0, 1.0), n_slices=12)
    assert PreprocessConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


# ---- samf-compat -------------------------------------------------------------------------


# fmt: off
@pytest.mark.parametrize(
    "n, expected",
    [
        # mid 150, range 78..222, step 144/23 = 6.26: floor(78 + k * 6.26)
        (300, [78, 84, 90, 96, 103, 109, 115, 121, 128, 134, 140, 146,
               153, 159, 165, 171, 178, 184, 190, 196, 203, 209, 215, 222]),
        # mid 50: the range is clipped to 0..99, step 99/23 = 4.30
        (100, [0, 4, 8, 12, 17, 21, 25, 30, 34, 38, 43, 47, 51, 55, 60, 64, 68, 73, 77, 81, 86, 90, 94, 99]),
        # fewer slices than 24: indices repeat, step 9/23 = 0.39
        (10, [0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 4, 4, 5, 5, 5, 6, 6, 7, 7, 7, 8, 8, 9]),
    ],
)
# fmt: on
def test_compat_indices_by_hand(n, expected):
    assert compat_indices(n).tolist() == expected


def test_uint8_wraps_like_the_release_on_x86():
    values = np.array([-1000.0, 300.0, -1.5, 255.7, 0.0, 256.0, 1000.0, -0.5, 40.9])
    # truncate towards zero, then modulo 256: -1000 + 4 * 256 = 24, 300 - 256 = 44, -1 -> 255 ...
    assert wrap_uint8(values).tolist() == [24, 44, 255, 255, 0, 0, 232, 0, 40]
    if platform.machine().lower() in ("x86_64", "amd64"):  # numpy's own cast is platform-defined
        assert (wrap_uint8(values) == values.astype(np.uint8)).all()


def test_stored_array_undoes_canonicalisation():
    canon = np.zeros((4, 5, 6))  # (z, y, x) LPS
    canon[1, 2, 3] = 1.0
    assert stored_array(canon, "LPS").shape == (6, 5, 4)
    assert np.argwhere(stored_array(canon, "LPS")).tolist() == [[3, 2, 1]]
    # RAS: i runs towards the right (x flipped), j towards anterior (y flipped)
    assert np.argwhere(stored_array(canon, "RAS")).tolist() == [[6 - 1 - 3, 5 - 1 - 2, 1]]
    # SPL-like permutation: i is z (towards inferior), j is y, k is x
    assert np.argwhere(stored_array(canon, "IPL")).tolist() == [[4 - 1 - 1, 2, 3]]


def test_compat_slices_come_from_the_stored_third_axis():
    z, y, x = 30, 20, 20
    canon = np.broadcast_to((1000.0 + np.arange(z))[:, None, None], (z, y, x)).astype(np.float32)
    ct = preprocess(canon, (1, 1, 1), PreprocessConfig(mode="samf-compat"), orientation_in="RAI")
    idx = compat_indices(z)  # along the stored axis, which runs towards inferior
    canonical = z - 1 - idx
    assert ct.slices.shape == (24, 3, 224, 224)
    for s in range(24):  # constant slices survive bicubic resizing exactly
        assert torch.equal(ct.slices[s], torch.full((3, 224, 224), ((1000 + canonical[s]) % 256) / 255.0))
    assert ct.slice_index.tolist() == canonical.tolist()
    assert ct.plane_ids.tolist() == [0] * 24
    torch.testing.assert_close(ct.positions, torch.from_numpy(canonical / (z - 1)).float())


def test_compat_image_resizes_the_short_side_then_centre_crops():
    img = np.zeros((100, 50))  # stored rows x cols; PIL sees width 50, height 100
    img[:, 25:] = 200.0
    out = compat_image(img)
    assert out.shape == (3, 224, 224) and out.dtype == torch.float32
    assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])  # grey to 3 channels
    assert out.min() >= 0 and out.max() <= 1 and ((out * 255).round() == out * 255).all()
    # width 50 -> 224 (no crop), height 100 -> 448 -> rows 112..335 kept: the edge stays mid-image
    assert (out[0, :, :100] == 0).all() and (out[0, :, 124:] == 200 / 255).all()


@pytest.mark.skipif(not (DATA / "abdomen_ct.nii.gz").exists(), reason="../shared/data/ct is absent")
@pytest.mark.skipif(
    platform.machine().lower() not in ("x86_64", "amd64"), reason="the release's uint8 cast is x86's"
)
def test_compat_on_a_real_nifti_equals_the_release_pipeline():
    """Read the RAS-stored file through imaging (canonical LPS), preprocess in samf-compat
    mode, and compare with the release's steps applied to nibabel's raw array."""
    import nibabel as nib
    from PIL import Image

    from imaging.read import read_volume

    path = DATA / "abdomen_ct.nii.gz"
    vol = read_volume(path)
    assert vol.orientation_in == "RAS"
    ct = preprocess(vol.hu, vol.spacing_mm_zyx, PreprocessConfig(mode="samf-compat"), vol.orientation_in)

    raw = nib.load(path).get_fdata()  # (122, 101, 112) stored order
    idx = np.linspace(max(0, 56 - 72), min(111, 56 + 72), 24, dtype=int)
    for s, i in enumerate(idx):
        pil = Image.fromarray(raw[:, :, i].astype(np.uint8)).convert("RGB")  # width 101, height 122
        pil = pil.resize((224, int(224 * 122 / 101)), Image.BICUBIC)  # 224 x 270
        top = round((270 - 224) / 2)
        ref = torch.from_numpy(np.array(pil.crop((0, top, 224, top + 224)))).permute(2, 0, 1).float() / 255
        assert torch.equal(ct.slices[s], ref), s


@pytest.mark.skipif(not (DATA / "thorax_crop.nii.gz").exists(), reason="../shared/data/ct is absent")
def test_ctscribe_on_a_real_thorax():
    from imaging.read import read_volume

    vol = read_volume(DATA / "thorax_crop.nii.gz")
    cfg = PreprocessConfig(image_size=64, **RAW)
    ct = preprocess(vol.hu, vol.spacing_mm_zyx, cfg)
    assert ct.slices.shape == (64, 3, 64, 64) and torch.isfinite(ct.slices).all()
    # a thorax has lung (dark in the mediastinal window) and tissue (bright) in every axial slice
    mediastinum = ct.slices[ct.plane_ids == 0, 1]
    assert ((mediastinum < 0.05).flatten(1).float().mean(1) > 0.05).all()
    assert ((mediastinum > 0.3).flatten(1).float().mean(1) > 0.05).all()


def test_slab_projection_sees_a_dot_between_thin_slices():
    """A 3 mm calcification between two of 4 axial slices: the thin slices miss it, the max
    projection over each slice's bin shows it, the min projection never does, "none" is the
    thin slice exactly."""
    hu = phantom()
    thin_cfg = PreprocessConfig(image_size=64, n_axial=4, n_coronal=0, n_sagittal=0, body_margin_mm=0.0, **RAW)
    positions = preprocess(hu, SPACING, thin_cfg).slice_index.numpy() * thin_cfg.spacing_mm_zyx[0]  # mm
    gap_mm = (positions[1] + positions[2]) / 2  # half-way between the 2nd and 3rd thin slice
    cz = int(round(gap_mm / SPACING[0]))
    hu[cz, 30:33, 30:33] = 1000.0
    thin = preprocess(hu, SPACING, thin_cfg).slices[:, 2]
    slab_cfg = PreprocessConfig(
        image_size=64, n_axial=4, n_coronal=0, n_sagittal=0, body_margin_mm=0.0,
        slab_projection=("none", "min", "max"), **RAW,
    )
    slab = preprocess(hu, SPACING, slab_cfg).slices
    assert float(thin.amax()) < 0.6  # 40 HU body only
    assert float(slab[:, 2].amax()) > 0.6  # the max projection shows the dot
    assert float(slab[:, 1].amax()) < 0.6
    assert torch.equal(slab[:, 0], preprocess(hu, SPACING, thin_cfg).slices[:, 0])


def test_bad_slab_projection_is_a_clear_error():
    with pytest.raises(CtscribeError) as err:
        preprocess(phantom(), SPACING, PreprocessConfig(slab_projection=("max", "median", "none")))
    assert err.value.code == ErrorCode.INVALID_REQUEST
