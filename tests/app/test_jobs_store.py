"""`/jobs`: a per-key quota (429) under the global cap (503), both with a Retry-After that says when
room frees up; DELETE; and the SQLite store: results survive a new app instance, the TTL still
holds after a restart, a job cut off by a crash is reported failed, one server per file."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time

import pytest
from fastapi.testclient import TestClient

from app.jobs import JobStore
from app.main import create_app
from ctscribe.errors import CtscribeError
from tests.app.conftest import REPO, assert_problem, make_settings, wait_ready

KEY_A = "jobs-key-a-0123456789"
KEY_B = "jobs-key-b-0123456789"
TTL_S = 3600.0


def _auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def _submit(client, ct, key: str):
    return client.post("/jobs", files={"file": ("ct.nii.gz", ct)}, data={"max_new_tokens": "2"}, headers=_auth(key))


def _wait_finished(client, job_id: str, key: str, timeout_s: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        body = client.get(f"/jobs/{job_id}", headers=_auth(key)).json()
        if body["status"] in ("succeeded", "failed"):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


def test_one_key_cannot_fill_the_store(tiny_pipeline, tmp_path, ct_nifti):
    settings = make_settings(tmp_path, api_keys=[KEY_A, KEY_B], max_jobs=3, max_jobs_per_key=2, job_ttl_s=TTL_S)
    with TestClient(create_app(settings, pipeline=tiny_pipeline)) as client:
        wait_ready(client)
        first = [_submit(client, ct_nifti, KEY_A) for _ in range(2)]
        assert [r.status_code for r in first] == [202, 202]
        _wait_finished(client, first[0].json()["job_id"], KEY_A)

        over_quota = _submit(client, ct_nifti, KEY_A)  # finished jobs count until they expire or are deleted
        body = assert_problem(over_quota, 429, "queue_full")
        assert "DELETE" in body["detail"]
        # Room frees when the key's first job expires, a TTL after it finished: not in 2 s.
        assert TTL_S - 120 < int(over_quota.headers["retry-after"]) <= TTL_S

        assert _submit(client, ct_nifti, KEY_B).status_code == 202  # another key is not starved...
        store_full = _submit(client, ct_nifti, KEY_B)  # ...until the whole store (3) is full
        assert_problem(store_full, 503, "queue_full")
        assert int(store_full.headers["retry-after"]) > TTL_S - 120

        deleted = client.delete(f"/jobs/{first[0].json()['job_id']}", headers=_auth(KEY_A))
        assert deleted.status_code == 204
        assert_problem(client.get(f"/jobs/{first[0].json()['job_id']}", headers=_auth(KEY_A)), 404, "invalid_request")
        assert_problem(client.delete(f"/jobs/{first[1].json()['job_id']}", headers=_auth(KEY_B)), 404,
                       "invalid_request")  # not B's to delete
        assert _submit(client, ct_nifti, KEY_A).status_code == 202  # the deleted job's place is free again
    assert list(tmp_path.iterdir()) == []  # every upload deleted, the unfinished job's at shutdown too


def test_results_survive_a_new_app_and_the_ttl_still_holds(tiny_pipeline, tmp_path, ct_nifti):
    db = tmp_path / "state" / "jobs.sqlite3"
    settings = make_settings(tmp_path / "uploads", api_keys=[KEY_A], jobs_db=db, job_ttl_s=TTL_S)
    with TestClient(create_app(settings, pipeline=tiny_pipeline)) as client:
        wait_ready(client)
        job_id = _submit(client, ct_nifti, KEY_A).json()["job_id"]
        before = _wait_finished(client, job_id, KEY_A)
    assert before["status"] == "succeeded" and before["result"]["report"]["n_tokens"] <= 2
    assert stat.S_IMODE(db.stat().st_mode) == 0o600  # results are private to the service user

    # A new app on the same file, whose model never loads: the stored result is served as it was.
    restarted = make_settings(tmp_path / "uploads", api_keys=[KEY_A], jobs_db=db, job_ttl_s=TTL_S)
    with TestClient(create_app(restarted, pipeline=lambda: None)) as client:
        after = client.get(f"/jobs/{job_id}", headers=_auth(KEY_A)).json()
        assert {k: after[k] for k in ("status", "result", "finished_at", "expires_at")} == \
               {k: before[k] for k in ("status", "result", "finished_at", "expires_at")}

    # Restarted with a TTL the result has outlived: it is gone, from the file too.
    short = make_settings(tmp_path / "uploads", api_keys=[KEY_A], jobs_db=db, job_ttl_s=0.001)
    with TestClient(create_app(short, pipeline=lambda: None)) as client:
        assert_problem(client.get(f"/jobs/{job_id}", headers=_auth(KEY_A)), 404, "invalid_request")
    assert job_id not in db.read_bytes().decode("latin-1")


CRASHING_SERVER = """
import asyncio, sys
from app.jobs import JobStore

async def main():
    store = JobStore(8, 3600.0, path=sys.argv[1])
    job = store.submit("report", "owner-1", "req-1", lambda job: asyncio.Event().wait())
    print(job.id, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def test_a_job_cut_off_by_a_crash_is_failed_after_restart_and_one_server_per_file(tmp_path):
    db = tmp_path / "jobs.sqlite3"
    proc = subprocess.Popen([sys.executable, "-c", CRASHING_SERVER, str(db)], cwd=REPO, stdout=subprocess.PIPE,
                            text=True)
    try:
        job_id = proc.stdout.readline().strip()
        assert job_id, "the job store process did not start"
        with pytest.raises(CtscribeError) as refused:  # the first server still holds the file
            JobStore(8, 3600.0, path=db)
        assert refused.value.code.value == "invalid_request" and "another ctscribe server" in refused.value.message
    finally:
        proc.kill()  # a crash: no shutdown, no cleanup
        proc.wait(10)

    store = JobStore(8, 3600.0, path=db)
    job = store.get(job_id, "owner-1")
    assert job is not None and job.status == "failed" and job.finished_at is not None
    assert job.error["code"] == "model_not_ready" and "restarted" in job.error["detail"]
    assert job.error["request_id"] == "req-1"
    assert store.get(job_id, "owner-2") is None
    os.close(store._lock_fd)  # noqa: SLF001  (no event loop here for close())
    json.dumps(job.to_dict(3600.0))  # still a valid JobResponse body
