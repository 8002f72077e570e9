"""The model registry: registered models, training runs, per-epoch metrics, champion history.

The champion is not a flag on a model row: it is the top of a stack replayed from the
append-only ``promotions`` table (a promotion pushes, a rollback pops), so every change
of champion is kept and a rollback always returns to the model that was champion before.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import duckdb
import pandas as pd

from store.actors import Actor, audit, require
from store.errors import TastebudError
from store.evaluations import fetch_evaluation_slices, fetch_latest_evaluation  # noqa: F401 (part of this API)

# "ensemble": a weighted combination of registered models (migration 101 allows it).
MODEL_KINDS = ("finetuned", "baseline", "ensemble")
_JSON_FIELDS = ("params", "data_snapshot", "label_counts", "val_metrics")
_MODEL_COLUMNS = (
    "model_id", "kind", "name", "base_model", "path", "params", "data_snapshot", "round",
    "label_counts", "device", "duration_s", "val_metrics", "status", "created_at",
)


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=str)


def _decode(row: dict, keys: tuple[str, ...]) -> dict:
    for key in keys:
        if isinstance(row.get(key), str):
            row[key] = json.loads(row[key])
    return row


# ---------------------------------------------------------------- models


def register_model(
    con: duckdb.DuckDBPyConnection,
    *,
    model_id: str,
    kind: str,
    name: str,
    base_model: str | None = None,
    path: str | None = None,
    params: dict | None = None,
    data_snapshot: dict | None = None,
    round: int = 0,
    label_counts: dict | None = None,
    device: str | None = None,
    duration_s: float | None = None,
    val_metrics: dict | None = None,
    status: str = "ready",
) -> str:
    """Insert a model row, or replace the row of the same id (baselines are re-registered in place).

    Call inside a transaction; the caller audits.

    Returns:
        The model id.

    Example:
        >>> register_model(con, model_id="baseline-vader", kind="baseline", name="VADER")  # doctest: +SKIP
        'baseline-vader'
    """
    if kind not in MODEL_KINDS:
        raise ValueError(f"model kind must be one of {MODEL_KINDS}, got {kind!r}")
    con.execute(
        """
        INSERT INTO models (model_id, kind, name, base_model, path, params, data_snapshot, round, label_counts,
                            device, duration_s, val_metrics, status, created_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (model_id) DO UPDATE SET
            kind = excluded.kind, name = excluded.name, base_model = excluded.base_model, path = excluded.path,
            params = excluded.params, data_snapshot = excluded.data_snapshot, round = excluded.round,
            label_counts = excluded.label_counts, device = excluded.device, duration_s = excluded.duration_s,
            val_metrics = excluded.val_metrics, status = excluded.status
        """,
        [
            model_id, kind, name, base_model, path, _dumps(params), _dumps(data_snapshot), int(round),
            _dumps(label_counts), device, duration_s, _dumps(val_metrics), status, datetime.now(),
        ],
    )
    return model_id


def get_model(con: duckdb.DuckDBPyConnection, model_id: str) -> dict | None:
    """One model row as a dict with its JSON fields decoded, or None."""
    row = con.execute(f"SELECT {', '.join(_MODEL_COLUMNS)} FROM models WHERE model_id = ?", [model_id]).fetchone()
    if row is None:
        return None
    return _decode(dict(zip(_MODEL_COLUMNS, row)), _JSON_FIELDS)


def list_models(con: duckdb.DuckDBPyConnection, *, kind: str | None = None) -> pd.DataFrame:
    """Every model with its latest test-split metrics and whether it is the champion.

    Columns: model_id, kind, name, base_model, status, round, device, duration_s, created_at,
    val_macro_f1, test_n, accuracy, macro_f1, macro_precision, macro_recall, ece,
    {precision,recall,f1}_{negative,neutral,positive}, evaluated_at, is_champion.
    Newest first; metrics are NULL for a model not yet evaluated.

    Example:
        >>> list_models(con)[["model_id", "macro_f1", "is_champion"]]  # doctest: +SKIP
    """
    per_class = ",\n".join(
        f"json_extract(e.metrics, '$.per_class.{label}.{m}')::DOUBLE AS {m}_{label}"
        for label in ("negative", "neutral", "positive")
        for m in ("precision", "recall", "f1")
    )
    frame = con.execute(
        f"""
        WITH latest AS (
            SELECT model_id, n, metrics, created_at FROM evaluations WHERE dataset = 'test'
            QUALIFY row_number() OVER (PARTITION BY model_id ORDER BY created_at DESC, evaluation_id DESC) = 1
        )
        SELECT m.model_id, m.kind, m.name, m.base_model, m.status, m.round, m.device, m.duration_s, m.created_at,
               json_extract(m.val_metrics, '$.macro_f1')::DOUBLE AS val_macro_f1,
               e.n AS test_n,
               json_extract(e.metrics, '$.accuracy')::DOUBLE AS accuracy,
               json_extract(e.metrics, '$.macro_f1')::DOUBLE AS macro_f1,
               json_extract(e.metrics, '$.macro_precision')::DOUBLE AS macro_precision,
               json_extract(e.metrics, '$.macro_recall')::DOUBLE AS macro_recall,
               json_extract(e.metrics, '$.ece')::DOUBLE AS ece,
               {per_class},
               e.created_at AS evaluated_at
        FROM models m LEFT JOIN latest e USING (model_id)
        WHERE ? IS NULL OR m.kind = ?
        ORDER BY m.created_at DESC, m.model_id
        """,
        [kind, kind],
    ).df()
    champion = _champion_stack(con)
    frame["is_champion"] = frame["model_id"] == (champion[-1] if champion else None)
    return frame


# ---------------------------------------------------------------- champion


def _champion_stack(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Replay promotions: a promotion pushes its model, a rollback pops the top."""
    stack: list[str] = []
    for action, model_id in con.execute("SELECT action, model_id FROM promotions ORDER BY promotion_id").fetchall():
        if action == "promote":
            stack.append(model_id)
        elif stack:
            stack.pop()
    return stack


def get_champion(con: duckdb.DuckDBPyConnection) -> dict | None:
    """The current champion's model row, or None when nothing was ever promoted.

    Example:
        >>> get_champion(con)["model_id"]  # doctest: +SKIP
        'ft-20261125-101500-1a2b'
    """
    stack = _champion_stack(con)
    return get_model(con, stack[-1]) if stack else None


def promote_model(
    con: duckdb.DuckDBPyConnection, actor: Actor, model_id: str, *, reason: str | None = None
) -> dict:
    """Make ``model_id`` the champion. Call inside a transaction.

    Raises:
        PermissionDeniedError: the actor may not promote.
        TastebudError: unknown model, a model that is not ready, or already the champion.

    Returns:
        The promotions row written, as a dict.
    """
    require(actor, "promote")
    model = get_model(con, model_id)
    if model is None:
        raise TastebudError(f"no model {model_id!r}; see `tastebud models`")
    if model["status"] != "ready":
        raise TastebudError(f"model {model_id} is {model['status']}, only a ready model can be promoted")
    stack = _champion_stack(con)
    previous = stack[-1] if stack else None
    if previous == model_id:
        raise TastebudError(f"{model_id} is already the champion")
    row = _insert_promotion(con, model_id, previous, "promote", actor, reason)
    audit(con, actor, "model.promote", target=model_id, detail={"previous": previous, "reason": reason})
    return row


def rollback_champion(con: duckdb.DuckDBPyConnection, actor: Actor, *, reason: str | None = None) -> dict:
    """Return the champion to the one before the current (pop the promotion stack). Call inside a transaction.

    Raises:
        PermissionDeniedError: the actor may not promote.
        TastebudError: there is no earlier champion to return to.

    Returns:
        The promotions row written (``model_id`` is the restored champion).
    """
    require(actor, "promote")
    stack = _champion_stack(con)
    if len(stack) < 2:
        raise TastebudError("there is no previous champion to roll back to")
    current, restored = stack[-1], stack[-2]
    row = _insert_promotion(con, restored, current, "rollback", actor, reason)
    audit(con, actor, "model.rollback", target=restored, detail={"from": current, "reason": reason})
    return row


def _insert_promotion(con, model_id, previous, action, actor, reason) -> dict:
    created = datetime.now()
    (promotion_id,) = con.execute(
        """
        INSERT INTO promotions (model_id, previous_model_id, action, actor, reason, created_at)
        VALUES (?, ?, ?, ?, ?, ?) RETURNING promotion_id
        """,
        [model_id, previous, action, actor.name, reason, created],
    ).fetchone()
    return {
        "promotion_id": promotion_id, "model_id": model_id, "previous_model_id": previous,
        "action": action, "actor": actor.name, "reason": reason, "created_at": created,
    }


def promotion_history(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every promotion and rollback, newest first (promotion_id, model_id, previous_model_id, action, actor,
    reason, created_at)."""
    return con.execute(
        """
        SELECT promotion_id, model_id, previous_model_id, action, actor, reason, created_at
        FROM promotions ORDER BY promotion_id DESC
        """
    ).df()


# ---------------------------------------------------------------- training runs

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
        [run_id, job_id, sweep_id, _dumps(config), checkpoint_dir, datetime.now(), pid, host, proc_start],
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
        [status, model_id, error, _dumps(result), datetime.now(), run_id],
    )


def set_run_model(con: duckdb.DuckDBPyConnection, run_id: str, model_id: str) -> None:
    """Link a finished run to the model registered from it."""
    con.execute("UPDATE training_runs SET model_id = ? WHERE run_id = ?", [model_id, run_id])


def get_run(con: duckdb.DuckDBPyConnection, run_id: str) -> dict | None:
    """One training run as a dict (config and result decoded), or None."""
    row = con.execute(f"SELECT {', '.join(_RUN_COLUMNS)} FROM training_runs WHERE run_id = ?", [run_id]).fetchone()
    return _decode(dict(zip(_RUN_COLUMNS, row)), ("config", "result")) if row else None


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


def fetch_run_epochs(con: duckdb.DuckDBPyConnection, run_id: str) -> pd.DataFrame:
    """Epoch rows of one run (epoch, step, train_loss, val_loss, val_accuracy, val_macro_f1), by epoch."""
    return con.execute(
        """
        SELECT epoch, step, train_loss, val_loss, val_accuracy, val_macro_f1 FROM epoch_metrics
        WHERE run_id = ? ORDER BY epoch
        """,
        [run_id],
    ).df()


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


def current_label_round(con: duckdb.DuckDBPyConnection) -> int:
    """The newest relabeling round among current labels (0 before any relabeling round)."""
    return int(con.execute("SELECT coalesce(max(round), 0) FROM current_labels").fetchone()[0])
