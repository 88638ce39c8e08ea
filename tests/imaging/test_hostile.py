"""Hostile inputs through `read_volume`: the right error code, quickly, in bounded memory,
with no temporary files left behind."""

from __future__ import annotations

import gzip
import io
import stat
import struct
import tempfile
import time
import tracemalloc
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from ctscribe.errors import ErrorCode, ImagingError
from imaging.options import ReadOptions
from imaging.read import read_volume

MAX_SECONDS = 3.0  # generous for a loaded CI box; the real cost is milliseconds
MAX_PEAK_BYTES = 48 * 1024 * 1024  # Python-tracked (numpy included) allocations while refusing
# NIfTI-1 header offsets (nifti1.h)
DIM_OFFSET, PIXDIM_OFFSET, QOFFSET_X_OFFSET, SROW_X_OFFSET = 40, 76, 268, 280


@pytest.fixture(autouse=True)
def private_tmp(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    yield folder
    assert list(folder.iterdir()) == [], "temporary files left behind"


def _refused(source, code: ErrorCode, options: ReadOptions = ReadOptions()) -> ImagingError:
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(ImagingError) as err:
            read_volume(source, options)
    finally:
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert err.value.code is code, err.value.message
    assert elapsed < MAX_SECONDS
    assert peak < MAX_PEAK_BYTES, f"peak {peak / 1e6:.0f} MB"
    return err.value


def _nifti1(tmp_path: Path, name: str = "v.nii", data=None, patches: dict[int, bytes] | None = None) -> Path:
    data = np.zeros((16, 16, 12), dtype=np.int16) if data is None else data
    raw = bytearray(nib.Nifti1Image(data, np.diag([-1.0, -1.0, 1.0, 1.0])).to_bytes())
    for offset, value in (patches or {}).items():
        raw[offset : offset + len(value)] = value
    path = tmp_path / name
    path.write_bytes(gzip.compress(bytes(raw)) if name.endswith(".gz") else bytes(raw))
    return path


def _dims(*shape: int) -> bytes:
    return struct.pack("<8h", len(shape), *shape, *([1] * (7 - len(shape))))


# ---- single files ---------------------------------------------------------------------------


def test_junk_and_empty(tmp_path):
    junk = tmp_path / "scan.nii.gz"
    junk.write_bytes(np.random.default_rng(1).integers(0, 256, 100_000, dtype=np.uint8).tobytes())
    _refused(junk, ErrorCode.UNSUPPORTED_FORMAT)
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    _refused(empty, ErrorCode.CORRUPT_FILE)


def test_truncated_gzip_nifti(tmp_path):
    noise = np.random.default_rng(2).integers(-1000, 1000, (64, 64, 48), dtype=np.int16)
    whole = _nifti1(tmp_path, "whole.nii.gz", data=noise).read_bytes()
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    _refused(cut, ErrorCode.CORRUPT_FILE)


def test_truncated_plain_nifti(tmp_path):
    whole = _nifti1(tmp_path, "whole.nii").read_bytes()
    cut = tmp_path / "cut.nii"
    cut.write_bytes(whole[:-100])
    assert "truncated" in _refused(cut, ErrorCode.CORRUPT_FILE).message


@pytest.mark.parametrize(
    "patches",
    [
        {PIXDIM_OFFSET + 4: struct.pack("<f", float("nan"))},
        # zero voxel size where the geometry comes from pixdim (qform, no sform)
        {PIXDIM_OFFSET + 8: struct.pack("<f", 0.0), 252: struct.pack("<h", 1), 254: struct.pack("<h", 0)},
        {SROW_X_OFFSET: struct.pack("<f", float("nan"))},
        {SROW_X_OFFSET + 12: struct.pack("<f", float("inf"))},
        {
            QOFFSET_X_OFFSET: struct.pack("<f", float("nan")),
            254: struct.pack("<h", 0),
            252: struct.pack("<h", 1),
        },
    ],
    ids=["nan-pixdim", "zero-pixdim", "nan-srow", "inf-srow-offset", "nan-qform-offset"],
)
def test_non_finite_geometry(tmp_path, patches):
    _refused(_nifti1(tmp_path, "v.nii.gz", patches=patches), ErrorCode.CORRUPT_FILE)


def test_nan_voxels(tmp_path):
    data = np.zeros((8, 8, 10), dtype=np.float32)
    data[3, 3, 3] = np.nan
    _refused(_nifti1(tmp_path, data=data), ErrorCode.CORRUPT_FILE)


@pytest.mark.parametrize(
    "dims, code",
    [
        (_dims(16, 0, 12), ErrorCode.CORRUPT_FILE),
        (_dims(16, -16, 12), ErrorCode.CORRUPT_FILE),
        (struct.pack("<h", 9), ErrorCode.CORRUPT_FILE),  # dim[0] beyond 7
        (_dims(32767, 32767, 32767), ErrorCode.PAYLOAD_TOO_LARGE),
    ],
    ids=["zero", "negative", "dim0", "huge"],
)
def test_bad_dims_refused_from_the_header(tmp_path, dims, code):
    _refused(_nifti1(tmp_path, "v.nii.gz", patches={DIM_OFFSET: dims}), code)


@pytest.mark.parametrize("compress", [False, True], ids=["nii", "nii.gz"])
def test_nifti2_claiming_10_to_the_15_voxels(tmp_path, compress):
    header = nib.Nifti2Header()
    header.set_data_shape((100_000, 100_000, 100_000))
    header.set_data_dtype(np.int16)
    buf = io.BytesIO()
    header.write_to(buf)
    raw = buf.getvalue() + b"\x00" * 4 + b"\x01" * 64  # extension flag, then a few "voxels"
    path = tmp_path / ("huge.nii.gz" if compress else "huge.nii")
    path.write_bytes(gzip.compress(raw) if compress else raw)
    _refused(path, ErrorCode.PAYLOAD_TOO_LARGE)
    # Even with the cap lifted, the file is far too small for its header: refused, not allocated.
    _refused(path, ErrorCode.CORRUPT_FILE, ReadOptions(max_voxels=10**16))


def test_nrrd_naming_a_data_file_elsewhere(tmp_path):
    header = b"NRRD0004\ntype: short\ndimension: 3\nsizes: 4 4 4\nencoding: raw\ndata file: /etc/passwd\n\n"
    path = tmp_path / "evil.nrrd"
    path.write_bytes(header)
    _refused(path, ErrorCode.UNSUPPORTED_FORMAT)


def test_nrrd_garbage_header(tmp_path):
    path = tmp_path / "bad.nrrd"
    path.write_bytes(b"NRRD0004\nsizes: banana\n\n" + b"\x00" * 100)
    _refused(path, ErrorCode.CORRUPT_FILE)


def test_metaimage_huge_dims_and_truncated_data(tmp_path):
    head = "ObjectType = Image\nNDims = 3\nDimSize = {}\nElementType = MET_SHORT\nElementDataFile = LOCAL\n"
    huge = tmp_path / "huge.mha"
    huge.write_bytes(head.format("100000 100000 100000").encode() + b"\x00" * 64)
    _refused(huge, ErrorCode.PAYLOAD_TOO_LARGE)
    short = tmp_path / "short.mha"
    short.write_bytes(head.format("64 64 64").encode() + b"\x00" * 64)
    _refused(short, ErrorCode.CORRUPT_FILE)


# ---- archives -------------------------------------------------------------------------------


def _zip(path: Path, members: dict[str | zipfile.ZipInfo, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_zip_bomb_refused_before_inflating(tmp_path):
    bomb = tmp_path / "bomb.zip"
    with (
        zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf,
        zf.open("zeros.dcm", "w") as member,
    ):
        chunk = bytes(1024 * 1024)
        for _ in range(16):  # 16 MiB of zeros, written in a streaming way: ~16 KiB on disk
            member.write(chunk)
    assert bomb.stat().st_size < 100_000
    assert "compression ratio" in _refused(bomb, ErrorCode.ARCHIVE_LIMITS_EXCEEDED).message


def test_zip_whose_declared_sizes_lie(tmp_path):
    honest = tmp_path / "honest.zip"
    payload = bytes(4 * 1024 * 1024)
    _zip(honest, {"a.dcm": payload})
    raw = bytearray(honest.read_bytes())
    declared = 16_384  # claims a modest size so the ratio check on declared sizes passes
    local = raw.index(b"PK\x03\x04")
    central = raw.index(b"PK\x01\x02")
    struct.pack_into("<I", raw, local + 22, declared)
    struct.pack_into("<I", raw, central + 24, declared)
    liar = tmp_path / "liar.zip"
    liar.write_bytes(bytes(raw))
    # zipfile stops at the declared size, then the CRC of what it did inflate fails
    _refused(liar, ErrorCode.CORRUPT_FILE)


def _info(name: str, mode: int | None = None) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    if mode is not None:
        info.external_attr = mode << 16
    return info


@pytest.mark.parametrize(
    "member",
    [
        _info("../../evil.dcm"),
        _info("series/../../evil.dcm"),
        _info("..\\evil.dcm"),
        _info("/etc/cron.d/evil"),
        _info("C:/Windows/evil.dcm"),
        _info("link.dcm", stat.S_IFLNK | 0o777),
    ],
    ids=["dotdot", "inner-dotdot", "backslash-dotdot", "absolute", "drive", "symlink"],
)
def test_unsafe_member_refuses_the_archive(tmp_path, member):
    archive = _zip(tmp_path / "a.zip", {"ok.dcm": b"fine", member: b"/etc/passwd"})
    _refused(archive, ErrorCode.ARCHIVE_LIMITS_EXCEEDED)
    assert not (tmp_path.parent / "evil.dcm").exists() and not (tmp_path / "evil.dcm").exists()


def test_nested_beyond_depth(tmp_path):
    level = b"innermost"
    for depth in range(3):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr(f"level{depth}", level)
        level = buf.getvalue()
    archive = tmp_path / "deep.zip"
    archive.write_bytes(level)
    _refused(archive, ErrorCode.ARCHIVE_LIMITS_EXCEEDED, ReadOptions(max_archive_depth=2))


def test_too_many_members(tmp_path):
    archive = _zip(tmp_path / "many.zip", {f"{i:05d}.dcm": b"x" for i in range(101)})
    _refused(archive, ErrorCode.ARCHIVE_LIMITS_EXCEEDED, ReadOptions(max_archive_members=100))


def test_total_size_cap(tmp_path):
    noise = np.random.default_rng(3).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
    archive = _zip(tmp_path / "big.zip", {"a": noise, "b": noise})
    _refused(archive, ErrorCode.ARCHIVE_LIMITS_EXCEEDED, ReadOptions(max_archive_bytes=500_000))


def test_truncated_zip(tmp_path):
    noise = np.random.default_rng(4).integers(0, 256, 200_000, dtype=np.uint8).tobytes()
    whole = _zip(tmp_path / "whole.zip", {"a": noise}).read_bytes()
    cut = tmp_path / "cut.zip"
    cut.write_bytes(whole[: len(whole) // 2])
    _refused(cut, ErrorCode.CORRUPT_FILE)


def test_zip_of_junk_only(tmp_path):
    archive = _zip(tmp_path / "junk.zip", {"readme.txt": b"hello", "x.bin": b"\x00\x01"})
    _refused(archive, ErrorCode.NO_SERIES)


def test_zip_with_a_hostile_nifti_inside(tmp_path):
    inner = _nifti1(tmp_path, "v.nii", patches={PIXDIM_OFFSET + 4: struct.pack("<f", float("nan"))})
    archive = _zip(tmp_path / "a.zip", {"scan.nii": inner.read_bytes()})
    _refused(archive, ErrorCode.CORRUPT_FILE)


def test_sitk_can_read_what_we_refuse_only_when_it_is_sane(tmp_path):
    # Guard against a refusal path that would also refuse good files: a sane MHA reads.
    image = sitk.GetImageFromArray(np.full((10, 9, 11), -1000, dtype=np.int16))
    sitk.WriteImage(image, str(tmp_path / "ok.mha"))
    assert read_volume(tmp_path / "ok.mha").shape_zyx == (10, 9, 11)
