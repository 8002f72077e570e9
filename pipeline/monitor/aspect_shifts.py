"""Shifts per aspect: a restaurant's service turning negative while its food stays fine, or a sudden
wave of reviews speaking of the crowds.

The aspect model's predictions give, per (aspect, restaurant, week), the reviews, the mentions of the
aspect and the negative mentions (:func:`store.aspect_trends.fetch_aspect_group_period_counts`). The
existing detector (:func:`pipeline.monitor.shifts.detect_shifts`) runs twice on them, every aspect of
every restaurant a series against its own baseline:

- negative share among the aspect's mentions (``n`` = mentions, ``negative`` = negative mentions):
  a ``spike`` is "service at Magnolia Table turned negative", a ``drop`` its recovery;
- mention share among the restaurant's reviews (``n`` = reviews, ``negative`` = mentions): a ``spike``
  is "crowds at Krog District", a surge in how often the aspect comes up. A share, not a count, so a
  restaurant that simply got busier does not surge on every aspect at once.

Each run is one Benjamini-Hochberg family over all aspects, restaurants and weeks. Alerts go through
:func:`store.alerts.raise_alerts` (kind ``sentiment_shift`` / ``volume_shift``, metric
``aspect_negative_share`` / ``aspect_mention_share``), so re-running raises nothing twice.
"""

from __future__ import annotations

import dataclasses
import math
import os

import pandas as pd

from pipeline.monitor.shifts import ShiftSettings, detect_shifts, marked_shifts
from store import alerts as alert_store
from store.aspect_trends import fetch_aspect_group_period_counts, resolve_aspect_model
from store.db import connect, transaction
from store.shifts import newest_review_date

DbPath = str | os.PathLike | None


def _subject(aspect: str, restaurant: str) -> str:
    return f"aspect:{aspect}@restaurant:{restaurant}"


def _week(period) -> str:
    return f"week {period.isocalendar().week} ({period:%Y-%m-%d})"


