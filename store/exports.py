"""Export SQL: reviews with their current labels and a model's predictions, for the whole store or a filter."""

from __future__ import annotations

import duckdb
import pyarrow as pa

from store.trends import ReviewFilter, _filter_clause

# Columns of an export, in order.
EXPORT_COLUMNS: tuple[str, ...] = (
    "review_id", "text", "stars", "created_at", "restaurant_id", "restaurant_name", "neighborhood", "split",
    "label", "label_source", "labeler", "predicted_label", "p_negative", "p_neutral", "p_positive", "predicted_by",
)


def _export_sql(flt: ReviewFilter, labels: tuple[str, ...]) -> tuple[str, list]:
    where, params = _filter_clause(flt)
    if labels:
        where += " AND l.label IN (SELECT unnest(?::VARCHAR[]))"
        params.append(list(labels))
    sql = f"""
        SELECT r.review_id, r.text, r.stars, r.created_at, r.restaurant_id, r.restaurant_name, r.neighborhood,
               s.split, l.label, l.source AS label_source, l.labeler,
               p.label AS predicted_label, p.p_negative, p.p_neutral, p.p_positive,
               CASE WHEN p.label IS NULL THEN NULL ELSE ? END AS predicted_by
        FROM reviews r
        LEFT JOIN splits s USING (review_id)
        LEFT JOIN current_labels l USING (review_id)
        LEFT JOIN predictions p ON p.review_id = r.review_id AND p.model_id = ?
        WHERE {where}
        ORDER BY r.review_id
    """
    return sql, params


def count_export_rows(
    con: duckdb.DuckDBPyConnection, *, flt: ReviewFilter = ReviewFilter(), labels: tuple[str, ...] = ()
) -> int:
    """How many reviews an export with this filter would hold."""
    where, params = _filter_clause(flt)
    if labels:
        where += " AND l.label IN (SELECT unnest(?::VARCHAR[]))"
        params.append(list(labels))
    return con.execute(
        f"SELECT count(*) FROM reviews r LEFT JOIN current_labels l USING (review_id) WHERE {where}", params
    ).fetchone()[0]


def fetch_export(
    con: duckdb.DuckDBPyConnection,
    *,
    model_id: str | None,
    flt: ReviewFilter = ReviewFilter(),
    labels: tuple[str, ...] = (),
) -> pa.Table:
    """Reviews (filtered by date, restaurant, neighborhood and current label) with their current label and
    ``model_id``'s prediction (NULL where it has none, or when ``model_id`` is None), as Arrow.

    Returns:
        A table with ``EXPORT_COLUMNS``, ordered by review id.

    Example:
        >>> fetch_export(con, model_id="ft-1", labels=("negative",)).num_rows  # doctest: +SKIP
        412
    """
    sql, params = _export_sql(flt, labels)
    return con.execute(sql, [model_id, model_id, *params]).to_arrow_table()
