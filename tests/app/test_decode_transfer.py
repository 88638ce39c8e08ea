"""A decoded volume crosses from the worker to the server as raw bytes: bit for bit the array the
reader made, and without the pickle copies that put the documented `max_voxels` past the
worker's memory limit (bench/decode_worker_memory.py has the figures)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from app.decode_worker import DecodePool
from imaging.options import ReadOptions
from imaging.read import read_volume
from tests.app.conftest import nifti_bytes

MIB = 1024 * 1024
# 80 MiB of float32: more than one 64 MiB chunk, the last one partial; Z >= 128 so the summary's
# percentile sample is a quarter of the slices, not the whole volume.
SHAPE_XYZ = (256, 256, 320)


def _vm_hwm_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


@pytest.fixture(scope="module")
def decoded_large(tmp_path_factory):
    """A float32 NIfTI stored RAS (so the reader flips it), decoded once by a real worker, with
    the worker's peak RSS before (after a small warm-up decode) and after."""
    import nibabel as nib

    tmp = tmp_path_factory.mktemp("transfer")
    rng = np.random.default_rng(14)
    data = rng.uniform(-1000.0, 2000.0, size=SHAPE_XYZ).astype(np.float32)  # fractional: every bit counts
    path = tmp / "large.nii"
    nib.save(nib.Nifti1Image(data, np.diag([0.8, 0.8, 1.25, 1.0])), path)
    del data
    small = tmp / "small.nii.gz"
    small.write_bytes(nifti_bytes())
    proc_status = Path("/proc/self/status").exists()

    async def scenario():
        pool = DecodePool(1, memory_mb=2048, time_s=120)
        await pool.start()
        try:
            pid = next(iter(pool._all)).process.pid
            await pool.decode(small, ReadOptions(), "volume", tmp)  # lazy imports count as idle
            idle = _vm_hwm_bytes(pid) if proc_status else None
            decoded = await pool.decode(path, ReadOptions(), "volume", tmp)
            peak = _vm_hwm_bytes(pid) if proc_status else None
            return decoded, idle, peak
        finally:
            pool.close()

    decoded, idle, peak = asyncio.run(scenario())
    return path, decoded, idle, peak


def test_a_volume_round_trips_through_the_worker_bit_exactly(decoded_large):
    path, decoded, _, _ = decoded_large
    expected = read_volume(path, ReadOptions())
    assert decoded.hu.dtype == expected.hu.dtype == np.float32
    assert decoded.hu.shape == expected.hu.shape == SHAPE_XYZ[::-1]
    assert np.array_equal(decoded.hu.view(np.uint32), expected.hu.view(np.uint32))
    assert decoded.hu.flags.c_contiguous and decoded.hu.flags.writeable
    assert decoded.spacing_mm_zyx == pytest.approx(tuple(float(s) for s in expected.spacing_mm_zyx))
    assert decoded.orientation_in == expected.orientation_in == "RAS"
    assert decoded.summary["shape_zyx"] == list(SHAPE_XYZ[::-1])


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="peak RSS read from Linux /proc")
def test_returning_a_volume_costs_the_worker_no_copy_of_it(decoded_large):
    """Pickling the reply made two more copies (tobytes + the pickle buffer): 3x the volume at peak."""
    _, decoded, idle, peak = decoded_large
    growth = peak - idle
    assert growth <= 1.3 * decoded.hu.nbytes + 16 * MIB, (
        f"worker peak grew {growth / MIB:.0f} MiB for a {decoded.hu.nbytes / MIB:.0f} MiB volume"
    )
