"""Sudden shifts of sentiment and volume per restaurant and neighbourhood, at any grain.

Each (group, period) is compared with the same group's own trailing baseline (the previous
``SHIFT_BASELINE_PERIODS[grain]`` periods, periods without reviews included):

- sentiment: the period's negative reviews against a beta-binomial whose mean is the
  baseline's negative share and whose weight is the baseline's review count, capped at
  ``SHIFT_MAX_BASELINE_WEIGHT`` (a group's share wanders between periods more than sampling
  explains). Small weekly counts are handled exactly, not by a normal approximation.
- volume: the period's review count against a negative binomial with the baseline's mean
  reviews per period (over-dispersed Poisson).

Both tests are two-sided; all p-values of all groups, periods and both tests get one
Benjamini-Hochberg correction, and a shift must also be large (``SHIFT_MIN_DELTA`` in
negative share, ``VOLUME_MIN_RATIO`` and ``VOLUME_MIN_CHANGE`` in volume). Periods that are
clearly shifted are kept out of later baselines, so a month-long collapse is compared
with normal weeks throughout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import pandas as pd
from scipy import stats

from pipeline.monitor import thresholds as T

_FREQ = {"day": "D", "week": "W-MON", "month": "MS"}
_MAX_PASSES = 6
RESULT_COLUMNS = [
    "by", "grp", "period", "n", "negative", "negative_share", "baseline_share", "delta", "p_sentiment",
    "q_sentiment", "sentiment_shift", "baseline_mean_n", "volume_ratio", "p_volume", "q_volume", "volume_shift",
]


@dataclass(frozen=True)
class ShiftSettings:
    """Detector settings; the defaults come from :mod:`pipeline.monitor.thresholds`."""

    grain: str = "week"
    baseline_periods: int | None = None
    min_reviews: int = T.SHIFT_MIN_REVIEWS
    min_baseline_reviews: int = T.SHIFT_MIN_BASELINE_REVIEWS
    max_baseline_weight: float = T.SHIFT_MAX_BASELINE_WEIGHT
    fdr: float = T.SHIFT_FDR
    min_delta: float = T.SHIFT_MIN_DELTA
    volume_dispersion: float = T.VOLUME_DISPERSION
    volume_min_ratio: float = T.VOLUME_MIN_RATIO
    volume_min_change: int = T.VOLUME_MIN_CHANGE
    volume_min_mean: float = T.VOLUME_MIN_BASELINE_MEAN
    exclude_p: float = T.SHIFT_EXCLUDE_FROM_BASELINE_P
    window: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if self.grain not in _FREQ:
            raise ValueError(f"unknown time grain {self.grain!r}; expected one of {', '.join(_FREQ)}")
        window = self.baseline_periods or T.SHIFT_BASELINE_PERIODS[self.grain]
        if window < 2:
            raise ValueError(f"a baseline needs at least 2 periods, got {window}")
        if not 0 < self.fdr < 1:
            raise ValueError(f"fdr must be between 0 and 1, got {self.fdr}")
        if self.min_reviews < 1 or self.min_baseline_reviews < 1:
            raise ValueError("min_reviews and min_baseline_reviews must be at least 1")
        object.__setattr__(self, "window", int(window))


def period_end(period: date, grain: str) -> date:
    """Last day (inclusive) of the period starting at ``period``."""
    if grain == "day":
        return period
    if grain == "week":
        return period + timedelta(days=6)
    following = date(period.year + period.month // 12, period.month % 12 + 1, 1)
    return following - timedelta(days=1)


def _full_grid(counts: pd.DataFrame, grain: str, last: pd.Timestamp) -> pd.DataFrame:
    """Every period from each group's first to ``last``, periods without reviews as zeros."""
    frames = []
    for (by, grp), part in counts.groupby(["by", "grp"], sort=True):
        periods = pd.date_range(part["period"].min(), last, freq=_FREQ[grain])
        grid = pd.DataFrame({"period": periods})
        grid = grid.merge(part[["period", "n", "negative"]], on="period", how="left").fillna({"n": 0, "negative": 0})
        frames.append(grid.assign(by=by, grp=grp))
    return pd.concat(frames, ignore_index=True)[["by", "grp", "period", "n", "negative"]]


