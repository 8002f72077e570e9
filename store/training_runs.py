"""Training runs as a job's panel reads them: per-epoch metrics and the runs a job started."""

from __future__ import annotations


import duckdb
import pandas as pd




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
