"""Hostile and malformed uploads through HTTP: each is a 4xx problem with the right code, never a
5xx, and nothing is left in the upload directory. `/inspect` needs no model, so these run on an
app whose model never finishes loading (a blocked loader: the model is not what is tested here)."""

from __future__ import annotations

import gzip
import io
import struct
import threading

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.app.conftest import assert_problem, chest_like_xyz, make_settings, nifti_bytes, zip_bytes
from tests.imaging.test_not_ct import t1_brain_uint8


@pytest.fixture(scope="module")
def no_model_client(tmp_path_factory):
    release = threading.Event()
    upload_dir = tmp_path_factory.mktemp("uploads")
    settings = make_settings(upload_dir, max_upload_mb=2.0, max_part_mb=1.5, max_files=5,
                             decode_memory_mb=200)
    app = create_app(settings, pipeline=lambda: release.wait(60) and None)
    with TestClient(app) as client:
        client.upload_dir = upload_dir
        yield client
    release.set()


@pytest.fixture(autouse=True)
def _no_leftovers(request):
    yield
    if "no_model_client" in request.fixturenames:
        client = request.getfixturevalue("no_model_client")
        assert list(client.upload_dir.iterdir()) == [], "upload temp files were left behind"


def _inspect(client, payload: bytes, name: str = "ct.nii.gz", **fields):
    return client.post("/inspect", files={"file": (name, payload)}, data=fields)


def test_inspect_reads_a_nifti_without_the_model(no_model_client, ct_nifti):
    response = _inspect(no_model_client, ct_nifti)
    assert response.status_code == 200, response.text
    body = response.json()
    # The fixture is 48 x 48 x 24 voxels (x, y, z) at 1 x 1 x 2.5 mm: canonical order is (z, y, x).
    assert body["input"]["shape_zyx"] == [24, 48, 48]
    assert body["input"]["spacing_mm_zyx"] == pytest.approx([2.5, 1.0, 1.0])
    assert body["input"]["hu"]["min"] == -1000 and body["input"]["hu"]["max"] == 40
    assert body["disclaimer"] == "Research use only; not for clinical decision-making."
    assert body["request_id"] == response.headers["x-request-id"]
    assert {"upload", "decode"} <= set(body["timings_s"])


def _nifti_with_nan_pixdim() -> bytes:
    raw = bytearray(nifti_bytes(compress=False))
    # pixdim[1..3] are float32 at byte offsets 80 + 4*i of the NIfTI-1 header.
    raw[84:88] = struct.pack("<f", float("nan"))
    return bytes(raw)


def _zip_bomb() -> bytes:
    # 60 MB of zeros deflate to ~60 KB: a ratio of ~1000:1, over the 200:1 limit.
    buffer = io.BytesIO()
    import zipfile

    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("0001.dcm", b"\0" * 60_000_000)
    return buffer.getvalue()


HOSTILE = [
    ("junk bytes", lambda: b"this is not a CT\x00\x01" * 64, 415, "unsupported_format"),
    ("empty file", lambda: b"", 422, "corrupt_file"),
    ("truncated gzip", lambda: nifti_bytes()[:400], 422, "corrupt_file"),
    ("NaN voxel size", _nifti_with_nan_pixdim, 422, "corrupt_file"),
    ("zip with ../ member", lambda: zip_bytes({"../../etc/evil.dcm": b"x" * 200}), 413, "archive_limits_exceeded"),
    ("zip bomb ratio", _zip_bomb, 413, "archive_limits_exceeded"),
    ("gzip of garbage", lambda: gzip.compress(b"\x7f" * 5000), 415, "unsupported_format"),
    ("2D image", lambda: nifti_bytes(data=np.zeros((32, 32, 1), np.int16)), 422, "not_3d"),
    ("nii.gz bomb (1000:1)", lambda: nifti_bytes(data=np.full((256, 256, 512), -1000, np.int16)), 413,
     "archive_limits_exceeded"),
    ("MR T1 as NIfTI", lambda: nifti_bytes(data=t1_brain_uint8()), 422, "not_ct"),
    ("2-slice sagittal", lambda: nifti_bytes(data=chest_like_xyz((48, 48, 24))[20:22]), 422, "too_few_slices"),
]


@pytest.mark.parametrize("name,make,status,code", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_upload_is_a_4xx_problem(no_model_client, name, make, status, code):
    assert_problem(_inspect(no_model_client, make()), status, code)


def _sparse_uint8_volume() -> bytes:
    """400^3 uint8, 0.3 % random voxels: 1.1 MB gzipped at 56:1 (under the 200:1 cap), 256 MB as float32."""
    rng = np.random.default_rng(0)
    data = np.zeros((400, 400, 400), np.uint8)
    marked = rng.random(data.shape) < 0.003
    data[marked] = rng.integers(0, 256, int(marked.sum()))
    return nifti_bytes(data=data)


def test_decoded_size_over_the_worker_memory_limit_is_413_and_the_server_goes_on(no_model_client, ct_nifti):
    # An honest compression ratio, but the float32 HU volume alone is over the 200 MiB the worker
    # may add: the worker hits its RLIMIT_AS, not the server.
    assert_problem(_inspect(no_model_client, _sparse_uint8_volume()), 413, "payload_too_large")
    assert _inspect(no_model_client, ct_nifti).status_code == 200


def test_too_many_files_is_413(no_model_client):
    files = [("file", (f"{i}.dcm", b"DICM")) for i in range(6)]  # the limit is 5
    assert_problem(no_model_client.post("/inspect", files=files), 413, "payload_too_large")


def test_oversized_upload_is_413_while_streaming(no_model_client):
    big = b"\0" * (3 * 1024 * 1024)  # over max_upload_mb = 2
    assert_problem(_inspect(no_model_client, big), 413, "payload_too_large")

    def chunks():  # no Content-Length: the cap must hold while reading
        yield b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x\"\r\n\r\n"
        for _ in range(40):
            yield b"\0" * 65536
        yield b"\r\n--b--\r\n"

    response = no_model_client.post("/inspect", content=chunks(),
                                     headers={"content-type": "multipart/form-data; boundary=b"})
    assert_problem(response, 413, "payload_too_large")


def test_oversized_form_field_is_413(no_model_client, ct_nifti):
    response = _inspect(no_model_client, ct_nifti, series_instance_uid="1" * 100_000)
    assert_problem(response, 413, "payload_too_large")


@pytest.mark.parametrize("body,content_type", [
    (b"{}", "application/json"),
    (b"--b\r\nno headers here", "multipart/form-data; boundary=b"),
    (b"", "multipart/form-data; boundary=b"),
])
def test_malformed_request_is_400(no_model_client, body, content_type):
    response = no_model_client.post("/inspect", content=body, headers={"content-type": content_type})
    assert_problem(response, 400, "invalid_request")


def test_client_filename_never_reaches_the_disk_or_the_response(no_model_client, ct_nifti):
    response = _inspect(no_model_client, ct_nifti, name="../../PATIENT_Doe_John.nii.gz")
    assert response.status_code == 200
    assert "Doe" not in response.text


def test_model_routes_are_503_until_ready(no_model_client, ct_nifti):
    for path in ("/report", "/vqa", "/jobs"):
        body = assert_problem(no_model_client.post(path, files={"file": ("x", ct_nifti)}), 503, "model_not_ready")
        assert "loading" in body["detail"]
    response = no_model_client.get("/health/ready")
    assert_problem(response, 503, "model_not_ready")
    assert int(response.headers["retry-after"]) > 0
    live = no_model_client.get("/health/live")
    assert live.status_code == 200 and live.json()["ready"] is False
