"""Peak memory of decoding a large volume in a decode worker and handing it to the server.

Writes an uncompressed NIfTI of int16 noise (-1000..1999 HU, written slab by slab so this
process never holds it), decodes it once through `app.decode_worker.DecodePool` under the
service's memory limit, and prints one JSON row: the outcome, the worker's peak RSS above its
idle footprint (`VmHWM` after the decode minus `VmHWM` after decoding a small file; Linux only), the
same for this (server-side) process, and both as a multiple of the float32 volume's size.

Usage: python bench/decode_worker_memory.py [--shape Z Y X] [--memory-mb MB] [--out PATH]
(default shape 512 512 512: a 512 MiB volume; `--shape 2048 512 512` is the documented
`max_voxels`, a 2 GiB volume.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.decode_worker import DecodePool  # noqa: E402
from app.settings import Settings  # noqa: E402
from ctscribe.errors import CtscribeError  # noqa: E402
from imaging.options import ReadOptions  # noqa: E402

MIB = 1024 * 1024


def write_noise_nifti(path: Path, shape_zyx: tuple[int, int, int], seed: int = 0) -> None:
    z, y, x = shape_zyx
    header = nib.Nifti1Header()
    header.set_data_shape((x, y, z))
    header.set_data_dtype(np.int16)
    header.set_qform(np.diag([-0.7, -0.7, 1.0, 1.0]), code=1)  # LPS on disk: no reorientation
    header.set_sform(np.diag([-0.7, -0.7, 1.0, 1.0]), code=1)
    header.set_slope_inter(1.0, 0.0)
    rng = np.random.default_rng(seed)
    with open(path, "wb") as f:
        f.write(header.binaryblock + b"\0" * 4)  # 348-byte header + extension flag; data at 352
        for _ in range(z):
            f.write(rng.integers(-1000, 2000, size=(y, x), dtype=np.int16).astype("<i2").tobytes())


def vm_hwm_bytes(pid: int | str = "self") -> int:
    """Peak resident set size of a process (Linux /proc), 0 where unknown."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


async def decode_once(path: Path, memory_mb: int, max_voxels: int) -> dict:
    pool = DecodePool(1, memory_mb=memory_mb, time_s=600)
    await pool.start()
    try:
        # A small decode first, so the readers' lazy imports (nibabel: ~60 MiB) count as idle.
        small = path.with_name("small.nii")
        write_noise_nifti(small, (16, 32, 32))
        await pool.decode(small, ReadOptions(), "volume", path.parent)
        pid = next(iter(pool._all)).process.pid
        worker_idle, server_idle = vm_hwm_bytes(pid), vm_hwm_bytes()
        start = time.perf_counter()
        try:
            decoded = await pool.decode(path, ReadOptions(max_voxels=max_voxels), "volume", path.parent)
            outcome, array_bytes = "ok " + "x".join(map(str, decoded.hu.shape)), decoded.hu.nbytes
            del decoded
        except CtscribeError as err:
            outcome, array_bytes = f"{err.code.value}: {err.message}", 0
        seconds = time.perf_counter() - start
        worker_peak, server_peak = vm_hwm_bytes(pid), vm_hwm_bytes()
    finally:
        pool.close()
    return {
        "outcome": outcome,
        "seconds": round(seconds, 2),
        "worker_idle_mib": round(worker_idle / MIB, 1),
        "worker_peak_above_idle_mib": round((worker_peak - worker_idle) / MIB, 1),
        "server_peak_above_idle_mib": round(max(server_peak - server_idle, 0) / MIB, 1),
        "array_mib": round(array_bytes / MIB, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[512, 512, 512], metavar=("Z", "Y", "X"))
    parser.add_argument("--memory-mb", type=int, default=None, help="worker limit (default: the service's)")
    parser.add_argument("--out", default=None, help="JSON path (default bench/results/decode_worker_memory.json)")
    args = parser.parse_args()
    settings = Settings()
    memory_mb = args.memory_mb or settings.decode_memory_mb
    shape = tuple(args.shape)
    float32_bytes = math.prod(shape) * 4
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "noise.nii"
        write_noise_nifti(path, shape)
        row = asyncio.run(decode_once(path, memory_mb, max(settings.max_voxels, math.prod(shape))))
    row = {"shape_zyx": list(shape), "float32_mib": round(float32_bytes / MIB, 1), "memory_mb": memory_mb, **row}
    row["worker_peak_per_array"] = round(row["worker_peak_above_idle_mib"] * MIB / float32_bytes, 2)
    row["server_peak_per_array"] = round(row["server_peak_above_idle_mib"] * MIB / float32_bytes, 2)
    print(json.dumps(row))
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / "decode_worker_memory.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(row, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
