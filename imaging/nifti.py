"""NIfTI-1/-2 (`.nii`, `.nii.gz`) -> canonical `Volume`.

The header is parsed and checked before a single pixel is read, so a 352-byte file that
claims 100000^3 voxels costs nothing. Compression is decided by the bytes (gzip magic), not
by the file name, since uploads and archive members carry arbitrary names.

NIfTI's affine maps (i, j, k) to RAS+ millimetres; DICOM/ITK work in LPS, so x and y are
negated before `imaging.orientation.to_canonical` permutes/flips onto (z, y, x).
"""

from __future__ import annotations

import gzip
import io
import math
import os
import zlib
from pathlib import Path

import numpy as np

from ctscribe.errors import ErrorCode, ImagingError
from imaging.archive import RATIO_MIN_BYTES
from imaging.detect import is_gzip, nifti_version
from imaging.intensity import check_ct_intensities
from imaging.options import ReadOptions
from imaging.volume import PHANTOM_NIFTI_DESCRIP, PHANTOM_SOURCE_HINT, Volume, check_min_slices

_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])
_HU_AIR_CEILING = -500.0
_DEFLATE_MAX_RATIO = 1032
_CHUNK_BYTES = 4 * 1024 * 1024
_GZIP_WBITS = 16 + zlib.MAX_WBITS  # a gzip wrapper, checked (CRC, length) by zlib itself


def read_nifti(path: str | Path, options: ReadOptions = ReadOptions()) -> Volume:
    """Read a single-file NIfTI as a canonical HU volume (see module doc)."""
    import nibabel as nib

    path = Path(path)
    gz = is_gzip(path)
    opener = gzip.open if gz else open
    with opener(path, "rb") as f:
        head = f.read(540)
    version = nifti_version(head)
    if not version:
        raise ImagingError(ErrorCode.UNSUPPORTED_FORMAT, "not a single-file NIfTI (.nii / .nii.gz)")
    header_class = nib.Nifti1Header if version == 1 else nib.Nifti2Header
    try:
        # Our checks see the header as written; nibabel's checked copy (which quietly "fixes"
        # e.g. a zero pixdim to 1) is what the pixels are read with.
        raw_header = header_class.from_fileobj(io.BytesIO(head), check=False)
        shape_xyz = check_header(raw_header, options)
        header = header_class.from_fileobj(io.BytesIO(head), check=True)
    except ImagingError:
        raise
    except Exception as exc:
        raise ImagingError(ErrorCode.CORRUPT_FILE, f"invalid NIfTI header: {exc}") from None
    dtype = _data_dtype(header)
    offset = int(header.get_data_offset())
    n_bytes = math.prod(shape_xyz) * dtype.itemsize
    file_bytes = os.path.getsize(path)
    # deflate cannot beat ~1032:1, so a .nii.gz far too small for its header is refused before
    # a buffer of the declared size is allocated.
    if offset + n_bytes > file_bytes * (_DEFLATE_MAX_RATIO if gz else 1):
        raise ImagingError(
            ErrorCode.CORRUPT_FILE,
            f"truncated NIfTI: the header declares {offset + n_bytes} bytes of data, "
            f"the {'compressed ' if gz else ''}file has {file_bytes}",
        )
    if gz:
        _check_inflation(offset + n_bytes, file_bytes, options)
    affine_ras = np.asarray(header.get_best_affine(), dtype=np.float64)
    if not np.all(np.isfinite(affine_ras)):
        raise ImagingError(
            ErrorCode.CORRUPT_FILE, "the NIfTI affine (qform/sform) has NaN or infinite values"
        )

    warnings: list[str] = []
    slope, inter = _scaling(header, options, warnings)
    n_voxels = math.prod(shape_xyz)
    try:
        hu_flat = _read_voxels(path, gz, offset, dtype, n_voxels, slope, inter)
    except (MemoryError, ImagingError):
        raise
    except Exception as exc:  # OSError/EOFError/zlib.error from a damaged stream
        raise ImagingError(ErrorCode.CORRUPT_FILE, f"cannot read NIfTI voxels: {exc}") from None
    # File order is i fastest, so the flat array viewed C-order (k, j, i) needs no copy.
    hu_kji = hu_flat.reshape(shape_xyz[::-1])
    _check_values(hu_kji, slope, inter, header, options, warnings)

    matrix_lps = _RAS_TO_LPS @ affine_ras[:3, :3]
    spacing_ijk = np.linalg.norm(matrix_lps, axis=0)
    if np.any(spacing_ijk < 1e-6) or abs(np.linalg.det(matrix_lps)) < 1e-9:
        raise ImagingError(ErrorCode.CORRUPT_FILE, "the NIfTI affine is singular (zero voxel size)")
    direction = matrix_lps / spacing_ijk
    origin_lps = _RAS_TO_LPS @ affine_ras[:3, 3]
    if int(header["sform_code"]) == 0 and int(header["qform_code"]) == 0:
        warnings.append("NIfTI has no qform/sform: orientation taken from pixdim alone (may be wrong)")
    meta = {
        "nifti_version": version,
        "datatype": str(dtype),
        "qform_code": int(header["qform_code"]),
        "sform_code": int(header["sform_code"]),
    }
    if _descrip(header) == PHANTOM_NIFTI_DESCRIP:  # the free text itself is not kept: it may identify
        meta["source_hint"] = PHANTOM_SOURCE_HINT
    return canonical_volume(hu_kji, direction, origin_lps, spacing_ijk, "nifti", options, warnings, meta)


