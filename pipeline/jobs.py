"""Long work (training, scoring, flagging, retraining) runs as a separate OS process.

The dashboard or CLI calls :func:`start_job`: it records a queued job in the store and
launches ``python -m pipeline.cli --db DB job-run JOB_ID`` in a new session, with output
going to a log file. That process resolves the job's kind to a function
``fn(db, params, reporter) -> dict`` (see ``JOB_KINDS``), reports progress through
:class:`JobReporter` in short write transactions, and records how it ended. A cancel
request is a flag in the store plus SIGTERM to the job's process group; a job whose
process died without reporting is marked failed whenever job state is read (:func:`list_jobs`,
:func:`get_job`, every dashboard page): a job's process is identified by its pid *and* its start
time (:func:`process_start_token`), so a pid the OS has since given to another process does not
keep a dead job looking alive. A job that waits for another process's lock on the store cannot
say so in its row, so it says so in a small status file beside its log (:func:`job_status_path`),
and every read of job state shows "waiting for the store since HH:MM:SS" while that file is
newer than the row. Foreground ``train``/``score``/``flag``/``retrain`` record a job
row too (:func:`run_foreground`), so ``tastebud jobs`` and the dashboard see them.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pandas as pd

from store import jobs as job_store
from store.actors import Actor, audit, require
from store.settings import current_settings
from store.db import connect, on_lock_wait, on_lock_wait_over, resolve_db_path, set_lock_timeout, transaction
from store.errors import TastebudError

# kind -> "module:function"; imported lazily so the dashboard does not load torch to list jobs.
JOB_KINDS: dict[str, str] = {
    "train": "pipeline.train.run:run_job",
    "score": "pipeline.loop.scoring:run_job",
    "flag": "pipeline.loop.flagging:run_job",
    "retrain": "pipeline.loop.rounds:run_job",
    "demo-pipeline": "pipeline.demo:run_job",
    "demo-data": "pipeline.data.demo_data:run_job",
    "evaluate": "pipeline.evaluation.evaluator:run_job",
    "import": "pipeline.data.import_job:run_job",
    "monitor": "pipeline.monitor.health:run_job",
    "score-ray": "pipeline.scale.ray_score:run_job",
    "train-ray": "pipeline.scale.ray_train:run_job",
    "demo-finetune": "pipeline.demo:run_finetune_job",
    "demo-aspects": "pipeline.demo:run_aspects_job",
    "train_aspects": "pipeline.aspects.train:run_job",
    "score_aspects": "pipeline.aspects.scoring:run_job",
}
PERMISSION_FOR_KIND = {"train": "train", "retrain": "train", "score": "score", "flag": "flag.create", "demo-pipeline": "train",
                      "demo-data": "import", "evaluate": "train", "import": "import", "monitor": "score",
                      "demo-finetune": "train", "demo-aspects": "train", "score-ray": "score", "train-ray": "train",
                      "train_aspects": "train", "score_aspects": "score"}
# Seconds between progress writes: often enough for a live panel, rare enough not to contend for the lock.
PROGRESS_INTERVAL_S = 1.0


class JobCancelled(Exception):
    """Raised inside a job when a cancel was requested."""


def runs_dir(db: str | os.PathLike | None) -> Path:
    """Where job logs and checkpoints live: ``runs/`` beside the store file."""
    return resolve_db_path(db).resolve().parent / "runs"


def job_status_path(db: str | os.PathLike | None, job_id: str) -> Path:
    """The status file beside a job's log; it exists while the job waits for the store.

    Example:
        >>> job_status_path("/data/t.duckdb", "score-1").name
        'score-1.status'
    """
    return runs_dir(db) / "jobs" / f"{job_id}.status"


def _write_atomically(path: Path, text: str) -> None:
    """Readers see the old file or the new one, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(text)
    os.replace(partial, path)


