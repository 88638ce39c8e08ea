"""`/version`, `/metrics`, `/docs`, `/redoc`, `/openapi.json` need the API key when keys are set,
unless `public_endpoints` opens them; the health probes never do. The real server sends no
`server:` header."""

from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from tests.app.conftest import assert_problem, make_settings

KEY = "metadata-test-key-0123456789"
METADATA = {"version": ["/version"], "metrics": ["/metrics"], "docs": ["/docs", "/redoc", "/openapi.json"]}
PROBES = ["/health/live", "/health/ready"]


def _client(tmp_path, **overrides) -> TestClient:
    # The model never matters here: metadata endpoints answer in any model state.
    return TestClient(create_app(make_settings(tmp_path, api_keys=[KEY], **overrides), pipeline=lambda: None))


def test_metadata_endpoints_need_the_key_by_default(tmp_path):
    with _client(tmp_path) as client:
        for path in [p for paths in METADATA.values() for p in paths]:
            response = client.get(path)
            assert_problem(response, 401, "invalid_request")
            assert response.headers["www-authenticate"] == "Bearer"
            assert "model_hash" not in response.text and "ctscribe_" not in response.text
            assert client.get(path, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200, path
        authorized = {"Authorization": f"Bearer {KEY}"}
        assert "/report" in client.get("/openapi.json", headers=authorized).json()["paths"]
        assert "swagger" in client.get("/docs", headers=authorized).text.lower()
        for path in PROBES:  # an orchestrator polls these without credentials
            assert client.get(path).status_code in (200, 503)
            assert client.get(path).status_code != 401


def test_public_endpoints_opens_only_the_named_ones(tmp_path):
    with _client(tmp_path, public_endpoints=["metrics", "docs"]) as client:
        for path in [*METADATA["metrics"], *METADATA["docs"]]:
            assert client.get(path).status_code == 200, path
        assert_problem(client.get("/version"), 401, "invalid_request")
        assert_problem(client.post("/inspect", files={"file": ("x", b"x")}), 401, "invalid_request")


def test_without_keys_everything_is_open(tmp_path):
    app = create_app(make_settings(tmp_path), pipeline=lambda: None)
    with TestClient(app) as client:
        for path in [p for paths in METADATA.values() for p in paths]:
            assert client.get(path).status_code == 200, path


def test_public_endpoints_setting(monkeypatch):
    monkeypatch.setenv("CTSCRIBE_PUBLIC_ENDPOINTS", "metrics, version")
    assert Settings().public_endpoints == ["metrics", "version"]
    assert Settings(public_endpoints=[]).public_endpoints == []
    with pytest.raises(ValueError, match="unknown endpoint"):
        Settings(public_endpoints=["health", "admin"])


def test_the_real_server_sends_no_server_header(live_server):
    base, _, _ = live_server
    for path in ("/health/live", "/version", "/nowhere"):
        response = httpx.get(base + path, timeout=10)
        assert "server" not in response.headers, (path, response.headers.get("server"))
        assert response.headers["x-request-id"]
