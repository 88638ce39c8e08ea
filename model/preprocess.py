"""Canonical CT volume -> the slice images the encoder reads (DESIGN.md §4.1, §4.6).

Pure numpy/torch/PIL: no file I/O; safe to run in a worker thread or process.

`ctscribe` mode (§4.1):
1. Body bounding box: voxels above `body_threshold_hu`, largest 6-connected component, found
   on a ~4 mm subsampled grid (fast) and padded by `body_margin_mm`; no body at all -> the
   whole volume.
2. The volume is (conceptually) resampled to `spacing_mm_zyx`; only the slices that are used
   are computed (linear interpolation between the two nearest source slices, then bilinear
   in-plane resampling), so a 512x512x300 CT takes well under a second or two.
3. Per plane, `n` slices evenly placed by physical position inside the body box: the centres
   of `n` equal bins along that axis (never exactly on the box's edge), snapped to the
   resampled grid. A body thinner than `n` grid steps gives repeated slices.
4. In-plane the image is cropped to the body box, padded to a square with `pad_hu` (air)
   keeping the aspect ratio, then resized to `image_size` (bilinear, antialiased).
   Display convention: axial rows anterior->posterior, columns patient right->left
   (radiological); coronal and sagittal have superior at the top, coronal columns right->left,
   sagittal columns anterior->posterior.
5. Three windows (lung, mediastinum, wide) each clipped and scaled to [0, 1], then
   normalised with `mean`/`std` (ImageNet statistics by default, as DINO ViTs expect).
Slices are ordered axial, coronal, sagittal; each carries its plane id (0, 1, 2), its
position in [0, 1] across the body box and its index along its axis in the resampled grid.

`samf-compat` mode (§4.6) reproduces the released code's data pipeline; see `_prepare_compat`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F

from ctscribe.errors import CtscribeError, ErrorCode, ImagingError

MODES = ("ctscribe", "samf-compat")
PLANES = ("axial", "coronal", "sagittal")
"""Plane id -> name; the id is the canonical array axis (z, y, x) the plane is normal to."""
SLAB_PROJECTIONS = ("none", "max", "mean", "min")
_MASK_STEP_MM = 4.0  # grid step of the body-mask search: coarse enough to be fast, fine enough for a box


@dataclass(frozen=True)
class PreprocessConfig:
    """How a canonical HU volume becomes slice images."""

    mode: str = "ctscribe"
    """ctscribe | samf-compat."""
    image_size: int = 224
    """Side of the square slice images in pixels (the encoder's input)."""
    n_axial: int = 32
    """ctscribe: number of axial slices."""
    n_coronal: int = 16
    """ctscribe: number of coronal slices."""
    n_sagittal: int = 16
    """ctscribe: number of sagittal slices."""
    spacing_mm_zyx: tuple[float, float, float] = (1.5, 1.5, 1.5)
    """ctscribe: voxel size (mm along z, y, x) of the grid slices are taken from; isotropic so
    the three planes look alike whatever the scanner's slice thickness."""
    windows_hu: tuple[tuple[float, float], ...] = ((-1350.0, 150.0), (-160.0, 240.0), (-1000.0, 1000.0))
    """ctscribe: (low, high) HU of each channel's window: lung, mediastinum, wide."""
    slab_projection: tuple[str, ...] = ("none", "none", "none")
    """ctscribe: per channel, how a slice's HU values are taken: "none" = the thin slice at its
    centre; "max" / "mean" / "min" = the maximum / mean / minimum intensity projection over
    the slice's whole bin along its axis (thick-slab MIP/AvgIP/MinIP), so a lesion lying between
    two thin slices is still seen."""
    body_threshold_hu: float = -500.0
    """ctscribe: voxels above this HU count as body when finding the body's bounding box."""
    body_margin_mm: float = 5.0
    """ctscribe: margin added around the body box on each side, in mm."""
    pad_hu: float = -1000.0
    """ctscribe: HU used to pad images to a square (air)."""
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    """ctscribe: per-channel mean subtracted after windowing to [0, 1] (ImageNet)."""
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    """ctscribe: per-channel std divided by after subtracting the mean (ImageNet)."""
    n_slices: int = 24
    """samf-compat: number of slices taken along the stored third axis."""
    half_range: int = 72
    """samf-compat: slices come from [mid - half_range, mid + half_range] (3 * 24 in the release)."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PreprocessConfig:
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        for key in ("spacing_mm_zyx", "mean", "std"):  # JSON gives lists
            if key in kw:
                kw[key] = tuple(float(v) for v in kw[key])
        if "slab_projection" in kw:
            kw["slab_projection"] = tuple(str(v) for v in kw["slab_projection"])
        if "windows_hu" in kw:
            kw["windows_hu"] = tuple(tuple(float(v) for v in w) for w in kw["windows_hu"])
        return cls(**kw)

    @property
    def n_total(self) -> int:
        """Slices per volume."""
        return (
            self.n_slices if self.mode == "samf-compat" else self.n_axial + self.n_coronal + self.n_sagittal
        )


@dataclass
class PreparedCT:
    """The encoder's input for one CT, with per-slice metadata."""

    slices: torch.Tensor
    """(S, 3, H, W) float32 slice images."""
    plane_ids: torch.Tensor
    """(S,) long: 0 axial, 1 coronal, 2 sagittal (index into PLANES)."""
    positions: torch.Tensor
    """(S,) float32 in [0, 1]: the slice's place along its axis (inferior/anterior/right = 0)."""
    slice_index: torch.Tensor
    """(S,) long: the slice's index along its axis of the resampled grid (ctscribe) or of the
    canonical volume (samf-compat), for key-slice evidence."""

    @property
    def n_slices(self) -> int:
        return int(self.slices.shape[0])


def preprocess(
    hu_zyx: np.ndarray, spacing_mm_zyx, cfg: PreprocessConfig | None = None, orientation_in: str = "LPS"
) -> PreparedCT:
    """Canonical (z, y, x) LPS HU volume -> PreparedCT (see the module docstring).

    `orientation_in` (nibabel axcodes of the source file's array axes, Volume.orientation_in)
    is used only by samf-compat, to rebuild the file's stored array order.
    """
    cfg = cfg or PreprocessConfig()
    hu = np.asarray(hu_zyx)
    if hu.ndim != 3:
        raise ImagingError(ErrorCode.NOT_3D, f"expected a 3D (z, y, x) volume, got shape {list(hu.shape)}")
    if min(hu.shape) < 1:
        raise ImagingError(ErrorCode.NOT_3D, f"the volume is empty: shape {list(hu.shape)}")
    spacing = tuple(float(s) for s in np.asarray(spacing_mm_zyx, dtype=np.float64).reshape(-1))
    if len(spacing) != 3 or not all(math.isfinite(s) and s > 0 for s in spacing):
        raise CtscribeError(
            ErrorCode.INVALID_REQUEST, f"spacing_mm_zyx must be 3 positive numbers, got {spacing}"
        )
    if cfg.mode == "samf-compat":
        return _prepare_compat(hu, orientation_in, cfg)
    if cfg.mode != "ctscribe":
        raise CtscribeError(
            ErrorCode.INVALID_REQUEST, f"unknown preprocess mode {cfg.mode!r}; known: {MODES}"
        )
    bad = [p for p in cfg.slab_projection if p not in SLAB_PROJECTIONS]
    if bad or len(cfg.slab_projection) != len(cfg.windows_hu):
        raise CtscribeError(
            ErrorCode.INVALID_REQUEST,
            f"slab_projection needs one of {SLAB_PROJECTIONS} per window, got {cfg.slab_projection}",
        )
    return _prepare_ctscribe(hu, spacing, cfg)


# ---- ctscribe ----------------------------------------------------------------------------


def body_bbox(hu: np.ndarray, spacing_mm_zyx, threshold_hu: float, margin_mm: float = 0.0) -> np.ndarray:
    """(3, 2) inclusive [lo, hi] voxel indices per axis (z, y, x) of the body's bounding box."""
    from scipy import ndimage

    shape = np.array(hu.shape)
    step = np.array([max(1, int(round(_MASK_STEP_MM / s))) for s in spacing_mm_zyx])
    coarse = hu[:: step[0], :: step[1], :: step[2]] > threshold_hu  # (z', y', x') bool
    labels, n = ndimage.label(coarse)
    if n == 0:  # nothing above the threshold: use the whole volume
        return np.stack([np.zeros(3, dtype=int), shape - 1], axis=1)
    largest = 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))
    box = np.empty((3, 2), dtype=int)
    for a, sl in enumerate(ndimage.find_objects(labels)[largest - 1]):
        # the body may begin up to step-1 voxels before its first coarse sample and end up to
        # step-1 after its last: cover both, so the box never cuts the body
        box[a] = (max(0, (sl.start - 1) * step[a] + 1), min(shape[a] - 1, sl.stop * step[a] - 1))
    margin = np.ceil(margin_mm / np.asarray(spacing_mm_zyx)).astype(int)
    box[:, 0] = np.maximum(0, box[:, 0] - margin)
    box[:, 1] = np.minimum(shape - 1, box[:, 1] + margin)
    return box