def _trailing(frame: pd.DataFrame, column: str, window: int) -> np.ndarray:
    """Sum of ``column`` over each row's previous ``window`` periods of the same group."""
    shifted = frame.groupby(["by", "grp"], sort=False)[column].shift(1).fillna(0)
    keys = [frame["by"], frame["grp"]]
    return shifted.groupby(keys, sort=False).rolling(window, min_periods=1).sum().to_numpy()


def _tests(frame: pd.DataFrame, s: ShiftSettings, excluded_sent: np.ndarray, excluded_vol: np.ndarray,
           volume_ok: np.ndarray) -> pd.DataFrame:
    n, neg = frame["n"].to_numpy(float), frame["negative"].to_numpy(float)
    work = frame[["by", "grp"]].copy()
    work["n_s"], work["neg_s"] = np.where(excluded_sent, 0, n), np.where(excluded_sent, 0, neg)
    work["n_v"], work["k_v"] = np.where(excluded_vol, 0, n), (~excluded_vol).astype(float)
    base_n, base_neg = _trailing(work, "n_s", s.window), _trailing(work, "neg_s", s.window)
    vol_n, vol_periods = _trailing(work, "n_v", s.window), _trailing(work, "k_v", s.window)

    testable = (n >= s.min_reviews) & (base_n >= s.min_baseline_reviews)
    p0 = (base_neg + 0.5) / (base_n + 1.0)
    weight = np.clip(np.minimum(base_n, s.max_baseline_weight), 1.0, None)
    a, b = p0 * weight, (1 - p0) * weight
    p_up = stats.betabinom.sf(neg - 1, n, a, b)
    p_down = stats.betabinom.cdf(neg, n, a, b)
    p_sent = np.where(testable, np.minimum(1.0, 2 * np.minimum(p_up, p_down)), np.nan)

    # Volume needs at least half a baseline of history (a group's first weeks say nothing about its normal).
    mu = np.where(vol_periods > 0, vol_n / np.maximum(vol_periods, 1), np.nan)
    # A group with a review or two per period cannot show a volume shift worth reporting; testing
    # it would only dilute the FDR correction.
    vol_testable = volume_ok & (vol_periods >= s.window / 2) & (np.nan_to_num(mu) >= s.volume_min_mean)
    mu_safe = np.nan_to_num(np.maximum(mu, 0.5), nan=1.0)
    prob = s.volume_dispersion / (s.volume_dispersion + mu_safe)
    v_up = stats.nbinom.sf(n - 1, s.volume_dispersion, prob)
    v_down = stats.nbinom.cdf(n, s.volume_dispersion, prob)
    p_vol = np.where(vol_testable, np.minimum(1.0, 2 * np.minimum(v_up, v_down)), np.nan)

    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(n > 0, neg / n, np.nan)
        base_share = np.where(base_n > 0, base_neg / base_n, np.nan)
        ratio = np.where(mu > 0, n / mu, np.nan)
    return frame.assign(
        negative_share=share, baseline_share=base_share, delta=share - base_share, p_sentiment=p_sent,
        baseline_mean_n=mu, volume_ratio=ratio, p_volume=p_vol,
    )


def _benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    q = np.full(len(p), np.nan)
    tested = ~np.isnan(p)
    if tested.any():
        q[tested] = stats.false_discovery_control(p[tested], method="bh")
    return q


