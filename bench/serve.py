"""HTTP service latency and throughput: POST /report against `ctscribe serve` on loopback.

Usage: python bench/serve.py [--checkpoint DEMO_DIR|tiny|...] [--device cpu|cuda]
                             [--requests 16] [--concurrency 1,4] [--max-new-tokens 64]
                             [--out bench/results/serve.json]

Starts the server in a second process on a free 127.0.0.1 port (the checkpoint you name;
default the bundled demo model), uploads one phantom NIfTI per request, and for each
concurrency level reports p50/p95 latency, requests/s and generated tokens/s (from the
responses' own token counts). Every request is bounded (`--requests` per level, a timeout
each); the run stops by itself. On the device machine, point --checkpoint at a
Phi-3-mini-shaped checkpoint and pass --device cuda.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import write_json  # noqa: E402


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def phantom_nifti(seed: int = 7) -> bytes:
    from imaging.phantom import generate_case
    from imaging.phantom.dataset import nifti_bytes

    return nifti_bytes(generate_case(seed).volume)


def start_server(checkpoint: str, device: str, port: int, log_path: Path, max_new_tokens: int) -> subprocess.Popen:
    env = {**os.environ, "CTSCRIBE_API_KEYS": "", "CTSCRIBE_MAX_NEW_TOKENS": str(max_new_tokens),
           "CTSCRIBE_QUEUE_SIZE": "256", "CTSCRIBE_PER_KEY_CONCURRENCY": "256"}
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli.main", "serve", "--checkpoint", checkpoint, "--device", device,
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log_path.open("wb"),
    )


def wait_ready(base: str, proc: subprocess.Popen, timeout_s: float, log_path: Path) -> float:
    import httpx

    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if proc.poll() is not None:
            raise SystemExit(f"server exited:\n{log_path.read_text()[-2000:]}")
        try:
            if httpx.get(f"{base}/health/ready", timeout=1).status_code == 200:
                return time.monotonic() - start
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"server not ready after {timeout_s:.0f} s")


async def run_level(base: str, ct: bytes, n: int, concurrency: int, max_new_tokens: int) -> dict:
    import httpx

    latencies, tokens, statuses = [], 0, []
    todo = iter(range(n))
    async with httpx.AsyncClient(base_url=base, timeout=600) as client:
        async def worker() -> None:
            nonlocal tokens
            for _ in todo:
                t0 = time.perf_counter()
                r = await client.post("/report", files={"file": ("ct.nii.gz", ct)},
                                      data={"max_new_tokens": str(max_new_tokens)})
                latencies.append(time.perf_counter() - t0)
                statuses.append(r.status_code)
                if r.status_code == 200:
                    tokens += int(r.json()["report"]["n_tokens"])

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(round(p * (len(latencies) - 1))))]

    return {"concurrency": concurrency, "requests": n, "ok": statuses.count(200),
            "statuses": sorted(set(statuses)), "p50_s": round(pct(0.5), 3), "p95_s": round(pct(0.95), 3),
            "requests_per_s": round(n / wall, 3), "tokens_per_s": round(tokens / wall, 1), "wall_s": round(wall, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(ROOT / "model" / "weights" / "demo"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--requests", type=int, default=16, help="requests per concurrency level")
    parser.add_argument("--concurrency", default="1,4", help="comma-separated levels")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--ready-timeout-s", type=float, default=600)
    parser.add_argument("--out", default=None, help="JSON path (default bench/results/serve.json)")
    args = parser.parse_args()

    ct = phantom_nifti()
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="ctscribe-bench-serve-") as tmp:
        log_path = Path(tmp) / "server.log"
        proc = start_server(args.checkpoint, args.device, port, log_path, args.max_new_tokens)
        try:
            ready_s = wait_ready(base, proc, args.ready_timeout_s, log_path)
            asyncio.run(run_level(base, ct, 1, 1, args.max_new_tokens))  # warm-up request, not counted
            levels = [asyncio.run(run_level(base, ct, args.requests, int(c), args.max_new_tokens))
                      for c in args.concurrency.split(",")]
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()

    print(f"server ready in {ready_s:.1f} s ({args.checkpoint}, {args.device}); {args.max_new_tokens} new tokens max")
    print(f"{'conc':>5s} {'ok':>4s} {'p50 s':>7s} {'p95 s':>7s} {'req/s':>7s} {'tok/s':>7s}")
    for lv in levels:
        print(f"{lv['concurrency']:5d} {lv['ok']:4d} {lv['p50_s']:7.3f} {lv['p95_s']:7.3f} "
              f"{lv['requests_per_s']:7.3f} {lv['tokens_per_s']:7.1f}")
    write_json("serve", {"checkpoint": args.checkpoint, "device": args.device, "ready_s": round(ready_s, 1),
                            "max_new_tokens": args.max_new_tokens, "levels": levels}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