def _prepare_ctscribe(
    hu: np.ndarray, spacing: tuple[float, float, float], cfg: PreprocessConfig
) -> PreparedCT:
    src = np.asarray(spacing)
    dst = np.asarray(cfg.spacing_mm_zyx, dtype=np.float64)
    box = body_bbox(hu, spacing, cfg.body_threshold_hu, cfg.body_margin_mm)  # source voxels
    # the box on the resampled grid (index r sits at r * dst mm, source index i at i * src mm)
    r_lo = np.ceil(box[:, 0] * src / dst - 1e-6).astype(int)
    r_hi = np.maximum(r_lo, np.floor(box[:, 1] * src / dst + 1e-6).astype(int))

    images, plane_ids, positions, indices = [], [], [], []
    for axis, n in enumerate((cfg.n_axial, cfg.n_coronal, cfg.n_sagittal)):
        if n <= 0:
            continue
        # centres of n equal bins across the box, snapped to the resampled grid
        centres = r_lo[axis] + (np.arange(n) + 0.5) / n * (r_hi[axis] - r_lo[axis])
        r = np.clip(np.round(centres).astype(int), r_lo[axis], r_hi[axis])
        span = max(1, r_hi[axis] - r_lo[axis])
        edges = r_lo[axis] + np.arange(n + 1) / n * (r_hi[axis] - r_lo[axis])  # bin edges, resampled grid
        bins = np.stack([edges[:-1], edges[1:]], axis=1) * dst[axis] / src[axis]  # (n, 2) source indices
        images.append(_plane_images(hu, axis, r * dst[axis] / src[axis], box, src, dst, cfg, bins))
        plane_ids.append(torch.full((n,), axis, dtype=torch.long))
        positions.append(torch.from_numpy((r - r_lo[axis]) / span).float())
        indices.append(torch.from_numpy(r).long())
    if not images:
        raise CtscribeError(ErrorCode.INVALID_REQUEST, "the preprocess config asks for no slices at all")
    return PreparedCT(
        slices=_window(torch.cat(images), cfg),
        plane_ids=torch.cat(plane_ids),
        positions=torch.cat(positions),
        slice_index=torch.cat(indices),
    )


