"""Aggregations the dashboard reads: trends, breakdowns, terms, disagreements, overview counts.

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
    LABEL_SOURCES,
    LABELS,
    NEW_RESTAURANT_AFTER_DAYS,
    NEW_RESTAURANT_GAP_FACTOR,
    SHIFT_BASELINE_PERIODS,
    SHIFT_MIN_BASELINE_REVIEWS,
    SHIFT_MIN_DELTA,
    SHIFT_MIN_REVIEWS,
    SHIFT_MIN_Z,
    SPLITS,
    TERMS_BLOCK_ROWS,
    TERMS_MIN_BLOCKS,
    TERMS_MIN_COUNT,
    TERMS_SAMPLE_PER_CLASS,
)
from store.labels import fetch_current_labels

GRAINS: tuple[str, ...] = ("day", "week", "month")
# How a review's restaurant and neighborhood are named in filters and groupings; imported
# reviews may carry only a restaurant id, and a missing value is its own group.
GROUPINGS: dict[str, str] = {
    "restaurant": "coalesce(r.restaurant_name, r.restaurant_id, '(unknown)')",
    "neighborhood": "coalesce(r.neighborhood, '(unknown)')",
}

# Function words that say nothing about sentiment; negations stay because they do.
_STOPWORDS: tuple[str, ...] = tuple(
    """a an the and or of to in on at for with from by as is are was were be been being it its it's this that
    these those i i'm i've we we're our you your he she they them their there here my me us
    have has had do does did so if then than too very just also about into over up out more most
    some any all one two get got go went come came can could would should will what when where which who how
    again back ours am s t""".split()
)


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
        FROM reviews r GROUP BY ALL
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
            FROM reviews r JOIN {relation} s USING (review_id)
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
            FROM reviews r WHERE r.created_at IS NOT NULL GROUP BY 1
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
        FROM reviews r JOIN {relation} s USING (review_id)
        WHERE {where} AND (?::VARCHAR IS NULL OR s.label = ?)
        ORDER BY r.created_at DESC, r.review_id
        LIMIT ?
    """
    return con.execute(sql, [*rel_params, *where_params, label, label, int(limit)]).df()


