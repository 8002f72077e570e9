"""Background job records: what runs, its progress, and how it ended."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

import duckdb
import pandas as pd

ACTIVE_STATUSES = ("queued", "running")


def create_job(con: duckdb.DuckDBPyConnection, kind: str, params: dict, actor: str) -> str:
    """Insert a queued job and return its id."""
    job_id = f"{kind}-{datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
    con.execute(
        "INSERT INTO jobs (job_id, kind, status, params, actor, created_at) VALUES (?, ?, 'queued', ?, ?, ?)",
        [job_id, kind, json.dumps(params, default=str), actor, datetime.now()],
    )
    return job_id


def mark_started(
    con: duckdb.DuckDBPyConnection, job_id: str, *, pid: int, log_path: str | None, proc_start: str | None = None
) -> None:
    """Mark a job running in process ``pid`` (``proc_start`` tells that process apart from a later one with its pid)."""
    now = datetime.now()
    con.execute(
        """
        UPDATE jobs SET status = 'running', pid = ?, proc_start = ?, log_path = coalesce(?, log_path),
               started_at = ?, heartbeat_at = ?
        WHERE job_id = ?
        """,
        [pid, proc_start, log_path, now, now, job_id],
    )


def set_spawned(
    con: duckdb.DuckDBPyConnection, job_id: str, *, pid: int, log_path: str, proc_start: str | None = None
) -> None:
    """Record the launcher's child pid, its start token and log file while the job is still queued."""
    con.execute(
        "UPDATE jobs SET pid = ?, proc_start = coalesce(proc_start, ?), log_path = ? WHERE job_id = ?",
        [pid, proc_start, log_path, job_id],
    )


def update_progress(con: duckdb.DuckDBPyConnection, job_id: str, progress: float, message: str | None) -> bool:
    """Store progress (0–1) and a heartbeat; returns whether a cancel was requested."""
    con.execute(
        "UPDATE jobs SET progress = ?, message = coalesce(?, message), heartbeat_at = ? WHERE job_id = ?",
        [max(0.0, min(1.0, progress)), message, datetime.now(), job_id],
    )
    return bool(con.execute("SELECT cancel_requested FROM jobs WHERE job_id = ?", [job_id]).fetchone()[0])


def finish_job(
    con: duckdb.DuckDBPyConnection,
    job_id: str,
    status: str,
    *,
    result: dict | None = None,
    error: str | None = None,
) -> None:
    """Mark a job succeeded, failed or cancelled (only if it is still active)."""
    if status not in ("succeeded", "failed", "cancelled"):
        raise ValueError(f"not a final job status: {status}")
    con.execute(
        """
        UPDATE jobs SET status = ?, result = ?, error = ?, finished_at = ?,
               progress = CASE WHEN ? = 'succeeded' THEN 1.0 ELSE progress END
        WHERE job_id = ? AND status IN ('queued', 'running')
        """,
        [status, json.dumps(result, default=str) if result is not None else None, error, datetime.now(), status, job_id],
    )


def request_cancel(con: duckdb.DuckDBPyConnection, job_id: str, actor: str | None = None) -> None:
    """Flag a job for cancelling and remember who asked (the first person to ask)."""
    con.execute(
        "UPDATE jobs SET cancel_requested = true, cancelled_by = coalesce(cancelled_by, ?) WHERE job_id = ?",
        [actor, job_id],
    )


def get_job(con: duckdb.DuckDBPyConnection, job_id: str) -> dict | None:
    """One job as a dict (params/result decoded), or None."""
    cur = con.execute("SELECT * FROM jobs WHERE job_id = ?", [job_id])
    row = cur.fetchone()
    if row is None:
        return None
    job = dict(zip([d[0] for d in cur.description], row))
    for key in ("params", "result"):
        job[key] = json.loads(job[key]) if job[key] else None
    return job


def list_jobs(
    con: duckdb.DuckDBPyConnection, *, limit: int = 20, kind: str | None = None, active_only: bool = False
) -> pd.DataFrame:
    """Newest jobs first."""
    return con.execute(
        """
        SELECT job_id, kind, status, actor, progress, message, error, cancelled_by, created_at, started_at,
               finished_at, heartbeat_at, pid, log_path
        FROM jobs
        WHERE (? IS NULL OR kind = ?) AND (NOT ? OR status IN ('queued', 'running'))
        ORDER BY created_at DESC LIMIT ?
        """,
        [kind, kind, active_only, limit],
    ).df()


def active_jobs(con: duckdb.DuckDBPyConnection) -> list[dict]:
    """job_id, pid, proc_start, status, created_at of every queued or running job."""
    columns = ("job_id", "pid", "proc_start", "status", "created_at")
    rows = con.execute(
        f"SELECT {', '.join(columns)} FROM jobs WHERE status IN ('queued', 'running')"
    ).fetchall()
    return [dict(zip(columns, r)) for r in rows]
