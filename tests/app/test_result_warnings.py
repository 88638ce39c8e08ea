"""Structured result warnings over HTTP: the consistency guard and the phantom-only model on a real CT."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from model.provenance import SYNTHETIC_PHANTOM
from tests.app.conftest import assert_problem, make_settings, wait_ready

REAL_CT = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "ct" / "chest_cta_crop.nii.gz"
NOT_REAL = "model_not_trained_on_real_ct"


def _post(client, path, ct, **fields):
    return client.post(path, files={"file": ("scan.nii.gz", ct)}, data=fields)


def _codes(warnings: list[dict]) -> list[str]:
    return [w["code"] for w in warnings]


@pytest.fixture(scope="module")
def phantom_model_client(upload_dir):
    """An app whose model says it was trained on synthetic phantoms only."""
    import model
    from app.main import create_app
    from model.checkpoint import TRAINED_ON_ATTR

    pipe = model.build("tiny", device="cpu", seed=0)
    setattr(pipe.model, TRAINED_ON_ATTR, SYNTHETIC_PHANTOM)
    assert pipe.trained_on == SYNTHETIC_PHANTOM
    with TestClient(create_app(make_settings(upload_dir), pipeline=pipe)) as client:
        wait_ready(client)
        yield client


@pytest.fixture(scope="module")
def phantom_nifti() -> bytes:
    """A NIfTI the phantom writer wrote (its header says so)."""
    from imaging.phantom import PhantomConfig, render_case, sample_case
    from imaging.phantom.dataset import nifti_bytes

    return nifti_bytes(render_case(sample_case(3, config=PhantomConfig.with_shape((24, 48, 48)))))


def test_report_results_carry_the_consistency_guards_warnings(client, ct_nifti):
    report = _post(client, "/report", ct_nifti, max_new_tokens="4").json()["report"]
    assert isinstance(report["warnings"], list)
    for w in report["warnings"]:  # random tiny weights: whatever it flags is well formed
        assert w["code"] == "report_contradicts_label_head"
        assert w["text_says"] in ("absent", "not_mentioned", "present")
        assert {"finding", "head_probability", "sentences", "message"} <= set(w)
    off = _post(client, "/report", ct_nifti, max_new_tokens="4", consistency="off").json()["report"]
    assert off["warnings"] == []
    repaired = _post(client, "/report", ct_nifti, max_new_tokens="4", consistency="repair")
    assert repaired.status_code == 200, repaired.text


@pytest.mark.parametrize("fields", [{"consistency": "fix"}, {"options": '{"consistency": "sometimes"}'},
                                    {"consistency": "x" * 40}])
def test_a_bad_consistency_value_is_400(client, ct_nifti, fields):
    assert_problem(_post(client, "/report", ct_nifti, **fields), 400, "invalid_request")


def test_consistency_is_in_the_openapi_schema(client):
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/report"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["properties"]["consistency"]["enum"] == ["off", "warn", "repair"]
    assert "warnings" in schema["components"]["schemas"]["ReportBody"]["properties"]


def test_a_model_of_unknown_training_gives_no_real_ct_warning(client, ct_nifti):
    body = _post(client, "/report", ct_nifti, max_new_tokens="2").json()
    assert NOT_REAL not in _codes(body["report"]["warnings"])


@pytest.mark.skipif(not REAL_CT.is_file(), reason="../shared/data/ct is absent")
def test_a_phantom_model_on_a_real_ct_says_so_in_every_result(phantom_model_client):
    ct = REAL_CT.read_bytes()
    report = _post(phantom_model_client, "/report", ct, max_new_tokens="2", consistency="off").json()["report"]
    assert report["warnings"] == [{
        "code": NOT_REAL,
        "message": "this model was trained on synthetic phantoms only; its output on a real CT is not meaningful",
    }]
    free = _post(phantom_model_client, "/vqa", ct, question="Is there a nodule?", max_new_tokens="2").json()
    assert _codes(free["answer"]["warnings"]) == [NOT_REAL]
    choice = _post(phantom_model_client, "/vqa", ct, question="Which side?", choices='["left", "right"]').json()
    assert _codes(choice["answer"]["warnings"]) == [NOT_REAL]


def test_a_phantom_model_on_a_phantom_is_not_warned(phantom_model_client, phantom_nifti):
    report = _post(phantom_model_client, "/report", phantom_nifti, max_new_tokens="2").json()["report"]
    assert NOT_REAL not in _codes(report["warnings"])
