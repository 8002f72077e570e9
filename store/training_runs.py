"""Training runs: one row per fine-tuning run (its config, process and outcome) and its per-epoch metrics."""

from __future__ import annotations

import json
from datetime import datetime

import duckdb
import pandas as pd

from store.json_fields import decode_json_fields, dumps_json

_RUN_COLUMNS = (
    "run_id", "model_id", "job_id", "sweep_id", "config", "status", "checkpoint_dir", "error",
    "started_at", "finished_at", "pid", "host", "proc_start", "result",
)
RUN_FINAL_STATUSES = ("succeeded", "failed", "cancelled")


def create_run(
    con: duckdb.DuckDBPyConnection,
    *,
    run_id: str,
    config: dict,
    checkpoint_dir: str,
    pid: int,
    host: str,
    proc_start: str | None,
    job_id: str | None = None,
    sweep_id: str | None = None,
) -> None:
    """Record a training run as running in this process. Call inside a transaction."""
    con.execute(
        """
        INSERT INTO training_runs (run_id, job_id, sweep_id, config, status, checkpoint_dir, started_at,
                                   pid, host, proc_start)
        VALUES (?, ?, ?, ?, 'running', ?, ?, ?, ?, ?)
        """,
        [run_id, job_id, sweep_id, dumps_json(config), checkpoint_dir, datetime.now(), pid, host, proc_start],
    )


def restart_run(
    con: duckdb.DuckDBPyConnection, run_id: str, *, pid: int, host: str, proc_start: str | None, job_id: str | None
) -> None:
    """Mark an interrupted run running again in this process (resume)."""
    con.execute(
        """
        UPDATE training_runs SET status = 'running', error = NULL, finished_at = NULL, pid = ?, host = ?,
               proc_start = ?, job_id = coalesce(?, job_id)
        WHERE run_id = ?
        """,
        [pid, host, proc_start, job_id, run_id],
    )


def finish_run(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    status: str,
    *,
    model_id: str | None = None,
    error: str | None = None,
    result: dict | None = None,
) -> None:
    """Record how a run ended (only while it is still running)."""
    if status not in RUN_FINAL_STATUSES:
        raise ValueError(f"not a final run status: {status}")
    con.execute(
        """
        UPDATE training_runs SET status = ?, model_id = coalesce(?, model_id), error = ?,
               result = coalesce(?, result), finished_at = ?
        WHERE run_id = ? AND status = 'running'
        """,
        [status, model_id, error, dumps_json(result), datetime.now(), run_id],
    )


def set_run_model(con: duckdb.DuckDBPyConnection, run_id: str, model_id: str) -> None:
    """Link a finished run to the model registered from it."""
    con.execute("UPDATE training_runs SET model_id = ? WHERE run_id = ?", [model_id, run_id])


def get_run(con: duckdb.DuckDBPyConnection, run_id: str) -> dict | None:
    """One training run as a dict (config and result decoded), or None."""
    row = con.execute(f"SELECT {', '.join(_RUN_COLUMNS)} FROM training_runs WHERE run_id = ?", [run_id]).fetchone()
    return decode_json_fields(dict(zip(_RUN_COLUMNS, row)), ("config", "result")) if row else None


def list_runs(
    con: duckdb.DuckDBPyConnection, *, status: str | None = None, sweep_id: str | None = None, limit: int = 50
) -> pd.DataFrame:
    """Training runs, newest first."""
    return con.execute(
        f"""
        SELECT {', '.join(_RUN_COLUMNS)} FROM training_runs
        WHERE (? IS NULL OR status = ?) AND (? IS NULL OR sweep_id = ?)
        ORDER BY started_at DESC LIMIT ?
        """,
        [status, status, sweep_id, sweep_id, limit],
    ).df()


def running_runs(con: duckdb.DuckDBPyConnection) -> list[dict]:
    """run_id, pid, host, proc_start of every run recorded as running."""
    rows = con.execute("SELECT run_id, pid, host, proc_start FROM training_runs WHERE status = 'running'").fetchall()
    return [dict(zip(("run_id", "pid", "host", "proc_start"), r)) for r in rows]


def latest_interrupted_run(con: duckdb.DuckDBPyConnection) -> dict | None:
    """The newest failed or cancelled run that never registered a model (the one ``--resume`` continues)."""
    row = con.execute(
        """
        SELECT run_id FROM training_runs
        WHERE status IN ('failed', 'cancelled') AND model_id IS NULL
        ORDER BY started_at DESC LIMIT 1
        """
    ).fetchone()
    return get_run(con, row[0]) if row else None


def record_epoch(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    *,
    epoch: float,
    step: int,
    train_loss: float | None,
    val_loss: float | None,
    val_accuracy: float | None,
    val_macro_f1: float | None,
) -> None:
    """Store one epoch's losses and validation scores, replacing a row of the same epoch (a resumed run
    repeats the epoch it was killed in)."""
    con.execute("DELETE FROM epoch_metrics WHERE run_id = ? AND epoch = ?", [run_id, epoch])
    con.execute(
        """
        INSERT INTO epoch_metrics (run_id, epoch, step, train_loss, val_loss, val_accuracy, val_macro_f1, created_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?)
        """,
        [run_id, epoch, step, train_loss, val_loss, val_accuracy, val_macro_f1, datetime.now()],
    )


