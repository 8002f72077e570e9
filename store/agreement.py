"""Two models side by side: which models have stored predictions, how often two agree, and where they disagree."""

from __future__ import annotations


import duckdb
import pandas as pd

from store.constants import (
    LABELS,
    SPLITS,
)
from store.labels import fetch_current_labels



def list_scored_models(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Models with stored predictions: model_id, name, kind, n, last_scored_at (most predictions first).

    Example:
        >>> list_scored_models(con)["model_id"].tolist()  # doctest: +SKIP
        ['ft-20261125-101500-1a2b', 'baseline-vader']
    """
    return con.execute(
        """
        SELECT p.model_id, m.name, m.kind, p.n, p.last_scored_at
        FROM (SELECT model_id, count(*) AS n, max(scored_at) AS last_scored_at FROM predictions GROUP BY 1) p
        LEFT JOIN models m USING (model_id)
        ORDER BY p.n DESC, p.model_id
        """
    ).df()


def _pair_join(split: str | None) -> tuple[str, list]:
    # Predictions of model a next to those of model b, on one split (fast) or every review both scored.
    if split is None:
        return "predictions a JOIN predictions b ON a.review_id = b.review_id WHERE TRUE", []
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    return (
        "splits s JOIN predictions a ON a.review_id = s.review_id JOIN predictions b ON b.review_id = s.review_id"
        " WHERE s.split = ?",
        [split],
    )


def fetch_prediction_agreement(
    con: duckdb.DuckDBPyConnection, model_a: str, model_b: str, *, split: str | None = "test"
) -> pd.DataFrame:
    """Cross-tab of two models' predicted labels on the reviews both scored (3x3, rows = model_a).

    Args:
        split: compare on this split only (default the test split: a tenth of the join's cost),
            or None for every review both models scored.

    Example:
        >>> fetch_prediction_agreement(con, "m1", "m2").loc["negative", "positive"]  # doctest: +SKIP
        12
    """
    pair, pair_params = _pair_join(split)
    rows = con.execute(
        f"SELECT a.label, b.label, count(*) FROM {pair} AND a.model_id = ? AND b.model_id = ? GROUP BY 1, 2",
        [*pair_params, model_a, model_b],
    ).fetchall()
    table = pd.DataFrame(0, index=list(LABELS), columns=list(LABELS), dtype="int64")
    for label_a, label_b, n in rows:
        table.loc[label_a, label_b] = n
    table.index.name, table.columns.name = model_a, model_b
    return table


def fetch_disagreements(
    con: duckdb.DuckDBPyConnection, model_a: str, model_b: str, *, split: str | None = "test", limit: int = 100
) -> pd.DataFrame:
    """Reviews where two models predict different labels, the most confident disagreements first.

    Args:
        split: as in :func:`fetch_prediction_agreement`.
        limit: at most this many reviews.

    Returns:
        review_id, text, stars, current_label, label_a, confidence_a, label_b, confidence_b.

    Example:
        >>> fetch_disagreements(con, "m1", "m2", limit=5)[["label_a", "label_b"]]  # doctest: +SKIP
    """
    pair, pair_params = _pair_join(split)
    frame = con.execute(
        f"""
        WITH d AS (
            SELECT a.review_id, a.label AS label_a, greatest(a.p_negative, a.p_neutral, a.p_positive) AS confidence_a,
                   b.label AS label_b, greatest(b.p_negative, b.p_neutral, b.p_positive) AS confidence_b
            FROM {pair} AND a.model_id = ? AND b.model_id = ? AND a.label <> b.label
            ORDER BY least(confidence_a, confidence_b) DESC, a.review_id
            LIMIT ?
        )
        SELECT d.review_id, r.text, r.stars, NULL::VARCHAR AS current_label,
               d.label_a, d.confidence_a, d.label_b, d.confidence_b
        FROM d JOIN reviews r USING (review_id)
        ORDER BY least(d.confidence_a, d.confidence_b) DESC, d.review_id
        """,
        [*pair_params, model_a, model_b, int(limit)],
    ).df()
    current = fetch_current_labels(con, frame["review_id"].tolist())
    frame["current_label"] = frame["review_id"].map(lambda r: current.get(r, (None, None))[0])
    return frame
