"""Array orientation -> the canonical (z, y, x) LPS layout of DESIGN.md §2.

Every reader ends here: it knows its voxels in ITK (i, j, k) index order (i fastest, as
`SimpleITK.GetArrayFromImage` returns them: array[k, j, i]), the direction cosines of
those axes in DICOM LPS patient space, the origin and the spacing. Axis-aligned inputs are
permuted and flipped (values untouched, no interpolation); oblique or sheared (gantry
tilt) inputs are either refused or resampled onto the nearest canonical grid.
"""

from __future__ import annotations

from itertools import permutations

import numpy as np

from ctscribe.errors import ErrorCode, ImagingError

# Letter for the patient direction an axis increases towards: +x = Left, +y = Posterior,
# +z = Superior in LPS; the negative directions are Right, Anterior, Inferior.
_POS_LETTERS = "LPS"
_NEG_LETTERS = "RAI"
# Below this angle off the axes the direction is treated as exact (float noise in headers).
_SILENT_OBLIQUE_DEG = 0.1


def _as_direction(direction) -> np.ndarray:
    d = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    norms = np.linalg.norm(d, axis=0)
    if not np.all(np.isfinite(d)) or np.any(norms < 1e-6):
        raise ImagingError(ErrorCode.CORRUPT_FILE, "direction cosines are degenerate (zero or not finite)")
    return d / norms  # columns as unit vectors


def axis_assignment(direction) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """For each index axis (i, j, k): the patient axis (0=x, 1=y, 2=z) it is closest to, and its sign.

    A best one-to-one assignment (over the 6 permutations) so a 45° oblique cannot map two
    index axes onto the same patient axis.
    """
    d = np.abs(_as_direction(direction))
    best = max(permutations(range(3)), key=lambda p: sum(d[p[m], m] for m in range(3)))
    unit = _as_direction(direction)
    signs = tuple(1 if unit[best[m], m] >= 0 else -1 for m in range(3))
    return tuple(best), signs  # type: ignore[return-value]


def orientation_code(direction: np.ndarray) -> str:
    """nibabel-style axcodes of the (i, j, k) axes, e.g. 'LPS' (canonical) or 'RAS' (typical NIfTI).

    `direction` is (3, 3) LPS direction cosines, column m the physical direction of index axis m.
    Oblique directions get the nearest axes' letters.
    """
    perm, signs = axis_assignment(direction)
    return "".join((_POS_LETTERS if s > 0 else _NEG_LETTERS)[p] for p, s in zip(perm, signs, strict=True))


def max_axis_deviation_deg(direction) -> float:
    """Largest angle (degrees) between an index axis and the patient axis it is assigned to."""
    unit = _as_direction(direction)
    perm, _ = axis_assignment(unit)
    cosines = np.clip([abs(unit[perm[m], m]) for m in range(3)], 0.0, 1.0)
    return float(np.degrees(np.arccos(cosines.min())))


def to_canonical(
    voxels_kji: np.ndarray,
    direction: np.ndarray,
    origin_lps_mm,
    spacing_mm_ijk,
    *,
    tolerance_deg: float = 3.0,
    on_oblique: str = "reject",
    in_place: bool = False,
) -> tuple[np.ndarray, tuple[float, float, float], tuple[float, float, float], str, list[str]]:
    """Reorient `voxels_kji` (indexed [k, j, i]) to canonical (z, y, x).

    Returns (hu_zyx, spacing_mm_zyx, origin_lps_mm of the new voxel [0, 0, 0], orientation_in,
    warnings). Within `tolerance_deg` of the axes only permutes and flips (values untouched);
    further off: ImagingError(oblique_orientation) when `on_oblique == "reject"`, else
    trilinear resampling onto the nearest canonical grid with a warning.
    `in_place`: the caller gives up `voxels_kji`; flips without a permutation (RAS, the usual
    NIfTI layout) then reuse its memory instead of a second volume-sized copy.
    """
    if voxels_kji.ndim != 3:
        raise ImagingError(ErrorCode.NOT_3D, f"expected a 3D array, got {voxels_kji.ndim}D")
    unit = _as_direction(direction)
    origin = np.asarray(origin_lps_mm, dtype=np.float64).reshape(3)
    spacing_ijk = np.asarray(spacing_mm_ijk, dtype=np.float64).reshape(3)
    code = orientation_code(unit)
    warnings: list[str] = []
    deviation_deg = max_axis_deviation_deg(unit)
    if deviation_deg > tolerance_deg:
        message = (
            f"orientation {code} is oblique: an axis is {deviation_deg:.1f} deg off the patient axes "
            f"(tolerance {tolerance_deg:g} deg)"
        )
        if on_oblique != "resample":
            raise ImagingError(ErrorCode.OBLIQUE_ORIENTATION, message)
        hu, spacing_zyx, origin_new = resample_to_canonical(voxels_kji, unit, origin, spacing_ijk)
        warnings.append(message + "; resampled onto the nearest canonical grid (trilinear)")
        return hu, spacing_zyx, origin_new, code, warnings
    if deviation_deg > _SILENT_OBLIQUE_DEG:
        warnings.append(
            f"orientation {code} is {deviation_deg:.2f} deg off the patient axes (within "
            f"{tolerance_deg:g} deg): treated as axis-aligned without resampling"
        )

    perm, signs = axis_assignment(unit)
    # Output array axis b holds patient axis 2 - b (z, y, x); find the index axis m feeding it.
    m_for_patient = {perm[m]: m for m in range(3)}
    ms = [m_for_patient[2 - b] for b in range(3)]  # index axis (i=0, j=1, k=2) per output axis
    arr = np.transpose(voxels_kji, [2 - m for m in ms])  # array axis of index axis m is 2 - m
    shape_ijk = (voxels_kji.shape[2], voxels_kji.shape[1], voxels_kji.shape[0])
    flips = [b for b in range(3) if signs[ms[b]] < 0]
    reuse = in_place and ms == [2, 1, 0] and voxels_kji.flags.c_contiguous and voxels_kji.flags.writeable
    if flips and reuse:
        arr = _flip_in_place(voxels_kji, flips)
    elif flips:
        arr = np.flip(arr, axis=flips)
    # The new voxel 0 is the old voxel at the far end of every flipped axis (exact directions,
    # not the snapped ones, so the origin stays a true patient position).
    new_origin = origin.copy()
    for b in flips:
        m = ms[b]
        new_origin += (shape_ijk[m] - 1) * spacing_ijk[m] * unit[:, m]
    spacing_zyx = tuple(float(spacing_ijk[m]) for m in ms)
    hu = np.ascontiguousarray(arr)
    return hu, spacing_zyx, tuple(float(v) for v in new_origin), code, warnings  # type: ignore[return-value]


