"""`read_volume`: any supported CT source -> canonical `Volume` (DESIGN.md §2).

Sources: one file (format from its bytes), a directory (its DICOM series, or its one volume
file; searched recursively within bounds), a zip (safely extracted, then the same as a
directory), or a list of files (a DICOM series, or one volume file). Every failure is an
`ImagingError` with a DESIGN error code; an unexpected exception from a third-party reader
becomes `corrupt_file`, never a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ctscribe.errors import CtscribeError, ErrorCode, ImagingError
from imaging import detect
from imaging.options import ReadOptions
from imaging.volume import Volume

MAX_DIRECTORY_DEPTH = 8
"""Directory levels searched below the given folder (PACS exports nest a few deep)."""

Source = str | os.PathLike | Sequence[str | os.PathLike]


def read_volume(source: Source, options: ReadOptions = ReadOptions()) -> Volume:
    """Read `source` (file, directory, zip or list of files) as a canonical HU volume."""
    try:
        return _read_source(source, options)
    except CtscribeError:
        raise
    except MemoryError:
        raise ImagingError(ErrorCode.PAYLOAD_TOO_LARGE, "not enough memory to read this volume") from None
    except Exception as exc:  # a third-party reader failing on a hostile file
        message = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        raise ImagingError(ErrorCode.CORRUPT_FILE, f"cannot read the input ({message})") from None


def inspect_source(source: Source, options: ReadOptions = ReadOptions()) -> dict:
    """The `ctscribe inspect --json` summary of `source` (DESIGN.md §3)."""
    return read_volume(source, options).summary()


def _read_source(source: Source, options: ReadOptions) -> Volume:
    if isinstance(source, (str, os.PathLike)):
        return _read_path(Path(source), options)
    paths = [Path(p) for p in source]
    if not paths:
        raise ImagingError(ErrorCode.INVALID_REQUEST, "no input files given")
    if len(paths) == 1:
        return _read_path(paths[0], options)
    for path in paths:
        _require_file(path)
    return _read_files(paths, options, container="files")


def _read_path(path: Path, options: ReadOptions) -> Volume:
    if path.is_dir():
        return _read_files(_list_directory(path, options), options, container="directory")
    _require_file(path)
    fmt = detect.detect_format(path)
    if fmt == detect.ZIP:
        from imaging.archive import extract_zip

        with extract_zip(path, options) as files:
            # Read while the temporary directory still exists: Volume holds its own array.
            return _read_files(files, options, container="zip")
    if fmt == detect.DICOM:
        return _read_dicom([path], options)
    return _read_single(path, fmt, options)


def _read_files(files: list[Path], options: ReadOptions, container: str) -> Volume:
    """A set of files: the DICOM among them as one series, else the single volume file."""
    dicom_files: list[Path] = []
    volume_files: list[tuple[Path, str]] = []
    skipped = 0
    for path in files:
        try:
            fmt = detect.detect_format(path)
        except ImagingError:
            skipped += 1  # README.txt, .DS_Store, empty files: common next to a series
            continue
        if fmt == detect.DICOM:
            dicom_files.append(path)
        elif fmt in detect.VOLUME_FORMATS:
            volume_files.append((path, fmt))
        else:
            skipped += 1  # a zip inside a folder or a list of files is not opened
    if dicom_files and volume_files:
        raise ImagingError(
            ErrorCode.AMBIGUOUS_SERIES,
            f"the {container} holds both DICOM files ({len(dicom_files)}) and "
            f"{len(volume_files)} NIfTI/NRRD/MHA file(s); send one of them",
        )
    if len(volume_files) > 1:
        raise ImagingError(
            ErrorCode.AMBIGUOUS_SERIES,
            f"the {container} holds {len(volume_files)} NIfTI/NRRD/MHA files; send one volume",
        )
    if dicom_files:
        volume = _read_dicom(dicom_files, options)
    elif volume_files:
        volume = _read_single(*volume_files[0], options)
    else:
        raise ImagingError(
            ErrorCode.NO_SERIES,
            f"the {container} holds no DICOM, NIfTI, NRRD or MetaImage file ({len(files)} file(s) looked at)",
        )
    if skipped:
        volume.warnings.append(
            f"ignored {skipped} file(s) in the {container} that are not DICOM/NIfTI/NRRD/MetaImage"
        )
    volume.meta.setdefault("container", container)
    return volume


def _read_dicom(files: list[Path], options: ReadOptions) -> Volume:
    from imaging.dicom import read_dicom_series

    return read_dicom_series(files, options)


def _read_single(path: Path, fmt: str, options: ReadOptions) -> Volume:
    if fmt == detect.NIFTI:
        from imaging.nifti import read_nifti

        return read_nifti(path, options)
    from imaging.sitk_reader import read_sitk

    return read_sitk(path, fmt, options)


def _list_directory(root: Path, options: ReadOptions) -> list[Path]:
    """Regular files below `root`, sorted, at most `max_archive_members` of them (directory links not followed)."""
    files: list[Path] = []
    root_depth = len(root.parts)
    for dirpath, dirnames, filenames in os.walk(root):
        if len(Path(dirpath).parts) - root_depth >= MAX_DIRECTORY_DEPTH:
            dirnames[:] = []
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if name.startswith(".") or not path.is_file():
                continue
            files.append(path)
            if len(files) > options.max_archive_members:
                raise ImagingError(
                    ErrorCode.PAYLOAD_TOO_LARGE,
                    f"the directory holds more than {options.max_archive_members} files",
                )
    return files


def _require_file(path: Path) -> None:
    if not path.exists():
        raise ImagingError(ErrorCode.INVALID_REQUEST, f"no such file or directory: {path}")
    if not path.is_file():
        raise ImagingError(ErrorCode.INVALID_REQUEST, f"not a regular file: {path}")
    if not os.access(path, os.R_OK):
        raise ImagingError(ErrorCode.INVALID_REQUEST, f"cannot read {path}: permission denied")
