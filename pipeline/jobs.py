"""Long work (training, scoring, flagging, retraining) runs as a separate OS process.

The dashboard or CLI calls :func:`start_job`: it records a queued job in the store and
launches ``python -m pipeline.cli --db DB job-run JOB_ID`` in a new session, with output
going to a log file. That process resolves the job's kind to a function
``fn(db, params, reporter) -> dict`` (see ``JOB_KINDS``), reports progress through
:class:`JobReporter` in short write transactions, and records how it ended. A cancel
request is a flag in the store plus SIGTERM to the job's process group; a job whose
process died without reporting is marked failed the next time jobs are listed.
"""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from store import jobs as job_store
from store.actors import Actor, audit, require
from store.db import connect, on_lock_wait, resolve_db_path, set_lock_timeout, transaction
from store.errors import TastebudError

# kind -> "module:function"; imported lazily so the dashboard does not load torch to list jobs.
JOB_KINDS: dict[str, str] = {
    "train": "pipeline.train.run:run_job",
    "score": "pipeline.loop.scoring:run_job",
    "flag": "pipeline.loop.flagging:run_job",
    "retrain": "pipeline.loop.rounds:run_job",
    "demo-pipeline": "pipeline.demo:run_job",
    "demo-data": "pipeline.data.demo_data:run_job",
    "monitor": "pipeline.monitor.health:run_job",
    "demo-finetune": "pipeline.demo:run_finetune_job",
}
PERMISSION_FOR_KIND = {"train": "train", "retrain": "train", "score": "score", "flag": "flag.create", "demo-pipeline": "train", "demo-data": "import", "monitor": "score", "demo-finetune": "train"}
# How long a job waits for a store another process holds (an import commits in chunks, so waits are short
# but may repeat): far longer than an interactive command, which gives up after TASTEBUD_LOCK_TIMEOUT.
JOB_LOCK_TIMEOUT_S = float(os.environ.get("TASTEBUD_JOB_LOCK_TIMEOUT", "3600"))
# Seconds between progress writes: often enough for a live panel, rare enough not to contend for the lock.
PROGRESS_INTERVAL_S = 1.0


class JobCancelled(Exception):
    """Raised inside a job when a cancel was requested."""


def runs_dir(db: str | os.PathLike | None) -> Path:
    """Where job logs and checkpoints live: ``runs/`` beside the store file."""
    return resolve_db_path(db).resolve().parent / "runs"


class JobReporter:
    """Progress and log lines from inside a running job.

    ``job_id=None`` makes a reporter that only prints, for commands run in the foreground.
    """

    def __init__(self, db: str | os.PathLike | None, job_id: str | None, *, echo: Callable[[str], None] = print):
        self.db, self.job_id, self._echo = db, job_id, echo
        self._last_write = 0.0
        self.progress_value = 0.0

    def log(self, message: str) -> None:
        self._echo(f"[{time.strftime('%H:%M:%S')}] {message}")

    def progress(self, fraction: float, message: str | None = None, *, force: bool = False) -> None:
        """Record progress; raises :class:`JobCancelled` when a cancel was requested."""
        self.progress_value = fraction
        if self.job_id is None:
            return
        now = time.monotonic()
        if not force and now - self._last_write < PROGRESS_INTERVAL_S:
            return
        self._last_write = now
        with transaction(self.db) as con:
            cancelled = job_store.update_progress(con, self.job_id, fraction, message)
        if cancelled:
            raise JobCancelled(f"job {self.job_id} was cancelled")


def resolve_kind(kind: str) -> Callable[..., dict]:
    if kind not in JOB_KINDS:
        raise TastebudError(f"unknown job kind {kind!r}; known: {', '.join(sorted(JOB_KINDS))}")
    module_name, func_name = JOB_KINDS[kind].split(":")
    return getattr(importlib.import_module(module_name), func_name)


def _reap(proc: subprocess.Popen) -> None:
    # Wait for the child in a daemon thread so it never lingers as a zombie that looks alive.
    threading.Thread(target=proc.wait, daemon=True).start()


def start_job(db: str | os.PathLike | None, kind: str, params: dict, actor: Actor) -> str:
    """Record a job and launch it in its own process; returns the job id immediately.

    Example:
        >>> start_job("t.duckdb", "score", {"model": None}, cli_actor())  # doctest: +SKIP
        'score-20261125-101500-1a2b3c'
    """
    require(actor, PERMISSION_FOR_KIND.get(kind, "admin"))
    resolve_kind(kind)  # fail now, not in the child, on an unknown kind
    db_path = resolve_db_path(db).resolve()
    with transaction(db_path) as con:
        job_id = job_store.create_job(con, kind, params, actor.name)
        audit(con, actor, f"job.start.{kind}", target=job_id, detail=params)
    log_dir = runs_dir(db_path) / "jobs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{job_id}.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "--db", str(db_path), "job-run", job_id],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
    _reap(proc)
    with transaction(db_path) as con:
        job_store.set_spawned(con, job_id, pid=proc.pid, log_path=str(log_path))
    return job_id


