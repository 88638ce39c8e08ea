"""How inference uses the machine: CPU threads, and the decoder's dtype on a CPU.

- Threads: `OMP_NUM_THREADS` (or `CTSCRIBE_THREADS`) when set; else the CPUs this process may
  run on, capped by a cgroup CPU quota (containers: `docker run --cpus 2` sees every host core
  in `os.cpu_count()` but gets 2 cores of time, and more threads than that only contend).
- Decode dtype `auto`: on a CPU with native bf16 arithmetic (AVX512-BF16 or AMX), weight-only
  int8 with bf16 activations (model/quantize.py): decoding is memory-bound, and a quarter of
  float32's bytes per token is ~2.6x its speed on this project's 2-core machine (bf16: ~1.6x);
  its quality change against bf16 is measured by bench/quality.py (README "Speed on a CPU").
  The config's dtype everywhere else (older CPUs emulate bf16 slowly; GPUs keep their setting).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from model.errors import invalid

DECODE_DTYPES = ("auto", "config", "float32", "bfloat16", "int8")
_CGROUP_V2 = Path("/sys/fs/cgroup/cpu.max")
_CGROUP_V1 = (Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us"))


def cgroup_cpu_limit() -> int | None:
    """CPUs' worth of time the cgroup grants (rounded up), or None without a quota."""
    try:
        quota, period = _CGROUP_V2.read_text().split()[:2]
        if quota != "max":
            return max(1, math.ceil(int(quota) / int(period)))
        return None
    except (OSError, ValueError):
        pass
    try:
        quota, period = (int(p.read_text()) for p in _CGROUP_V1)
        return max(1, math.ceil(quota / period)) if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def usable_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        n = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    return max(1, min(n, limit) if limit else n)


def inference_threads() -> int:
    """Threads for torch's intra-op pool: an explicit setting wins, else `usable_cpus()`."""
    for name in ("CTSCRIBE_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if value:
            try:
                n = int(value)
            except ValueError:
                raise invalid(f"{name} must be a positive integer, got {value!r}") from None
            if n < 1:
                raise invalid(f"{name} must be a positive integer, got {value!r}")
            return n
    return usable_cpus()


def configure_threads() -> int:
    """Set torch's intra-op threads to `inference_threads()`; returns the number."""
    n = inference_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def cpu_has_native_bf16() -> bool:
    """Whether this CPU does bf16 arithmetic in hardware (x86 AVX512-BF16 / AMX-BF16, Linux)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def decode_dtype(policy: str, device: torch.device | str) -> torch.dtype | str | None:
    """What `Pipeline.for_inference` runs the decoder in for `policy` (DECODE_DTYPES): a torch
    dtype, "int8" (weight-only, model/quantize.py), or None = the config's."""
    if policy not in DECODE_DTYPES:
        raise invalid(f"decode dtype must be one of {DECODE_DTYPES}, got {policy!r}")
    if policy == "config":
        return None
    if policy == "auto":
        if torch.device(device).type != "cpu" or not cpu_has_native_bf16():
            return None
        from model.quantize import int8_matmul_available

        return "int8" if int8_matmul_available() else torch.bfloat16
    if policy == "int8":
        return "int8"
    return getattr(torch, policy)
