"""Pixel pass: decode the chosen series' slices into one preallocated float32 HU stack.

Transfer syntaxes are checked against pydicom's decoders (with the installed pylibjpeg /
openjpeg / libjpeg plugins) before anything is decoded, so an unsupported one is one clear
error, not a failure on slice 37. Each slice gets its own RescaleSlope / RescaleIntercept:
scanners may vary them per image.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np
from pydicom import dcmread
from pydicom.pixels import get_decoder, pixel_array
from pydicom.uid import UID

from ctscribe.errors import ErrorCode, ImagingError
from imaging.dicom.headers import SliceHeader

# Uncompressed data decodes faster in one thread (the work is Python-bound file parsing);
# compressed data spends its time in C decoders, where threads pay on multi-core machines.
_NATIVE_SYNTAXES = {
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.1.99",
}
MAX_DECODE_THREADS = 8
_EXPLICIT_LE, _IMPLICIT_LE = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2"
_PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"  # (7FE0,0010) little endian
_DEFLATED = {"1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.8.1"}


def transfer_syntax_name(uid: str) -> str:
    name = UID(uid).name
    return name if name and name != uid else f"unknown syntax {uid[:64]}"


def check_transfer_syntaxes(slices: Sequence[SliceHeader]) -> None:
    """Raise unsupported_transfer_syntax unless every slice's encoding can be decoded here."""
    for uid in sorted({s.transfer_syntax for s in slices}):
        if uid in _NATIVE_SYNTAXES:
            continue
        try:
            decoder = get_decoder(UID(uid))
        except (NotImplementedError, ValueError, KeyError):
            raise ImagingError(
                ErrorCode.UNSUPPORTED_TRANSFER_SYNTAX,
                f"pixel data encoded as {transfer_syntax_name(uid)}: no decoder for it",
            ) from None
        if not decoder.is_available:
            raise ImagingError(
                ErrorCode.UNSUPPORTED_TRANSFER_SYNTAX,
                f"pixel data encoded as {transfer_syntax_name(uid)}: its decoder plugin is not installed",
            )


def _read_raw16(header: SliceHeader, n_values: int, label: str) -> np.ndarray | None:
    """Uncompressed little-endian 16-bit slice straight from the file offset the header pass found.

    pydicom would parse the whole header a second time for each slice; this reads the one
    element directly. Returns None (use pydicom) for anything but the plain, common case.
    """
    if (
        header.pixel_offset is None
        or header.transfer_syntax not in (_EXPLICIT_LE, _IMPLICIT_LE)
        or header.bits_allocated != 16
        or header.samples_per_pixel != 1
    ):
        return None
    with open(header.path, "rb") as fh:
        fh.seek(header.pixel_offset)
        head = fh.read(8)
        if head[:4] != _PIXEL_DATA_TAG:
            return None
        if header.transfer_syntax == _EXPLICIT_LE:
            if head[4:6] not in (b"OW", b"OB", b"UN"):
                return None
            length = int.from_bytes(fh.read(4), "little")
        else:
            length = int.from_bytes(head[4:8], "little")
        if length != 2 * n_values:
            return None  # odd layout (padding, extra frames, misdeclared VR): pydicom decides
        dtype = "<i2" if header.pixel_representation == 1 else "<u2"
        arr = np.fromfile(fh, dtype=dtype, count=n_values)
    if arr.size < n_values:
        raise ImagingError(ErrorCode.CORRUPT_FILE, f"{label}: pixel data truncated")
    unused_bits = 16 - header.bits_stored
    if 0 < unused_bits < 16:
        if header.pixel_representation == 1:
            arr = (arr << unused_bits) >> unused_bits  # sign-extend from BitsStored
        else:
            arr &= (1 << header.bits_stored) - 1  # high bits may carry overlays or junk
    return arr


