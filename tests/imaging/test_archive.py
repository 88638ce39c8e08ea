"""Safe zip extraction: what comes out, under which names, and that the temp dir goes away."""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

import pytest

from ctscribe.errors import ErrorCode, ImagingError
from imaging.archive import extract_zip
from imaging.options import ReadOptions


@pytest.fixture
def private_tmp(tmp_path, monkeypatch) -> Path:
    """Point tempfile at an empty folder so leftovers are visible."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _zip(path: Path, members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_members_renamed_and_directories_skipped(tmp_path, private_tmp):
    members = {"study/series/IM1": b"one", "study/series/IM2": b"two" * 100, "study/empty/": b""}
    archive = _zip(tmp_path / "a.zip", members)
    with extract_zip(archive) as files:
        assert [f.name for f in files] == ["0000.dcm", "0001.dcm"]
        assert all(f.parent.parent == private_tmp for f in files)
        assert [f.read_bytes() for f in files] == [b"one", b"two" * 100]
    assert list(private_tmp.iterdir()) == []


def test_temp_dir_removed_when_the_reader_fails(tmp_path, private_tmp):
    archive = _zip(tmp_path / "a.zip", {"x": b"data"})
    with pytest.raises(RuntimeError), extract_zip(archive) as files:
        assert files
        raise RuntimeError("reader blew up")
    assert list(private_tmp.iterdir()) == []


def test_nested_zip_within_depth_is_expanded(tmp_path, private_tmp):
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr("inner/a", b"A")
        zf.writestr("inner/b", b"B")
    archive = _zip(tmp_path / "outer.zip", {"top": b"T", "nested.zip": inner.getvalue()})
    with extract_zip(archive, ReadOptions(max_archive_depth=2)) as files:
        assert sorted(f.read_bytes() for f in files) == [b"A", b"B", b"T"]
        assert len({f.name for f in files}) == 3  # one numbering across levels, no clashes
    with pytest.raises(ImagingError) as err, extract_zip(archive):
        pass
    assert err.value.code is ErrorCode.ARCHIVE_LIMITS_EXCEEDED
    assert list(private_tmp.iterdir()) == []


def test_member_count_is_shared_across_nesting_levels(tmp_path, private_tmp):
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        for i in range(3):
            zf.writestr(f"i{i}", b"x")
    archive = _zip(tmp_path / "outer.zip", {"a": b"1", "b": b"2", "n.zip": inner.getvalue()})
    # 3 top-level members pass a cap of 4; the 3 inner ones push it to 6
    with (
        pytest.raises(ImagingError) as err,
        extract_zip(archive, ReadOptions(max_archive_depth=2, max_archive_members=4)),
    ):
        pass
    assert err.value.code is ErrorCode.ARCHIVE_LIMITS_EXCEEDED


def test_small_members_with_high_ratio_are_not_bombs(tmp_path, private_tmp):
    # 64 KiB of zeros compresses ~1000:1 but is far below the size where ratio is judged
    archive = _zip(tmp_path / "a.zip", {"pad": bytes(64 * 1024)})
    with extract_zip(archive) as files:
        assert files[0].stat().st_size == 64 * 1024


def test_stored_members(tmp_path, private_tmp):
    archive = _zip(tmp_path / "a.zip", {"x": b"stored bytes"}, compression=zipfile.ZIP_STORED)
    with extract_zip(archive) as files:
        assert files[0].read_bytes() == b"stored bytes"


def test_empty_archive_yields_nothing(tmp_path, private_tmp):
    archive = tmp_path / "empty.zip"
    zipfile.ZipFile(archive, "w").close()
    with extract_zip(archive) as files:
        assert files == []
