"""Fixtures for the service tests: small CT files, apps on the tiny model, SSE parsing."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest

from app.settings import Settings

REPO = Path(__file__).resolve().parents[2]
CAPACITY = 16


def chest_like_xyz(shape_xyz=(48, 48, 24)) -> np.ndarray:
    """Air around a soft-tissue cylinder with two air 'lungs', int16 HU, NIfTI axis order (x, y, z)."""
    x, y, z = shape_xyz
    data = np.full(shape_xyz, -1000, np.int16)
    xx, yy = np.mgrid[:x, :y]
    body = (xx - x / 2) ** 2 + ((yy - y / 2) * 1.3) ** 2 < (0.42 * x) ** 2
    data[body, :] = 40
    for side in (-1, 1):
        lung = ((xx - x / 2 - side * x * 0.17) ** 2 + ((yy - y / 2) * 1.1) ** 2) < (0.14 * x) ** 2
        data[lung, :] = -850
    return data


def nifti_bytes(shape_xyz=(48, 48, 24), spacing_mm_xyz=(1.0, 1.0, 2.5), compress=True, data=None) -> bytes:
    import nibabel as nib

    array = chest_like_xyz(shape_xyz) if data is None else data
    image = nib.Nifti1Image(array, np.diag([*spacing_mm_xyz, 1.0]))
    raw = image.to_bytes()
    return gzip.compress(raw, compresslevel=1) if compress else raw


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, payload in members.items():
            zf.writestr(name, payload)
    return buffer.getvalue()


def parse_sse(text: str) -> list[tuple[str, dict]]:
    """`event:`/`data:` blocks -> [(event, json)], as an EventSource client would see them."""
    events = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        event, data = "message", []
        for line in block.splitlines():
            if line.startswith("event:"):
                event = line[len("event:"):].strip()
            elif line.startswith("data:"):
                data.append(line[len("data:"):].lstrip())
        events.append((event, json.loads("\n".join(data))))
    return events


def assert_problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == code and body["status"] == status
    assert {"type", "title", "detail", "request_id"} <= set(body)
    assert body["request_id"] == response.headers["x-request-id"]
    return body


def make_settings(upload_dir: Path, **overrides) -> Settings:
    base = dict(checkpoint="tiny", device="cpu", decode_workers=1, upload_dir=upload_dir, max_new_tokens=8,
                batch_wait_ms=5.0, warmup=False)
    base.update(overrides)
    return Settings(**base)


@pytest.fixture(scope="session")
def tiny_pipeline():
    """The random-weight tiny preset: the real model code, small enough for a CPU test."""
    import model

    if not hasattr(model, "build"):
        pytest.skip("model.build is not available in this tree yet")
    return model.build("tiny", device="cpu", seed=0)


@pytest.fixture(scope="module")
def upload_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("uploads")


@pytest.fixture(scope="module")
def client(tiny_pipeline, upload_dir):
    """One app on the tiny pipeline for a whole module (each app spawns a decode worker)."""
    from fastapi.testclient import TestClient

    from app.main import create_app

    app = create_app(make_settings(upload_dir), pipeline=tiny_pipeline)
    with TestClient(app) as test_client:
        wait_ready(test_client)
        yield test_client


def wait_ready(test_client, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if test_client.get("/health/ready").status_code == 200:
            return
        time.sleep(0.05)
    raise AssertionError(f"not ready: {test_client.get('/version').json()}")


@pytest.fixture(scope="session")
def ct_nifti() -> bytes:
    return nifti_bytes()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve_on_loopback(tmp_path_factory, env_overrides: dict[str, str]):
    """`ctscribe serve --checkpoint tiny` in a second process on a free 127.0.0.1 port, with
    `CTSCRIBE_*` settings from `env_overrides`; yields (base URL, process, upload dir)."""
    port = free_port()
    upload_dir = tmp_path_factory.mktemp("uploads")
    env = {**os.environ, "CTSCRIBE_UPLOAD_DIR": str(upload_dir), "CTSCRIBE_API_KEYS": "",
           "CTSCRIBE_DECODE_WORKERS": "1", **env_overrides}
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli.main", "serve", "--checkpoint", "tiny", "--device", "cpu",
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log_file,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while True:
                assert proc.poll() is None, log_path.read_text()[-2000:]
                try:
                    if httpx.get(f"{base}/health/ready", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "server did not become ready"
                time.sleep(0.2)
            yield base, proc, upload_dir
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="session")
def live_server(tmp_path_factory):
    """`ctscribe serve --checkpoint tiny` in a second process on a free 127.0.0.1 port; admits 16."""
    started = time.monotonic()
    overrides = {"CTSCRIBE_QUEUE_SIZE": str(CAPACITY), "CTSCRIBE_PER_KEY_CONCURRENCY": str(CAPACITY),
                 "CTSCRIBE_MAX_BATCH": "8", "CTSCRIBE_MAX_NEW_TOKENS": "4", "CTSCRIBE_DECODE_WORKERS": "2"}
    with serve_on_loopback(tmp_path_factory, overrides) as running:
        print(f"live server ready in {time.monotonic() - started:.1f} s")
        yield running