def _check_inflation(declared_bytes: int, file_bytes: int, options: ReadOptions) -> None:
    """A .nii.gz is held to the limits of a zip member (imaging.archive), from its header alone:
    at most `max_archive_bytes` inflated, and at most `max_compression_ratio` : 1 once it
    inflates past RATIO_MIN_BYTES. CT compresses 2-5 : 1 (noise does not compress); a file far
    past the cap is mostly one repeated value, a decompression bomb. Inflating never goes
    past the declared size (`_data_chunks`), so these checks bound the work too."""
    what = f"a compressed NIfTI of {file_bytes} bytes whose header declares {declared_bytes}"
    if declared_bytes > options.max_archive_bytes:
        raise ImagingError(
            ErrorCode.ARCHIVE_LIMITS_EXCEEDED,
            f"{what} inflated (limit {options.max_archive_bytes})",
        )
    ratio = declared_bytes / max(file_bytes, 1)
    if declared_bytes >= RATIO_MIN_BYTES and ratio > options.max_compression_ratio:
        raise ImagingError(
            ErrorCode.ARCHIVE_LIMITS_EXCEEDED,
            f"{what}: a compression ratio of {ratio:.0f}:1 (limit {options.max_compression_ratio:g}:1)",
        )


def _descrip(header) -> str:
    """The header's 80-byte `descrip` text ("" when unreadable)."""
    try:
        raw = bytes(header["descrip"].item())
    except Exception:  # noqa: BLE001 - a description is never worth failing a read
        return ""
    return raw.split(b"\0", 1)[0].decode("latin-1").strip()


def check_header(header, options: ReadOptions) -> tuple[int, int, int]:
    """Validate dims/pixdim/voxel count from the header alone; return the 3D shape (x, y, z)."""
    dim = [int(d) for d in header["dim"]]
    n_dims = dim[0]
    if not 1 <= n_dims <= 7:
        raise ImagingError(ErrorCode.CORRUPT_FILE, f"invalid NIfTI dim[0] = {n_dims}")
    shape = dim[1 : 1 + n_dims]
    if any(n <= 0 for n in shape):
        raise ImagingError(ErrorCode.CORRUPT_FILE, f"NIfTI has a zero or negative dimension: {shape}")
    if n_dims < 3 or any(n != 1 for n in shape[3:]):
        raise ImagingError(
            ErrorCode.NOT_3D, f"expected a 3D volume (4D with one time point), got shape {shape}"
        )
    shape_xyz = (shape[0], shape[1], shape[2])
    check_voxel_count(shape_xyz, options)
    pixdim = np.asarray(header["pixdim"][1:4], dtype=np.float64)
    # A zero voxel size is harmless when the sform carries the geometry, fatal otherwise.
    zero_used = np.any(pixdim == 0) and int(header["sform_code"]) <= 0
    if not np.all(np.isfinite(pixdim)) or zero_used:
        raise ImagingError(ErrorCode.CORRUPT_FILE, f"invalid NIfTI voxel size pixdim = {pixdim.tolist()}")
    return shape_xyz