def _plane_images(
    hu: np.ndarray,
    axis: int,
    src_index: np.ndarray,
    box: np.ndarray,
    src: np.ndarray,
    dst: np.ndarray,
    cfg: PreprocessConfig,
    bins: np.ndarray | None = None,
) -> torch.Tensor:
    """(n, 1, size, size) HU images of the slices at fractional source indices along `axis`;
    (n, C, size, size) when some channel is a slab projection over `bins` ((n, 2) source indices)."""
    # crop the other two axes to the body box first: everything after is on the small crop
    crop = [slice(int(box[a, 0]), int(box[a, 1]) + 1) if a != axis else slice(None) for a in range(3)]
    sub = hu[tuple(crop)]  # a view of the caller's array, any dtype: nothing is copied whole
    i0 = np.floor(src_index).astype(int).clip(0, hu.shape[axis] - 1)
    i1 = np.minimum(i0 + 1, hu.shape[axis] - 1)
    w = torch.from_numpy((src_index - i0).clip(0.0, 1.0)).float().view(-1, 1, 1)
    # read each needed source slice once (numpy's take is far faster than torch's
    # index_select along a non-leading axis), slices first: (u, rows, cols)
    needed, which = np.unique(np.concatenate([i0, i1]), return_inverse=True)
    slab = np.moveaxis(np.take(sub, needed, axis=axis), axis, 0)
    slab = torch.from_numpy(np.ascontiguousarray(slab, dtype=np.float32))
    n = len(src_index)
    # (n, rows, cols): rows and cols are the two remaining axes in canonical order
    img = torch.lerp(slab[torch.from_numpy(which[:n])], slab[torch.from_numpy(which[n:])], w)
    img = torch.nan_to_num(img, nan=cfg.pad_hu)
    if bins is not None and any(p != "none" for p in cfg.slab_projection):
        img = _with_slabs(img, sub, axis, bins, cfg)  # (n, C, rows, cols)
    else:
        img = img.unsqueeze(1)  # (n, 1, rows, cols)
    rest = [a_ for a_ in range(3) if a_ != axis]  # (rows axis, cols axis) in canonical order
    if axis != 0:  # coronal/sagittal: rows are z; put superior at the top
        img = img.flip(2)
    # in-plane resampling to the config's spacing
    size = [max(1, int(round(img.shape[2 + k] * src[rest[k]] / dst[rest[k]]))) for k in range(2)]
    img = F.interpolate(img, size=size, mode="bilinear", align_corners=False, antialias=True)
    # pad to a square (keep the aspect ratio), centred, with air
    height, width = img.shape[-2:]
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    pads = (left, side - width - left, top, side - height - top)
    img = F.pad(img, pads, value=cfg.pad_hu)  # (n, 1, side, side)
    return F.interpolate(
        img, size=(cfg.image_size, cfg.image_size), mode="bilinear", align_corners=False, antialias=True
    )