def _flip_in_place(arr: np.ndarray, axes: list[int]) -> np.ndarray:
    """`np.flip(arr, axes)` written into `arr` itself, one plane of scratch at a time."""
    in_plane = tuple(slice(None, None, -1) if b in axes else slice(None) for b in (1, 2))
    n = arr.shape[0]
    if 0 not in axes:
        for k in range(n):
            arr[k] = arr[k][in_plane].copy()
        return arr
    for k in range(n // 2):  # swap plane k with its mirror, each flipped in-plane
        low = arr[k][in_plane].copy()
        arr[k] = arr[n - 1 - k][in_plane]
        arr[n - 1 - k] = low
    if n % 2:
        arr[n // 2] = arr[n // 2][in_plane].copy()
    return arr


def resample_to_canonical(
    voxels_kji: np.ndarray,
    direction: np.ndarray,
    origin_lps_mm,
    spacing_mm_ijk,
    *,
    spacing_out_mm_zyx: tuple[float, float, float] | None = None,
    fill_value: float | None = None,
) -> tuple[np.ndarray, tuple[float, float, float], tuple[float, float, float]]:
    """Trilinear resampling of any (oblique or sheared) grid onto an axis-aligned canonical one.

    `direction` columns need not be orthogonal (a gantry-tilted stack is a shear), only
    independent. The output grid covers the input's bounding box; voxels outside the input
    get `fill_value` (default: the input minimum, i.e. air for CT). Returns (hu_zyx,
    spacing_mm_zyx, origin_lps_mm).
    """
    from scipy import ndimage  # only oblique/tilted inputs pay for the import

    d = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    d = d / np.linalg.norm(d, axis=0)
    if abs(np.linalg.det(d)) < 1e-3:
        raise ImagingError(ErrorCode.CORRUPT_FILE, "direction cosines are not independent")
    origin = np.asarray(origin_lps_mm, dtype=np.float64).reshape(3)
    spacing_ijk = np.asarray(spacing_mm_ijk, dtype=np.float64).reshape(3)
    if spacing_out_mm_zyx is None:
        perm, _ = axis_assignment(d)
        m_for_patient = {perm[m]: m for m in range(3)}
        spacing_out_mm_zyx = tuple(float(spacing_ijk[m_for_patient[2 - b]]) for b in range(3))
    spacing_out_xyz = np.asarray(spacing_out_mm_zyx, dtype=np.float64)[::-1]

    n_ijk = np.array([voxels_kji.shape[2], voxels_kji.shape[1], voxels_kji.shape[0]], dtype=np.float64)
    corners_ijk = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], dtype=np.float64)
    corners_ijk *= n_ijk - 1  # (8, 3)
    affine_ijk_to_lps = d * spacing_ijk  # column m scaled by its spacing
    corners_lps = origin + corners_ijk @ affine_ijk_to_lps.T  # (8, 3)
    lo, hi = corners_lps.min(axis=0), corners_lps.max(axis=0)
    n_out_xyz = np.floor((hi - lo) / spacing_out_xyz + 1e-6).astype(int) + 1

    # Output index (z, y, x) -> LPS -> input index (i, j, k) -> array index (k, j, i).
    out_zyx_to_lps = np.diag(spacing_out_xyz)[:, ::-1]  # (3 lps, 3 zyx)
    lps_to_ijk = np.linalg.inv(affine_ijk_to_lps)
    ijk_from_zyx = lps_to_ijk @ out_zyx_to_lps
    kji_from_zyx = ijk_from_zyx[::-1]
    offset_kji = (lps_to_ijk @ (lo - origin))[::-1]
    fill = float(voxels_kji.min()) if fill_value is None else float(fill_value)
    hu = ndimage.affine_transform(
        np.asarray(voxels_kji, dtype=np.float32),
        kji_from_zyx,
        offset=offset_kji,
        output_shape=tuple(int(n) for n in n_out_xyz[::-1]),
        order=1,
        mode="constant",
        cval=fill,
    )
    spacing_zyx = tuple(float(s) for s in spacing_out_xyz[::-1])
    return hu.astype(np.float32, copy=False), spacing_zyx, tuple(float(v) for v in lo)  # type: ignore[return-value]
