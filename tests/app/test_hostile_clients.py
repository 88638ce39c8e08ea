"""Slow, leaving and odd clients against a real server on loopback (uvicorn in a second process,
tiny model): a slow upload holds no admission slot and is cut off with a 408; a client that
leaves a stream stops its generation (counted); bad sampling parameters are 400s; a seeded
request samples the same text alone and batched."""

from __future__ import annotations

import asyncio
import re
import threading
import time

import httpx
import pytest

from tests.app.conftest import nifti_bytes, parse_sse, serve_on_loopback

CAPACITY = 2
MAX_NEW_TOKENS = 420  # the tiny decoder's 512 positions minus its prompt
BOUNDARY = "hostile-test-boundary"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    env = {"CTSCRIBE_QUEUE_SIZE": str(CAPACITY), "CTSCRIBE_PER_KEY_CONCURRENCY": str(CAPACITY),
           "CTSCRIBE_MAX_BATCH": "4", "CTSCRIBE_BATCH_WAIT_MS": "100",
           "CTSCRIBE_MAX_NEW_TOKENS": str(MAX_NEW_TOKENS), "CTSCRIBE_UPLOAD_TIMEOUT_S": "30",
           "CTSCRIBE_UPLOAD_MIN_BYTES_PER_S": "4096", "CTSCRIBE_UPLOAD_GRACE_S": "1"}
    with serve_on_loopback(tmp_path_factory, env) as running:
        yield running


@pytest.fixture(scope="module")
def ct() -> bytes:
    return nifti_bytes()


def _metric(text: str, name: str, labels: str = "") -> float:
    found = re.search(rf"^{re.escape(name + labels)} ([0-9.e+-]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def _trickle(port: int, body: bytes, stop: asyncio.Event) -> tuple[str, bytes]:
    """Send a /report header, then the body one byte per 0.2 s until the server answers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write((f"POST /report HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; "
                  f"boundary={BOUNDARY}\r\nContent-Length: {len(body)}\r\n\r\n").encode())
    try:
        for i in range(len(body)):
            if stop.is_set():
                return "", b""
            writer.write(body[i : i + 1])
            await writer.drain()
            try:
                status = await asyncio.wait_for(reader.readline(), 0.2)
            except asyncio.TimeoutError:
                continue
            return status.decode().strip(), await asyncio.wait_for(reader.read(), 5)
        return "", b""
    finally:
        writer.close()


def test_slow_uploads_hold_no_slot_and_are_cut_off_with_408(server, ct):
    base, _, upload_dir = server
    port = int(base.rsplit(":", 1)[1])
    body = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x\"\r\n\r\n").encode() + ct

    async def scenario():
        stop = asyncio.Event()
        slow = [asyncio.create_task(_trickle(port, body, stop)) for _ in range(2 * CAPACITY)]
        await asyncio.sleep(0.5)  # every slow client is connected and inside its upload
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            normal = await client.post("/report", files={"file": ("ct.nii.gz", ct)}, data={"max_new_tokens": "4"})
        try:
            return normal, await asyncio.wait_for(asyncio.gather(*slow), 30)
        finally:
            stop.set()

    normal, slow = asyncio.run(scenario())
    assert normal.status_code == 200, normal.text  # was 429: the trickling uploads held every slot
    for status, rest in slow:
        assert status == "HTTP/1.1 408 Request Timeout"
        assert b'"code":"timeout"' in rest and b"too slow" in rest
    deadline = time.monotonic() + 10
    while list(upload_dir.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(upload_dir.iterdir()) == []  # the cut-off uploads' temp files are gone


@pytest.mark.parametrize("temperature", ["1e-45", "1e-300", "0.00005", "nan", "-0.1", "2.5"])
def test_temperatures_that_cannot_sample_are_400(server, ct, temperature):
    base, _, _ = server
    r = httpx.post(f"{base}/report", files={"file": ("ct.nii.gz", ct)},
                   data={"temperature": temperature, "max_new_tokens": "4"}, timeout=60)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "invalid_request" and "temperature" in r.json()["detail"]


def test_a_seeded_request_samples_the_same_text_alone_and_batched(server, ct):
    base, _, _ = server
    data = {"temperature": "1.0", "seed": "7", "max_new_tokens": "24"}

    def post() -> dict:
        r = httpx.post(f"{base}/report", files={"file": ("ct.nii.gz", ct)}, data=data, timeout=60)
        assert r.status_code == 200, r.text
        return r.json()

    alone = post()
    assert alone["batch_size"] == 1
    for _ in range(3):  # concurrent requests share a batch unless the machine staggers them
        results: list[dict] = []
        threads = [threading.Thread(target=lambda out=results: out.append(post())) for _ in range(CAPACITY)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [r["report"]["text"] for r in results] == [alone["report"]["text"]] * CAPACITY
        if max(r["batch_size"] for r in results) > 1:
            return
    pytest.fail("the concurrent requests were never batched")


def test_a_client_that_leaves_a_stream_stops_its_generation(server, ct):
    base, _, _ = server
    before = httpx.get(f"{base}/metrics").text
    data = {"max_new_tokens": str(MAX_NEW_TOKENS), "stream": "true"}
    with httpx.stream("POST", f"{base}/report", files={"file": ("ct.nii.gz", ct)}, data=data, timeout=60) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("event: delta"):
                break  # one token arrived: leave
    deadline = time.monotonic() + 20
    while True:
        metrics = httpx.get(f"{base}/metrics").text
        if _metric(metrics, "ctscribe_in_flight") == 0 and \
                _metric(metrics, "ctscribe_generated_tokens_total") > _metric(before, "ctscribe_generated_tokens_total"):
            break
        assert time.monotonic() < deadline, "the abandoned request never finished"
        time.sleep(0.02)
    cancelled = _metric(metrics, "ctscribe_cancelled_total", '{reason="client_gone"}')
    assert cancelled == _metric(before, "ctscribe_cancelled_total", '{reason="client_gone"}') + 1
    generated = _metric(metrics, "ctscribe_generated_tokens_total") - _metric(before, "ctscribe_generated_tokens_total")
    assert 1 <= generated < MAX_NEW_TOKENS  # it stopped early: nobody was reading


def test_a_completed_stream_is_not_counted_as_cancelled(server, ct):
    base, _, _ = server
    before = httpx.get(f"{base}/metrics").text
    r = httpx.post(f"{base}/report", files={"file": ("ct.nii.gz", ct)}, data={"max_new_tokens": "4", "stream": "true"},
                   timeout=60)
    assert [e for e, _ in parse_sse(r.text)][-1] == "result"
    after = httpx.get(f"{base}/metrics").text
    assert _metric(after, "ctscribe_cancelled_total", '{reason="client_gone"}') == \
        _metric(before, "ctscribe_cancelled_total", '{reason="client_gone"}')