class JobReporter:
    """Progress and log lines from inside a running job.

    ``job_id=None`` makes a reporter that only prints. ``console`` says whether a person watches
    the output in a terminal (progress bars wanted); it defaults to ``job_id is None``, and a
    foreground command with a job row (:func:`run_foreground`) sets it explicitly.
    """

    def __init__(self, db: str | os.PathLike | None, job_id: str | None, *, echo: Callable[[str], None] = print,
                 console: bool | None = None):
        self.db, self.job_id, self._echo = db, job_id, echo
        self.console = job_id is None if console is None else console
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


    def waiting_for_store(self, path=None) -> None:
        """Say that the job waits for another process's lock: in the log, and in the job's status file
        (the job's row cannot be written while the store is locked)."""
        self._echo(f"[{time.strftime('%H:%M:%S')}] waiting for the store: another process is writing to it")
        if self.job_id is not None:
            since = datetime.now().isoformat(timespec="seconds")
            _write_atomically(job_status_path(self.db, self.job_id), json.dumps({"waiting_for_store_since": since}))

    def store_wait_over(self, path=None) -> None:
        """The wait for the store ended: the status file goes."""
        if self.job_id is not None:
            job_status_path(self.db, self.job_id).unlink(missing_ok=True)


class SpanReporter(JobReporter):
    """Maps a sub-task's 0-1 progress into ``[start, end]`` of the parent job's progress."""

    def __init__(self, parent: JobReporter, start: float, end: float):
        super().__init__(parent.db, parent.job_id, echo=parent._echo, console=parent.console)
        self._start, self._end = start, end

    def progress(self, fraction: float, message: str | None = None, *, force: bool = False) -> None:
        super().progress(self._start + (self._end - self._start) * fraction, message, force=force)


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
    token = process_start_token(proc.pid)  # read before anything can reap the child
    _reap(proc)
    with transaction(db_path) as con:
        job_store.set_spawned(con, job_id, pid=proc.pid, log_path=str(log_path), proc_start=token)
    return job_id


def run_job(db: str | os.PathLike | None, job_id: str) -> dict:
    """Run a recorded job in this process (the body of ``tastebud job-run``).

    A job that finds the store busy waits (up to ``TASTEBUD_JOB_LOCK_TIMEOUT``, 1 h by default) instead of failing
    after the interactive timeout, and says so in its log and its status file (:func:`job_status_path`), which
    ``tastebud jobs`` and the dashboard read as "waiting for the store since HH:MM:SS".
    """
    set_lock_timeout(current_settings().job_lock_timeout_s)
    reporter = JobReporter(db, job_id, echo=lambda line: print(line, flush=True))
    on_lock_wait(reporter.waiting_for_store)
    on_lock_wait_over(reporter.store_wait_over)
    with connect(db, read_only=True) as con:
        job = job_store.get_job(con, job_id)
    if job is None:
        raise TastebudError(f"no job {job_id}")
    if job["status"] != "queued":
        raise TastebudError(f"job {job_id} is {job['status']}, not queued")
    fn = resolve_kind(job["kind"])
    with transaction(db) as con:
        job_store.mark_started(con, job_id, pid=os.getpid(), log_path=job.get("log_path"),
                               proc_start=process_start_token(os.getpid()))

    reporter.log(f"job {job_id} ({job['kind']}) started with {job['params']}")
    return _run_recorded(db, job_id, lambda: fn(db, job["params"] or {}, reporter), reporter)


