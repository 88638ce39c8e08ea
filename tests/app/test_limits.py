"""Overload behaviour: 429 per key, 503 for the service, 504 past the deadline, GPU OOM.

The pipeline here is the real tiny one behind a GATE: its model calls wait until the test
opens the gate, so the service can be held saturated for as long as the test needs. That
wrapper exists only to make "busy" deterministic; everything else is the real service.
"""

from __future__ import annotations

import threading
import time

import pytest
import torch
from fastapi.testclient import TestClient

from app.main import create_app
from tests.app.conftest import assert_problem, make_settings, wait_ready

KEY_A = "key-a-0123456789abcdef"
KEY_B = "key-b-0123456789abcdef"


class GatedPipeline:
    """Delegates to the tiny pipeline; model calls block until `gate` is set."""

    def __init__(self, inner):
        self.inner = inner
        self.gate = threading.Event()
        self.fail_with: BaseException | None = None
        self.batches: list[int] = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def _wait(self, n: int) -> None:
        self.batches.append(n)
        assert self.gate.wait(30), "test gate never opened"
        if self.fail_with is not None:
            raise self.fail_with

    def report(self, cts, params=None, on_text=None, **options):
        self._wait(len(cts))
        return self.inner.report(cts, params, on_text=on_text, **options)

    def answer(self, cts, questions, params=None, on_text=None, **options):
        self._wait(len(cts))
        return self.inner.answer(cts, questions, params, on_text=on_text, **options)

    def choose(self, cts, questions, choices):
        self._wait(len(cts))
        return self.inner.choose(cts, questions, choices)


@pytest.fixture(scope="module")
def gated_app(tiny_pipeline, tmp_path_factory):
    pipe = GatedPipeline(tiny_pipeline)
    pipe.gate.set()
    settings = make_settings(tmp_path_factory.mktemp("uploads"), api_keys=[KEY_A, KEY_B], queue_size=3, per_key_concurrency=2,
                             max_batch=1, retry_after_s=3, request_timeout_s=20)
    app = create_app(settings, pipeline=pipe)
    with TestClient(app) as client:
        wait_ready(client)
        yield client, pipe, app
        pipe.gate.set()


@pytest.fixture()
def gated(gated_app):
    """The shared gated app, gate closed and no failure injected."""
    client, pipe, app = gated_app
    pipe.gate.clear()
    pipe.fail_with = None
    yield gated_app
    pipe.gate.set()
    pipe.fail_with = None


def _post(client, ct, key, results=None):
    response = client.post("/report", files={"file": ("x", ct)}, data={"max_new_tokens": "2"},
                           headers={"Authorization": f"Bearer {key}"})
    if results is not None:
        results.append(response)
    return response


def _in_background(client, ct, key, results):
    thread = threading.Thread(target=_post, args=(client, ct, key, results))
    thread.start()
    return thread


def _wait_in_flight(app, n: int) -> None:
    deadline = time.monotonic() + 20
    while app.state.service.admission.in_flight < n:
        assert time.monotonic() < deadline, "requests were not admitted"
        time.sleep(0.01)


def test_429_per_key_then_503_global_with_retry_after_and_recovery(gated, ct_nifti):
    client, pipe, app = gated
    results: list = []
    threads = [_in_background(client, ct_nifti, KEY_A, results) for _ in range(2)]
    _wait_in_flight(app, 2)

    over_key = _post(client, ct_nifti, KEY_A)  # key-a already has its 2
    assert_problem(over_key, 429, "queue_full")
    assert over_key.headers["retry-after"] == "3"

    threads.append(_in_background(client, ct_nifti, KEY_B, results))
    _wait_in_flight(app, 3)
    over_service = _post(client, ct_nifti, KEY_B)  # key-b has 1 of 2, but the service has 3 of 3
    assert_problem(over_service, 503, "queue_full")
    assert over_service.headers["retry-after"] == "3"

    pipe.gate.set()
    for thread in threads:
        thread.join(30)
    assert [r.status_code for r in results] == [200, 200, 200]
    assert app.state.service.admission.in_flight == 0
    assert _post(client, ct_nifti, KEY_A).status_code == 200  # capacity is back

    metrics = client.get("/metrics", headers={"Authorization": f"Bearer {KEY_A}"}).text
    assert 'ctscribe_rejections_total{code="queue_full"} 2.0' in metrics


def test_request_past_its_deadline_is_504(gated, ct_nifti):
    client, pipe, app = gated
    admission = app.state.service.admission
    admission.timeout_s = 1.0  # this test only: the model call is held past a 1 s deadline
    try:
        assert_problem(_post(client, ct_nifti, KEY_A), 504, "timeout")
        # The slot is freed when the compute stops, not when the caller gives up: admission
        # bounds the backlog (the held model call still counts).
        assert admission.in_flight == 1
    finally:
        admission.timeout_s = 20
        pipe.gate.set()
    deadline = time.monotonic() + 20
    while admission.in_flight:
        assert time.monotonic() < deadline, "the slot was never freed"
        time.sleep(0.01)


def test_gpu_out_of_memory_fails_the_request_not_the_server(gated, ct_nifti):
    # A CUDA OOM cannot happen on a CPU test machine: the wrapper raises the real exception type.
    client, pipe, _ = gated
    pipe.fail_with = torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
    pipe.gate.set()
    response = _post(client, ct_nifti, KEY_A)
    assert_problem(response, 503, "queue_full")
    assert "retry-after" in response.headers
    pipe.fail_with = None
    assert _post(client, ct_nifti, KEY_A).status_code == 200
    assert client.get("/health/ready").status_code == 200


def test_api_key_required_when_configured(gated, ct_nifti):
    client, pipe, _ = gated
    pipe.gate.set()
    assert_problem(client.post("/report", files={"file": ("x", ct_nifti)}), 401, "invalid_request")
    response = _post(client, ct_nifti, "wrong-key")
    assert_problem(response, 401, "invalid_request")
    assert response.headers["www-authenticate"] == "Bearer"
    assert_problem(client.post("/inspect", files={"file": ("x", ct_nifti)}), 401, "invalid_request")
    assert_problem(client.get("/jobs/abc"), 401, "invalid_request")
    # Probes stay open for the orchestrator.
    assert client.get("/health/ready").status_code == 200
    assert client.get("/health/live").status_code == 200


def test_jobs_are_private_to_their_key(gated, ct_nifti):
    client, pipe, _ = gated
    pipe.gate.set()
    response = client.post("/jobs", files={"file": ("x", ct_nifti)}, headers={"Authorization": f"Bearer {KEY_A}"})
    assert response.status_code == 202
    job_id = response.json()["job_id"]
    assert client.get(f"/jobs/{job_id}", headers={"Authorization": f"Bearer {KEY_A}"}).status_code == 200
    assert_problem(client.get(f"/jobs/{job_id}", headers={"Authorization": f"Bearer {KEY_B}"}), 404, "invalid_request")
