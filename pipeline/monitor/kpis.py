"""Product KPIs: the latest complete week or month against the one before."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd

from pipeline.monitor.shifts import period_end


def period_start(day: date, grain: str) -> date:
    """First day of the ``grain`` period holding ``day`` (weeks start on Monday, as DuckDB's date_trunc)."""
    if grain == "week":
        return day - timedelta(days=day.weekday())
    if grain == "month":
        return day.replace(day=1)
    if grain == "day":
        return day
    raise ValueError(f"unknown time grain {grain!r}")


def latest_complete_period(newest: date, grain: str) -> date:
    """The start of the newest period that ended on or before ``newest`` (the newest review's day).

    Example:
        >>> latest_complete_period(date(2026, 10, 31), "week")  # a Saturday: its week is not over
        datetime.date(2026, 10, 19)
    """
    start = period_start(newest, grain)
    if period_end(start, grain) <= newest:
        return start
    return period_start(start - timedelta(days=1), grain)


def period_kpis(totals: pd.DataFrame, newest: date, grain: str) -> dict:
    """Negative share, average stars and reviews of the latest complete period and of the one before.

    Args:
        totals: period, n, negative, avg_stars (see :func:`store.shifts.fetch_period_totals`).
        newest: the newest review's day.

    Returns:
        period, previous (start dates), n, previous_n, negative_share, previous_negative_share,
        avg_stars, previous_avg_stars (None/NaN where a period has no reviews).
    """
    period = latest_complete_period(newest, grain)
    previous = period_start(period - timedelta(days=1), grain)
    by_period = totals.assign(period=pd.to_datetime(totals["period"]).dt.date).set_index("period")

    def row(day: date) -> tuple[int, float | None, float]:
        if day not in by_period.index:
            return 0, None, np.nan
        r = by_period.loc[day]
        n = int(r["n"])
        return n, (float(r["negative"]) / n if n else None), float(r["avg_stars"]) if pd.notna(r["avg_stars"]) else np.nan

    n, share, stars = row(period)
    prev_n, prev_share, prev_stars = row(previous)
    return {"period": period, "previous": previous, "n": n, "previous_n": prev_n, "negative_share": share,
            "previous_negative_share": np.nan if prev_share is None else prev_share, "avg_stars": stars,
            "previous_avg_stars": prev_stars}
