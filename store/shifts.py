"""Counts per group and period for shift detection and the product KPIs (the tests live in pipeline.monitor).

One scan of reviews joined with a sentiment source yields, for every restaurant and every
neighbourhood, the reviews, negative reviews and star sum of each period. Only these small
counts leave DuckDB; the statistics are computed in :mod:`pipeline.monitor.shifts`.
"""

from __future__ import annotations

from datetime import date

import duckdb
import pandas as pd

from store.constants import DATED_REVIEWS_SQL
from store.trends import GROUPINGS, ReviewFilter, SentimentSource, _check_grain, _filter_clause, _sentiment_relation


def fetch_group_period_counts(
    con: duckdb.DuckDBPyConnection,
    source: SentimentSource,
    flt: ReviewFilter = ReviewFilter(),
    *,
    grain: str = "week",
    groupings: tuple[str, ...] = ("restaurant", "neighborhood"),
) -> pd.DataFrame:
    """Reviews, negative reviews and summed stars per (grouping, group, period).

    Args:
        source: where sentiment comes from.
        flt: which reviews count.
        grain: "day", "week" or "month".
        groupings: any of "restaurant", "neighborhood".

    Returns:
        Columns by, grp, period (Timestamp, first day of the period), n, negative, stars_sum,
        sorted by by, grp, period. Periods without reviews are absent.

    Example:
        >>> fetch_group_period_counts(con, SentimentSource("labels")).head(1)  # doctest: +SKIP
    """
    grain = _check_grain(grain)
    unknown = set(groupings) - set(GROUPINGS)
    if unknown or not groupings:
        raise ValueError(f"cannot group by {sorted(unknown) or groupings}; expected some of {', '.join(GROUPINGS)}")
    relation, rel_params = _sentiment_relation(source)
    where, where_params = _filter_clause(flt)
    selects = " UNION ALL ".join(
        f"SELECT '{by}' AS \"by\", {GROUPINGS[by]} AS grp, period, label, stars FROM base r" for by in groupings
    )
    sql = f"""
        WITH base AS (
            SELECT date_trunc('{grain}', r.created_at)::TIMESTAMP AS period, r.restaurant_name, r.restaurant_id,
                   r.neighborhood, r.stars, s.label
            FROM {DATED_REVIEWS_SQL} r JOIN {relation} s USING (review_id)
            WHERE r.created_at IS NOT NULL AND {where}
        )
        SELECT "by", grp, period, count(*) AS n, count(*) FILTER (WHERE label = 'negative') AS negative,
               coalesce(sum(stars), 0) AS stars_sum, count(stars) AS n_stars
        FROM ({selects})
        GROUP BY ALL ORDER BY "by", grp, period
    """
    return con.execute(sql, [*rel_params, *where_params]).df()


def fetch_period_totals(
    con: duckdb.DuckDBPyConnection, source: SentimentSource, *, grain: str = "week"
) -> pd.DataFrame:
    """Reviews, negative reviews and average stars of the whole store per period.

    Returns:
        Columns period (Timestamp), n, negative, avg_stars, sorted by period.
    """
    grain = _check_grain(grain)
    relation, rel_params = _sentiment_relation(source)
    sql = f"""
        SELECT date_trunc('{grain}', r.created_at)::TIMESTAMP AS period, count(*) AS n,
               count(*) FILTER (WHERE s.label = 'negative') AS negative, avg(r.stars) AS avg_stars
        FROM {DATED_REVIEWS_SQL} r JOIN {relation} s USING (review_id)
        WHERE r.created_at IS NOT NULL
        GROUP BY 1 ORDER BY 1
    """
    return con.execute(sql, rel_params).df()


def newest_review_date(con: duckdb.DuckDBPyConnection) -> date | None:
    """The day of the newest dated review (None for an empty store)."""
    newest = con.execute(f"SELECT max(created_at) FROM {DATED_REVIEWS_SQL}").fetchone()[0]
    return newest.date() if newest is not None else None
