"""Safe extraction of an uploaded zip into a temporary directory.

Threats handled: zip bombs (caps on member count, total uncompressed bytes and compression
ratio, checked on the declared sizes first and again on the bytes actually inflated,
because declared sizes can lie), path traversal (members are never written under their
archive names: they become `0000.dcm`, `0001.dcm`, ... and the format is detected from the
bytes later), links, and zips nested deeper than `ReadOptions.max_archive_depth`.

Policy: a member that is a symlink, has an absolute path or a `..` component makes the
whole archive refused with `archive_limits_exceeded` (the same code as the size caps: "this
archive breaks the extractor's safety rules"), never silently skipped, so a result never
depends on which members were dropped. Directory entries are skipped. Encrypted members are
`unsupported_format`; a damaged archive is `corrupt_file`. The temporary directory is always
removed when the context manager exits, error or not.
"""

from __future__ import annotations

import stat
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ctscribe.errors import ErrorCode, ImagingError
from imaging.options import ReadOptions

_CHUNK_BYTES = 1024 * 1024
# Ratios are only judged on members at least this large: a 4 KiB run of zeros compresses
# 200:1 quite honestly, and cannot hurt anyone.
RATIO_MIN_BYTES = 1024 * 1024
_ZIP_MAGIC = b"PK\x03\x04"
_ENCRYPTED_FLAG = 0x1


@dataclass
class _Budget:
    """What the whole extraction (all nesting levels together) has used so far."""

    options: ReadOptions
    members: int = 0
    bytes_out: int = 0
    next_index: int = 0

    def add_members(self, n: int) -> None:
        self.members += n
        if self.members > self.options.max_archive_members:
            _refuse(f"more than {self.options.max_archive_members} members")

    def take_index(self) -> int:
        self.next_index += 1
        return self.next_index - 1

    def add_bytes(self, n: int) -> None:
        self.bytes_out += n
        if self.bytes_out > self.options.max_archive_bytes:
            _refuse(f"expands to more than {self.options.max_archive_bytes} bytes")


@contextmanager
def extract_zip(path: str | Path, options: ReadOptions = ReadOptions()) -> Iterator[list[Path]]:
    """Extract the zip at `path`; yield the extracted file paths (nested zips expanded).

    The files live in a fresh temporary directory that is deleted on exit.
    """
    with tempfile.TemporaryDirectory(prefix="ctscribe-zip-") as tmp:
        files: list[Path] = []
        _extract(Path(path), Path(tmp), options, depth=1, budget=_Budget(options), files=files)
        yield files


def _extract(path: Path, out_dir: Path, options: ReadOptions, depth: int, budget: _Budget, files: list[Path]):
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise ImagingError(ErrorCode.CORRUPT_FILE, f"not a readable zip archive: {exc}") from None
    with archive:
        members = [info for info in archive.infolist() if not info.is_dir()]
        budget.add_members(len(members))
        _check_declared(members, path.stat().st_size, options)
        for info in members:
            target = out_dir / f"{budget.take_index():04d}.dcm"
            _copy_member(archive, info, target, options, budget)
            if _is_zip(target):
                if depth >= options.max_archive_depth:
                    _refuse(f"a zip nested deeper than {options.max_archive_depth} level(s)")
                _extract(target, out_dir, options, depth + 1, budget, files)
                target.unlink()
            else:
                files.append(target)


def _check_declared(members: list[zipfile.ZipInfo], archive_bytes: int, options: ReadOptions) -> None:
    """Refuse on the central directory alone, before inflating anything."""
    total = 0
    for info in members:
        _check_name(info)
        if info.flag_bits & _ENCRYPTED_FLAG:
            raise ImagingError(ErrorCode.UNSUPPORTED_FORMAT, "the zip has encrypted members")
        if info.file_size > options.max_archive_bytes:
            _refuse(f"a member declares {info.file_size} bytes (limit {options.max_archive_bytes})")
        _check_ratio(info.file_size, info.compress_size, options, "a member declares")
        total += info.file_size
    if total > options.max_archive_bytes:
        _refuse(f"members declare {total} bytes in all (limit {options.max_archive_bytes})")
    _check_ratio(total, archive_bytes, options, "the archive declares")


def _check_name(info: zipfile.ZipInfo) -> None:
    name = info.filename.replace("\\", "/")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        _refuse("a member is a symbolic link")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        _refuse("a member has an absolute path")
    if ".." in name.split("/"):
        _refuse("a member path contains '..'")


def _check_ratio(uncompressed: int, compressed: int, options: ReadOptions, what: str) -> None:
    if uncompressed >= RATIO_MIN_BYTES and uncompressed > options.max_compression_ratio * max(compressed, 1):
        ratio = uncompressed / max(compressed, 1)
        _refuse(f"{what} a compression ratio of {ratio:.0f}:1 (limit {options.max_compression_ratio:g}:1)")


def _copy_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, options, budget) -> None:
    """Stream one member to `target`, counting the bytes really inflated."""
    written = 0
    try:
        with archive.open(info) as src, open(target, "xb") as dst:
            while chunk := src.read(_CHUNK_BYTES):
                written += len(chunk)
                budget.add_bytes(len(chunk))
                if written > info.file_size:
                    _refuse("a member inflates to more bytes than it declares")
                _check_ratio(written, info.compress_size, options, "a member inflates at")
                dst.write(chunk)
    except ImagingError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, ValueError) as exc:
        raise ImagingError(ErrorCode.CORRUPT_FILE, f"damaged zip member: {exc}") from None


def _is_zip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == _ZIP_MAGIC


def _refuse(reason: str) -> None:
    raise ImagingError(ErrorCode.ARCHIVE_LIMITS_EXCEEDED, f"archive refused: {reason}")
