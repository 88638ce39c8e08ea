"""Lenient parsing closed: every request the service cannot take exactly as documented is refused
with a message, never silently read another way (a zip beside a NIfTI, a body cut short, a file
under another field name, 1.5 as an integer, repeated or unknown fields, duplicate choices)."""

from __future__ import annotations

import json

import pytest

from tests.app.conftest import assert_problem, zip_bytes


def _files(*payloads: bytes, field: str = "file") -> list:
    return [(field, (f"part{i}", payload)) for i, payload in enumerate(payloads)]


def test_a_zip_beside_a_nifti_is_ambiguous_not_ignored(client, ct_nifti):
    zipped = zip_bytes({"0001.dcm": b"DICM" * 64})
    for path in ("/inspect", "/report"):
        body = assert_problem(client.post(path, files=_files(ct_nifti, zipped)), 422, "ambiguous_series")
        assert "1 nifti" in body["detail"] and "1 zip" in body["detail"]
    assert_problem(client.post("/inspect", files=_files(ct_nifti, ct_nifti)), 422, "ambiguous_series")
    assert client.post("/inspect", files=_files(ct_nifti)).status_code == 200  # one file is fine


def test_a_body_without_its_closing_boundary_is_400(client, ct_nifti):
    head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="ct.nii.gz"\r\n\r\n'
    for body in (head + ct_nifti, head + ct_nifti + b"\r\n--b"):
        response = client.post("/inspect", content=body, headers={"content-type": "multipart/form-data; boundary=b"})
        assert "closing boundary" in assert_problem(response, 400, "invalid_request")["detail"]
    whole = head + ct_nifti + b"\r\n--b--\r\n"
    assert client.post("/inspect", content=whole, headers={"content-type": "multipart/form-data; boundary=b"}
                       ).status_code == 200


@pytest.mark.parametrize("field", ["image", "files", "ct", "File"])
def test_a_file_under_another_field_name_is_400(client, ct_nifti, field):
    body = assert_problem(client.post("/inspect", files=_files(ct_nifti, field=field)), 400, "invalid_request")
    assert "'file'" in body["detail"]


@pytest.mark.parametrize("fields,message", [
    ({"options": json.dumps({"seed": 1.5})}, "seed: expected an integer, got 1.5"),
    ({"options": json.dumps({"max_new_tokens": 7.9})}, "max_new_tokens: expected an integer, got 7.9"),
    ({"options": json.dumps({"seed": 2.0})}, "seed: expected an integer"),
    ({"options": json.dumps({"seed": True})}, "seed: expected an integer, got true"),
    ({"options": json.dumps({"max_new_tokens": False})}, "max_new_tokens: expected an integer"),
    ({"options": json.dumps({"temperature": True})}, "temperature: expected a number, got true"),
    ({"options": json.dumps({"stream": 1})}, "stream: expected true or false"),
    ({"max_new_tokens": "7.9"}, "max_new_tokens: expected an integer"),
    ({"options": json.dumps({"sead": 3})}, "unknown field(s) 'sead'"),
    ({"max_tokens": "5"}, "unknown field(s) 'max_tokens'"),
    ({"options": json.dumps({"options": "{}"})}, "unknown field(s) 'options'"),
    ({"question": "Is there an effusion?"}, "unknown field(s) 'question'"),  # a /vqa field sent to /report
    ({"file": "not a file part"}, "file: send the CT as a file part"),
    ({"options": '{"seed": ' + "9" * 5000 + "}"}, "options: not valid JSON"),  # past Python's int digit limit
    ({"options": json.dumps({"temperature": 10**400})}, "temperature: must be between"),  # no float overflow
])
def test_bad_report_options_are_400_with_a_message(client, ct_nifti, fields, message):
    response = client.post("/report", files=_files(ct_nifti), data=fields)
    assert message in assert_problem(response, 400, "invalid_request")["detail"]


def test_a_scalar_field_given_twice_is_400(client, ct_nifti):
    files = [*_files(ct_nifti), ("seed", (None, "1")), ("seed", (None, "2"))]
    assert "seed: given more than once" in assert_problem(client.post("/report", files=files), 400,
                                                         "invalid_request")["detail"]


def test_inspect_takes_only_input_fields(client, ct_nifti):
    response = client.post("/inspect", files=_files(ct_nifti), data={"max_new_tokens": "4"})
    assert "unknown field(s) 'max_new_tokens'" in assert_problem(response, 400, "invalid_request")["detail"]
    ok = client.post("/inspect", files=_files(ct_nifti), data={"options": json.dumps({"resample_geometry": False})})
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize("choices,message", [
    (["effusion", "effusion"], "options 1 and 2 are the same"),
    (["Pleural effusion", "none", "pleural   EFFUSION "], "options 1 and 3 are the same"),
    (["a", "b", "c", "d", "e"], "give 2 to 4 options"),
    (["only one"], "give 2 to 4 options"),
    (["fine", "  "], "option 2 is empty"),
])
def test_bad_choices_are_400(client, ct_nifti, choices, message):
    response = client.post("/vqa", files=_files(ct_nifti), data={"question": "Which?", "choices": choices})
    assert message in assert_problem(response, 400, "invalid_request")["detail"]
    as_json = client.post("/vqa", files=_files(ct_nifti),
                          data={"options": json.dumps({"question": "Which?", "choices": choices})})
    assert message in assert_problem(as_json, 400, "invalid_request")["detail"]


def test_four_distinct_choices_and_json_integers_are_accepted(client, ct_nifti):
    choices = ["right effusion", "left effusion", "both sides", "no effusion"]
    options = {"question": "Which side?", "choices": choices, "seed": 7, "max_new_tokens": 2, "stream": False}
    response = client.post("/vqa", files=_files(ct_nifti), data={"options": json.dumps(options)})
    assert response.status_code == 200, response.text
    assert response.json()["answer"]["answer"] in choices and len(response.json()["answer"]["probabilities"]) == 4


def test_jobs_take_task_plus_the_tasks_own_fields(client, ct_nifti):
    accepted = client.post("/jobs", files=_files(ct_nifti), data={"task": "report", "consistency": "off"})
    assert accepted.status_code == 202, accepted.text
    wrong_task_field = client.post("/jobs", files=_files(ct_nifti), data={"task": "report", "question": "q"})
    assert "unknown field(s) 'question'" in assert_problem(wrong_task_field, 400, "invalid_request")["detail"]


def test_the_openapi_schema_declares_what_each_endpoint_takes(client):
    paths = client.get("/openapi.json").json()["paths"]

    def fields(path: str) -> set[str]:
        return set(paths[path]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"])

    assert fields("/inspect") == {"file", "series_instance_uid", "resample_geometry", "options"}
    assert {"consistency", "seed", "resample_geometry"} <= fields("/report") and "question" not in fields("/report")
    vqa_choices = paths["/vqa"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]["choices"]
    assert (vqa_choices["minItems"], vqa_choices["maxItems"]) == (2, 4)
