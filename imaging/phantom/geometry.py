"""The voxel grid in patient millimetres and small shape primitives on it.

Patient coordinates are DICOM LPS in millimetres with the origin at the centre of the
field of view: +x towards the patient's Left, +y Posterior, +z Superior. Every shape
function takes broadcastable coordinate arrays, so the same code answers "is this point
inside the right lower lobe?" for a handful of sample points and for the whole grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Grid:
    """A canonical (z, y, x) voxel grid centred on the patient-space origin."""

    shape_zyx: tuple[int, int, int]
    spacing_mm_zyx: tuple[float, float, float]

    @property
    def origin_mm_xyz(self) -> tuple[float, float, float]:
        """LPS position of voxel [0, 0, 0] (most right, anterior, inferior corner)."""
        nz, ny, nx = self.shape_zyx
        sz, sy, sx = self.spacing_mm_zyx
        return (-(nx - 1) / 2 * sx, -(ny - 1) / 2 * sy, -(nz - 1) / 2 * sz)

    def axes_mm(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """1-D coordinates (x, y, z) of the voxel centres, float32."""
        nz, ny, nx = self.shape_zyx
        sz, sy, sx = self.spacing_mm_zyx
        ox, oy, oz = self.origin_mm_xyz
        x = (ox + sx * np.arange(nx)).astype(np.float32)
        y = (oy + sy * np.arange(ny)).astype(np.float32)
        z = (oz + sz * np.arange(nz)).astype(np.float32)
        return x, y, z

    def mesh(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable X (1,1,nx), Y (1,ny,1), Z (nz,1,1) in mm."""
        x, y, z = self.axes_mm()
        return x[None, None, :], y[None, :, None], z[:, None, None]

    def index_of(self, point_mm_xyz) -> tuple[int, int, int]:
        """Nearest voxel index (z, y, x) of an LPS point, clipped to the grid."""
        ox, oy, oz = self.origin_mm_xyz
        sz, sy, sx = self.spacing_mm_zyx
        x, y, z = point_mm_xyz
        idx = (round((z - oz) / sz), round((y - oy) / sy), round((x - ox) / sx))
        return tuple(int(np.clip(i, 0, n - 1)) for i, n in zip(idx, self.shape_zyx, strict=True))  # type: ignore[return-value]

    def snap(self, point_mm_xyz) -> tuple[float, float, float]:
        """The centre of the voxel nearest to a point: small objects placed on voxel centres
        are never lost between thick slices."""
        k, j, i = self.index_of(point_mm_xyz)
        ox, oy, oz = self.origin_mm_xyz
        sz, sy, sx = self.spacing_mm_zyx
        return (ox + i * sx, oy + j * sy, oz + k * sz)

    def box(self, lo_mm_xyz, hi_mm_xyz) -> tuple[tuple[slice, slice, slice], tuple[np.ndarray, ...]] | None:
        """Slices (z, y, x) of the voxels inside an axis-aligned mm box and their mesh, or None if empty."""
        x, y, z = self.axes_mm()
        slices = []
        for axis, lo, hi in (
            (z, lo_mm_xyz[2], hi_mm_xyz[2]),
            (y, lo_mm_xyz[1], hi_mm_xyz[1]),
            (x, lo_mm_xyz[0], hi_mm_xyz[0]),
        ):
            start = int(np.searchsorted(axis, lo, side="left"))
            stop = int(np.searchsorted(axis, hi, side="right"))
            if stop <= start:
                return None
            slices.append(slice(start, stop))
        sl = (slices[0], slices[1], slices[2])
        return sl, (x[sl[2]][None, None, :], y[sl[1]][None, :, None], z[sl[0]][:, None, None])


def ellipsoid_norm(X, Y, Z, centre_xyz, semi_axes_xyz):
    """Squared normalised radius: < 1 inside the axis-aligned ellipsoid."""
    cx, cy, cz = centre_xyz
    ax, ay, az = semi_axes_xyz
    return ((X - cx) / ax) ** 2 + ((Y - cy) / ay) ** 2 + ((Z - cz) / az) ** 2


