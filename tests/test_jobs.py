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


# ---------------------------------------------------------------- dead processes, reused pids, `tastebud jobs`

import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from datetime import datetime, timedelta  # noqa: E402

from conftest import cli_cmd  # noqa: E402
from pipeline.jobs import job_timing, list_jobs as read_jobs, pid_alive, process_start_token, run_foreground  # noqa: E402
from store import jobs as job_store  # noqa: E402
from store.db import transaction  # noqa: E402


def _cli_jobs(db) -> list[dict]:
    result = subprocess.run(cli_cmd("--db", str(db), "jobs", "--json"), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_sigkilled_job_is_failed_for_tastebud_jobs_without_any_other_reader(store_path):
    job_id = start_job(store_path, "demo-data", {"rows": 2_000_000, "chunk_rows": 50_000}, cli_actor())
    assert _wait_until(lambda: _job(store_path, job_id)["status"] == "running")
    os.killpg(_job(store_path, job_id)["pid"], signal.SIGKILL)
    assert _wait_until(lambda: not pid_alive(_job(store_path, job_id)["pid"]), timeout_s=20)
    listed = {j["job_id"]: j for j in _cli_jobs(store_path)}  # the first reader after the kill
    assert listed[job_id]["status"] == "failed"
    assert "without reporting" in listed[job_id]["error"]
    assert _job(store_path, job_id)["status"] == "failed"  # recorded, not only shown


def test_a_pid_reused_by_another_process_does_not_keep_a_dead_job_alive(store_path):
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with transaction(store_path) as con:
            job_id = job_store.create_job(con, "score", {}, "ana")
            # The job ran as this pid once; the pid now belongs to `stranger`, which started later.
            job_store.mark_started(con, job_id, pid=stranger.pid, log_path=None, proc_start="old-boot:12345")
            alive_id = job_store.create_job(con, "score", {}, "ana")
            job_store.mark_started(con, alive_id, pid=stranger.pid, log_path=None,
                                   proc_start=process_start_token(stranger.pid))
        assert pid_alive(stranger.pid) and not pid_alive(stranger.pid, "old-boot:12345")
        assert reap_dead_jobs(store_path) == [job_id]
        assert _job(store_path, job_id)["status"] == "failed"
        assert _job(store_path, alive_id)["status"] == "running"
    finally:
        stranger.kill()
        stranger.wait()


def test_jobs_cli_lists_progress_elapsed_eta_cancels_and_shows_the_log(store_path):
    job_id = start_job(store_path, "demo-data", {"rows": 2_000_000, "chunk_rows": 50_000}, cli_actor())
    assert _wait_until(lambda: (_job(store_path, job_id)["progress"] or 0) > 0.03, timeout_s=120)
    text = subprocess.run(cli_cmd("--db", str(store_path), "jobs"), capture_output=True, text=True, timeout=60)
    assert text.returncode == 0, text.stderr
    header, line = text.stdout.splitlines()[:2]
    assert header.split()[:6] == ["JOB", "KIND", "STATUS", "PROGRESS", "ELAPSED", "ETA"]
    assert line.split()[:3] == [job_id, "demo-data", "running"] and line.split()[5] != "-"  # an ETA is shown
    cancel = subprocess.run(cli_cmd("--db", str(store_path), "jobs", "cancel", job_id), capture_output=True, text=True)
    assert cancel.returncode == 0, cancel.stderr
    job = wait_for_job(store_path, job_id, timeout_s=120)
    assert job["status"] == "cancelled" and job["cancelled_by"] == cli_actor().name
    listed = {j["job_id"]: j for j in _cli_jobs(store_path)}
    assert listed[job_id]["cancelled_by"] == cli_actor().name and listed[job_id]["eta_s"] is None
    log = subprocess.run(cli_cmd("--db", str(store_path), "jobs", "log", job_id, "-n", "5"), capture_output=True, text=True)
    assert log.returncode == 0 and "cancelled" in log.stdout
    again = subprocess.run(cli_cmd("--db", str(store_path), "jobs", "cancel", job_id), capture_output=True, text=True)
    assert again.returncode == 2 and again.stderr.strip() == f"error: job {job_id} already cancelled"
    missing = subprocess.run(cli_cmd("--db", str(store_path), "jobs", "log", "nope"), capture_output=True, text=True)
    assert missing.returncode == 2 and missing.stderr.strip() == "error: no job nope; see `tastebud jobs`"


def test_job_timing_estimates_the_rest_from_the_pace_so_far():
    start = datetime(2026, 1, 1, 10, 0, 0)
    running = {"status": "running", "progress": 0.25, "started_at": start, "finished_at": None}
    assert job_timing(running, now=start + timedelta(seconds=30)) == (30.0, 90.0)
    assert job_timing({**running, "progress": 0.0}, now=start + timedelta(seconds=30)) == (30.0, None)
    done = {"status": "succeeded", "progress": 1.0, "started_at": start, "finished_at": start + timedelta(seconds=7)}
    assert job_timing(done) == (7.0, None)
    assert job_timing({"status": "queued", "progress": 0, "started_at": None, "finished_at": None}) == (None, None)


def test_foreground_work_is_recorded_as_a_job(store_path):
    result = run_foreground(store_path, "score", {"model_id": None}, cli_actor(),
                            lambda reporter: reporter.progress(0.5, "half", force=True) or {"scored": 3}, echo=lambda _: None)
    assert result == {"scored": 3}

    def boom(reporter):
        raise TastebudError("no champion to score with")

    with pytest.raises(TastebudError, match="no champion"):
        run_foreground(store_path, "score", {}, cli_actor(), boom, echo=lambda _: None)
    jobs = read_jobs(store_path)
    assert jobs["status"].tolist() == ["failed", "succeeded"]
    assert (jobs["pid"] == os.getpid()).all() and jobs["error"].iloc[0] == "TastebudError: no champion to score with"
    with pytest.raises(PermissionDeniedError):
        run_foreground(store_path, "score", {}, Actor("vera", "viewer"), lambda r: {}, echo=lambda _: None)


def test_foreground_cli_score_records_a_failed_job(store_path):
    result = subprocess.run(cli_cmd("--db", str(store_path), "score"), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    [job] = _cli_jobs(store_path)
    assert (job["kind"], job["status"]) == ("score", "failed") and result.stderr.strip().removeprefix("error: ") in job["error"]
