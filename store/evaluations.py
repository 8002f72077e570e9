"""Stored evaluation results: one row per (model, dataset) evaluation plus its per-slice scores.

Metrics are stored once when a model is evaluated, so comparing models never recomputes.
"""

from __future__ import annotations

import json
from datetime import datetime

import duckdb
import pandas as pd

SLICE_COLUMNS = ("slice_kind", "slice_value", "n", "accuracy", "macro_f1")


def insert_evaluation(
    con: duckdb.DuckDBPyConnection, model_id: str, dataset: str, metrics: dict, slices: pd.DataFrame | None = None
) -> int:
    """Store one evaluation and its slices (columns of ``SLICE_COLUMNS``). Call inside a transaction.

    Returns:
        The new evaluation id.

    Example:
        >>> insert_evaluation(con, "baseline-vader", "test", {"accuracy": 0.7, "n": 800})  # doctest: +SKIP
        1
    """
    (evaluation_id,) = con.execute(
        """
        INSERT INTO evaluations (model_id, dataset, n, metrics, created_at)
        VALUES (?, ?, ?, ?, ?) RETURNING evaluation_id
        """,
        [model_id, dataset, int(metrics.get("n", 0)), json.dumps(metrics, default=str), datetime.now()],
    ).fetchone()
    if slices is not None and len(slices):
        frame = slices.loc[:, list(SLICE_COLUMNS)].assign(evaluation_id=evaluation_id)
        con.register("_slices", frame)
        try:
            con.execute(
                """
                INSERT INTO evaluation_slices (evaluation_id, slice_kind, slice_value, n, accuracy, macro_f1)
                SELECT evaluation_id, slice_kind, slice_value, n, accuracy, macro_f1 FROM _slices
                """
            )
        finally:
            con.unregister("_slices")
    return evaluation_id


def _latest_evaluation_id(con: duckdb.DuckDBPyConnection, model_id: str, dataset: str) -> int | None:
    row = con.execute(
        """
        SELECT evaluation_id FROM evaluations WHERE model_id = ? AND dataset = ?
        ORDER BY created_at DESC, evaluation_id DESC LIMIT 1
        """,
        [model_id, dataset],
    ).fetchone()
    return row[0] if row else None


def fetch_latest_evaluation(con: duckdb.DuckDBPyConnection, model_id: str, dataset: str = "test") -> dict | None:
    """The newest stored evaluation of a model on ``dataset``: its metrics dict (accuracy, macro_f1,
    per_class, confusion_matrix, ece, n, ...) plus evaluation_id and evaluated_at; None if never evaluated.

    Example:
        >>> fetch_latest_evaluation(con, "baseline-vader")["macro_f1"]  # doctest: +SKIP
        0.47
    """
    evaluation_id = _latest_evaluation_id(con, model_id, dataset)
    if evaluation_id is None:
        return None
    metrics, created = con.execute(
        "SELECT metrics, created_at FROM evaluations WHERE evaluation_id = ?", [evaluation_id]
    ).fetchone()
    return {**json.loads(metrics), "evaluation_id": evaluation_id, "evaluated_at": created}


def fetch_evaluation_slices(con: duckdb.DuckDBPyConnection, model_id: str, dataset: str = "test") -> pd.DataFrame:
    """Slices of the model's newest evaluation on ``dataset`` (slice_kind, slice_value, n, accuracy, macro_f1)."""
    return con.execute(
        """
        SELECT slice_kind, slice_value, n, accuracy, macro_f1 FROM evaluation_slices
        WHERE evaluation_id = ? ORDER BY slice_kind, n DESC, slice_value
        """,
        [_latest_evaluation_id(con, model_id, dataset)],
    ).df()


def fetch_test_frame(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """The labeled test split with what slicing needs: review_id, text, stars, restaurant (name, else id),
    created_at, label. Ordered by review id."""
    return con.execute(
        """
        SELECT r.review_id, r.text, r.stars, coalesce(r.restaurant_name, r.restaurant_id) AS restaurant,
               r.created_at, l.label
        FROM reviews r JOIN splits s USING (review_id) JOIN current_labels l USING (review_id)
        WHERE s.split = 'test'
        ORDER BY r.review_id
        """
    ).df()
