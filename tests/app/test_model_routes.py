"""`/report`, `/vqa`, SSE streaming and `/jobs` on the real tiny pipeline (random weights)."""

from __future__ import annotations

import threading
import time

import pytest

from ctscribe.labels import CTRATE_LABELS
from tests.app.conftest import assert_problem, parse_sse

ENVELOPE = {"request_id", "model_hash", "weights_hash", "generation", "input", "warnings", "timings_s",
            "disclaimer"}


def _post(client, path, ct, **fields):
    return client.post(path, files={"file": ("scan.nii.gz", ct)}, data=fields)


def test_report_returns_text_labels_key_slices_and_the_envelope(client, ct_nifti, tiny_pipeline):
    response = _post(client, "/report", ct_nifti, max_new_tokens="5", seed="3")
    assert response.status_code == 200, response.text
    body = response.json()
    assert ENVELOPE <= set(body)
    assert body["model_hash"] == tiny_pipeline.model_hash and body["weights_hash"] == tiny_pipeline.weights_hash
    assert body["generation"]["max_new_tokens"] == 5 and body["generation"]["seed"] == 3
    assert body["input"]["shape_zyx"] == [24, 48, 48]
    report = body["report"]
    assert isinstance(report["text"], str) and 0 <= report["n_tokens"] <= 5
    assert list(report["labels"]) == list(CTRATE_LABELS)
    assert all(0.0 <= p <= 1.0 for p in report["labels"].values())
    assert all(s["plane"] in ("axial", "coronal", "sagittal") for s in report["key_slices"])
    assert {"upload", "decode", "prepare", "queue", "total"} <= set(body["timings_s"])
    assert all(v >= 0 for v in body["timings_s"].values())


def test_greedy_report_is_reproducible(client, ct_nifti):
    first = _post(client, "/report", ct_nifti, max_new_tokens="6").json()["report"]
    second = _post(client, "/report", ct_nifti, max_new_tokens="6").json()["report"]
    assert first["text"] == second["text"]
    assert first["labels"] == pytest.approx(second["labels"], abs=1e-5)


def test_max_new_tokens_is_capped_with_a_warning(client, ct_nifti):
    body = _post(client, "/report", ct_nifti, max_new_tokens="100000").json()
    assert body["generation"]["max_new_tokens"] == 8  # the test settings' cap
    assert any("capped" in w for w in body["warnings"])


def test_options_as_one_json_field(client, ct_nifti):
    body = _post(client, "/report", ct_nifti, options='{"max_new_tokens": 2, "seed": 7}').json()
    assert body["generation"]["max_new_tokens"] == 2 and body["generation"]["seed"] == 7


@pytest.mark.parametrize("fields", [
    {"max_new_tokens": "zero"}, {"max_new_tokens": "0"}, {"temperature": "-1"}, {"temperature": "nan"},
    {"seed": "-5"}, {"options": "[1, 2]"}, {"options": "{bad json"}, {"stream": "maybe"},
])
def test_bad_options_are_400(client, ct_nifti, fields):
    assert_problem(_post(client, "/report", ct_nifti, **fields), 400, "invalid_request")


def test_vqa_multiple_choice_answer_is_one_of_the_choices(client, ct_nifti):
    choices = ["pleural effusion", "no effusion", "pneumothorax"]
    response = client.post("/vqa", files={"file": ("x", ct_nifti)},
                           data={"question": "Which finding is present?", "choices": choices})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["mode"] == "choice" and body["question"] == "Which finding is present?"
    answer = body["answer"]
    assert answer["answer"] in choices and choices[answer["index"]] == answer["answer"]
    assert answer["letter"] == "abc"[answer["index"]]
    assert sum(answer["probabilities"]) == pytest.approx(1.0, abs=1e-4) and len(answer["probabilities"]) == 3


def test_vqa_multiple_choice_by_generation_keeps_the_text(client, ct_nifti, tiny_pipeline):
    choices = ["pleural effusion", "no effusion", "pneumothorax"]
    response = client.post("/vqa", files={"file": ("x", ct_nifti)},
                           data={"question": "Which finding is present?", "choices": choices,
                                 "mcq_mode": "generate", "max_new_tokens": "6"})
    assert response.status_code == 200, response.text
    answer = response.json()["answer"]
    assert answer["mcq_mode"] == "generate" and answer["probabilities"] is None
    assert isinstance(answer["generated"], str)
    from model.mcq_parse import parse_choice

    assert answer["index"] == parse_choice(answer["generated"], choices)  # the text decides, nothing else
    if answer["index"] is None:
        assert answer["answer"] is None and [w["code"] for w in answer["warnings"]] == ["mcq_answer_unparsed"]
    else:
        assert answer["answer"] == choices[answer["index"]]
    likelihood = client.post("/vqa", files={"file": ("x", ct_nifti)},
                             data={"question": "Which finding is present?", "choices": choices,
                                   "mcq_mode": "likelihood"}).json()["answer"]
    assert likelihood["mcq_mode"] == "likelihood" and len(likelihood["probabilities"]) == 3
    assert likelihood["generated"] is None


