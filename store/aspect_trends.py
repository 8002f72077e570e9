"""Aspects over reviews: per-restaurant aspect tables, the sentences behind a cell, trends, shift counts.

Everything reads one aspect model's stored predictions (``aspect_predictions``; the aspects champion
unless a model is named) joined to the reviews, aggregated inside DuckDB so only small frames leave it.
A review *mentions* an aspect when its prediction's polarity is not ``absent`` (``p_present`` reached
:data:`store.aspects.MENTION_THRESHOLD` when it was written). Shares come with Wilson 95% intervals:
an aspect mentioned in 6 reviews of a small restaurant must not look as certain as one mentioned in 600.
Review filters are :class:`store.trends.ReviewFilter`s, so a page filters aspects and sentiment alike.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from store.aspects import POLARITIES
from store.constants import DATED_REVIEWS_SQL
from store.trends import GROUPINGS, ReviewFilter, _check_grain, _filter_clause

# Two-sided 95% normal quantile of the Wilson intervals.
WILSON_Z = 1.959963984540054
# Most review sentences returned behind one cell.
MAX_EVIDENCE_ROWS = 500
EVIDENCE_ORDERS: tuple[str, ...] = ("newest", "confident")
# Alert metrics of the aspect monitor (pipeline.monitor.aspect_shifts): the alerts of aspects.
ASPECT_ALERT_METRICS: tuple[str, ...] = ("aspect_negative_share", "aspect_mention_share")
_COUNT_COLUMNS = ["reviews", "mentions", *POLARITIES]


def wilson_interval(successes, trials, *, z: float = WILSON_Z) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a binomial proportion, element-wise (NaN where ``trials`` is 0).

    Args:
        successes: counts (array-like).
        trials: counts of the same shape.

    Returns:
        (low, high) arrays.

    Example:
        >>> low, high = wilson_interval([6], [20])
        >>> round(float(low[0]), 3), round(float(high[0]), 3)
        (0.145, 0.519)
    """
    k = np.asarray(successes, dtype=float)
    n = np.asarray(trials, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / n
        denom = 1 + z**2 / n
        centre = (p + z**2 / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
        low, high = np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)
    empty = n <= 0
    return np.where(empty, np.nan, low), np.where(empty, np.nan, high)


def _with_shares(frame: pd.DataFrame) -> pd.DataFrame:
    """Add mention_share and each polarity's share among mentions, each with its Wilson interval."""
    frame = frame.copy()
    for column in _COUNT_COLUMNS:
        frame[column] = frame[column].fillna(0).astype(int)
    parts = {"mention": ("mentions", "reviews"), **{p: (p, "mentions") for p in POLARITIES}}
    for name, (k, n) in parts.items():
        with np.errstate(divide="ignore", invalid="ignore"):
            frame[f"{name}_share"] = np.where(frame[n] > 0, frame[k] / frame[n].where(frame[n] > 0, 1), np.nan)
        frame[f"{name}_low"], frame[f"{name}_high"] = wilson_interval(frame[k], frame[n])
    return frame


def resolve_aspect_model(con: duckdb.DuckDBPyConnection, model_id: str | None = None) -> str | None:
    """The aspect model whose predictions the views read: ``model_id`` when given, else the aspects champion.

    Raises:
        ValueError: ``model_id`` is not a registered aspect model.

    Returns:
        A model id, or None when no model is given and no aspect model was ever promoted.
    """
    from store.models import get_champion, get_model

    if model_id is None:
        champion = get_champion(con, "aspects")
        return champion["model_id"] if champion else None
    model = get_model(con, model_id)
    if model is None or (model.get("task") or "sentiment") != "aspects":
        raise ValueError(f"{model_id!r} is not an aspect model")
    return model_id


def _scored_sql(where: str) -> str:
    """Predictions of one model (first bound parameter) joined to the filtered dated reviews."""
    return f"""
        SELECT p.aspect, p.polarity, p.p_present, p.p_negative, p.p_neutral, p.p_positive,
               p.evidence_start, p.evidence_end, r.review_id, r.created_at, r.stars, r.text, r.restaurant_id,
               {GROUPINGS['restaurant']} AS restaurant
        FROM aspect_predictions p JOIN {DATED_REVIEWS_SQL} r USING (review_id)
        WHERE p.model_id = ? AND {where}
    """


_COUNTS_SQL = """
    count(*) AS reviews,
    count(*) FILTER (WHERE polarity <> 'absent') AS mentions,
    count(*) FILTER (WHERE polarity = 'negative') AS negative,
    count(*) FILTER (WHERE polarity = 'neutral') AS neutral,
    count(*) FILTER (WHERE polarity = 'positive') AS positive
"""
# The groupings one scan can feed, and the level (2 x GROUPING(restaurant) + GROUPING(period)) of their rows.
_SETS = {"table": ("(aspect)", 3), "matrix": ("(restaurant, aspect)", 1), "trend": ("(aspect, period)", 2)}


def _aggregate(con: duckdb.DuckDBPyConnection, model_id: str, flt: ReviewFilter, parts: tuple[str, ...],
               grain: str = "week", aspects: list[str] | None = None) -> dict[str, pd.DataFrame]:
    """Counts, shares and intervals of the groupings ``parts`` (keys of ``_SETS``) in one scan of the
    selection's predictions, aspects in the store's order (one the store no longer lists last)."""
    grain = _check_grain(grain)
    where, params = _filter_clause(flt)
    sets = ", ".join(_SETS[part][0] for part in parts)
    # GROUPING() takes grouped columns only: a column no set groups by reads as aggregated (1).
    by_restaurant, by_period = "matrix" in parts, "trend" in parts
    level = f"{'2 * GROUPING(restaurant)' if by_restaurant else '2'} + {'GROUPING(period)' if by_period else '1'}"
    sql = f"""
        WITH s AS (
            SELECT aspect, {'restaurant' if by_restaurant else 'NULL::VARCHAR AS restaurant'},
                   {'period' if by_period else 'NULL::TIMESTAMP AS period'}, {level} AS level, {_COUNTS_SQL}
            FROM (SELECT *, date_trunc('{grain}', created_at)::TIMESTAMP AS period FROM ({_scored_sql(where)}))
            WHERE ?::VARCHAR[] IS NULL OR list_contains(?::VARCHAR[], aspect)
            GROUP BY GROUPING SETS ({sets})
        )
        SELECT s.* FROM s LEFT JOIN aspects a USING (aspect)
        -- undated reviews count in the tables, not in the trend
        WHERE NOT (s.level = 2 AND s.period IS NULL)
        ORDER BY s.level, s.restaurant, coalesce(a.position, 1e9), s.aspect, s.period
    """
    chosen = list(aspects) if aspects is not None else None
    frame = con.execute(sql, [model_id, *params, chosen, chosen]).df()
    keys = {"table": ["aspect"], "matrix": ["restaurant", "aspect"], "trend": ["aspect", "period"]}
    out = {}
    for part in parts:
        rows = frame[frame["level"] == _SETS[part][1]][[*keys[part], *_COUNT_COLUMNS]]
        if part == "trend":  # by aspect (store order, kept from the query), then period
            rows = rows.assign(_order=pd.factorize(rows["aspect"])[0]).sort_values(["_order", "period"],
                                                                                   kind="stable").drop(columns="_order")
        out[part] = _with_shares(rows).reset_index(drop=True)
    return out


def fetch_aspect_table(
    con: duckdb.DuckDBPyConnection, model_id: str, flt: ReviewFilter = ReviewFilter(), *, by_restaurant: bool = False
) -> pd.DataFrame:
    """Per aspect (and restaurant): how often reviews mention it and how they judge it, with intervals.

    Args:
        model_id: the aspect model whose predictions are read.
        flt: which reviews count (dates, restaurants, neighbourhoods).
        by_restaurant: one row per (restaurant, aspect) instead of one per aspect.

    Returns:
        [restaurant,] aspect, reviews (scored reviews in the selection), mentions, negative, neutral,
        positive, mention_share (mentions / reviews), negative_share, neutral_share, positive_share
        (among mentions), and ``<name>_low`` / ``<name>_high`` Wilson 95% bounds of each share
        (``mention``, ``negative``, ...); shares are NaN where their denominator is 0. Aspects in the
        store's order.

    Example:
        >>> t = fetch_aspect_table(con, "aspects-1", ReviewFilter(restaurants=("Magnolia Table",)))  # doctest: +SKIP
        >>> t.set_index("aspect").loc["service", ["mentions", "negative_share"]]  # doctest: +SKIP
    """
    part = "matrix" if by_restaurant else "table"
    return _aggregate(con, model_id, flt, (part,))[part]


def fetch_aspect_summary(
    con: duckdb.DuckDBPyConnection,
    model_id: str,
    flt: ReviewFilter = ReviewFilter(),
    *,
    grain: str = "week",
    by_restaurant: bool = False,
) -> dict[str, pd.DataFrame]:
    """What an aspect page shows of a selection, in one scan: the aspect table, the per-restaurant table
    (``by_restaurant``) and the trend per aspect and period.

    Returns:
        {"table": :func:`fetch_aspect_table`, "matrix": its ``by_restaurant`` form (empty unless
        asked for), "trend": :func:`fetch_aspect_trend` at ``grain``}.

    Example:
        >>> fetch_aspect_summary(con, "aspects-1", grain="month")["trend"].head(1)  # doctest: +SKIP
    """
    parts = ("table", "matrix", "trend") if by_restaurant else ("table", "trend")
    out = _aggregate(con, model_id, flt, parts, grain)
    out.setdefault("matrix", _with_shares(pd.DataFrame(columns=["restaurant", "aspect", *_COUNT_COLUMNS])))
    return out


def fetch_aspect_evidence(
    con: duckdb.DuckDBPyConnection,
    model_id: str,
    aspect: str,
    flt: ReviewFilter = ReviewFilter(),
    *,
    polarity: str | None = None,
    order: str = "newest",
    limit: int = 50,
) -> pd.DataFrame:
    """The review sentences behind one cell of the aspect table (reviews that mention ``aspect``).

    Args:
        aspect: the aspect (as stored).
        flt: which reviews count.
        polarity: "negative", "neutral" or "positive" (None: every mention).
        order: "newest" (newest review first) or "confident" (highest P(mentioned) x P(polarity) first).
        limit: at most this many rows (capped at ``MAX_EVIDENCE_ROWS``).

    Returns:
        review_id, created_at, restaurant, stars, polarity, evidence (the sentence that carried the
        aspect most; the review's first 300 characters when no span was stored), p_present,
        p_negative, p_neutral, p_positive, text.

    Example:
        >>> fetch_aspect_evidence(con, "aspects-1", "service", polarity="negative", limit=5)  # doctest: +SKIP
    """
    if polarity is not None and polarity not in POLARITIES:
        raise ValueError(f"unknown polarity {polarity!r}; expected one of {', '.join(POLARITIES)}")
    if order not in EVIDENCE_ORDERS:
        raise ValueError(f"unknown order {order!r}; expected one of {', '.join(EVIDENCE_ORDERS)}")
    where, params = _filter_clause(flt)
    # Confidence of the cell's call: mentioned, and (for one polarity) that polarity; else the top polarity.
    top = f"p_{polarity}" if polarity else "greatest(p_negative, p_neutral, p_positive)"
    confidence = f"p_present * {top}"
    ranking = "created_at DESC NULLS LAST" if order == "newest" else f"{confidence} DESC"
    sql = f"""
        SELECT review_id, created_at, restaurant, stars, polarity,
               CASE WHEN evidence_start IS NOT NULL AND evidence_end > evidence_start
                    THEN substr(text, evidence_start + 1, evidence_end - evidence_start)
                    ELSE left(text, 300) END AS evidence,
               p_present, p_negative, p_neutral, p_positive, text
        FROM ({_scored_sql(where)})
        WHERE aspect = ? AND polarity <> 'absent' AND (?::VARCHAR IS NULL OR polarity = ?)
        ORDER BY {ranking}, review_id
        LIMIT ?
    """
    limit = max(1, min(int(limit), MAX_EVIDENCE_ROWS))
    return con.execute(sql, [model_id, *params, aspect, polarity, polarity, limit]).df()


def fetch_aspect_trend(
    con: duckdb.DuckDBPyConnection,
    model_id: str,
    flt: ReviewFilter = ReviewFilter(),
    *,
    grain: str = "week",
    aspects: list[str] | None = None,
) -> pd.DataFrame:
    """Per aspect and period: reviews, mentions, polarity counts, shares and their Wilson intervals.

    Args:
        flt: which reviews count (one restaurant: ``ReviewFilter(restaurants=(name,))``).
        grain: "day", "week" or "month".
        aspects: only these aspects (None: all the model predicts).

    Returns:
        aspect, period (Timestamp, the period's first day), and the columns of
        :func:`fetch_aspect_table`; sorted by aspect (store order), period. Periods without scored
        reviews are absent.

    Example:
        >>> fetch_aspect_trend(con, "aspects-1", grain="month").head(1)  # doctest: +SKIP
    """
    return _aggregate(con, model_id, flt, ("trend",), grain, aspects)["trend"]


def fetch_aspect_group_period_counts(
    con: duckdb.DuckDBPyConnection, model_id: str, flt: ReviewFilter = ReviewFilter(), *, grain: str = "week"
) -> pd.DataFrame:
    """Mentions and negative mentions per (aspect, restaurant, period), shaped for the shift detector.

    ``by`` holds the aspect and ``grp`` the restaurant, so :func:`pipeline.monitor.shifts.detect_shifts`
    tests every restaurant's every aspect against its own baseline: ``n`` is the period's mentions of
    the aspect and ``negative`` the negative ones. ``reviews`` (scored reviews of the restaurant that
    period) lets a caller test how often the aspect is mentioned instead.

    Returns:
        Columns by, grp, period (Timestamp), n, negative, reviews, restaurant_id (one of the
        restaurant's ids), sorted by by, grp, period. Periods without scored reviews are absent.

    Example:
        >>> fetch_aspect_group_period_counts(con, "aspects-1").head(1)  # doctest: +SKIP
    """
    grain = _check_grain(grain)
    where, params = _filter_clause(flt)
    sql = f"""
        SELECT aspect AS "by", restaurant AS grp, date_trunc('{grain}', created_at)::TIMESTAMP AS period,
               count(*) FILTER (WHERE polarity <> 'absent') AS n,
               count(*) FILTER (WHERE polarity = 'negative') AS negative,
               count(*) AS reviews, min(restaurant_id) AS restaurant_id
        FROM ({_scored_sql(where)})
        WHERE created_at IS NOT NULL
        GROUP BY ALL ORDER BY 1, 2, 3
    """
    return con.execute(sql, [model_id, *params]).df()


def list_aspect_alerts(
    con: duckdb.DuckDBPyConnection,
    *,
    aspect: str | None = None,
    restaurant: str | None = None,
    status: str | None = "open",
    limit: int = 100,
) -> pd.DataFrame:
    """The alerts the aspect monitor raised (metrics :data:`ASPECT_ALERT_METRICS`), newest first.

    Args:
        aspect: only this aspect's (from the alert's detail).
        restaurant: only this restaurant's (its name as grouped, from the detail).
        status: "open", "acknowledged" or None for both.

    Returns:
        The columns of :func:`store.alerts.list_alerts` plus aspect and restaurant.
    """
    from store.alerts import ALERT_STATUSES

    if status is not None and status not in ALERT_STATUSES:
        raise ValueError(f"unknown alert status {status!r}; expected one of {', '.join(ALERT_STATUSES)}")
    return con.execute(
        """
        SELECT alert_id, kind, metric, subject, period, value, threshold, message, detail, status,
               created_at, acknowledged_at, acknowledged_by,
               json_extract_string(detail, '$.aspect') AS aspect,
               json_extract_string(detail, '$.restaurant_name') AS restaurant
        FROM alerts
        WHERE list_contains(?::VARCHAR[], metric)
          AND (?::VARCHAR IS NULL OR status = ?)
          AND (?::VARCHAR IS NULL OR json_extract_string(detail, '$.aspect') = ?)
          AND (?::VARCHAR IS NULL OR json_extract_string(detail, '$.restaurant_name') = ?)
        ORDER BY period DESC NULLS LAST, created_at DESC, alert_id DESC
        LIMIT ?
        """,
        [list(ASPECT_ALERT_METRICS), status, status, aspect, aspect, restaurant, restaurant, int(limit)],
    ).df()