def check_voxel_count(shape, options: ReadOptions) -> None:
    """Refuse volumes with fewer than 2 voxels along an axis or more voxels than the cap."""
    if any(int(n) < 2 for n in shape):
        raise ImagingError(
            ErrorCode.NOT_3D, f"a volume needs at least 2 voxels along each axis, got {list(shape)}"
        )
    n_voxels = math.prod(int(n) for n in shape)
    if n_voxels > options.max_voxels:
        raise ImagingError(
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"the volume has {n_voxels} voxels {list(shape)}; the limit is {options.max_voxels}",
        )


def canonical_volume(
    voxels_kji: np.ndarray,
    direction_lps: np.ndarray,
    origin_lps_mm,
    spacing_mm_ijk,
    fmt: str,
    options: ReadOptions,
    warnings: list[str],
    meta: dict,
) -> Volume:
    """Reorient a reader's [k, j, i] array to the canonical Volume (shared by NIfTI and SimpleITK)."""
    from imaging.orientation import to_canonical

    hu, spacing_zyx, origin, code, orient_warnings = to_canonical(
        voxels_kji,
        direction_lps,
        origin_lps_mm,
        spacing_mm_ijk,
        tolerance_deg=options.oblique_tolerance_deg,
        on_oblique=options.on_oblique,
        in_place=True,  # both callers hand over an array they own
    )
    check_min_slices(hu.shape, options.min_slices)
    hu = np.ascontiguousarray(hu, dtype=np.float32)
    return Volume(
        hu=hu,
        spacing_mm_zyx=spacing_zyx,
        origin_mm=origin,
        format=fmt,
        orientation_in=code,
        warnings=warnings + orient_warnings,
        meta=meta,
    )


def _data_dtype(header) -> np.dtype:
    try:
        dtype = np.dtype(header.get_data_dtype())
    except Exception as exc:
        raise ImagingError(ErrorCode.CORRUPT_FILE, f"unknown NIfTI datatype: {exc}") from None
    if dtype.fields is not None or dtype.kind not in "iuf":
        raise ImagingError(ErrorCode.UNSUPPORTED_FORMAT, f"NIfTI datatype {dtype} is not a scalar CT image")
    return dtype


def _scaling(header, options: ReadOptions, warnings: list[str]) -> tuple[float, float]:
    """(slope, intercept) to HU: the file's scl_slope/scl_inter, or the caller's override."""
    file_slope, file_inter = _file_scaling(header)
    slope = file_slope if options.rescale_slope is None else float(options.rescale_slope)
    inter = file_inter if options.rescale_intercept is None else float(options.rescale_intercept)
    if not (math.isfinite(slope) and math.isfinite(inter)) or slope == 0:
        raise ImagingError(
            ErrorCode.INVALID_REQUEST, f"invalid rescale override slope={slope} intercept={inter}"
        )
    overridden = options.rescale_slope is not None or options.rescale_intercept is not None
    if overridden and (slope, inter) != (file_slope, file_inter) and (file_slope, file_inter) != (1.0, 0.0):
        warnings.append(
            f"rescale override slope={slope:g} intercept={inter:g} replaces the file's "
            f"scl_slope={file_slope:g} scl_inter={file_inter:g}"
        )
    return slope, inter


def _file_scaling(header) -> tuple[float, float]:
    file_slope, file_inter = header.get_slope_inter()  # None, None when the file says "unscaled"
    file_slope = 1.0 if file_slope is None else float(file_slope)
    file_inter = 0.0 if file_inter is None else float(file_inter)
    if not (math.isfinite(file_slope) and math.isfinite(file_inter)):
        raise ImagingError(ErrorCode.CORRUPT_FILE, "NIfTI scl_slope/scl_inter are not finite")
    return file_slope, file_inter