def test_vqa_free_text(client, ct_nifti):
    body = _post(client, "/vqa", ct_nifti, question="Is there a nodule?", max_new_tokens="4").json()
    assert body["mode"] == "free" and isinstance(body["answer"]["text"], str)
    assert body["answer"]["n_tokens"] <= 4


@pytest.mark.parametrize("fields", [
    {}, {"question": "   "}, {"question": "q", "choices": ["only one"]}, {"question": "q", "mode": "choice"},
    {"question": "q", "mode": "sideways"}, {"question": "q", "choices": ["a", "b", "c", "d", "e"]},
    {"question": "q", "choices": ["a", "b"], "mcq_mode": "vibes"},
])
def test_vqa_bad_fields_are_400(client, ct_nifti, fields):
    response = client.post("/vqa", files={"file": ("x", ct_nifti)}, data=fields)
    assert_problem(response, 400, "invalid_request")


def test_report_stream_sends_deltas_then_the_result(client, ct_nifti):
    response = _post(client, "/report", ct_nifti, stream="true", max_new_tokens="6")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.text)
    assert events[-1][0] == "result"
    deltas = [data["text"] for name, data in events[:-1]]
    assert all(name == "delta" for name, _ in events[:-1])
    result = events[-1][1]
    assert "".join(deltas) == result["report"]["text"]
    assert result["request_id"] == response.headers["x-request-id"]
    # The streamed result is the same report as the plain one (greedy).
    plain = _post(client, "/report", ct_nifti, max_new_tokens="6").json()
    assert plain["report"]["text"] == result["report"]["text"]


def test_stream_with_a_bad_file_is_still_a_plain_4xx(client):
    response = _post(client, "/report", b"garbage" * 10, stream="true")
    assert_problem(response, 415, "unsupported_format")


def test_concurrent_reports_share_a_batch_and_match_the_single_result(client, ct_nifti):
    single = _post(client, "/report", ct_nifti, max_new_tokens="4").json()["report"]
    results = []

    def one():
        results.append(_post(client, "/report", ct_nifti, max_new_tokens="4").json())

    threads = [threading.Thread(target=one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 6
    assert max(r["batch_size"] for r in results) > 1, "no two concurrent requests were batched"
    for r in results:
        assert r["report"]["labels"] == pytest.approx(single["labels"], abs=1e-4)


def test_job_lifecycle(client, ct_nifti):
    response = client.post("/jobs", files={"file": ("x", ct_nifti)},
                           data={"task": "vqa", "question": "Any effusion?", "choices": ["yes", "no"]})
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["status"] in ("queued", "running") and response.headers["location"] == f"/jobs/{job['job_id']}"
    deadline = time.monotonic() + 30
    while job["status"] not in ("succeeded", "failed") and time.monotonic() < deadline:
        time.sleep(0.05)
        job = client.get(f"/jobs/{job['job_id']}").json()
    assert job["status"] == "succeeded", job
    assert job["result"]["answer"]["answer"] in ("yes", "no")
    assert job["expires_at"] > job["finished_at"]


def test_job_with_a_bad_file_fails_with_a_problem(client):
    response = client.post("/jobs", files={"file": ("x", b"")}, data={"task": "report"})
    assert response.status_code == 202
    job_id = response.json()["job_id"]
    deadline = time.monotonic() + 30
    while (job := client.get(f"/jobs/{job_id}").json())["status"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert job["status"] == "failed"
    assert job["error"]["code"] == "corrupt_file" and job["error"]["status"] == 422


def test_job_bad_task_is_400_and_unknown_job_is_404(client, ct_nifti):
    assert_problem(client.post("/jobs", files={"file": ("x", ct_nifti)}, data={"task": "x"}),
                   400, "invalid_request")
    assert_problem(client.get("/jobs/does-not-exist"), 404, "invalid_request")


def test_no_upload_files_left_behind(client, upload_dir):
    time.sleep(0.2)  # jobs delete their upload after decoding
    assert list(upload_dir.iterdir()) == []
