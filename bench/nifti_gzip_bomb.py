"""Peak memory and time of reading a small .nii.gz that declares a large volume (a gzip bomb).

Writes a NIfTI-1 header declaring X*Y*Z int16 voxels followed by that many bytes of air
(-1000), deflated at level 9 (about 1030:1), then reads it with `imaging.read_volume` in a
fresh subprocess and prints the outcome, the wall time and the child's peak RSS
(`ru_maxrss`). Usage: python bench/nifti_gzip_bomb.py [SIZE ...]  (cube edges, default 512).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

_CHILD = """
import json, sys, time
from ctscribe.errors import CtscribeError
from imaging.read import read_volume
start = time.perf_counter()
try:
    volume = read_volume(sys.argv[1])
    outcome = "read " + "x".join(map(str, volume.shape_zyx))
except CtscribeError as err:
    outcome = f"{err.code.value}: {err.message[:90]}"
print(json.dumps({"outcome": outcome, "seconds": round(time.perf_counter() - start, 2)}))
"""


def write_bomb(path: Path, edge: int) -> int:
    header = nib.Nifti1Header()
    header.set_data_shape((edge, edge, edge))
    header.set_data_dtype(np.int16)
    header.set_qform(np.eye(4), code=1)
    header.set_sform(np.eye(4), code=1)
    header.set_slope_inter(1.0, 0.0)
    deflate = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    plane = np.full((edge, edge), -1000, dtype="<i2").tobytes()
    with open(path, "wb") as f:
        f.write(deflate.compress(header.binaryblock + b"\0" * 4))  # 348-byte header + extension flag
        for _ in range(edge):
            f.write(deflate.compress(plane))
        f.write(deflate.flush())
    return path.stat().st_size


def measure(path: Path) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result = subprocess.run([sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True,
                            check=True, cwd=Path(__file__).resolve().parents[1])
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {**json.loads(result.stdout), "peak_rss_mib": round(max(peak_kib, before) / 1024, 1)}


def main(edges: list[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for edge in edges:
            path = Path(tmp) / f"bomb{edge}.nii.gz"
            size = write_bomb(path, edge)
            row = {"edge": edge, "file_kib": round(size / 1024, 1), **measure(path)}
            print(json.dumps(row))


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [512])