def fetch_distinguishing_terms(
    con: duckdb.DuckDBPyConnection,
    source: SentimentSource,
    flt: ReviewFilter = ReviewFilter(),
    *,
    k: int = 15,
    sample_per_class: int = TERMS_SAMPLE_PER_CLASS,
    class_counts: tuple[int, int] | None = None,
) -> pd.DataFrame:
    """The words that most separate negative from positive reviews in the selection.

    Each class is sampled down to about ``sample_per_class`` reviews, deterministically: every
    stride-th block of ``TERMS_BLOCK_ROWS`` stored rows, then a seeded hash of the id. Words are whitespace
    tokens, lower-cased, stripped of surrounding punctuation. Each word gets the log odds
    ratio of its occurrences among negative vs positive tokens, and that ratio's z-score
    (0.5 added to every cell of the 2x2 table), as in Monroe et al.'s "Fightin' Words". The
    ``k`` highest and ``k`` lowest z-scores among words seen at least ``TERMS_MIN_COUNT``
    times are returned.

    Args:
        class_counts: (negative, positive) reviews in the selection when the caller already
            knows them (the trend summary does); they set the sampling rates, and passing them
            saves a pass over the selection.

    Returns:
        term, side ("negative"/"positive"), negative_count, positive_count, log_odds, z, and
        n_negative, n_positive (reviews sampled per class, the same on every row). Strongest first.

    Example:
        >>> fetch_distinguishing_terms(con, SentimentSource("labels"), k=3).term.tolist()  # doctest: +SKIP
        ['waited', 'rude', 'cold', 'friendly', 'delicious', 'amazing']
    """
    relation, rel_params = _sentiment_relation(source)
    where, where_params = _filter_clause(flt)
    if class_counts is None:
        class_counts = con.execute(
            f"""
            SELECT count(*) FILTER (WHERE s.label = 'negative'), count(*) FILTER (WHERE s.label = 'positive')
            FROM reviews r JOIN {relation} s USING (review_id) WHERE {where}
            """,
            [*rel_params, *where_params],
        ).fetchone()
    n_negative, n_positive = (max(int(n), 1) for n in class_counts)
    # Sample whole blocks of consecutive rows first (every stride-th block): DuckDB then skips
    # the other blocks' texts entirely, which a per-row sample cannot do. Enough blocks stay
    # for the sample to span the store; a seeded hash of the id then caps each class.
    blocks = -(-con.execute("SELECT count(*) FROM reviews").fetchone()[0] // TERMS_BLOCK_ROWS)
    wanted = min(n_negative, n_positive) / max(sample_per_class, 1)
    stride = max(1, min(int(wanted), blocks // TERMS_MIN_BLOCKS))
    sql = f"""
        WITH sample AS (
            SELECT s.label, r.text
            FROM reviews r JOIN {relation} s USING (review_id)
            WHERE (r.rowid // ?) % ? = 0 AND {where} AND s.label IN ('negative', 'positive')
              AND hash(s.review_id || 'terms') % 1000000
                  < 1000000.0 * ? * ? / CASE s.label WHEN 'negative' THEN ? ELSE ? END
        ), sizes AS (
            SELECT count(*) FILTER (WHERE label = 'negative') AS n_neg,
                   count(*) FILTER (WHERE label = 'positive') AS n_pos FROM sample
        ), raw_counts AS (
            -- count raw whitespace tokens first and clean the few thousand distinct ones after:
            -- per-token regular expressions or trims over every review cost several times more
            SELECT token, count(*) FILTER (WHERE label = 'negative') AS neg, count(*) FILTER (WHERE label = 'positive') AS pos
            FROM (SELECT label, unnest(string_split(lower(text), ' ')) AS token FROM sample)
            GROUP BY token
        ), counts AS (
            SELECT trim(token, '.,!?;:"()[]*-') AS term, sum(neg) AS neg, sum(pos) AS pos FROM raw_counts GROUP BY 1
        ), totals AS (
            SELECT sum(neg) AS tok_neg, sum(pos) AS tok_pos FROM counts
        ), scored AS (
            SELECT c.term, c.neg, c.pos, z.n_neg, z.n_pos,
                   ln((c.neg + 0.5) / (t.tok_neg - c.neg + 0.5)) - ln((c.pos + 0.5) / (t.tok_pos - c.pos + 0.5)) AS log_odds,
                   sqrt(1 / (c.neg + 0.5) + 1 / (t.tok_neg - c.neg + 0.5) + 1 / (c.pos + 0.5) + 1 / (t.tok_pos - c.pos + 0.5)) AS se
            FROM counts c CROSS JOIN totals t CROSS JOIN sizes z
            WHERE z.n_neg > 0 AND z.n_pos > 0 AND c.neg + c.pos >= ?
              AND regexp_full_match(c.term, '[a-z][a-z'']+') AND c.term NOT IN (SELECT unnest(?::VARCHAR[]))
        ), ranked AS (
            SELECT *, log_odds / se AS z,
                   row_number() OVER (ORDER BY log_odds / se DESC, term) AS top_neg,
                   row_number() OVER (ORDER BY log_odds / se ASC, term) AS top_pos
            FROM scored
        )
        SELECT term, CASE WHEN z > 0 THEN 'negative' ELSE 'positive' END AS side,
               neg AS negative_count, pos AS positive_count, log_odds, z, n_neg AS n_negative, n_pos AS n_positive
        FROM ranked
        WHERE (top_neg <= ? AND z > 0) OR (top_pos <= ? AND z < 0)
        ORDER BY z DESC
    """
    params = [*rel_params, TERMS_BLOCK_ROWS, stride, *where_params, int(sample_per_class), stride, n_negative, n_positive]
    params += [TERMS_MIN_COUNT, list(_STOPWORDS), int(k), int(k)]
    return con.execute(sql, params).df()


def fetch_overview(con: duckdb.DuckDBPyConnection) -> dict:
    """Store-wide counts for the overview page.

    Returns:
        reviews, first_review_at, last_review_at, labeled, labels_by_source (current labels),
        human_label_rows, predictions (DataFrame: model_id, n, last_scored_at), last_scored_at,
        open_flags (dict reason -> count), resolved_flags, models.

    Example:
        >>> fetch_overview(con)["reviews"]  # doctest: +SKIP
        3000
    """
    reviews, first, last = con.execute("SELECT count(*), min(created_at), max(created_at) FROM reviews").fetchone()
    by_source = dict(con.execute("SELECT source, count(*) FROM current_labels GROUP BY 1").fetchall())
    human_rows = con.execute("SELECT count(*) FROM labels WHERE source = 'human'").fetchone()[0]
    predictions = con.execute(
        "SELECT model_id, count(*) AS n, max(scored_at) AS last_scored_at FROM predictions GROUP BY 1 ORDER BY 3 DESC"
    ).df()
    open_flags = dict(
        con.execute("SELECT reason, count(*) FROM flags WHERE status = 'open' GROUP BY 1 ORDER BY 2 DESC").fetchall()
    )
    resolved = con.execute("SELECT count(*) FROM flags WHERE status <> 'open'").fetchone()[0]
    models = con.execute("SELECT count(*) FROM models").fetchone()[0]
    return {
        "reviews": reviews,
        "first_review_at": first,
        "last_review_at": last,
        "labeled": sum(by_source.values()),
        "labels_by_source": by_source,
        "human_label_rows": human_rows,
        "predictions": predictions,
        "last_scored_at": predictions["last_scored_at"].max() if len(predictions) else None,
        "open_flags": open_flags,
        "resolved_flags": resolved,
        "models": models,
    }


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


def fetch_job_epoch_metrics(con: duckdb.DuckDBPyConnection, job_id: str) -> pd.DataFrame:
    """Per-epoch metrics of every training run a job started (a sweep starts several).

    Returns:
        run_id, model_id, epoch, step, train_loss, val_loss, val_accuracy, val_macro_f1, ordered by run then step.

    Example:
        >>> fetch_job_epoch_metrics(con, "train-20261125-101500-1a2b3c")[["epoch", "val_loss"]]  # doctest: +SKIP
    """
    return con.execute(
        """
        SELECT t.run_id, t.model_id, e.epoch, e.step, e.train_loss, e.val_loss, e.val_accuracy, e.val_macro_f1
        FROM training_runs t JOIN epoch_metrics e USING (run_id)
        WHERE t.job_id = ?
        ORDER BY t.started_at, t.run_id, e.step
        """,
        [job_id],
    ).df()


def fetch_job_training_runs(con: duckdb.DuckDBPyConnection, job_id: str) -> pd.DataFrame:
    """The training runs a job started: run_id, model_id, sweep_id, status, config, error, started/finished.

    Example:
        >>> fetch_job_training_runs(con, "train-20261125-101500-1a2b3c")["status"].tolist()  # doctest: +SKIP
        ['succeeded', 'running']
    """
    return con.execute(
        """
        SELECT run_id, model_id, sweep_id, status, config, error, started_at, finished_at
        FROM training_runs WHERE job_id = ? ORDER BY started_at, run_id
        """,
        [job_id],
    ).df()


def fetch_flag_page(
    con: duckdb.DuckDBPyConnection, *, reasons: list[str] | None = None, limit: int = 50
) -> pd.DataFrame:
    """The highest-priority open flags with their review, the flagging model's prediction and the
    current label: what the hard-cases page shows.

    The same rows as ``store.flags.fetch_flag_queue``, but the current label is looked up for
    the page's reviews only, not computed for every review in the store (a tenth of the time
    at a million labels).

    Returns:
        flag_id, review_id, reason, priority, term, detail, status, text, stars, restaurant_name,
        created_at, model_id, model_label, p_negative, p_neutral, p_positive, current_label,
        current_label_source. Highest priority first.

    Example:
        >>> fetch_flag_page(con, reasons=["low_confidence"], limit=5)["flag_id"].tolist()  # doctest: +SKIP
        [17, 4, 9, 1, 30]
    """
    frame = con.execute(
        """
        SELECT f.flag_id, f.review_id, f.reason, f.priority, f.term, f.detail, f.status,
               r.text, r.stars, r.restaurant_name, f.created_at, f.model_id,
               p.label AS model_label, p.p_negative, p.p_neutral, p.p_positive
        FROM (SELECT * FROM flags
              WHERE status = 'open' AND (?::VARCHAR[] IS NULL OR reason IN (SELECT unnest(?::VARCHAR[])))
              ORDER BY priority DESC, flag_id LIMIT ?) f
        JOIN reviews r USING (review_id)
        LEFT JOIN predictions p ON p.model_id = f.model_id AND p.review_id = f.review_id
        ORDER BY f.priority DESC, f.flag_id
        """,
        [reasons, reasons, int(limit)],
    ).df()
    current = fetch_current_labels(con, frame["review_id"].drop_duplicates().tolist())
    frame["current_label"] = frame["review_id"].map(lambda r: current.get(r, (None, None))[0])
    frame["current_label_source"] = frame["review_id"].map(lambda r: current.get(r, (None, None))[1])
    return frame


def count_flags_by_status(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Flags per status.

    Example:
        >>> count_flags_by_status(con)  # doctest: +SKIP
        {'open': 40, 'resolved': 12, 'dismissed': 3}
    """
    rows = dict(con.execute("SELECT status, count(*) FROM flags GROUP BY 1").fetchall())
    return {status: rows.get(status, 0) for status in ("open", "resolved", "dismissed")}


def fetch_open_flag_review_ids(con: duckdb.DuckDBPyConnection, *, reasons: list[str] | None = None) -> list[str]:
    """Distinct reviews with an open flag of one of ``reasons`` (None: any reason), highest priority first.

    Example:
        >>> fetch_open_flag_review_ids(con, reasons=["low_confidence"])[:2]  # doctest: +SKIP
        ['r17', 'r4']
    """
    rows = con.execute(
        """
        SELECT review_id FROM flags
        WHERE status = 'open' AND (?::VARCHAR[] IS NULL OR reason IN (SELECT unnest(?::VARCHAR[])))
        GROUP BY review_id ORDER BY max(priority) DESC, review_id
        """,
        [reasons, reasons],
    ).fetchall()
    return [r for (r,) in rows]


def fetch_store_counts(con: duckdb.DuckDBPyConnection) -> dict:
    """Reviews, current labels by class and by source, and reviews per split.

    The data page's subset of ``store.stats.store_stats`` (same keys and values), with the
    current-labels view evaluated once instead of three times and no join to the splits.

    Example:
        >>> fetch_store_counts(con)["labels"]["negative"]  # doctest: +SKIP
        412
    """
    reviews = con.execute("SELECT count(*) FROM reviews").fetchone()[0]
    splits = dict.fromkeys(SPLITS, 0) | dict(con.execute("SELECT split, count(*) FROM splits GROUP BY 1").fetchall())
    labels, sources = dict.fromkeys(LABELS, 0), dict.fromkeys(LABEL_SOURCES, 0)
    for label, source, n in con.execute("SELECT label, source, count(*) FROM current_labels GROUP BY ALL").fetchall():
        labels[label] += n
        sources[source] = sources.get(source, 0) + n
    labeled = sum(labels.values())
    return {
        "reviews": reviews,
        "labeled": labeled,
        "unlabeled": reviews - labeled,
        "labels": labels,
        "label_sources": sources,
        "splits": splits,
    }


def fetch_review_volume(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Reviews per month and review source: month (date), source, n.

    Example:
        >>> fetch_review_volume(con).head(1)  # doctest: +SKIP
    """
    return con.execute(
        """
        SELECT date_trunc('month', created_at)::DATE AS month, source, count(*) AS n
        FROM reviews WHERE created_at IS NOT NULL GROUP BY ALL ORDER BY 1, 2
        """
    ).df()
