"""SeriesDescription (free text: technologists type names into it) never leaves the service:
not in /inspect, not in a report's input summary, not in a job result, not in an error. The
CLI shows it only when asked (`inspect --series-description`)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from app.cli.main import main
from tests.app.conftest import assert_problem, chest_like_xyz
from tests.imaging.dicom_factory import write_ct_series

NAME = "Doe^Jane"


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A 24-slice chest-like CT series and a 10-slice one, both described with a name."""
    root = tmp_path_factory.mktemp("study")
    hu_zyx = chest_like_xyz((48, 48, 24)).transpose(2, 1, 0).astype(np.float32)
    write_ct_series(root, hu_zyx, (2.5, 1.0, 1.0), prefix="a", description=f"Thorax {NAME}")
    write_ct_series(root, hu_zyx[:10], (2.5, 1.0, 1.0), prefix="b", description=f"{NAME} scout recon")
    return root


def _files(root):
    return [("file", (path.name, path.read_bytes())) for path in sorted(root.iterdir())]


def test_inspect_does_not_echo_it(client, study):
    response = client.post("/inspect", files=_files(study))
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["input"]["candidates"]) == 2 and body["input"]["series"]["n_slices"] == 24
    assert NAME not in response.text and "description" not in body["input"]["series"]


def test_report_and_job_results_do_not_echo_it(client, study):
    response = client.post("/report", files=_files(study), data={"max_new_tokens": "2"})
    assert response.status_code == 200, response.text
    assert NAME not in response.text
    response = client.post("/jobs", files=_files(study), data={"task": "report", "max_new_tokens": "2"})
    assert response.status_code == 202, response.text
    job_id, deadline = response.json()["job_id"], time.monotonic() + 60
    while (job := client.get(f"/jobs/{job_id}")).json()["status"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert job.json()["status"] == "succeeded" and NAME not in job.text


def test_errors_do_not_echo_it(client, study):
    response = client.post("/inspect", files=_files(study), data={"series_instance_uid": "0123456789abcdef"})
    body = assert_problem(response, 422, "no_series")
    assert "24 images" in body["detail"] and NAME not in response.text


def test_cli_shows_it_only_when_asked(study, capsys):
    assert main(["inspect", str(study), "--json"]) == 0
    assert NAME not in capsys.readouterr().out
    assert main(["inspect", str(study), "--json", "--series-description"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["series"]["description"] == f"Thorax {NAME}"
    assert main(["inspect", str(study), "--series-description"]) == 0
    assert f"Thorax {NAME}" in capsys.readouterr().out
