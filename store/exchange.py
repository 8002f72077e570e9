"""Parquet in and out of the store, for engines that compute somewhere else (a Ray cluster).

The store stays the single source of truth: reviews that a model still has to score leave it as
Parquet shards, and the prediction shards that come back are ingested in bulk. Both directions
stream Arrow record batches, so memory stays bounded and the store is never a cluster's bottleneck
(bench/RESULTS.md, "Scaling out"). Ingesting is idempotent: the predictions key
(model_id, review_id) means a shard ingested twice, or after a partial earlier ingest, adds nothing.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from store.aspects import _PENDING_SQL as _ASPECT_PENDING_SQL
from store.predictions import _ARGMAX_SQL, _PENDING_SQL, PREDICTION_COLUMNS, shard_params

# Rows per exported file: one Ray Data read task each, so several per worker on a big store.
EXPORT_ROWS_PER_FILE = 50_000
# Rows per Arrow batch pulled from DuckDB while exporting.
_EXPORT_BATCH_ROWS = 50_000
# What a model of each task still has to score (the same selection as local scoring).
_PENDING = {"sentiment": _PENDING_SQL, "aspects": _ASPECT_PENDING_SQL}


def export_pending_reviews(
    con: duckdb.DuckDBPyConnection,
    model_id: str,
    out_dir: str | Path,
    *,
    since: datetime | None = None,
    rows_per_file: int = EXPORT_ROWS_PER_FILE,
    task: str = "sentiment",
) -> dict:
    """Write the reviews ``model_id`` still has to score as Parquet files (review_id, text).

    Args:
        con: a connection (read-only is enough).
        model_id: the scoring model; what it lacks is chosen exactly as local scoring chooses it.
        task: "sentiment" (a review model: the predictions table) or "aspects" (an aspect model: the
            aspect_predictions table).
        out_dir: an empty or new directory; files are named ``part-00000.parquet`` ...
        since: also export reviews whose prediction is older than this (a forced rescore).
        rows_per_file: rows per file.

    Returns:
        {"files": [paths], "rows": n}.

    Example:
        >>> export_pending_reviews(con, "ft-1", "/tmp/in")["rows"]  # doctest: +SKIP
        120000
    """
    if rows_per_file < 1:
        raise ValueError("rows_per_file must be at least 1")
    if task not in _PENDING:
        raise ValueError(f"task must be one of {', '.join(_PENDING)}, got {task!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # No ORDER BY: the shards are scored in any order and ingested by review id, and a sort would hold every
    # pending review (texts included) in this process at once: 285 -> 586 MiB peak from 100k to 1M reviews.
    reader = con.execute(
        f"SELECT r.review_id, r.text {_PENDING[task]}",
        [model_id, since, since, *shard_params(None)],
    ).to_arrow_reader(_EXPORT_BATCH_ROWS)
    files: list[str] = []
    writer: pq.ParquetWriter | None = None
    in_file = rows = 0
    try:
        for batch in reader:
            while batch.num_rows:
                if writer is None:
                    path = out / f"part-{len(files):05d}.parquet"
                    writer = pq.ParquetWriter(path, batch.schema)
                    files.append(str(path))
                take = min(batch.num_rows, rows_per_file - in_file)
                writer.write_batch(batch.slice(0, take))
                batch, in_file, rows = batch.slice(take), in_file + take, rows + take
                if in_file == rows_per_file:
                    writer.close()
                    writer, in_file = None, 0
    finally:
        if writer is not None:
            writer.close()
    return {"files": files, "rows": rows}


def read_prediction_file(path: str | Path) -> pa.Table:
    """One prediction shard, checked: the four prediction columns, unique review ids, finite probabilities."""
    table = pq.read_table(path)
    missing = set(PREDICTION_COLUMNS) - set(table.column_names)
    if missing:
        raise ValueError(f"{path}: prediction file lacks columns {sorted(missing)}")
    return table.select(list(PREDICTION_COLUMNS))


def ingest_predictions(con: duckdb.DuckDBPyConnection, model_id: str, table: pa.Table) -> int:
    """Store one Arrow table of predictions of ``model_id`` (replacing older ones for the same reviews).

    Rows whose review is no longer in the store are skipped (it was deleted while the cluster scored),
    and rows with a non-finite probability are refused as a whole (nothing written).

    Args:
        con: a connection inside the caller's transaction (one table = one commit).
        model_id: the model that produced the probabilities.
        table: columns review_id, p_negative, p_neutral, p_positive; unique review ids.

    Returns:
        How many rows were written.
    """
    if table.num_rows == 0:
        return 0
    con.register("_pred_in", table)
    try:
        bad = con.execute(
            """
            SELECT count(*) - count(DISTINCT review_id),
                   count(*) FILTER (WHERE NOT (isfinite(p_negative) AND isfinite(p_neutral) AND isfinite(p_positive)))
            FROM _pred_in
            """
        ).fetchone()
        if bad[0]:
            raise ValueError(f"prediction batch for {model_id} repeats {bad[0]} review ids")
        if bad[1]:
            raise ValueError(f"prediction batch for {model_id} has {bad[1]} rows with non-finite probabilities")
        # DuckDB answers an INSERT with the number of rows it wrote.
        return con.execute(
            f"""
            INSERT OR REPLACE INTO predictions
                (model_id, review_id, p_negative, p_neutral, p_positive, label, scored_at)
            SELECT ?, p.review_id::VARCHAR, p.p_negative::REAL, p.p_neutral::REAL, p.p_positive::REAL,
                   {_ARGMAX_SQL}, ?
            FROM _pred_in p SEMI JOIN reviews r ON r.review_id = p.review_id
            """,
            [model_id, datetime.now()],
        ).fetchone()[0]
    finally:
        con.unregister("_pred_in")
