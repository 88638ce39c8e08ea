"""The decode worker pool: uploads are decoded in another process; a worker past its time limit
is killed and replaced; a dead worker is replaced before the next upload."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from app.decode_worker import DecodedVolume, DecodePool
from ctscribe.errors import ImagingError
from imaging.options import ReadOptions
from tests.app.conftest import nifti_bytes, zip_bytes


def test_decode_in_a_worker_process_survives_a_killed_worker_and_hides_paths(tmp_path):
    good = tmp_path / "00000.upload"
    good.write_bytes(nifti_bytes())
    bad = tmp_path / "00001.upload"
    bad.write_bytes(nifti_bytes()[:500])

    async def scenario():
        pool = DecodePool(1, memory_mb=1024, time_s=60)
        await pool.start()
        try:
            worker = next(iter(pool._all))
            decoded = await pool.decode(good, ReadOptions(), "volume", tmp_path)
            # A worker that dies between uploads (OOM killer, segfault) is replaced transparently.
            os.kill(worker.process.pid, signal.SIGKILL)
            worker.process.join(5)
            summary = await pool.decode(good, ReadOptions(), "inspect", tmp_path)
            with pytest.raises(ImagingError) as info:
                await pool.decode(bad, ReadOptions(), "inspect", tmp_path)
            return worker.process.pid, decoded, summary, info.value
        finally:
            pool.close()

    pid, decoded, summary, err = asyncio.run(scenario())
    assert pid != os.getpid()
    assert isinstance(decoded, DecodedVolume)
    assert decoded.hu.shape == (24, 48, 48) and decoded.hu.dtype.name == "float32"
    assert decoded.spacing_mm_zyx == pytest.approx((2.5, 1.0, 1.0))
    assert summary["format"] == "nifti" and summary["shape_zyx"] == [24, 48, 48]
    assert err.code.value == "corrupt_file" and str(tmp_path) not in err.message


def test_timeout_kills_the_worker_and_the_pool_recovers(tmp_path):
    good = tmp_path / "00000.upload"
    good.write_bytes(nifti_bytes())
    zipped = tmp_path / "00001.upload"
    zipped.write_bytes(zip_bytes({f"{i}.dcm": b"\0" * 1000 for i in range(50)}))

    async def scenario():
        pool = DecodePool(1, memory_mb=1024, time_s=60)
        await pool.start()
        await pool.warm_up()
        try:
            old = next(iter(pool._all)).process
            pool.time_s = 0.0005  # no real decode finishes this fast
            with pytest.raises(ImagingError) as info:
                await pool.decode(zipped, ReadOptions(), "inspect", tmp_path)
            assert old.exitcode is not None, "the timed-out worker is still running"
            pool.time_s = 60
            summary = await pool.decode(good, ReadOptions(), "inspect", tmp_path)
            return info.value, pool.restarts, summary
        finally:
            pool.close()

    err, restarts, summary = asyncio.run(scenario())
    assert err.code.value == "corrupt_file" and "longer than" in err.message
    assert restarts == 1
    assert summary["shape_zyx"] == [24, 48, 48]


def test_a_worker_keeps_no_volume_after_answering(tmp_path, monkeypatch):
    """The volume dies once its reply is sent, not when the next upload arrives (2 GB idle otherwise)."""
    import multiprocessing
    import threading
    import time
    import weakref

    import imaging.read
    from app.decode_worker import _receive_volume, _serve

    source = tmp_path / "00000.upload"
    source.write_bytes(nifti_bytes())
    volumes: list[weakref.ref] = []
    real_read = imaging.read.read_volume

    def read_and_watch(*args, **kwargs):
        volume = real_read(*args, **kwargs)
        volumes.append(weakref.ref(volume.hu))
        return volume

    monkeypatch.setattr(imaging.read, "read_volume", read_and_watch)
    parent, child = multiprocessing.Pipe()
    worker = threading.Thread(target=_serve, args=(child, 1024), daemon=True)  # the worker's loop, in-process
    worker.start()
    try:
        parent.send({"kind": "volume", "source": source, "options": ReadOptions(), "dir": str(tmp_path)})
        status, *header = parent.recv()
        assert status == "volume"
        decoded = _receive_volume(parent, *header)  # the voxels follow as raw bytes
        assert decoded.hu.shape == (24, 48, 48)
        deadline = time.monotonic() + 10
        while volumes[0]() is not None and time.monotonic() < deadline:
            time.sleep(0.01)  # the worker is between tasks: waiting for the next one
        assert volumes[0]() is None, "the idle worker still holds its last volume"
    finally:
        parent.send(None)
        worker.join(5)
