"""Uploads in progress are capped, against a real server on loopback: past a key's cap a new
upload is a 429, past the service's cap a 503 (both `queue_full` with Retry-After, refused
before the body is read), and the count is returned when an upload completes, fails, or its
client leaves. Without the cap, slow-but-fast-enough clients could pile up temp dirs and disk."""

from __future__ import annotations

import http.client
import re
import socket
import time

import httpx
import pytest

from tests.app.conftest import nifti_bytes, serve_on_loopback

KEYS = ("key-a-0123456789abcdef", "key-b-0123456789abcdef", "key-c-0123456789abcdef")
BOUNDARY = "upload-cap-test-boundary"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    env = {"CTSCRIBE_API_KEYS": ",".join(KEYS), "CTSCRIBE_MAX_CONCURRENT_UPLOADS": "2",
           "CTSCRIBE_MAX_CONCURRENT_UPLOADS_PER_KEY": "1", "CTSCRIBE_UPLOAD_MIN_BYTES_PER_S": "0",
           "CTSCRIBE_UPLOAD_TIMEOUT_S": "60", "CTSCRIBE_RETRY_AFTER_S": "3", "CTSCRIBE_MAX_NEW_TOKENS": "8"}
    with serve_on_loopback(tmp_path_factory, env) as running:
        yield running


@pytest.fixture(scope="module")
def body() -> bytes:
    part = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"ct.nii.gz\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    return part + nifti_bytes() + f"\r\n--{BOUNDARY}--\r\n".encode()


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class SlowUpload:
    """A raw connection that sends a request header and half its body, then waits."""

    def __init__(self, base: str, key: str, body: bytes, path: str = "/inspect"):
        host, port = base.removeprefix("http://").split(":")
        self.body = body
        self.sock = socket.create_connection((host, int(port)), timeout=60)
        head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
                f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {len(body)}\r\n\r\n")
        self.sock.sendall(head.encode() + body[: len(body) // 2])

    def finish(self) -> tuple[int, bytes]:
        """Send the rest of the body; the response's status and body."""
        self.sock.sendall(self.body[len(self.body) // 2 :])
        response = http.client.HTTPResponse(self.sock)
        response.begin()
        return response.status, response.read()

    def leave(self) -> None:
        self.sock.close()


def _uploads_in_progress(base: str) -> float:
    text = httpx.get(f"{base}/metrics", headers=_auth(KEYS[0]), timeout=10).text
    return float(re.search(r"^ctscribe_uploads_in_progress ([0-9.e+-]+)$", text, re.MULTILINE).group(1))


def _await_uploads(base: str, expected: int) -> None:
    """Wait (bounded) until the server counts `expected` uploads in progress."""
    deadline = time.monotonic() + 20
    while (seen := _uploads_in_progress(base)) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert seen == expected, f"{seen} uploads in progress, expected {expected}"


def _inspect(base: str, key: str, ct: bytes) -> httpx.Response:
    return httpx.post(f"{base}/inspect", headers=_auth(key), files={"file": ("ct.nii.gz", ct)}, timeout=60)


def test_uploads_past_a_keys_cap_are_429_and_past_the_services_cap_503(server, body):
    base, _, _ = server
    ct = nifti_bytes()
    first = SlowUpload(base, KEYS[0], body)
    try:
        _await_uploads(base, 1)
        same_key = _inspect(base, KEYS[0], ct)
        assert same_key.status_code == 429, same_key.text
        assert same_key.json()["code"] == "queue_full" and "uploads in progress" in same_key.json()["detail"]
        assert same_key.headers["retry-after"] == "3"

        second = SlowUpload(base, KEYS[1], body, path="/report")
        try:
            _await_uploads(base, 2)
            for path in ("/inspect", "/report", "/vqa", "/jobs"):
                full = httpx.post(f"{base}{path}", headers=_auth(KEYS[2]), files={"file": ("ct.nii.gz", ct)},
                                  data={"question": "Is there an effusion?"}, timeout=60)
                assert full.status_code == 503, (path, full.text)
                assert full.json()["code"] == "queue_full" and full.headers["retry-after"] == "3"
            status, answer = second.finish()
            assert status == 200, answer  # a completed upload returns its count
        finally:
            second.leave()
        _await_uploads(base, 1)
        assert _inspect(base, KEYS[2], ct).status_code == 200
    finally:
        first.leave()
    _await_uploads(base, 0)  # a client that left mid-body returns its count too


def test_the_count_is_returned_when_an_upload_fails(server):
    base, _, upload_dir = server
    _await_uploads(base, 0)
    for _ in range(2):  # more failures than the per-key cap of 1: each returns its count
        not_multipart = httpx.post(f"{base}/inspect", headers={**_auth(KEYS[0]), "Content-Type": "application/json"},
                                   content=b"{}", timeout=60)
        assert not_multipart.status_code == 400, not_multipart.text
        oversized = httpx.post(f"{base}/inspect", headers=_auth(KEYS[0]), files={"file": ("x", b"\0" * 64)},
                               data={"series_instance_uid": "x" * 200_000}, timeout=60)  # a field past 64 KiB
        assert oversized.status_code == 413, oversized.text
    _await_uploads(base, 0)
    assert _inspect(base, KEYS[0], nifti_bytes()).status_code == 200
    assert list(upload_dir.iterdir()) == []
