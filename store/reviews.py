"""Reviews: bulk upsert from Arrow/DataFrames and the reads the pipeline needs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from store.constants import DEFAULT_SPLIT_FRACTIONS
from store.labels import append_labels
from store.splits import assign_splits, insert_splits

# Columns an incoming batch may carry; review_id, text and source are required.
REVIEW_FIELDS: tuple[str, ...] = (
    "review_id",
    "restaurant_id",
    "restaurant_name",
    "neighborhood",
    "created_at",
    "stars",
    "text",
    "source",
)


@dataclass(frozen=True)
class UpsertCounts:
    inserted: int
    updated: int
    unchanged: int
    # Updated reviews whose text changed (not only stars, date or restaurant), sorted.
    text_changed: tuple[str, ...] = ()
    # Of those, the reviews whose aspect labels were retracted (they belonged to the old text), sorted.
    aspects_retracted: tuple[str, ...] = ()


def _as_relation_frame(batch: pa.Table | pd.DataFrame) -> pa.Table:
    table = batch if isinstance(batch, pa.Table) else pa.Table.from_pandas(batch, preserve_index=False)
    missing = {"review_id", "text", "source"} - set(table.column_names)
    if missing:
        raise ValueError(f"review batch lacks columns: {sorted(missing)}")
    for name in REVIEW_FIELDS:
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(table.num_rows, pa.string()))
    return table.select(list(REVIEW_FIELDS))


_INCOMING_COLUMNS = """
    review_id::VARCHAR AS review_id, restaurant_id::VARCHAR AS restaurant_id,
    restaurant_name::VARCHAR AS restaurant_name, neighborhood::VARCHAR AS neighborhood,
    created_at::TIMESTAMP AS created_at, stars::TINYINT AS stars, text::VARCHAR AS text,
    source::VARCHAR AS source, md5(text::VARCHAR) AS content_hash
"""
# A stored review (r) differs from an incoming one (i) with the same id.
_CHANGED = """
    r.content_hash <> i.content_hash OR r.stars IS DISTINCT FROM i.stars
    OR r.created_at IS DISTINCT FROM i.created_at
    OR r.restaurant_id IS DISTINCT FROM i.restaurant_id
    OR r.restaurant_name IS DISTINCT FROM i.restaurant_name
    OR r.neighborhood IS DISTINCT FROM i.neighborhood
"""


def upsert_reviews(con: duckdb.DuckDBPyConnection, batch: pa.Table | pd.DataFrame) -> UpsertCounts:
    """Insert new reviews and update known ids whose content changed, in one set-based pass.

    ``batch`` must hold unique review_ids (the importer rejects in-file duplicates first);
    a repeated id raises ValueError. Call inside a transaction.

    Returns:
        How many ids were new, changed, or already stored identically.

    Example:
        >>> upsert_reviews(con, pd.DataFrame({"review_id": ["r1"], "text": ["Great tacos"], "source": ["demo"]}))  # doctest: +SKIP
        UpsertCounts(inserted=1, updated=0, unchanged=0)
    """
    incoming = _as_relation_frame(batch)
    # reviews has no primary key (migration 50), so a repeated id must be refused here.
    if pc.count_distinct(incoming["review_id"]).as_py() + incoming["review_id"].null_count != incoming.num_rows:
        raise ValueError("review batch repeats a review_id")
    # Only rows whose id is already stored can be updated or unchanged, so only they are staged
    # in a temp table; new rows go from the batch straight into reviews (no extra copy).
    con.register("_incoming_raw", incoming)
    try:
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _incoming AS
            SELECT {_INCOMING_COLUMNS.replace("review_id::VARCHAR AS review_id", "n.review_id::VARCHAR AS review_id")}
            FROM (SELECT * EXCLUDE (review_id), review_id::VARCHAR AS review_id FROM _incoming_raw) n
            -- an inner join (ids are unique on both sides) lets DuckDB hash the batch, not the whole store
            JOIN (SELECT review_id FROM reviews) r ON r.review_id = n.review_id
            """
        )
        now = datetime.now()
        updated, matched = con.execute(
            f"""
            SELECT count(*) FILTER (WHERE {_CHANGED}), count(*)
            FROM _incoming i JOIN reviews r USING (review_id)
            """
        ).fetchone()
        text_changed: tuple[str, ...] = ()
        if updated:
            text_changed = tuple(r for (r,) in con.execute(
                """
                SELECT i.review_id FROM _incoming i JOIN reviews r USING (review_id)
                WHERE r.content_hash <> i.content_hash ORDER BY 1
                """
            ).fetchall())
            con.execute(
                f"""
                UPDATE reviews AS r SET
                    restaurant_id = i.restaurant_id, restaurant_name = i.restaurant_name,
                    neighborhood = i.neighborhood, created_at = i.created_at, stars = i.stars,
                    text = i.text, source = i.source, content_hash = i.content_hash, updated_at = ?
                FROM _incoming i
                WHERE r.review_id = i.review_id AND ({_CHANGED})
                """,
                [now],
            )
        inserted = con.execute(
            f"""
            INSERT INTO reviews
            WITH fresh AS (SELECT n.* FROM _incoming_raw n ANTI JOIN _incoming m ON m.review_id = n.review_id::VARCHAR),
            i AS (SELECT {_INCOMING_COLUMNS} FROM fresh)
            SELECT i.review_id, i.restaurant_id, i.restaurant_name, i.neighborhood, i.created_at,
                   i.stars, i.text, i.source, i.content_hash, ?::TIMESTAMP, NULL
            FROM i
            """,
            [now],
        ).fetchone()[0]
    finally:
        con.unregister("_incoming_raw")
    con.execute("DROP TABLE _incoming")
    # Aspect labels say what a text says of the food or the service: a new text voids them (review labels
    # are the importer's to retract, as it also flags those reviews).
    from store.aspects import retract_aspect_labels

    aspects_retracted = tuple(retract_aspect_labels(con, text_changed, reason="text_changed", by="import"))
    return UpsertCounts(inserted=inserted, updated=updated, unchanged=matched - updated, text_changed=text_changed,
                        aspects_retracted=aspects_retracted)


