"""The model registry: registered models and champion history (training runs: ``store.training_runs``).

The champion is not a flag on a model row: it is the top of a stack replayed from the
append-only ``promotions`` table (a promotion pushes, a rollback pops), so every change
of champion is kept and a rollback always returns to the model that was champion before.
"""

from __future__ import annotations

from datetime import datetime

import duckdb
import pandas as pd

from store.actors import Actor, audit, require
from store.errors import TastebudError
from store.json_fields import decode_json_fields, dumps_json

# "ensemble": a weighted combination of registered models (migration 101 allows it).
MODEL_KINDS = ("finetuned", "baseline", "ensemble")
# What a model predicts: one label per review ("sentiment") or the aspects a review speaks of and their
# polarity ("aspects", migration 130). Each task has its own champion.
MODEL_TASKS = ("sentiment", "aspects")
_JSON_FIELDS = ("params", "data_snapshot", "label_counts", "val_metrics")
_MODEL_COLUMNS = (
    "model_id", "kind", "name", "base_model", "path", "params", "data_snapshot", "round",
    "label_counts", "device", "duration_s", "val_metrics", "status", "created_at", "task",
)


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
    task: str = "sentiment",
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
    if task not in MODEL_TASKS:
        raise ValueError(f"model task must be one of {MODEL_TASKS}, got {task!r}")
    con.execute(
        """
        INSERT INTO models (model_id, kind, name, base_model, path, params, data_snapshot, round, label_counts,
                            device, duration_s, val_metrics, status, created_at, task)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (model_id) DO UPDATE SET
            kind = excluded.kind, name = excluded.name, base_model = excluded.base_model, path = excluded.path,
            params = excluded.params, data_snapshot = excluded.data_snapshot, round = excluded.round,
            label_counts = excluded.label_counts, device = excluded.device, duration_s = excluded.duration_s,
            val_metrics = excluded.val_metrics, status = excluded.status, task = excluded.task
        """,
        [
            model_id, kind, name, base_model, path, dumps_json(params), dumps_json(data_snapshot), int(round),
            dumps_json(label_counts), device, duration_s, dumps_json(val_metrics), status, datetime.now(), task,
        ],
    )
    return model_id


def get_model(con: duckdb.DuckDBPyConnection, model_id: str) -> dict | None:
    """One model row as a dict with its JSON fields decoded, or None."""
    row = con.execute(f"SELECT {', '.join(_MODEL_COLUMNS)} FROM models WHERE model_id = ?", [model_id]).fetchone()
    if row is None:
        return None
    return decode_json_fields(dict(zip(_MODEL_COLUMNS, row)), _JSON_FIELDS)


def list_models(
    con: duckdb.DuckDBPyConnection, *, kind: str | None = None, task: str | None = "sentiment"
) -> pd.DataFrame:
    """Every model of a task with its latest test-split metrics and whether it is the champion.

    ``task`` is "sentiment" (review-level models, the default), "aspects", or None for both; with
    None, ``is_champion`` marks each task's own champion.

    Columns: model_id, kind, name, base_model, status, round, device, duration_s, created_at,
    val_macro_f1, test_n, accuracy, macro_f1, macro_precision, macro_recall, ece,
    {precision,recall,f1}_{negative,neutral,positive}, evaluated_at, test_snapshot (hash of the test
    reviews and labels evaluated on), is_champion.
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
               e.created_at AS evaluated_at,
               json_extract_string(e.metrics, '$.test_snapshot') AS test_snapshot
        FROM models m LEFT JOIN latest e USING (model_id)
        WHERE (? IS NULL OR m.kind = ?) AND (? IS NULL OR coalesce(m.task, 'sentiment') = ?)
        ORDER BY m.created_at DESC, m.model_id
        """,
        [kind, kind, task, task],
    ).df()
    champions = {stack[-1] for t in (MODEL_TASKS if task is None else (task,)) if (stack := _champion_stack(con, t))}
    frame["is_champion"] = frame["model_id"].isin(champions)
    return frame


# ---------------------------------------------------------------- champion


def _champion_stack(con: duckdb.DuckDBPyConnection, task: str = "sentiment") -> list[str]:
    """Replay one task's promotions: a promotion pushes its model, a rollback pops the top."""
    if task not in MODEL_TASKS:
        raise ValueError(f"model task must be one of {MODEL_TASKS}, got {task!r}")
    stack: list[str] = []
    rows = con.execute(
        """
        SELECT p.action, p.model_id FROM promotions p LEFT JOIN models m USING (model_id)
        WHERE coalesce(m.task, 'sentiment') = ? ORDER BY p.promotion_id
        """,
        [task],
    ).fetchall()
    for action, model_id in rows:
        if action == "promote":
            stack.append(model_id)
        elif stack:
            stack.pop()
    return stack


def fetch_champion_stack(con: duckdb.DuckDBPyConnection, task: str = "sentiment") -> list[str]:
    """Champions of a task in effect, oldest first (the last is the champion; a rollback returns to the one
    before).

    Example:
        >>> len(fetch_champion_stack(con)) >= 2  # something to roll back to  # doctest: +SKIP
    """
    return _champion_stack(con, task)


def get_champion(con: duckdb.DuckDBPyConnection, task: str = "sentiment") -> dict | None:
    """The current champion's model row of a task ("sentiment" or "aspects"), or None when nothing was ever
    promoted for it.

    Example:
        >>> get_champion(con)["model_id"]  # doctest: +SKIP
        'ft-20261125-101500-1a2b'
    """
    stack = _champion_stack(con, task)
    return get_model(con, stack[-1]) if stack else None


def promote_model(
    con: duckdb.DuckDBPyConnection, actor: Actor, model_id: str, *, reason: str | None = None
) -> dict:
    """Make ``model_id`` the champion of its task. Call inside a transaction.

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
    stack = _champion_stack(con, model.get("task") or "sentiment")
    previous = stack[-1] if stack else None
    if previous == model_id:
        raise TastebudError(f"{model_id} is already the champion")
    row = _insert_promotion(con, model_id, previous, "promote", actor, reason)
    audit(con, actor, "model.promote", target=model_id, detail={"previous": previous, "reason": reason})
    return row


def rollback_champion(
    con: duckdb.DuckDBPyConnection, actor: Actor, *, reason: str | None = None, task: str = "sentiment"
) -> dict:
    """Return a task's champion to the one before the current (pop its promotion stack). Call inside a
    transaction.

    Raises:
        PermissionDeniedError: the actor may not promote.
        TastebudError: there is no earlier champion to return to.

    Returns:
        The promotions row written (``model_id`` is the restored champion).
    """
    require(actor, "promote")
    stack = _champion_stack(con, task)
    if len(stack) < 2:
        what = "champion" if task == "sentiment" else f"{task} champion"
        raise TastebudError(f"there is no previous {what} to roll back to")
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
