"""Background jobs run in their own OS process; the store records how they ended."""

from __future__ import annotations

import os
import signal
import time

import pytest

from pipeline.jobs import cancel_job, reap_dead_jobs, start_job, tail_log, wait_for_job
from store.actors import Actor, cli_actor
from store.db import connect
from store.errors import PermissionDeniedError, TastebudError
from store.jobs import get_job, list_jobs


def _wait_until(predicate, timeout_s=60):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def _job(db, job_id):
    with connect(db, read_only=True) as con:
        return get_job(con, job_id)


def test_job_runs_in_another_process_and_records_success(store_path):
    job_id = start_job(store_path, "demo-data", {"rows": 500, "seed": 2}, cli_actor())
    job = wait_for_job(store_path, job_id, timeout_s=120)
    assert job["status"] == "succeeded", tail_log(job["log_path"])
    assert job["progress"] == 1.0 and job["result"]["inserted"] == 500
    assert job["pid"] != os.getpid()
    assert "succeeded" in tail_log(job["log_path"])
    with connect(store_path, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM reviews").fetchone()[0] == 500
        assert con.execute("SELECT action FROM audit_log").fetchall() == [("job.start.demo-data",)]


def test_cancel_stops_a_running_job(store_path):
    job_id = start_job(store_path, "demo-data", {"rows": 2_000_000, "chunk_rows": 50_000}, cli_actor())
    assert _wait_until(lambda: _job(store_path, job_id)["status"] == "running")
    cancel_job(store_path, job_id, cli_actor())
    job = wait_for_job(store_path, job_id, timeout_s=120)
    assert job["status"] == "cancelled"
    with connect(store_path, read_only=True) as con:
        reviews, labels = con.execute("SELECT (SELECT count(*) FROM reviews), (SELECT count(*) FROM labels)").fetchone()
    assert reviews < 2_000_000 and reviews % 50_000 == 0 and labels == reviews  # whole chunks only


def test_killed_job_is_marked_failed(store_path):
    job_id = start_job(store_path, "demo-data", {"rows": 2_000_000, "chunk_rows": 50_000}, cli_actor())
    assert _wait_until(lambda: _job(store_path, job_id)["status"] == "running")
    os.killpg(_job(store_path, job_id)["pid"], signal.SIGKILL)
    assert _wait_until(lambda: job_id in reap_dead_jobs(store_path) or _job(store_path, job_id)["status"] == "failed")
    job = _job(store_path, job_id)
    assert job["status"] == "failed" and "without reporting" in job["error"]
    with connect(store_path, read_only=True) as con:
        assert list(list_jobs(con)["job_id"]) == [job_id]


def test_viewer_cannot_start_jobs_and_unknown_kinds_are_refused(store_path):
    with pytest.raises(PermissionDeniedError):
        start_job(store_path, "demo-data", {}, Actor("vera", "viewer"))
    with pytest.raises(TastebudError, match="unknown job kind"):
        start_job(store_path, "mine-bitcoin", {}, cli_actor())
