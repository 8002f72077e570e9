"""Stored evaluation results: one row per (model, dataset) evaluation plus its per-slice scores.

Metrics are stored once when a model is evaluated, so comparing models never recomputes.
"""

from __future__ import annotations

import json
from datetime import datetime

import duckdb
import pandas as pd

SLICE_COLUMNS = ("slice_kind", "slice_value", "n", "accuracy", "macro_f1")
# Optional slice columns: the bootstrap 95% interval of the slice's macro-F1.
SLICE_INTERVAL_COLUMNS = ("f1_ci_low", "f1_ci_high")


def insert_evaluation(
    con: duckdb.DuckDBPyConnection, model_id: str, dataset: str, metrics: dict, slices: pd.DataFrame | None = None
) -> int:
    """Store one evaluation and its slices (columns of ``SLICE_COLUMNS``, optionally
    ``SLICE_INTERVAL_COLUMNS``). Call inside a transaction.

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
        frame = slices.reindex(columns=[*SLICE_COLUMNS, *SLICE_INTERVAL_COLUMNS]).assign(evaluation_id=evaluation_id)
        frame[list(SLICE_INTERVAL_COLUMNS)] = frame[list(SLICE_INTERVAL_COLUMNS)].astype("float64")
        con.register("_slices", frame)
        try:
            con.execute(
                """
                INSERT INTO evaluation_slices (evaluation_id, slice_kind, slice_value, n, accuracy, macro_f1,
                                               f1_ci_low, f1_ci_high)
                SELECT evaluation_id, slice_kind, slice_value, n, accuracy, macro_f1, f1_ci_low, f1_ci_high FROM _slices
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
    """Slices of the model's newest evaluation on ``dataset`` (slice_kind, slice_value, n, accuracy, macro_f1,
    f1_ci_low, f1_ci_high; the interval is NULL for evaluations stored before it was computed)."""
    return con.execute(
        """
        SELECT slice_kind, slice_value, n, accuracy, macro_f1, f1_ci_low, f1_ci_high FROM evaluation_slices
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


def fetch_test_predictions(con: duckdb.DuckDBPyConnection, model_id: str) -> pd.DataFrame:
    """A model's stored probabilities on the labeled test split, with the current labels.

    Returns:
        review_id, label, p_negative, p_neutral, p_positive (empty when the model scored no test review).

    Example:
        >>> fetch_test_predictions(con, "ft-20261125-101500-1a2b")["label"].value_counts()  # doctest: +SKIP
    """
    return con.execute(
        """
        SELECT p.review_id, l.label, p.p_negative, p.p_neutral, p.p_positive
        FROM predictions p JOIN splits s USING (review_id) JOIN current_labels l USING (review_id)
        WHERE p.model_id = ? AND s.split = 'test'
        ORDER BY p.review_id
        """,
        [model_id],
    ).df()


def fetch_test_labels(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """(review_id, label) of the labeled test split, by review id: what a test snapshot hash is computed over."""
    return con.execute(
        """
        SELECT s.review_id, l.label FROM splits s JOIN current_labels l USING (review_id)
        WHERE s.split = 'test' ORDER BY s.review_id
        """
    ).df()
