"""`resample_geometry` over HTTP: a tilted-gantry DICOM series (as training would read it, resampled)
is refused by default with `gantry_tilt`, and read with a warning when the request asks for it, on
/inspect, /report, /vqa and /jobs alike."""

from __future__ import annotations

import io
import json
import time
import zipfile

import numpy as np
import pytest

from tests.app.conftest import assert_problem
from tests.imaging.dicom_factory import write_ct_series


def tilted_series_zip(tmp_path, tilt_deg: float = 15.0) -> bytes:
    """A 16-slice chest-like DICOM series acquired with a tilted gantry, zipped as a client would send it."""
    zyx = np.full((16, 40, 40), -1000.0)
    zyx[:, 6:34, 4:36] = 40.0  # body
    zyx[:, 12:28, 8:18] = -850.0  # lungs
    zyx[:, 12:28, 22:32] = -850.0
    paths = write_ct_series(tmp_path, zyx, (2.5, 0.8, 0.8), tilt_deg=tilt_deg)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in paths:
            zf.write(path, path.name)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def tilted(tmp_path_factory) -> bytes:
    return tilted_series_zip(tmp_path_factory.mktemp("tilted"))


def _post(client, path, payload, **fields):
    return client.post(path, files={"file": ("series.zip", payload)}, data=fields)


def _has_tilt_warning(body: dict) -> bool:
    return any("tilt" in w.lower() for w in body["input"]["warnings"])


def test_a_tilted_series_is_refused_by_default(client, tilted):
    for path, fields in (("/inspect", {}), ("/report", {"max_new_tokens": "2"}),
                         ("/vqa", {"question": "Is there an effusion?", "max_new_tokens": "2"})):
        assert_problem(_post(client, path, tilted, **fields), 422, "gantry_tilt")
    assert_problem(_post(client, "/inspect", tilted, resample_geometry="false"), 422, "gantry_tilt")


def test_resample_geometry_reads_it_with_a_warning(client, tilted):
    inspected = _post(client, "/inspect", tilted, resample_geometry="true")
    assert inspected.status_code == 200, inspected.text
    assert _has_tilt_warning(inspected.json()) and inspected.json()["input"]["shape_zyx"][1:] != [0, 0]

    report = _post(client, "/report", tilted, resample_geometry="true", max_new_tokens="2")
    assert report.status_code == 200, report.text
    assert _has_tilt_warning(report.json()) and report.json()["input"] == inspected.json()["input"]

    as_json = json.dumps({"resample_geometry": True, "question": "Which side?", "choices": ["left", "right"]})
    vqa = _post(client, "/vqa", tilted, options=as_json)
    assert vqa.status_code == 200, vqa.text
    assert vqa.json()["answer"]["answer"] in ("left", "right") and _has_tilt_warning(vqa.json())


def test_resample_geometry_in_a_job(client, tilted):
    submitted = _post(client, "/jobs", tilted, task="report", resample_geometry="yes", max_new_tokens="2")
    assert submitted.status_code == 202, submitted.text
    deadline = time.monotonic() + 60
    while (job := client.get(f"/jobs/{submitted.json()['job_id']}").json())["status"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert job["status"] == "succeeded", job["error"]
    assert _has_tilt_warning(job["result"])


def test_resample_geometry_must_be_a_boolean(client, tilted):
    response = _post(client, "/inspect", tilted, resample_geometry="sometimes")
    assert "resample_geometry: expected true or false" in assert_problem(response, 400, "invalid_request")["detail"]