def segment_distance(X, Y, Z, p0_xyz, p1_xyz):
    """Distance (mm) from points to the segment p0-p1."""
    p0 = np.asarray(p0_xyz, dtype=np.float32)
    d = np.asarray(p1_xyz, dtype=np.float32) - p0
    length2 = float(d @ d) or 1e-6
    t = np.clip(((X - p0[0]) * d[0] + (Y - p0[1]) * d[1] + (Z - p0[2]) * d[2]) / length2, 0.0, 1.0)
    return np.sqrt((X - p0[0] - t * d[0]) ** 2 + (Y - p0[1] - t * d[1]) ** 2 + (Z - p0[2] - t * d[2]) ** 2)


def ball(grid: Grid, centre_xyz, radius_mm: float):
    """(slices, inside) of the voxels within `radius_mm` of a point, or None off the grid."""
    c = np.asarray(centre_xyz, dtype=np.float32)
    found = grid.box(c - radius_mm, c + radius_mm)
    if found is None:
        return None
    sl, (X, Y, Z) = found
    return sl, (X - c[0]) ** 2 + (Y - c[1]) ** 2 + (Z - c[2]) ** 2 <= radius_mm**2


def tube(grid: Grid, p0_xyz, p1_xyz, radius_mm: float):
    """(slices, inside) of the voxels within `radius_mm` of the segment p0-p1, or None."""
    p0 = np.asarray(p0_xyz, dtype=np.float32)
    p1 = np.asarray(p1_xyz, dtype=np.float32)
    found = grid.box(np.minimum(p0, p1) - radius_mm, np.maximum(p0, p1) + radius_mm)
    if found is None:
        return None
    sl, (X, Y, Z) = found
    return sl, segment_distance(X, Y, Z, p0, p1) <= radius_mm


def paint(hu: np.ndarray, region, value: float, within: np.ndarray | None = None) -> None:
    """Write `value` into a (slices, inside) region, optionally only where the full-size mask `within` holds."""
    if region is None:
        return
    sl, inside = region
    if within is not None:
        inside = inside & within[sl]
    hu[sl][inside] = value


def _upsample_linear(a: np.ndarray, n_out: int, axis: int) -> np.ndarray:
    """Linear interpolation of `a` along `axis` onto `n_out` samples (ends aligned).

    Element-wise gathers, not a matrix product: no BLAS, so the result is bit-identical on
    every machine (the dataset promises byte-identical files per seed)."""
    n_in = a.shape[axis]
    pos = np.linspace(0.0, n_in - 1.0, n_out)
    lo = np.minimum(np.floor(pos).astype(int), n_in - 2)
    shape = [1] * a.ndim
    shape[axis] = n_out
    frac = (pos - lo).astype(np.float32).reshape(shape)
    return np.take(a, lo, axis=axis) * (1.0 - frac) + np.take(a, lo + 1, axis=axis) * frac


def smooth_field(rng: np.random.Generator, shape_zyx, cell_vox) -> np.ndarray:
    """Zero-mean unit-variance random field varying on a scale of `cell_vox` voxels per axis:
    white noise on a coarse lattice, linearly interpolated one axis at a time (far cheaper
    than `ndimage.zoom`)."""
    coarse_shape = tuple(max(2, int(np.ceil(n / c)) + 1) for n, c in zip(shape_zyx, cell_vox, strict=True))
    field = rng.standard_normal(coarse_shape, dtype=np.float32)
    for axis in (2, 1, 0):  # cheapest order: the coarse axes grow last
        field = _upsample_linear(field, shape_zyx[axis], axis)
    mean, std = float(field.mean(dtype=np.float64)), float(field.std(dtype=np.float64))
    return ((field - np.float32(mean)) / np.float32(std + 1e-6)).astype(np.float32)