def _with_slabs(
    thin: torch.Tensor, sub: np.ndarray, axis: int, bins: np.ndarray, cfg: PreprocessConfig
) -> torch.Tensor:
    """(n, rows, cols) thin slices -> (n, C, rows, cols): per channel the thin slice or its
    bin's max / mean / min projection (source slices whose centre lies in the bin; at least
    the nearest one)."""
    n_src = sub.shape[axis]
    channels = []
    reducers = {"max": np.max, "mean": np.mean, "min": np.min}
    cache: dict[str, torch.Tensor] = {}
    for projection in cfg.slab_projection:
        if projection == "none":
            channels.append(thin)
            continue
        if projection not in cache:
            out = []
            for lo, hi in bins:
                first = int(np.clip(np.ceil(lo - 0.5), 0, n_src - 1))
                last = int(np.clip(max(first, np.ceil(hi - 0.5) - 1), first, n_src - 1))
                slab = np.take(sub, np.arange(first, last + 1), axis=axis).astype(np.float32, copy=False)
                out.append(torch.from_numpy(np.ascontiguousarray(reducers[projection](slab, axis=axis))))
            cache[projection] = torch.nan_to_num(torch.stack(out), nan=cfg.pad_hu)  # (n, rows, cols)
        channels.append(cache[projection])
    return torch.stack(channels, dim=1)


def _window(img_hu: torch.Tensor, cfg: PreprocessConfig) -> torch.Tensor:
    """(n, 1, H, W) HU -> (n, 3, H, W): each window clipped to [0, 1], then mean/std normalised.

    Per channel ((x - lo) / (hi - lo)).clamp(0, 1) then (. - mean) / std, folded into one
    affine map and one clamp: two passes over the output instead of six."""
    lo, hi = (torch.tensor([w[k] for w in cfg.windows_hu], dtype=torch.float64) for k in (0, 1))
    mean = torch.tensor(cfg.mean, dtype=torch.float64)
    std = torch.tensor(cfg.std, dtype=torch.float64)
    scale = 1.0 / ((hi - lo) * std)
    shift = -lo * scale - mean / std

    def chan(v: torch.Tensor) -> torch.Tensor:
        return v.to(img_hu.dtype).view(1, -1, 1, 1)

    x = torch.addcmul(chan(shift), img_hu, chan(scale))  # (n, C, H, W)
    return x.clamp_(min=chan(-mean / std), max=chan((1.0 - mean) / std))