def run_job(db: str | os.PathLike | None, job_id: str) -> dict:
    """Run a recorded job in this process (the body of ``tastebud job-run``).

    A job that finds the store busy waits (up to ``JOB_LOCK_TIMEOUT_S``) and says so in its log
    instead of failing after the interactive timeout.
    """
    set_lock_timeout(JOB_LOCK_TIMEOUT_S)
    on_lock_wait(lambda path: print(
        f"[{time.strftime('%H:%M:%S')}] waiting for the store: another process is writing to it", flush=True))
    with connect(db, read_only=True) as con:
        job = job_store.get_job(con, job_id)
    if job is None:
        raise TastebudError(f"no job {job_id}")
    if job["status"] != "queued":
        raise TastebudError(f"job {job_id} is {job['status']}, not queued")
    fn = resolve_kind(job["kind"])
    with transaction(db) as con:
        job_store.mark_started(con, job_id, pid=os.getpid(), log_path=job.get("log_path"))

    owner = os.getpid()

    def _on_term(signum, frame):
        if os.getpid() != owner:
            # A forked worker (cleanlab's multiprocessing pool in flagging) inherited this handler; its
            # pool ends it with SIGTERM. Raising here would leave the pool's queue lock held and hang
            # the job: exit as SIGTERM's default would.
            os._exit(128 + signum)
        raise JobCancelled(f"job {job_id} received signal {signum}")

    previous = signal.signal(signal.SIGTERM, _on_term)
    reporter = JobReporter(db, job_id)
    reporter.log(f"job {job_id} ({job['kind']}) started with {job['params']}")
    try:
        result = fn(db, job["params"] or {}, reporter)
    except JobCancelled as exc:
        reporter.log(f"cancelled: {exc}")
        with transaction(db) as con:
            job_store.finish_job(con, job_id, "cancelled", error=str(exc))
        raise
    except BaseException as exc:
        reporter.log("failed:\n" + traceback.format_exc())
        with transaction(db) as con:
            job_store.finish_job(con, job_id, "failed", error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    with transaction(db) as con:
        job_store.finish_job(con, job_id, "succeeded", result=result)
    reporter.log(f"job {job_id} succeeded: {result}")
    return result


def pid_alive(pid: int | None) -> bool:
    """True while process ``pid`` exists on this machine and is not a finished zombie."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie answers kill(0) but is finished
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return True


# A queued job whose process has not reported for this long has died before starting.
QUEUED_GRACE_S = 120


def reap_dead_jobs(db: str | os.PathLike | None) -> list[str]:
    """Mark active jobs whose process is gone as failed; returns their ids."""
    with connect(db, read_only=True) as con:
        active = job_store.active_jobs(con)
    dead = []
    for job in active:
        if pid_alive(job["pid"]):
            continue
        if job["status"] == "queued" and job["pid"] is None:
            age = time.time() - job["created_at"].timestamp()
            if age < QUEUED_GRACE_S:
                continue
        dead.append(job["job_id"])
    if dead:
        with transaction(db) as con:
            for job_id in dead:
                job_store.finish_job(con, job_id, "failed", error="the job's process exited without reporting")
    return dead


def cancel_job(db: str | os.PathLike | None, job_id: str, actor: Actor) -> None:
    """Ask a job to stop: flag it in the store and send SIGTERM to its process group."""
    require(actor, "job.cancel")
    with transaction(db) as con:
        job = job_store.get_job(con, job_id)
        if job is None:
            raise TastebudError(f"no job {job_id}")
        if job["status"] not in job_store.ACTIVE_STATUSES:
            raise TastebudError(f"job {job_id} already {job['status']}")
        job_store.request_cancel(con, job_id)
        audit(con, actor, "job.cancel", target=job_id)
    if pid_alive(job["pid"]):
        try:
            os.killpg(job["pid"], signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass


def wait_for_job(db: str | os.PathLike | None, job_id: str, *, timeout_s: float = 600, poll_s: float = 0.5) -> dict:
    """Block until the job ends (for tests and the CLI's ``--wait``); returns the job row."""
    deadline = time.monotonic() + timeout_s
    while True:
        reap_dead_jobs(db)
        with connect(db, read_only=True) as con:
            job = job_store.get_job(con, job_id)
        if job and job["status"] not in job_store.ACTIVE_STATUSES:
            return job
        if time.monotonic() > deadline:
            raise TastebudError(f"job {job_id} still {job['status'] if job else 'missing'} after {timeout_s:.0f}s")
        time.sleep(poll_s)


def tail_log(path: str | None, *, lines: int = 40) -> str:
    """The last ``lines`` lines of a job log ('' when there is none yet)."""
    if not path or not os.path.exists(path):
        return ""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 64_000))
        data = f.read().decode("utf-8", errors="replace")
    return "\n".join(data.splitlines()[-lines:])