def add_reviews(
    con: duckdb.DuckDBPyConnection,
    reviews: pa.Table | pd.DataFrame,
    labels: pa.Table | pd.DataFrame | None = None,
    *,
    split_fractions: tuple[float, float, float] = DEFAULT_SPLIT_FRACTIONS,
    splits: pd.DataFrame | None = None,
) -> dict:
    """Write reviews, their labels, and a frozen split for every review still without one.

    The one write sequence behind an import, the demo data and test stores: upsert the
    reviews, append the labels (after the reviews, so a label never names an unknown
    review), then assign splits stratified by the labels just written. Call inside a
    transaction, so the three land together or not at all.

    Args:
        con: connection in the caller's transaction.
        reviews: columns of ``REVIEW_FIELDS`` (review_id, text and source required).
        labels: review_id, label, source (optional labeler, round); None or empty for none.
        split_fractions: (train, val, test) proportions for the newly assigned reviews.
        splits: review_id, split for reviews whose split is given (a benchmark's own folds); they are
            written first, the fractions then apply to any review still without one.

    Returns:
        {"inserted", "updated", "unchanged", "labels_added", "splits" (split -> reviews assigned by the
        fractions now), "splits_given" (reviews whose given split was written)}.

    Example:
        >>> add_reviews(con, pd.DataFrame({"review_id": ["r1"], "text": ["Great tacos"], "source": ["demo"]}),
        ...             pd.DataFrame({"review_id": ["r1"], "label": ["positive"], "source": ["stars"]}))  # doctest: +SKIP
        {'inserted': 1, 'updated': 0, 'unchanged': 0, 'labels_added': 1, 'splits': {'train': 1, 'val': 0, 'test': 0}, 'splits_given': 0}
    """
    counts = upsert_reviews(con, reviews)
    labels_added = append_labels(con, labels) if labels is not None and len(labels) else 0
    given = insert_splits(con, splits) if splits is not None else 0
    return {
        "inserted": counts.inserted,
        "updated": counts.updated,
        "unchanged": counts.unchanged,
        "labels_added": labels_added,
        "splits": assign_splits(con, fractions=split_fractions),
        "splits_given": given,
    }


def count_reviews(con: duckdb.DuckDBPyConnection) -> int:
    return con.execute("SELECT count(*) FROM reviews").fetchone()[0]


def fetch_reviews(con: duckdb.DuckDBPyConnection, review_ids: list[str]) -> pd.DataFrame:
    """The stored rows for ``review_ids`` (any order)."""
    return con.execute(
        "SELECT * FROM reviews WHERE review_id IN (SELECT unnest(?::VARCHAR[]))", [list(review_ids)]
    ).df()


def fetch_labeled_split(con: duckdb.DuckDBPyConnection, split: str) -> pd.DataFrame:
    """review_id, text, stars, label (current) for every labeled review in ``split``, ordered by id."""
    return con.execute(
        """
        SELECT r.review_id, r.text, r.stars, r.restaurant_name, r.created_at, l.label, l.source AS label_source
        FROM reviews r JOIN splits s USING (review_id) JOIN current_labels l USING (review_id)
        WHERE s.split = ?
        ORDER BY r.review_id
        """,
        [split],
    ).df()