def detect_aspect_shifts(counts: pd.DataFrame, settings: ShiftSettings = ShiftSettings(), *,
                         newest=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run the shift detector on per-(aspect, restaurant) counts: negative share and mention share.

    Args:
        counts: by (aspect), grp (restaurant), period, n (mentions), negative, reviews.
        settings: the detector's grain and thresholds.
        newest: the newest review's day (see :func:`pipeline.monitor.shifts.detect_shifts`).

    Returns:
        (sentiment, mentions): the detector's results on negative mentions among mentions, and on
        mentions among reviews (its ``negative_share`` columns are then mention shares).
    """
    missing = {"by", "grp", "period", "n", "negative", "reviews"} - set(counts.columns)
    if missing:
        raise ValueError(f"aspect counts lack columns: {sorted(missing)}")
    # Counts of mentions and reviews are not tested for volume (the mention-share test speaks for a surge):
    # left in, their p-values would join the one Benjamini-Hochberg family and loosen the others' bar.
    settings = dataclasses.replace(settings, volume_min_mean=math.inf)
    sentiment = detect_shifts(_testable(counts, "n", settings)[["by", "grp", "period", "n", "negative"]], settings,
                              newest=newest)
    share = counts[["by", "grp", "period"]].assign(n=counts["reviews"], negative=counts["n"])
    mentions = detect_shifts(_testable(share, "n", settings), settings, newest=newest)
    return sentiment, mentions


def _testable(counts: pd.DataFrame, column: str, settings: ShiftSettings) -> pd.DataFrame:
    """The series with enough ``column`` in all to ever be tested (a baseline and a period): a restaurant
    that mentions "price" twice a year costs the detector time and can never shift."""
    totals = counts.groupby(["by", "grp"])[column].transform("sum")
    return counts[totals >= settings.min_baseline_reviews + settings.min_reviews]


def aspect_shift_alerts(sentiment: pd.DataFrame, mentions: pd.DataFrame, ids: dict[str, str] | None = None
                        ) -> list[dict]:
    """Alerts for the marked rows of :func:`detect_aspect_shifts` (mention slumps are not news).

    Args:
        ids: restaurant name -> restaurant id, for the alerts' detail.
    """
    ids = ids or {}
    alerts = []
    for row in marked_shifts(sentiment).itertuples(index=False):
        if pd.isna(row.sentiment_shift):
            continue  # a volume change of mentions alone: the mention-share test speaks for it
        period = pd.Timestamp(row.period).date()
        turned = "turned negative" if row.sentiment_shift == "spike" else "recovered"
        alerts.append({
            "kind": "sentiment_shift", "metric": "aspect_negative_share", "subject": _subject(row.by, row.grp),
            "period": period, "value": float(row.negative_share), "threshold": float(row.baseline_share),
            "message": f"{row.by} at {row.grp} {turned} in {_week(period)}: {row.negative_share:.0%} negative "
                       f"of {row.n} mentions vs {row.baseline_share:.0%} before",
            "detail": {"aspect": row.by, "restaurant_id": ids.get(row.grp), "restaurant_name": row.grp,
                       "shift": row.sentiment_shift, "q": float(row.q_sentiment), "mentions": int(row.n),
                       "negative": int(row.negative)},
        })  # fmt: skip
    for row in marked_shifts(mentions).itertuples(index=False):
        if row.sentiment_shift != "spike":
            continue
        period = pd.Timestamp(row.period).date()
        alerts.append({
            "kind": "volume_shift", "metric": "aspect_mention_share", "subject": _subject(row.by, row.grp),
            "period": period, "value": float(row.negative_share), "threshold": float(row.baseline_share),
            "message": f"{row.by} at {row.grp}: mentions surged in {_week(period)}: {row.negative_share:.0%} of "
                       f"{row.n} reviews speak of it vs {row.baseline_share:.0%} before",
            "detail": {"aspect": row.by, "restaurant_id": ids.get(row.grp), "restaurant_name": row.grp,
                       "shift": "surge", "q": float(row.q_sentiment), "reviews": int(row.n),
                       "mentions": int(row.negative)},
        })  # fmt: skip
    return alerts


def run_aspect_monitor(db: DbPath, *, model_id: str | None = None, reporter=None) -> dict | None:
    """Detect week-grain aspect shifts on the aspects champion's (or ``model_id``'s) predictions; raise alerts.

    Returns:
        None when no model is given and no aspect model was ever promoted; else {"model_id",
        "alerts_new", "alerts_found": {kind: n}, "shifts": n}.

    Raises:
        ValueError: ``model_id`` is not an aspect model.

    Example:
        >>> run_aspect_monitor("tastebud.duckdb")  # doctest: +SKIP
        {'model_id': 'aspects-...', 'alerts_new': 1, 'alerts_found': {'sentiment_shift': 1}, 'shifts': 1}
    """
    with connect(db, read_only=True) as con:
        model_id = resolve_aspect_model(con, model_id)
        if model_id is None:
            return None
        counts = fetch_aspect_group_period_counts(con, model_id, grain="week")
        newest = newest_review_date(con)
    if reporter is not None:
        reporter.progress(0.5, f"looking for aspect shifts in the predictions of {model_id}", force=True)
    sentiment, mentions = detect_aspect_shifts(counts, ShiftSettings(grain="week"), newest=newest)
    ids = counts.drop_duplicates("grp").set_index("grp")["restaurant_id"].to_dict() if len(counts) else {}
    found = aspect_shift_alerts(sentiment, mentions, ids)
    new = 0
    if found:
        with transaction(db) as con:
            new = alert_store.raise_alerts(con, found)
    by_kind: dict[str, int] = {}
    for alert in found:
        by_kind[alert["kind"]] = by_kind.get(alert["kind"], 0) + 1
    return {"model_id": model_id, "alerts_new": new, "alerts_found": by_kind, "shifts": len(found)}