def detect_shifts(counts: pd.DataFrame, settings: ShiftSettings = ShiftSettings(), *,
                  newest: date | None = None) -> pd.DataFrame:
    """Test every group's every period against its trailing baseline; mark the significant, large shifts.

    Args:
        counts: by, grp, period, n, negative (see :func:`store.shifts.fetch_group_period_counts`).
        settings: grain and thresholds.
        newest: the newest review's day; a period ending after it is incomplete and gets no
            volume test (its count is still growing). Default: the last period counts as complete.

    Returns:
        One row per (by, grp, period) with the columns of ``RESULT_COLUMNS``: shares, baselines,
        raw and BH-adjusted p-values, ``sentiment_shift`` ("spike"/"drop"/None) and
        ``volume_shift`` ("surge"/"slump"/None).

    Example:
        >>> shifts = detect_shifts(counts, ShiftSettings(grain="week"))  # doctest: +SKIP
        >>> shifts[shifts.sentiment_shift.notna()][["grp", "period"]].head(1)  # doctest: +SKIP
    """
    missing = {"by", "grp", "period", "n", "negative"} - set(counts.columns)
    if missing:
        raise ValueError(f"counts lack columns: {sorted(missing)}")
    if counts.empty:
        return pd.DataFrame(columns=RESULT_COLUMNS)
    counts = counts.assign(period=pd.to_datetime(counts["period"]))
    frame = _full_grid(counts, settings.grain, counts["period"].max())
    ends = np.array([period_end(p.date(), settings.grain) for p in frame["period"]])
    volume_ok = np.ones(len(frame), bool) if newest is None else ends <= newest
    excluded_sent = excluded_vol = np.zeros(len(frame), bool)
    # Clearly shifted periods leave later baselines; repeat until that set settles (a long
    # collapse is uncovered week by week: each pass cleans the next week's baseline).
    for _ in range(_MAX_PASSES):
        tested = _tests(frame, settings, excluded_sent, excluded_vol, volume_ok)
        new_sent = np.nan_to_num(tested["p_sentiment"].to_numpy(), nan=1.0) < settings.exclude_p
        new_vol = np.nan_to_num(tested["p_volume"].to_numpy(), nan=1.0) < settings.exclude_p
        if (new_sent == excluded_sent).all() and (new_vol == excluded_vol).all():
            break
        excluded_sent, excluded_vol = new_sent, new_vol
    q = _benjamini_hochberg(np.concatenate([tested["p_sentiment"].to_numpy(), tested["p_volume"].to_numpy()]))
    q_sent, q_vol = q[: len(tested)], q[len(tested):]
    delta, ratio = tested["delta"].to_numpy(), tested["volume_ratio"].to_numpy()
    change = tested["n"].to_numpy() - np.nan_to_num(tested["baseline_mean_n"].to_numpy())
    sent_hit = (np.nan_to_num(q_sent, nan=1.0) <= settings.fdr) & (np.abs(np.nan_to_num(delta)) >= settings.min_delta)
    vol_hit = ((np.nan_to_num(q_vol, nan=1.0) <= settings.fdr) & (np.abs(change) >= settings.volume_min_change)
               & ((ratio >= settings.volume_min_ratio) | (ratio <= 1 / settings.volume_min_ratio)))
    out = tested.assign(
        q_sentiment=q_sent, q_volume=q_vol,
        sentiment_shift=np.where(sent_hit, np.where(delta > 0, "spike", "drop"), None),
        volume_shift=np.where(vol_hit, np.where(change > 0, "surge", "slump"), None),
    )
    out["n"], out["negative"] = out["n"].astype(int), out["negative"].astype(int)
    return out[RESULT_COLUMNS].reset_index(drop=True)


def marked_shifts(result: pd.DataFrame) -> pd.DataFrame:
    """The rows of :func:`detect_shifts` with a sentiment or volume shift, most significant first."""
    hit = result[result["sentiment_shift"].notna() | result["volume_shift"].notna()]
    best = np.fmin(hit["q_sentiment"].where(hit["sentiment_shift"].notna()),
                   hit["q_volume"].where(hit["volume_shift"].notna()))
    return hit.assign(q=best).sort_values(["q", "period"], ascending=[True, False]).reset_index(drop=True)


def biggest_movers(result: pd.DataFrame, period: date, *, limit: int = T.MOVERS_LIMIT,
                   min_reviews: int = T.MOVERS_MIN_REVIEWS) -> pd.DataFrame:
    """Groups whose negative share in ``period`` moved most against their own baseline.

    Returns:
        Up to ``limit`` rows per grouping (by), largest |delta| first, with the columns of
        :func:`detect_shifts`.
    """
    rows = result[(result["period"] == pd.Timestamp(period)) & (result["n"] >= min_reviews)
                  & result["baseline_share"].notna()]
    rows = rows.assign(abs_delta=rows["delta"].abs()).sort_values(["by", "abs_delta", "grp"], ascending=[True, False, True])
    return rows.groupby("by", sort=True).head(limit).drop(columns="abs_delta").reset_index(drop=True)


def smooth_series(frame: pd.DataFrame, column: str, *, window: int = 4, by: str = "grp") -> pd.Series:
    """Trailing rolling mean of ``column`` within each ``by`` group (frame sorted by period)."""
    return frame.groupby(by, sort=False)[column].transform(lambda s: s.rolling(window, min_periods=1).mean())
