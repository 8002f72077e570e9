"""Sentiment over time: review filters, where sentiment comes from, trend summaries with shift marks, selections.

Everything is aggregated inside DuckDB and only small results leave it (a few thousand
rows at most), so pages stay fast on a store of a million reviews. A "sentiment source"
says where a review's sentiment comes from: one model's stored predictions, or the current
labels when no such predictions exist. Filters are composed from fixed SQL fragments;
every value is a bound parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

import duckdb
import pandas as pd

from store.constants import (
    DATED_REVIEWS_SQL,
    LABELS,
    NEW_RESTAURANT_AFTER_DAYS,
    NEW_RESTAURANT_GAP_FACTOR,
    SHIFT_BASELINE_PERIODS,
    SHIFT_MIN_BASELINE_REVIEWS,
    SHIFT_MIN_DELTA,
    SHIFT_MIN_REVIEWS,
    SHIFT_MIN_Z,
)



GRAINS: tuple[str, ...] = ("day", "week", "month")
# How a review's restaurant and neighborhood are named in filters and groupings; imported
# reviews may carry only a restaurant id, and a missing value is its own group.
GROUPINGS: dict[str, str] = {
    "restaurant": "coalesce(r.restaurant_name, r.restaurant_id, '(unknown)')",
    "neighborhood": "coalesce(r.neighborhood, '(unknown)')",
}



@dataclass(frozen=True)
class ReviewFilter:
    """Which reviews an aggregation covers; empty fields do not filter.

    ``end`` is inclusive (the whole day counts).
    """

    start: date | None = None
    end: date | None = None
    restaurants: tuple[str, ...] = ()
    neighborhoods: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.start and self.end and self.start > self.end:
            raise ValueError(f"filter start {self.start} is after its end {self.end}")


@dataclass(frozen=True)
class SentimentSource:
    """Where a review's sentiment comes from: ``kind`` "predictions" (of ``model_id``) or "labels".

    ``snapshot`` marks a labels source that reads this connection's snapshot of the current
    labels (see :func:`snapshot_current_labels`) instead of evaluating the view again.
    """

    kind: str
    model_id: str | None = None
    snapshot: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ("predictions", "labels"):
            raise ValueError(f"unknown sentiment source {self.kind!r}")
        if self.kind == "predictions" and not self.model_id:
            raise ValueError("a predictions source needs a model_id")
        if self.snapshot and self.kind != "labels":
            raise ValueError("only a labels source reads a snapshot")


_SNAPSHOT_TABLE = "_current_label_snapshot"


def _sentiment_relation(source: SentimentSource) -> tuple[str, list]:
    if source.kind == "predictions":
        return (
            "(SELECT review_id, label, p_negative, p_neutral, p_positive FROM predictions WHERE model_id = ?)",
            [source.model_id],
        )
    table = _SNAPSHOT_TABLE if source.snapshot else "current_labels"
    return (
        "(SELECT review_id, label, NULL::REAL AS p_negative, NULL::REAL AS p_neutral, NULL::REAL AS p_positive"
        f" FROM {table})",
        [],
    )


def snapshot_current_labels(con: duckdb.DuckDBPyConnection) -> SentimentSource:
    """Evaluate the current-labels view once into a temporary table of this connection.

    The view ranks every label row of every review (about 0.3 s at a million labels); a page
    that aggregates labels several times on one connection pays that once. The snapshot lives
    as long as the connection, and the connection reads one consistent state anyway.

    Returns:
        A labels source that reads the snapshot (valid on ``con`` only).

    Example:
        >>> source = snapshot_current_labels(con)  # doctest: +SKIP
        >>> fetch_trend_summary(con, source).trend.head(1)  # doctest: +SKIP
    """
    con.execute(f"CREATE OR REPLACE TEMP TABLE {_SNAPSHOT_TABLE} AS SELECT review_id, label FROM current_labels")
    return SentimentSource("labels", snapshot=True)


def _filter_clause(flt: ReviewFilter) -> tuple[str, list]:
    clauses, params = [], []
    if flt.start:
        clauses.append("r.created_at >= ?")
        params.append(datetime.combine(flt.start, time()))
    if flt.end:
        clauses.append("r.created_at < ?")
        params.append(datetime.combine(flt.end + timedelta(days=1), time()))
    if flt.restaurants:
        clauses.append(f"{GROUPINGS['restaurant']} IN (SELECT unnest(?::VARCHAR[]))")
        params.append(list(flt.restaurants))
    if flt.neighborhoods:
        clauses.append(f"{GROUPINGS['neighborhood']} IN (SELECT unnest(?::VARCHAR[]))")
        params.append(list(flt.neighborhoods))
    return (" AND ".join(clauses) or "TRUE"), params


def _check_grain(grain: str) -> str:
    if grain not in GRAINS:
        raise ValueError(f"unknown time grain {grain!r}; expected one of {', '.join(GRAINS)}")
    return grain


def _group_expr(by: str) -> str:
    if by not in GROUPINGS:
        raise ValueError(f"cannot group by {by!r}; expected one of {', '.join(GROUPINGS)}")
    return GROUPINGS[by]


def resolve_sentiment_source(con: duckdb.DuckDBPyConnection, model_id: str | None) -> SentimentSource:
    """Predictions of ``model_id`` when it has any stored, else the current labels.

    Example:
        >>> resolve_sentiment_source(con, None)  # doctest: +SKIP
        SentimentSource(kind='labels', model_id=None)
    """
    if model_id:
        has = con.execute("SELECT 1 FROM predictions WHERE model_id = ? LIMIT 1", [model_id]).fetchone()
        if has:
            return SentimentSource("predictions", model_id)
    return SentimentSource("labels")


def fetch_filter_options(con: duckdb.DuckDBPyConnection) -> dict:
    """Choices for the trend filters: restaurants, neighborhoods, and the date range of all reviews.

    Returns:
        ``{"restaurants": [...], "neighborhoods": [...], "first": date|None, "last": date|None}``,
        names sorted by review count, busiest first.
    """
    rows = con.execute(
        f"""
        SELECT {GROUPINGS['restaurant']}, {GROUPINGS['neighborhood']}, count(*), min(r.created_at), max(r.created_at)
        FROM {DATED_REVIEWS_SQL} r GROUP BY ALL
        """
    ).fetchall()
    by_restaurant: dict[str, int] = {}
    by_neighborhood: dict[str, int] = {}
    firsts, lasts = [], []
    for restaurant, neighborhood, n, first, last in rows:
        by_restaurant[restaurant] = by_restaurant.get(restaurant, 0) + n
        by_neighborhood[neighborhood] = by_neighborhood.get(neighborhood, 0) + n
        if first is not None:
            firsts.append(first)
            lasts.append(last)
    return {
        "restaurants": sorted(by_restaurant, key=lambda k: (-by_restaurant[k], k)),
        "neighborhoods": sorted(by_neighborhood, key=lambda k: (-by_neighborhood[k], k)),
        "first": min(firsts).date() if firsts else None,
        "last": max(lasts).date() if lasts else None,
    }


@dataclass(frozen=True)
class TrendSummary:
    """What the trends page shows for one selection, computed in one pass over the reviews.

    ``trend``: one row per period for the whole selection. ``group_trend``: one row per
    (group, period). Both carry n, negative, neutral, positive, negative_share,
    neutral_share, positive_share, avg_stars, baseline_negative_share, shift_z and shift.
    ``breakdown``: one row per group with the counts, shares and avg_stars over the whole
    selection, first_review_at (over the whole store) and is_new (its first review came at least
    ``NEW_RESTAURANT_AFTER_DAYS`` after the store's first, and at least
    ``NEW_RESTAURANT_GAP_FACTOR`` times its own mean gap between reviews).
    """

    trend: pd.DataFrame
    group_trend: pd.DataFrame
    breakdown: pd.DataFrame

    def shifts(self) -> pd.DataFrame:
        """Every marked period of the whole selection (grp "(whole selection)") and of each group, largest |z| first."""
        overall = self.trend[self.trend["shift"].notna()].assign(grp="(whole selection)")
        groups = self.group_trend[self.group_trend["shift"].notna()]
        marked = pd.concat([overall, groups], ignore_index=True)
        return marked.reindex(marked["shift_z"].abs().sort_values(ascending=False).index).reset_index(drop=True)

    def class_counts(self, *, period: date | None = None, group: str | None = None) -> tuple[int, int]:
        """(negative, positive) reviews of one period and/or group of this summary (all when neither is given)."""
        if period is not None and group is not None:
            frame = self.group_trend[(self.group_trend["period"] == pd.Timestamp(period)) & (self.group_trend["grp"] == group)]
        elif period is not None:
            frame = self.trend[self.trend["period"] == pd.Timestamp(period)]
        elif group is not None:
            frame = self.breakdown[self.breakdown["grp"] == group]
        else:
            frame = self.trend
        return int(frame["negative"].sum()), int(frame["positive"].sum())


_COUNT_COLUMNS = ["n", "negative", "neutral", "positive", "negative_share", "neutral_share", "positive_share", "avg_stars"]
_SHIFT_COLUMNS = ["baseline_negative_share", "shift_z", "shift"]


def fetch_trend_summary(
    con: duckdb.DuckDBPyConnection,
    source: SentimentSource,
    flt: ReviewFilter = ReviewFilter(),
    *,
    grain: str = "week",
    by: str = "restaurant",
) -> TrendSummary:
    """Label counts and shares over time, per group and per group over time, with sudden shifts marked.

    One join of reviews and sentiment feeds three groupings (GROUPING SETS), so the page's
    whole summary costs one scan. A period is marked ``shift = "spike"`` (negative share
    jumped) or ``"drop"`` (it fell) when its negative share differs from the pooled share of
    the previous ``SHIFT_BASELINE_PERIODS`` periods of the same series by at least
    ``SHIFT_MIN_DELTA`` and ``SHIFT_MIN_Z`` standard errors (two-proportion test), with at least
    ``SHIFT_MIN_REVIEWS`` reviews in the period and ``SHIFT_MIN_BASELINE_REVIEWS`` in the baseline.

    Args:
        source: where sentiment comes from (see :func:`resolve_sentiment_source`).
        flt: which reviews count.
        grain: "day", "week" or "month".
        by: "restaurant" or "neighborhood".

    Returns:
        A :class:`TrendSummary`; periods are dates (the first day of the period).

    Example:
        >>> s = fetch_trend_summary(con, SentimentSource("labels"), grain="month")  # doctest: +SKIP
        >>> s.trend[["period", "n", "negative_share"]].head(1)  # doctest: +SKIP
    """
    grain = _check_grain(grain)
    group = _group_expr(by)
    relation, rel_params = _sentiment_relation(source)
    where, where_params = _filter_clause(flt)
    # GROUPING(period, grp): 0 = per group and period, 1 = per period, 2 = per group.
    sql = f"""
        WITH base AS (
            SELECT date_trunc('{grain}', r.created_at)::DATE AS period, {group} AS grp, r.stars, s.label
            FROM {DATED_REVIEWS_SQL} r JOIN {relation} s USING (review_id)
            WHERE r.created_at IS NOT NULL AND {where}
        ), agg AS (
            SELECT period, grp, GROUPING(period, grp) AS level, count(*) AS n,
                   count(*) FILTER (WHERE label = 'negative') AS negative,
                   count(*) FILTER (WHERE label = 'neutral') AS neutral,
                   count(*) FILTER (WHERE label = 'positive') AS positive,
                   avg(stars) AS avg_stars
            FROM base
            GROUP BY GROUPING SETS ((period), (period, grp), (grp))
        ), win AS (
            SELECT *, sum(negative) OVER w AS base_negative, sum(n) OVER w AS base_n
            FROM agg
            WINDOW w AS (PARTITION BY level, grp ORDER BY period
                         ROWS BETWEEN {int(SHIFT_BASELINE_PERIODS)} PRECEDING AND 1 PRECEDING)
        ), scored AS (
            SELECT *, negative / n AS negative_share,
                   CASE WHEN level < 2 THEN base_negative / base_n END AS baseline_negative_share,
                   -- two-proportion z (the baseline is a sample too); the variance floor keeps a spotless
                   -- baseline (share 0) from making a single negative review a shift
                   CASE WHEN level < 2 AND n >= ? AND base_n >= ? THEN
                        (negative / n - base_negative / base_n)
                        / sqrt(greatest(base_negative / base_n * (1 - base_negative / base_n), 0.01) * (1 / n + 1 / base_n))
                   END AS shift_z
            FROM win
        )
        SELECT level, period, grp, n, negative, neutral, positive, negative_share,
               neutral / n AS neutral_share, positive / n AS positive_share, avg_stars,
               baseline_negative_share, shift_z,
               CASE WHEN shift_z >= ? AND negative_share - baseline_negative_share >= ? THEN 'spike'
                    WHEN shift_z <= -? AND baseline_negative_share - negative_share >= ? THEN 'drop'
               END AS shift
        FROM scored
        ORDER BY level, grp, period
    """
    params = [*rel_params, *where_params, SHIFT_MIN_REVIEWS, SHIFT_MIN_BASELINE_REVIEWS]
    params += [SHIFT_MIN_Z, SHIFT_MIN_DELTA, SHIFT_MIN_Z, SHIFT_MIN_DELTA]
    frame = con.execute(sql, params).df()
    trend = frame[frame["level"] == 1][["period", *_COUNT_COLUMNS, *_SHIFT_COLUMNS]]
    group_trend = frame[frame["level"] == 0][["period", "grp", *_COUNT_COLUMNS, *_SHIFT_COLUMNS]]
    breakdown = frame[frame["level"] == 2][["grp", *_COUNT_COLUMNS]]
    # "New" = the first review came well after the store's first, and later than this group's own
    # review rate explains (a quiet restaurant's first review can come late by chance).
    firsts = con.execute(
        f"""
        WITH g AS (
            SELECT {group} AS grp, min(r.created_at) AS first_review_at, max(r.created_at) AS last_review_at,
                   count(*) AS n
            FROM {DATED_REVIEWS_SQL} r WHERE r.created_at IS NOT NULL GROUP BY 1
        )
        SELECT grp, first_review_at,
               epoch(first_review_at - min(first_review_at) OVER ()) / 86400.0
                   >= greatest(?, ? * epoch(last_review_at - first_review_at) / 86400.0 / n) AS is_new
        FROM g
        """,
        [NEW_RESTAURANT_AFTER_DAYS, NEW_RESTAURANT_GAP_FACTOR],
    ).df()
    breakdown = breakdown.merge(firsts, on="grp", how="left").sort_values(["n", "grp"], ascending=[False, True])
    return TrendSummary(
        trend=trend.reset_index(drop=True),
        group_trend=group_trend.reset_index(drop=True),
        breakdown=breakdown.reset_index(drop=True),
    )


def period_bounds(period: date, grain: str) -> tuple[date, date]:
    """First and last day (inclusive) of the ``grain`` period starting at ``period``.

    Example:
        >>> period_bounds(date(2025, 2, 1), "month")
        (datetime.date(2025, 2, 1), datetime.date(2025, 2, 28))
    """
    grain = _check_grain(grain)
    if grain == "day":
        return period, period
    if grain == "week":
        return period, period + timedelta(days=6)
    following = date(period.year + period.month // 12, period.month % 12 + 1, 1)
    return period, following - timedelta(days=1)


def fetch_selection_reviews(
    con: duckdb.DuckDBPyConnection,
    source: SentimentSource,
    flt: ReviewFilter = ReviewFilter(),
    *,
    label: str | None = None,
    limit: int = 200,
) -> pd.DataFrame:
    """The reviews behind an aggregate, newest first (at most ``limit``).

    Returns:
        review_id, created_at, restaurant_name, neighborhood, stars, label, p_negative,
        p_neutral, p_positive (null for a labels source), text.
    """
    if label is not None and label not in LABELS:
        raise ValueError(f"unknown label {label!r}")
    relation, rel_params = _sentiment_relation(source)
    where, where_params = _filter_clause(flt)
    sql = f"""
        SELECT r.review_id, r.created_at, r.restaurant_name, r.neighborhood, r.stars, s.label,
               s.p_negative, s.p_neutral, s.p_positive, r.text
        FROM {DATED_REVIEWS_SQL} r JOIN {relation} s USING (review_id)
        WHERE {where} AND (?::VARCHAR IS NULL OR s.label = ?)
        ORDER BY r.created_at DESC, r.review_id
        LIMIT ?
    """
    return con.execute(sql, [*rel_params, *where_params, label, label, int(limit)]).df()