# ---- samf-compat ------------------------------------------------------------------------

_AXIS_OF_LETTER = {"L": 2, "R": 2, "P": 1, "A": 1, "S": 0, "I": 0}  # canonical (z, y, x) array axis
_FLIPPED = set("RAI")  # letters pointing against the canonical L, P, S directions


def stored_array(hu_zyx: np.ndarray, orientation_in: str) -> np.ndarray:
    """Rebuild the source file's array (nibabel order, axis m pointing towards orientation_in[m])
    from the canonical (z, y, x) LPS array: the inverse of canonicalisation (a view, no copy)."""
    code = str(orientation_in).upper()
    axes = [_AXIS_OF_LETTER.get(c, -1) for c in code]
    if len(code) != 3 or sorted(axes) != [0, 1, 2]:
        raise CtscribeError(
            ErrorCode.INVALID_REQUEST, f"orientation_in must be an axcode like 'RAS', got {code!r}"
        )
    arr = np.transpose(hu_zyx, axes)
    flips = [m for m, c in enumerate(code) if c in _FLIPPED]
    return np.flip(arr, axis=flips) if flips else arr


def wrap_uint8(values: np.ndarray) -> np.ndarray:
    """float -> uint8 as the release's `astype(np.uint8)` does on x86: truncate towards zero,
    then wrap modulo 256 (-1000 -> 24, 300 -> 44, -1.5 -> 255). numpy leaves out-of-range
    casts platform-defined (ARM saturates), so the x86 result is spelled out here."""
    v = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    return np.mod(np.trunc(v).astype(np.int64), 256).astype(np.uint8)


def compat_indices(n_stored: int, n_slices: int = 24, half_range: int = 72) -> np.ndarray:
    """The release's slice indices along the stored third axis (mid = n // 2)."""
    mid = n_stored // 2
    start, end = max(0, mid - half_range), min(n_stored - 1, mid + half_range)
    return np.linspace(start, end, n_slices, dtype=int)


def compat_image(slice_2d: np.ndarray, size: int = 224) -> torch.Tensor:
    """One stored-order 2D slice -> (3, size, size) in [0, 1], like the release's
    Grayscale(3) -> Resize(size, bicubic) -> CenterCrop(size) -> ToTensor chain on a PIL image."""
    from PIL import Image

    grey = Image.fromarray(np.ascontiguousarray(wrap_uint8(slice_2d)))  # mode L
    rgb = Image.fromarray(np.dstack([np.asarray(grey)] * 3))  # mode RGB
    w, h = rgb.size
    # the shorter side becomes `size`, the longer one is truncated in proportion
    new_w, new_h = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
    if (new_w, new_h) != (w, h):
        rgb = rgb.resize((new_w, new_h), Image.BICUBIC)
    top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
    rgb = rgb.crop((left, top, left + size, top + size))
    pixels = torch.from_numpy(np.array(rgb, dtype=np.uint8))  # (H, W, 3)
    return pixels.permute(2, 0, 1).contiguous().float().div(255)  # (3, H, W)


def _prepare_compat(hu_zyx: np.ndarray, orientation_in: str, cfg: PreprocessConfig) -> PreparedCT:
    """24 slices along the stored third axis, no reorientation, uint8 wrap, bicubic, [0, 1]."""
    stored = stored_array(hu_zyx, orientation_in)
    idx = compat_indices(stored.shape[2], cfg.n_slices, cfg.half_range)
    slices = torch.stack([compat_image(stored[:, :, i], cfg.image_size) for i in idx])  # (S, 3, H, W)
    # metadata in canonical terms: which canonical axis the stored third axis is, and where
    letter = str(orientation_in).upper()[2]
    axis = _AXIS_OF_LETTER[letter]
    n = hu_zyx.shape[axis]
    canon = (n - 1 - idx) if letter in _FLIPPED else idx
    return PreparedCT(
        slices=slices,
        plane_ids=torch.full((len(idx),), axis, dtype=torch.long),
        positions=torch.from_numpy(canon / max(1, n - 1)).float(),
        slice_index=torch.from_numpy(canon).long(),
    )