def _read_voxels(
    path: Path, gz: bool, offset: int, dtype: np.dtype, n_voxels: int, slope: float, inter: float
) -> np.ndarray:
    """Stream the voxels into one float32 array, scaling chunk by chunk.

    Decompressing and converting a chunk at a time keeps the peak at the float32 result
    (no full-size copy of the stored integers) and converts while the chunk is in cache.
    """
    out = np.empty(n_voxels, dtype=np.float32)
    item = dtype.itemsize
    filled = 0  # voxels written
    pending = b""  # bytes of a voxel split across chunks
    for chunk in _data_chunks(path, gz, offset, n_voxels * item):
        if pending:
            chunk = pending + chunk
        usable = len(chunk) - len(chunk) % item
        pending = chunk[usable:]
        values = np.frombuffer(chunk, dtype=dtype, count=usable // item)
        segment = out[filled : filled + len(values)]
        segment[...] = values  # casts (and byte-swaps) into float32
        if slope != 1.0:
            segment *= np.float32(slope)
        if inter != 0.0:
            segment += np.float32(inter)
        filled += len(values)
    if filled != n_voxels:
        raise ImagingError(ErrorCode.CORRUPT_FILE, f"truncated NIfTI: {filled} of {n_voxels} voxels present")
    return out


def _data_chunks(path: Path, gz: bool, offset: int, n_bytes: int):
    """Yield exactly the bytes [offset, offset + n_bytes) of the (decompressed) file, or fewer
    if the file ends early; a gzip stream is then checked to its end (CRC)."""
    with open(path, "rb") as f:
        if not gz:
            f.seek(offset)
            remaining = n_bytes
            while remaining and (chunk := f.read(min(remaining, _CHUNK_BYTES))):
                remaining -= len(chunk)
                yield chunk
            return
        inflater = zlib.decompressobj(wbits=_GZIP_WBITS)
        skip, remaining = offset, n_bytes
        while remaining:
            compressed = inflater.unconsumed_tail or f.read(_CHUNK_BYTES)
            if not compressed:
                if inflater.eof and inflater.unused_data:  # concatenated gzip members
                    compressed, inflater = inflater.unused_data, zlib.decompressobj(wbits=_GZIP_WBITS)
                else:
                    return  # the file ends early; the caller reports the shortfall
            elif inflater.eof:
                # the stream ended: more members may follow in what is left of the file
                compressed, inflater = (
                    inflater.unused_data + compressed,
                    zlib.decompressobj(wbits=_GZIP_WBITS),
                )
            # max_length bounds every step, whatever the compression ratio
            chunk = inflater.decompress(compressed, _CHUNK_BYTES)
            if skip:
                dropped = min(skip, len(chunk))
                chunk, skip = chunk[dropped:], skip - dropped
            if len(chunk) > remaining:
                chunk = chunk[:remaining]
            remaining -= len(chunk)
            if chunk:
                yield chunk
        # Finish the stream (normally just the 8-byte trailer) so zlib verifies the CRC;
        # any amount of trailing data past the voxels is not inflated.
        while not inflater.eof:
            compressed = inflater.unconsumed_tail or f.read(_CHUNK_BYTES)
            if not compressed or len(inflater.decompress(compressed, _CHUNK_BYTES)) == _CHUNK_BYTES:
                break


def _check_values(hu: np.ndarray, slope: float, inter: float, header, options, warnings: list[str]) -> None:
    """Non-finite voxels are corrupt, values that cannot be CT are `not_ct`
    (imaging.intensity); raw-looking or twice-rescaled values get a warning."""
    lo, hi = float(hu.min()), float(hu.max())
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ImagingError(ErrorCode.CORRUPT_FILE, "NIfTI voxels contain NaN or infinite values")
    warnings.extend(check_ct_intensities(hu, "NIfTI"))
    overridden = options.rescale_slope is not None or options.rescale_intercept is not None
    if not overridden:
        return
    file_slope, file_inter = _file_scaling(header)
    stored_lo = (lo - inter) / slope if slope > 0 else (hi - inter) / slope
    file_lo = stored_lo * file_slope + file_inter
    if file_lo < _HU_AIR_CEILING and inter < 0:
        warnings.append(
            f"values already look like HU (minimum {file_lo:.0f}) but a rescale intercept of {inter:g} "
            "was applied: check the data is not rescaled twice (e.g. CT-RATE v2 '_fixed' volumes)"
        )

