"""Health, readiness, version, metrics, CORS, request ids, settings and `ctscribe serve` guards."""

from __future__ import annotations

import threading
import time

import pytest
from fastapi.testclient import TestClient

from app.cli.main import main as cli_main
from app.main import create_app
from app.settings import Settings
from ctscribe.errors import CtscribeError
from tests.app.conftest import assert_problem, make_settings, wait_ready

STRONG_KEY = "s3cret-0123456789abcdef"


def test_ready_is_503_while_loading_then_200(tiny_pipeline, tmp_path):
    release = threading.Event()

    def slow_loader():
        release.wait(30)
        return tiny_pipeline

    app = create_app(make_settings(tmp_path, warmup=True), pipeline=slow_loader)
    with TestClient(app) as client:
        assert client.get("/health/live").json()["ready"] is False
        assert_problem(client.get("/health/ready"), 503, "model_not_ready")
        assert client.get("/version").json()["state"] == "loading"
        release.set()
        wait_ready(client)
        assert client.get("/health/live").json()["ready"] is True
        version = client.get("/version").json()
        assert version["state"] == "ready" and version["model_hash"] == tiny_pipeline.model_hash
        assert version["device"] == "cpu" and version["checkpoint"] == "tiny"
        assert "ctscribe_ready 1.0" in client.get("/metrics").text


def test_a_model_that_fails_to_load_leaves_the_server_up_but_not_ready(tmp_path):
    def broken_loader():
        raise RuntimeError("weights are missing")

    app = create_app(make_settings(tmp_path), pipeline=broken_loader)
    with TestClient(app) as client:
        deadline = time.monotonic() + 10
        while client.get("/version").json()["state"] != "failed":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        body = assert_problem(client.get("/health/ready"), 503, "model_not_ready")
        assert "failed" in body["detail"]
        assert client.get("/health/live").status_code == 200


def test_metrics_request_ids_and_cors(client, ct_nifti):
    response = client.get("/health/live", headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123" and response.json()["request_id"] == "abc-123"
    hostile_id = "<script> id; " * 10
    hostile = client.get("/health/live", headers={"X-Request-ID": hostile_id})
    assert hostile.headers["x-request-id"] != hostile_id  # not echoed: a fresh id instead
    client.post("/report", files={"file": ("x", ct_nifti)}, data={"max_new_tokens": "2"})
    text = client.get("/metrics").text
    for name in ("ctscribe_stage_seconds_bucket{le=\"0.005\",stage=\"decode\"}", "ctscribe_queue_depth",
                 "ctscribe_batch_size_count", "ctscribe_requests_total{route=\"/report\",status=\"200\"}",
                 "ctscribe_tokens_per_second"):
        assert name in text, name
    # No CORS configured: no CORS headers.
    assert "access-control-allow-origin" not in client.options(
        "/report", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}).headers


def test_cors_allows_only_listed_origins(tmp_path):
    app = create_app(make_settings(tmp_path, cors_origins=["https://viewer.example"], warmup=False),
                     pipeline=lambda: None)
    with TestClient(app) as client:
        preflight = {"Access-Control-Request-Method": "POST"}
        ok = client.options("/report", headers={"Origin": "https://viewer.example", **preflight})
        assert ok.headers["access-control-allow-origin"] == "https://viewer.example"
        other = client.options("/report", headers={"Origin": "https://evil.example", **preflight})
        assert "access-control-allow-origin" not in other.headers


def test_openapi_documents_every_route(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/report", "/vqa", "/inspect", "/jobs", "/jobs/{job_id}", "/health/live", "/health/ready",
                 "/version", "/metrics"):
        assert path in paths
    assert "multipart/form-data" in paths["/report"]["post"]["requestBody"]["content"]


def test_settings_from_environment(monkeypatch):
    monkeypatch.setenv("CTSCRIBE_API_KEYS", f"{STRONG_KEY}1, {STRONG_KEY}2")
    monkeypatch.setenv("CTSCRIBE_CORS_ORIGINS", '["https://a.example"]')
    monkeypatch.setenv("CTSCRIBE_MAX_UPLOAD_MB", "12.5")
    settings = Settings()
    assert settings.api_keys == [f"{STRONG_KEY}1", f"{STRONG_KEY}2"] and settings.cors_origins == ["https://a.example"]
    assert settings.max_upload_mb == 12.5 and settings.auth_enabled


def test_settings_refuse_wildcard_cors_and_zero_limits():
    with pytest.raises(ValueError):
        Settings(cors_origins=["*"])
    with pytest.raises(ValueError):
        Settings(queue_size=0)


@pytest.mark.parametrize("host,keys,allow,ok", [
    ("127.0.0.1", [], False, True), ("localhost", [], False, True), ("::1", [], False, True),
    ("0.0.0.0", [], False, False), ("0.0.0.0", [STRONG_KEY], False, True), ("0.0.0.0", [], True, True),
])
def test_bind_guard(host, keys, allow, ok):
    settings = Settings(host=host, api_keys=keys, allow_unauthenticated=allow)
    if ok:
        settings.check_bind()
    else:
        with pytest.raises(CtscribeError) as info:
            settings.check_bind()
        assert info.value.code.value == "invalid_request"


def test_serve_refuses_public_bind_without_keys(monkeypatch, capsys):
    monkeypatch.delenv("CTSCRIBE_API_KEYS", raising=False)
    monkeypatch.delenv("CTSCRIBE_ALLOW_UNAUTHENTICATED", raising=False)
    assert cli_main(["serve", "--host", "0.0.0.0", "--checkpoint", "tiny"]) == 2
    assert "error: invalid_request: refusing to bind 0.0.0.0" in capsys.readouterr().err


@pytest.mark.parametrize("keys", [["a"], [""], ["fifteen-chars-x"], [STRONG_KEY, "short"], ["has a space 0123456789"]])
def test_weak_api_keys_are_refused(keys):
    with pytest.raises(ValueError, match=r"API key #\d"):
        Settings(api_keys=keys)


@pytest.mark.parametrize("env_value", ["a", '[""]', f"{STRONG_KEY},tooshort"])
def test_serve_refuses_weak_api_keys_with_one_clear_line(monkeypatch, capsys, env_value):
    monkeypatch.setenv("CTSCRIBE_API_KEYS", env_value)
    assert cli_main(["serve", "--host", "0.0.0.0", "--checkpoint", "tiny"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: invalid_request: invalid settings: CTSCRIBE_API_KEYS: API key #")
    assert "at least 16" in err and "Traceback" not in err
    assert "tooshort" not in err  # the rejected key itself is never printed


def test_sixteen_character_keys_are_accepted():
    assert Settings(api_keys=["x" * 16]).auth_enabled