def _run_recorded(db, job_id: str, body: Callable[[], dict], reporter: JobReporter) -> dict:
    """Run ``body`` as job ``job_id`` and record how it ended (SIGTERM and Ctrl+C become a cancel)."""

    owner = os.getpid()

    def _on_term(signum, frame):
        if os.getpid() != owner:
            # A forked worker (a library's multiprocessing pool) inherited this handler; its
            # pool ends it with SIGTERM. Raising here would leave the pool's queue lock held and hang
            # the job: exit as SIGTERM's default would.
            os._exit(128 + signum)
        raise JobCancelled(f"job {job_id} received signal {signum}")

    # Signal handlers can only be set from the main thread (tests may run jobs elsewhere).
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_term) if in_main else None
    try:
        result = body()
    except (JobCancelled, KeyboardInterrupt) as exc:
        reporter.log(f"cancelled: {exc or type(exc).__name__}")
        with transaction(db) as con:
            job_store.finish_job(con, job_id, "cancelled", error=str(exc) or type(exc).__name__)
        raise
    except BaseException as exc:
        # A TastebudError is the user's to fix and says so in one line; anything else keeps its traceback.
        reporter.log(f"failed: {exc}" if isinstance(exc, TastebudError) else "failed:\n" + traceback.format_exc())
        with transaction(db) as con:
            job_store.finish_job(con, job_id, "failed", error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
    with transaction(db) as con:
        job_store.finish_job(con, job_id, "succeeded", result=result)
    reporter.log(f"job {job_id} succeeded")
    return result


def run_foreground(
    db: str | os.PathLike | None, kind: str, params: dict, actor: Actor, body: Callable[[JobReporter], dict],
    *, echo: Callable[[str], None] = print,
) -> dict:
    """Run ``body(reporter)`` in this process, recorded as a job (for ``tastebud train``/``score``/... without
    ``--background``), so the jobs table, ``tastebud jobs`` and the dashboard see foreground work too.

    Args:
        db: the store.
        kind: a job kind of ``JOB_KINDS`` (what the row says it is).
        params: recorded with the job.
        actor: who runs it (checked against the kind's permission).
        body: the work; gets a reporter that prints with ``echo`` and records progress.
        echo: where progress lines go.

    Returns:
        What ``body`` returned; its exceptions propagate after the job row says failed or cancelled.

    Example:
        >>> run_foreground("t.duckdb", "score", {}, cli_actor(), lambda r: score("t.duckdb", reporter=r))  # doctest: +SKIP
    """
    require(actor, PERMISSION_FOR_KIND.get(kind, "admin"))
    with transaction(db) as con:
        job_id = job_store.create_job(con, kind, params, actor.name)
        job_store.mark_started(con, job_id, pid=os.getpid(), log_path=None, proc_start=process_start_token(os.getpid()))
        audit(con, actor, f"job.start.{kind}", target=job_id, detail={**params, "foreground": True})
    reporter = JobReporter(db, job_id, echo=echo, console=True)
    return _run_recorded(db, job_id, lambda: body(reporter), reporter)


def process_start_token(pid: int | None) -> str | None:
    """Boot id + start time of process ``pid`` (Linux; None elsewhere or when it is gone).

    Recorded with a job or training run, it tells the process apart from a later one the OS
    gives the same pid.

    Example:
        >>> process_start_token(os.getpid()) == process_start_token(os.getpid())
        True
    """
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields_after_name = f.read().rsplit(")", 1)[1].split()
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        return f"{boot}:{fields_after_name[19]}"
    except (OSError, IndexError):
        return None


def pid_alive(pid: int | None, start_token: str | None = None) -> bool:
    """True while process ``pid`` exists on this machine, is not a finished zombie and, when
    ``start_token`` (from :func:`process_start_token`) is given, is the same process that was recorded.

    Example:
        >>> pid_alive(os.getpid(), process_start_token(os.getpid()))
        True
    """
    if not pid:
        return False
    if start_token is not None:
        current = process_start_token(pid)
        if current is not None and current != start_token:
            return False  # the pid now belongs to another process
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
        if pid_alive(job["pid"], job.get("proc_start")):
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
        job_store.request_cancel(con, job_id, actor.name)
        audit(con, actor, "job.cancel", target=job_id)
    if pid_alive(job["pid"], job.get("proc_start")):
        try:
            os.killpg(job["pid"], signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass


def list_jobs(db: str | os.PathLike | None, *, limit: int = 20, active_only: bool = False) -> pd.DataFrame:
    """Newest jobs first, dead ones already marked failed, with ``elapsed_s`` and ``eta_s`` columns.

    Example:
        >>> list_jobs("t.duckdb")[["job_id", "status", "progress", "eta_s"]]  # doctest: +SKIP
    """
    reap_dead_jobs(db)
    with connect(db, read_only=True) as con:
        frame = job_store.list_jobs(con, limit=limit, active_only=active_only)
    now = datetime.now()
    timing = [job_timing(row, now=now) for row in frame.to_dict("records")]
    frame["elapsed_s"] = [t[0] for t in timing]
    frame["eta_s"] = [t[1] for t in timing]
    return note_store_waits(db, frame)


def store_wait_since(db: str | os.PathLike | None, job: dict) -> datetime | None:
    """Since when an active job waits for the store, or None: its status file says so and is newer
    than the row's last update (a file left by a killed job, or older than progress written since,
    does not count).

    Example:
        >>> store_wait_since("t.duckdb", {"job_id": "score-1", "status": "running"})  # doctest: +SKIP
        datetime.datetime(2026, 11, 26, 23, 59, 1)
    """
    if job.get("status") not in job_store.ACTIVE_STATUSES:
        return None
    path = job_status_path(db, job["job_id"])
    try:
        written = path.stat().st_mtime
        since = datetime.fromisoformat(json.loads(path.read_text())["waiting_for_store_since"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    updates = [job.get(k) for k in ("heartbeat_at", "started_at", "created_at")]
    updated = max((pd.Timestamp(t).timestamp() for t in updates if t is not None and not pd.isna(t)), default=0.0)
    return since if written >= updated else None


def note_store_waits(db: str | os.PathLike | None, jobs: pd.DataFrame) -> pd.DataFrame:
    """Jobs (rows of the jobs table) with ``waiting_since`` set, and the message saying
    "waiting for the store since HH:MM:SS", for those that wait for the store now."""
    jobs = jobs.copy()
    waits = [store_wait_since(db, row) for row in jobs.to_dict("records")]
    jobs["waiting_since"] = waits
    if "message" in jobs:
        jobs["message"] = [_wait_message(w) if w is not None else m for w, m in zip(waits, jobs["message"])]
    return jobs


def note_store_wait(db: str | os.PathLike | None, job: dict) -> dict:
    """One job row with ``waiting_since`` and the message, as :func:`note_store_waits` does."""
    since = store_wait_since(db, job)
    job["waiting_since"] = since
    if since is not None:
        job["message"] = _wait_message(since)
    return job


def _wait_message(since: datetime) -> str:
    return f"waiting for the store since {since:%H:%M:%S}"


def get_job(db: str | os.PathLike | None, job_id: str) -> dict | None:
    """One job (dead ones already marked failed) with ``elapsed_s`` and ``eta_s``, or None."""
    reap_dead_jobs(db)
    with connect(db, read_only=True) as con:
        job = job_store.get_job(con, job_id)
    if job is not None:
        job["elapsed_s"], job["eta_s"] = job_timing(job)
        note_store_wait(db, job)
    return job


# Progress below this share gives no ETA (the first steps include loading the model and data).
MIN_PROGRESS_FOR_ETA = 0.02


def job_timing(job: dict, *, now: datetime | None = None) -> tuple[float | None, float | None]:
    """(seconds the job has run, estimated seconds left) from its start, end and progress.

    The ETA assumes the remaining work goes at the average pace so far; None while the job is
    not running or has done too little to tell.

    Example:
        >>> job_timing({"status": "running", "progress": 0.5, "started_at": datetime(2026, 1, 1, 10),
        ...             "finished_at": None}, now=datetime(2026, 1, 1, 10, 1))
        (60.0, 60.0)
    """
    started = job.get("started_at")
    if started is None or pd.isna(started):
        return None, None
    finished = job.get("finished_at")
    end = (now or datetime.now()) if finished is None or pd.isna(finished) else finished
    elapsed = max(0.0, (pd.Timestamp(end) - pd.Timestamp(started)).total_seconds())
    progress = float(job.get("progress") or 0.0)
    if job.get("status") != "running" or progress < MIN_PROGRESS_FOR_ETA or progress >= 1.0:
        return elapsed, None
    return elapsed, elapsed * (1.0 - progress) / progress


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
