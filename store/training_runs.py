"""Training runs as a job's panel reads them: per-epoch metrics and the runs a job started."""

from __future__ import annotations

import json
from datetime import datetime

import duckdb
import pandas as pd


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