def _decode_with_pydicom(header: SliceHeader) -> np.ndarray:
    # `pixel_array(path)` reads only the elements it needs, but cannot inflate deflated data
    # sets; those (and any file it trips on) get one full `dcmread` before being called corrupt.
    # A file without preamble and file meta (old ACR-NEMA style) is read as the header pass
    # read it: forced, in the transfer syntax that pass found.
    if header.transfer_syntax not in _DEFLATED:
        try:
            return pixel_array(header.path)
        except Exception:  # noqa: BLE001 - retried below; a second failure is reported
            pass
    ds = dcmread(header.path, force=True)
    if "TransferSyntaxUID" not in ds.file_meta:
        ds.file_meta.TransferSyntaxUID = UID(header.transfer_syntax)
    return ds.pixel_array


def _corrupt(label: str, exc: Exception) -> ImagingError:
    return ImagingError(
        ErrorCode.CORRUPT_FILE, f"{label}: pixel data cannot be decoded ({type(exc).__name__})"
    )


def _rescale_into(out: np.ndarray, k: int, arr: np.ndarray, header: SliceHeader, label: str) -> None:
    if arr.shape != out.shape[1:]:
        raise ImagingError(
            ErrorCode.CORRUPT_FILE, f"{label}: decoded {arr.shape}, header declares {out.shape[1:]}"
        )
    slope, intercept = np.float32(header.slope), np.float32(header.intercept)
    if slope == 1:
        np.add(arr, intercept, out=out[k], casting="unsafe")
    else:
        np.multiply(arr, slope, out=out[k], casting="unsafe")
        out[k] += intercept


def _decode_into(out: np.ndarray, k: int, header: SliceHeader) -> None:
    label = f"slice {k + 1} of {out.shape[0]}"
    arr = _read_raw16(header, out.shape[1] * out.shape[2], label)
    if arr is not None:
        arr = arr.reshape(out.shape[1:])  # (rows, cols)
    else:
        try:
            arr = _decode_with_pydicom(header)
        except Exception as exc:  # noqa: BLE001 - truncated/garbled pixel data in user files
            raise _corrupt(label, exc) from None
    _rescale_into(out, k, arr, header, label)


def _decode_frames_into(out: np.ndarray, targets: list[tuple[int, SliceHeader]]) -> None:
    """All frames of one multi-frame file in one decode (per-frame decodes re-parse its header)."""
    label = f"multi-frame image ({len(targets)} frames)"
    try:
        frames = _decode_with_pydicom(targets[0][1])
    except Exception as exc:  # noqa: BLE001 - truncated/garbled pixel data in user files
        raise _corrupt(label, exc) from None
    if frames.ndim != 3 or any(h.frame >= frames.shape[0] for _, h in targets):  # type: ignore[operator]
        raise ImagingError(
            ErrorCode.CORRUPT_FILE, f"{label}: decoded {frames.shape}, fewer frames than declared"
        )
    for k, header in targets:
        _rescale_into(out, k, frames[header.frame], header, f"slice {k + 1} of {out.shape[0]}")


def read_pixels(slices: Sequence[SliceHeader], rows: int, columns: int) -> np.ndarray:
    """(n, rows, columns) float32 HU, slice k from `slices[k]`, each with its own rescale."""
    out = np.empty((len(slices), rows, columns), dtype=np.float32)  # (K, rows, cols)
    jobs = [partial(_decode_into, out, k, h) for k, h in enumerate(slices) if h.frame is None]
    multi: dict[str, list[tuple[int, SliceHeader]]] = {}
    for k, h in enumerate(slices):
        if h.frame is not None:
            multi.setdefault(str(h.path), []).append((k, h))
    jobs += [partial(_decode_frames_into, out, targets) for targets in multi.values()]
    compressed = any(s.transfer_syntax not in _NATIVE_SYNTAXES for s in slices)
    n_threads = min(MAX_DECODE_THREADS, os.cpu_count() or 1, len(jobs))
    if compressed and n_threads > 1:
        with ThreadPoolExecutor(max_workers=n_threads) as pool:
            # list() re-raises the first decoding error in the caller's thread.
            list(pool.map(lambda job: job(), jobs))
    else:
        for job in jobs:
            job()
    return out
