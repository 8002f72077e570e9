"""Predictions: one probability per class for each (model, review), written chunk by chunk.

The primary key (model_id, review_id) makes scoring idempotent and resumable: a chunk is
written in one short transaction, so after a kill every review is either fully scored or
not at all, and the next run picks up what is still missing.

A review needs (re)scoring for a model when it has no prediction from that model, or its
text changed after the prediction was made (``reviews.updated_at > scored_at``), or, for a
forced rescore, its prediction is older than the rescore's start.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

PREDICTION_COLUMNS: tuple[str, ...] = ("review_id", "p_negative", "p_neutral", "p_positive")

# Same tie rule as numpy.argmax over (negative, neutral, positive): the first maximum wins.
_ARGMAX_SQL = """
    CASE WHEN p_negative >= p_neutral AND p_negative >= p_positive THEN 'negative'
         WHEN p_neutral >= p_positive THEN 'neutral'
         ELSE 'positive' END
"""

# Which reviews need scoring; ? placeholders: model_id, since, since, shard_n, shard_n, shard_i.
_PENDING_SQL = """
    FROM reviews r
    LEFT JOIN predictions p ON p.model_id = ? AND p.review_id = r.review_id
    WHERE (p.review_id IS NULL
           OR (r.updated_at IS NOT NULL AND r.updated_at > p.scored_at)
           OR (?::TIMESTAMP IS NOT NULL AND p.scored_at < ?::TIMESTAMP))
      AND (?::BIGINT IS NULL OR ('0x' || left(md5(r.review_id), 15))::BIGINT % ?::BIGINT = ?::BIGINT)
"""


def shard_of(review_id: str, count: int) -> int:
    """The shard of a review among ``count``: the first 60 bits of md5(review_id) modulo ``count``.

    The same rule as the SQL filter, so any machine (or tool) can tell which shard owns an id.
    """
    return int(hashlib.md5(review_id.encode("utf-8")).hexdigest()[:15], 16) % count


def shard_params(shard: tuple[int, int] | None) -> list:
    """Bind values for the shard filter (see :func:`shard_of`), or no filter."""
    if shard is None:
        return [None, None, None]
    index, count = shard
    return [count, count, index]


def write_predictions(con: duckdb.DuckDBPyConnection, model_id: str, frame: pd.DataFrame | pa.Table) -> int:
    """Store one chunk of predictions of ``model_id``, replacing older ones for the same reviews.

    The chunk is scanned by DuckDB in bulk (an Arrow table is read without a copy), so a write
    is one set-based statement whatever its size.

    Args:
        con: a connection inside the caller's transaction.
        model_id: the model that produced the probabilities.
        frame: a DataFrame or Arrow table with columns review_id, p_negative, p_neutral,
            p_positive (unique review ids).

    Returns:
        How many rows were written.

    Example:
        >>> write_predictions(con, "m1", pd.DataFrame({"review_id": ["r1"], "p_negative": [0.1],
        ...                   "p_neutral": [0.2], "p_positive": [0.7]}))  # doctest: +SKIP
        1
    """
    columns = frame.column_names if isinstance(frame, pa.Table) else list(frame.columns)
    missing = set(PREDICTION_COLUMNS) - set(columns)
    if missing:
        raise ValueError(f"prediction frame lacks columns: {sorted(missing)}")
    if len(frame) == 0:
        return 0
    if isinstance(frame, pa.Table):
        table = frame.select(list(PREDICTION_COLUMNS))
        duplicated = pc.count_distinct(table["review_id"]).as_py() != len(table)
    else:
        table = frame[list(PREDICTION_COLUMNS)]
        duplicated = bool(table["review_id"].duplicated().any())
    if duplicated:
        raise ValueError("prediction frame has duplicate review ids")
    con.register("_pred_chunk", table)
    try:
        con.execute(
            f"""
            INSERT OR REPLACE INTO predictions
                (model_id, review_id, p_negative, p_neutral, p_positive, label, scored_at)
            SELECT ?, review_id::VARCHAR, p_negative::REAL, p_neutral::REAL, p_positive::REAL,
                   {_ARGMAX_SQL}, ?
            FROM _pred_chunk
            """,
            [model_id, datetime.now()],
        )
    finally:
        con.unregister("_pred_chunk")
    return len(table)


def fetch_pending_chunk(
    con: duckdb.DuckDBPyConnection,
    model_id: str,
    *,
    after: str | None = None,
    limit: int = 1024,
    shard: tuple[int, int] | None = None,
    since: datetime | None = None,
    as_arrow: bool = False,
) -> pd.DataFrame | pa.Table:
    """The next ``limit`` reviews (review_id, text) that ``model_id`` still has to score.

    Keyset-paginated by review_id (``after`` = last id of the previous chunk), so a run
    walks the table once in bounded memory.

    Args:
        model_id: the scoring model.
        after: only ids greater than this.
        limit: chunk size.
        shard: (i, N) keeps the reviews with ``shard_of(review_id, N) == i``.
        since: also rescore predictions made before this moment (forced rescore).
        as_arrow: return an Arrow table (no Python object per row) instead of a DataFrame.

    Example:
        >>> fetch_pending_chunk(con, "m1", limit=2).columns.tolist()  # doctest: +SKIP
        ['review_id', 'text']
    """
    result = con.execute(
        f"""
        SELECT r.review_id, r.text {_PENDING_SQL}
          AND (?::VARCHAR IS NULL OR r.review_id > ?::VARCHAR)
        ORDER BY r.review_id
        LIMIT ?
        """,
        [model_id, since, since, *shard_params(shard), after, after, limit],
    )
    if not as_arrow:
        return result.df()
    # to_arrow_table is DuckDB 1.5's name for fetch_arrow_table
    return result.to_arrow_table() if hasattr(result, "to_arrow_table") else result.fetch_arrow_table()


def count_pending(
    con: duckdb.DuckDBPyConnection,
    model_id: str,
    *,
    shard: tuple[int, int] | None = None,
    since: datetime | None = None,
) -> int:
    """How many reviews :func:`fetch_pending_chunk` would walk through in all."""
    return con.execute(
        f"SELECT count(*) {_PENDING_SQL}", [model_id, since, since, *shard_params(shard)]
    ).fetchone()[0]


def count_predictions(con: duckdb.DuckDBPyConnection, model_id: str) -> int:
    """Number of reviews scored by ``model_id``."""
    return con.execute("SELECT count(*) FROM predictions WHERE model_id = ?", [model_id]).fetchone()[0]


def last_scored_at(con: duckdb.DuckDBPyConnection, model_id: str | None = None) -> datetime | None:
    """When ``model_id`` (or any model) last wrote a prediction; None if never."""
    return con.execute(
        "SELECT max(scored_at) FROM predictions WHERE ? IS NULL OR model_id = ?", [model_id, model_id]
    ).fetchone()[0]


def fetch_predictions(
    con: duckdb.DuckDBPyConnection, model_id: str, review_ids: list[str] | None = None
) -> pd.DataFrame:
    """review_id, p_negative, p_neutral, p_positive, label, scored_at of one model (all or some reviews)."""
    return con.execute(
        """
        SELECT review_id, p_negative, p_neutral, p_positive, label, scored_at FROM predictions
        WHERE model_id = ? AND (?::VARCHAR[] IS NULL OR review_id IN (SELECT unnest(?::VARCHAR[])))
        ORDER BY review_id
        """,
        [model_id, review_ids, review_ids],
    ).df()


def scored_model_ids(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every model id that has stored predictions."""
    return [m for (m,) in con.execute("SELECT DISTINCT model_id FROM predictions ORDER BY 1").fetchall()]