def fetch_epoch_metrics(con: duckdb.DuckDBPyConnection, model_id: str) -> pd.DataFrame:
    """The per-epoch curve of the run that produced ``model_id`` (empty for baselines).

    Example:
        >>> fetch_epoch_metrics(con, "ft-20261125-101500-1a2b")[["epoch", "val_macro_f1"]]  # doctest: +SKIP
    """
    return con.execute(
        """
        SELECT e.epoch, e.step, e.train_loss, e.val_loss, e.val_accuracy, e.val_macro_f1
        FROM epoch_metrics e JOIN training_runs r USING (run_id)
        WHERE r.model_id = ? ORDER BY e.epoch
        """,
        [model_id],
    ).df()

def record_step_loss(
    con: duckdb.DuckDBPyConnection, run_id: str, *, step: int, epoch: float | None, loss: float,
    learning_rate: float | None = None,
) -> None:
    """Store the training loss logged at ``step`` (a resumed run that repeats a step replaces it).

    Example:
        >>> record_step_loss(con, "run-20261125-101500-1a2b3c", step=20, epoch=0.5, loss=0.93)  # doctest: +SKIP
    """
    con.execute(
        """
        INSERT INTO step_losses (run_id, step, epoch, loss, learning_rate, created_at) VALUES (?, ?, ?, ?, ?, ?)
        ON CONFLICT (run_id, step) DO UPDATE SET epoch = excluded.epoch, loss = excluded.loss,
            learning_rate = excluded.learning_rate, created_at = excluded.created_at
        """,
        [run_id, int(step), epoch, float(loss), learning_rate, datetime.now()],
    )


def fetch_job_step_losses(con: duckdb.DuckDBPyConnection, job_id: str) -> pd.DataFrame:
    """Training loss per logged step of every run a job started.

    Returns:
        run_id, step, epoch, loss, learning_rate ordered by run then step.

    Example:
        >>> fetch_job_step_losses(con, "train-20261125-101500-1a2b3c")[["step", "loss"]]  # doctest: +SKIP
    """
    return con.execute(
        """
        SELECT s.run_id, s.step, s.epoch, s.loss, s.learning_rate
        FROM training_runs t JOIN step_losses s USING (run_id)
        WHERE t.job_id = ?
        ORDER BY t.started_at, t.run_id, s.step
        """,
        [job_id],
    ).df()


def fetch_job_trials(con: duckdb.DuckDBPyConnection, job_id: str) -> pd.DataFrame:
    """The training runs of one job as trials: settings, validation scores, time, and the registered winner.

    Returns:
        run_id, status, model_id, config (dict), checkpoint_dir, val_macro_f1, val_accuracy, duration_s, started_at,
        finished_at, winner (the run whose model was registered), ordered by start.

    Example:
        >>> fetch_job_trials(con, "train-20261125-101500-1a2b3c").query("winner")["run_id"]  # doctest: +SKIP
    """
    frame = con.execute(
        """
        SELECT run_id, status, model_id, config, checkpoint_dir, started_at, finished_at,
               json_extract(result, '$.val_metrics.macro_f1')::DOUBLE AS val_macro_f1,
               json_extract(result, '$.val_metrics.accuracy')::DOUBLE AS val_accuracy,
               coalesce(json_extract(result, '$.duration_s')::DOUBLE,
                        epoch(finished_at - started_at)) AS duration_s
        FROM training_runs WHERE job_id = ? ORDER BY started_at, run_id
        """,
        [job_id],
    ).df()
    frame["config"] = [json.loads(c) if isinstance(c, str) else (c or {}) for c in frame["config"]]
    frame["winner"] = frame["model_id"].notna()
    return frame



def fetch_job_epoch_metrics(con: duckdb.DuckDBPyConnection, job_id: str) -> pd.DataFrame:
    """Per-epoch metrics of every training run a job started (a sweep starts several).

    Returns:
        run_id, model_id, epoch, step, train_loss, val_loss, val_accuracy, val_macro_f1, ordered by run then step.

    Example:
        >>> fetch_job_epoch_metrics(con, "train-20261125-101500-1a2b3c")[["epoch", "val_loss"]]  # doctest: +SKIP
    """
    return con.execute(
        """
        SELECT t.run_id, t.model_id, e.epoch, e.step, e.train_loss, e.val_loss, e.val_accuracy, e.val_macro_f1
        FROM training_runs t JOIN epoch_metrics e USING (run_id)
        WHERE t.job_id = ?
        ORDER BY t.started_at, t.run_id, e.step
        """,
        [job_id],
    ).df()


def fetch_job_training_runs(con: duckdb.DuckDBPyConnection, job_id: str) -> pd.DataFrame:
    """The training runs a job started: run_id, model_id, sweep_id, status, config, error, started/finished.

    Example:
        >>> fetch_job_training_runs(con, "train-20261125-101500-1a2b3c")["status"].tolist()  # doctest: +SKIP
        ['succeeded', 'running']
    """
    return con.execute(
        """
        SELECT run_id, model_id, sweep_id, status, config, error, started_at, finished_at
        FROM training_runs WHERE job_id = ? ORDER BY started_at, run_id
        """,
        [job_id],
    ).df()
