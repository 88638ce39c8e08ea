"""Slow and disconnecting clients against `ctscribe serve` on loopback.

Usage: python bench/hostile_clients.py [--checkpoint DEMO_DIR|tiny] [--slow-clients 8]
                                       [--probes 5] [--stream-tokens 128] [--out ...]

Part A (slow uploads): `--slow-clients` connections each send a /report request header and then
trickle its multipart body at 1 byte/s; meanwhile `--probes` normal /report requests run one
after another. Reports each probe's status and latency (the issue: every probe was a 429 while
the slow clients held the admission slots), and what the slow clients finally got.

Part B (a client that leaves): an SSE /report asking for `--stream-tokens` tokens is dropped
after its first delta; then one normal /report is timed. Reports the tokens the abandoned
request still generated, how long until the server's in-flight gauge fell to 0 (the slot is
released when generation stops: the cancellation latency), and the next request's latency.
Every request and wait is bounded; the run stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import write_json  # noqa: E402
from bench.serve import _free_port, phantom_nifti, wait_ready  # noqa: E402

BOUNDARY = "ctscribe-bench-boundary"


def start_server(checkpoint: str, device: str, port: int, log_path: Path, env_extra: dict) -> subprocess.Popen:
    env = {**os.environ, "CTSCRIBE_API_KEYS": "", **env_extra}
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli.main", "serve", "--checkpoint", checkpoint, "--device", device,
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log_path.open("wb"),
    )


def metric(text: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def slow_client(port: int, body: bytes, seconds: float) -> str:
    """Send the header, then the body at 1 byte/s for `seconds`; the status line the server sent, if any."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write((f"POST /report HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; "
                  f"boundary={BOUNDARY}\r\nContent-Length: {len(body)}\r\n\r\n").encode())
    status = "none (still uploading)"
    try:
        for i in range(int(seconds)):
            writer.write(body[i : i + 1])
            await writer.drain()
            try:
                line = await asyncio.wait_for(reader.readline(), 1.0)
            except asyncio.TimeoutError:
                continue
            status = line.decode(errors="replace").strip() or "connection closed"
            break
    except (ConnectionError, OSError):
        status = "connection reset"
    finally:
        writer.close()
    return status


async def part_slow_uploads(base: str, port: int, ct: bytes, n_slow: int, n_probes: int, trickle_s: float) -> dict:
    import httpx

    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    body = head + ct + f"\r\n--{BOUNDARY}--\r\n".encode()
    slow = [asyncio.create_task(slow_client(port, body, trickle_s)) for _ in range(n_slow)]
    await asyncio.sleep(2.0)  # the slow clients are all connected and trickling
    probes = []
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        for _ in range(n_probes):
            t0 = time.perf_counter()
            r = await client.post("/report", files={"file": ("ct.nii.gz", ct)}, data={"max_new_tokens": "4"})
            probes.append({"status": r.status_code, "latency_s": round(time.perf_counter() - t0, 3)})
            await asyncio.sleep(0.5)
    slow_status = await asyncio.gather(*slow)
    return {"slow_clients": n_slow, "probes": probes, "slow_client_results": sorted(set(slow_status))}


async def part_disconnect(base: str, ct: bytes, stream_tokens: int) -> dict:
    import httpx

    async with httpx.AsyncClient(base_url=base, timeout=600) as client:
        tokens_before = metric((await client.get("/metrics")).text, "ctscribe_generated_tokens_total")
        data = {"max_new_tokens": str(stream_tokens), "stream": "true"}
        async with client.stream("POST", "/report", files={"file": ("ct.nii.gz", ct)}, data=data) as r:
            async for line in r.aiter_lines():
                if line.startswith("event: delta"):
                    break
        left_at = time.perf_counter()  # the stream is closed: the client is gone
        # Sample the gauge for up to 120 s, then time the next request.
        stopped_s = None
        while time.perf_counter() - left_at < 120:
            text = (await client.get("/metrics")).text
            if metric(text, "ctscribe_in_flight") == 0:
                stopped_s = time.perf_counter() - left_at
                break
            await asyncio.sleep(0.02)
        t0 = time.perf_counter()
        probe = await client.post("/report", files={"file": ("ct.nii.gz", ct)}, data={"max_new_tokens": "4"})
        next_latency = time.perf_counter() - t0
        probe_tokens = probe.json()["report"]["n_tokens"] if probe.status_code == 200 else 0
        await asyncio.sleep(0.5)
        text = (await client.get("/metrics")).text
        abandoned_tokens = metric(text, "ctscribe_generated_tokens_total") - tokens_before - probe_tokens
        cancelled = sum(float(v) for v in re.findall(r"^ctscribe_cancelled_total\{[^}]*\} ([0-9.e+-]+)$",
                                                     text, re.MULTILINE))
    return {"stream_tokens_asked": stream_tokens, "abandoned_request_tokens": int(abandoned_tokens),
            "in_flight_zero_after_s": None if stopped_s is None else round(stopped_s, 3),
            "next_request_latency_s": round(next_latency, 3), "next_request_status": probe.status_code,
            "cancelled_metric": cancelled}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(ROOT / "model" / "weights" / "demo"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--slow-clients", type=int, default=8)
    parser.add_argument("--probes", type=int, default=5)
    parser.add_argument("--trickle-s", type=float, default=30.0, help="how long each slow client trickles")
    parser.add_argument("--stream-tokens", type=int, default=128)
    parser.add_argument("--ready-timeout-s", type=float, default=600)
    parser.add_argument("--out", default=None, help="JSON path (default bench/results/hostile_clients.json)")
    args = parser.parse_args()

    ct = phantom_nifti()
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {"CTSCRIBE_QUEUE_SIZE": str(args.slow_clients), "CTSCRIBE_PER_KEY_CONCURRENCY": str(args.slow_clients),
           "CTSCRIBE_MAX_NEW_TOKENS": str(max(args.stream_tokens, 4)),
           "CTSCRIBE_UPLOAD_TIMEOUT_S": "60", "CTSCRIBE_UPLOAD_MIN_BYTES_PER_S": "1024",
           "CTSCRIBE_UPLOAD_GRACE_S": "5"}
    with tempfile.TemporaryDirectory(prefix="ctscribe-bench-hostile-") as tmp:
        log_path = Path(tmp) / "server.log"
        proc = start_server(args.checkpoint, args.device, port, log_path, env)
        try:
            ready_s = wait_ready(base, proc, args.ready_timeout_s, log_path)
            slow = asyncio.run(part_slow_uploads(base, port, ct, args.slow_clients, args.probes, args.trickle_s))
            leave = asyncio.run(part_disconnect(base, ct, args.stream_tokens))
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()

    print(f"server ready in {ready_s:.1f} s ({args.checkpoint}, {args.device}); settings {env}")
    print(f"A: {args.slow_clients} clients at 1 byte/s; probes: "
          + ", ".join(f"{p['status']} in {p['latency_s']:.2f} s" for p in slow["probes"]))
    print(f"   slow clients got: {slow['slow_client_results']}")
    print(f"B: SSE client left after its first delta: the abandoned request generated "
          f"{leave['abandoned_request_tokens']} of {args.stream_tokens} tokens; in-flight 0 after "
          f"{leave['in_flight_zero_after_s']} s; next request {leave['next_request_status']} in "
          f"{leave['next_request_latency_s']:.2f} s; ctscribe_cancelled_total {leave['cancelled_metric']:g}")
    write_json("hostile_clients", {"checkpoint": args.checkpoint, "device": args.device, "settings": env,
                                   "slow_uploads": slow, "disconnect": leave}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
