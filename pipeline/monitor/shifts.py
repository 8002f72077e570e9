"""Sudden shifts of sentiment and volume per restaurant and neighbourhood, at any grain.

Each (group, period) is compared with the same group's own trailing baseline (the previous
``SHIFT_BASELINE_PERIODS[grain]`` periods, periods without reviews included):

- sentiment: the period's negative reviews against a beta-binomial whose mean is the
  baseline's negative share and whose weight is the baseline's review count, capped at
  ``SHIFT_MAX_BASELINE_WEIGHT`` (a group's share wanders between periods more than sampling
  explains). Small weekly counts are handled exactly, not by a normal approximation. The
  same test on the last ``SHIFT_SUSTAIN_PERIODS`` periods pooled finds a shift that lasts
  but is too thinly reviewed to prove in any one period (a person sees four bad weeks in a
  row; no single week of seven reviews proves it).
- volume: the period's review count against a negative binomial with the baseline's mean
  reviews per period (over-dispersed Poisson).

All tests are two-sided; all p-values of all groups, periods and tests get one
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
RESULT_COLUMNS = [
    "by", "grp", "period", "n", "negative", "negative_share", "baseline_share", "delta", "p_sentiment",
    "p_sustained", "q_sentiment", "sentiment_shift", "baseline_mean_n", "volume_ratio", "p_volume", "q_volume", "volume_shift",
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
    sustain_periods: int = T.SHIFT_SUSTAIN_PERIODS
    prior_reviews: float = T.SHIFT_BASELINE_PRIOR_REVIEWS
    window: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if self.grain not in _FREQ:
            raise ValueError(f"unknown time grain {self.grain!r}; expected one of {', '.join(_FREQ)}")
        window = self.baseline_periods or T.SHIFT_BASELINE_PERIODS[self.grain]
        if window < 2:
            raise ValueError(f"a baseline needs at least 2 periods, got {window}")
        if not 0 < self.fdr < 1:
            raise ValueError(f"fdr must be between 0 and 1, got {self.fdr}")
        if self.sustain_periods < 1:
            raise ValueError(f"sustain_periods must be at least 1, got {self.sustain_periods}")
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


def _betabinom_p(neg: float, n: float, base_neg: float, base_n: float, s: ShiftSettings, prior: float) -> float:
    """Two-sided p of ``neg`` of ``n`` under a beta-binomial centred on the baseline share (shrunk
    towards the store-wide share ``prior`` by ``s.prior_reviews`` pseudo-reviews)."""
    p0 = (base_neg + s.prior_reviews * prior) / (base_n + s.prior_reviews)
    weight = max(min(base_n, s.max_baseline_weight), 1.0)
    a, b = p0 * weight, (1 - p0) * weight
    return float(min(1.0, 2 * min(stats.betabinom.sf(neg - 1, n, a, b), stats.betabinom.cdf(neg, n, a, b))))


def _baseline(values: np.ndarray, clean: np.ndarray, end: int, window: int) -> tuple[float, int]:
    """Sum of ``values`` over the last ``window`` clean periods before index ``end``, and their count."""
    idx = np.flatnonzero(clean[:end])[-window:]
    return float(values[idx].sum()), len(idx)


def _scan_group(n: np.ndarray, neg: np.ndarray, volume_ok: np.ndarray, s: ShiftSettings, prior: float
                ) -> dict[str, np.ndarray]:
    """Test one group's periods in time order. A clearly shifted period (alone, or inside a clearly
    shifted window) is kept out of every later baseline, which reaches further back instead, so the
    third week of a collapse, and the recovery after it, are compared with normal weeks."""
    size, span = len(n), s.sustain_periods
    out = {k: np.full(size, np.nan) for k in ("base_n", "base_neg", "p_sent", "p_win", "win_delta", "mu", "p_vol")}
    clean_sent, clean_vol = np.ones(size, bool), np.ones(size, bool)
    for i in range(size):
        base_n, _ = _baseline(n, clean_sent, i, s.window)
        base_neg, _ = _baseline(neg, clean_sent, i, s.window)
        out["base_n"][i], out["base_neg"][i] = base_n, base_neg
        if n[i] >= s.min_reviews and base_n >= s.min_baseline_reviews:
            out["p_sent"][i] = _betabinom_p(neg[i], n[i], base_neg, base_n, s, prior)
        # Sustained shifts: the last ``span`` periods pooled against the baseline before them.
        first = max(i - span + 1, 0)
        win_n, win_neg = n[first:i + 1].sum(), neg[first:i + 1].sum()
        wb_n, _ = _baseline(n, clean_sent, first, s.window)
        wb_neg, _ = _baseline(neg, clean_sent, first, s.window)
        if span > 1 and n[i] > 0 and win_n >= s.min_reviews and wb_n >= s.min_baseline_reviews:
            out["p_win"][i] = _betabinom_p(win_neg, win_n, wb_neg, wb_n, s, prior)
            out["win_delta"][i] = win_neg / win_n - wb_neg / wb_n
        vol_n, vol_periods = _baseline(n, clean_vol, i, s.window)
        if vol_periods:
            out["mu"][i] = vol_n / vol_periods
        # Volume needs half a baseline of history, and a group with a review or two per period cannot
        # show a volume shift worth reporting (testing it would only dilute the FDR correction).
        if volume_ok[i] and vol_periods >= s.window / 2 and out["mu"][i] >= s.volume_min_mean:
            out["p_vol"][i] = _negbinom_p(n[i], out["mu"][i], s)
        moved = n[i] > 0 and base_n > 0 and abs(neg[i] / n[i] - base_neg / base_n) >= s.min_delta
        if moved and np.nan_to_num(out["p_sent"][i], nan=1.0) < s.exclude_p:
            clean_sent[i] = False
        if abs(np.nan_to_num(out["win_delta"][i])) >= s.min_delta and np.nan_to_num(out["p_win"][i], nan=1.0) < s.exclude_p:
            clean_sent[first:i + 1] = False
        if np.nan_to_num(out["p_vol"][i], nan=1.0) < s.exclude_p:
            clean_vol[i] = False
    return out


def _negbinom_p(x: float, mu: float, s: ShiftSettings) -> float:
    """Two-sided p of ``x`` reviews under a negative binomial with mean ``mu``."""
    prob = s.volume_dispersion / (s.volume_dispersion + max(mu, 0.5))
    return min(1.0, 2 * min(stats.nbinom.sf(x - 1, s.volume_dispersion, prob), stats.nbinom.cdf(x, s.volume_dispersion, prob)))


def _tests(frame: pd.DataFrame, s: ShiftSettings, volume_ok: np.ndarray) -> pd.DataFrame:
    cols = {k: np.full(len(frame), np.nan) for k in ("base_n", "base_neg", "p_sent", "p_win", "win_delta", "mu", "p_vol")}
    n_all, neg_all = frame["n"].to_numpy(float), frame["negative"].to_numpy(float)
    prior = (neg_all.sum() + 0.5) / (n_all.sum() + 1.0)
    for rows in frame.groupby(["by", "grp"], sort=False).indices.values():
        for key, values in _scan_group(n_all[rows], neg_all[rows], volume_ok[rows], s, prior).items():
            cols[key][rows] = values
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(n_all > 0, neg_all / n_all, np.nan)
        base_share = np.where(cols["base_n"] > 0, cols["base_neg"] / cols["base_n"], np.nan)
        ratio = np.where(cols["mu"] > 0, n_all / cols["mu"], np.nan)
    return frame.assign(
        negative_share=share, baseline_share=base_share, delta=share - base_share, p_sentiment=cols["p_sent"],
        p_sustained=cols["p_win"], sustained_delta=cols["win_delta"], baseline_mean_n=cols["mu"],
        volume_ratio=ratio, p_volume=cols["p_vol"],
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
    tested = _tests(frame, settings, volume_ok)
    m = len(tested)
    q = _benjamini_hochberg(np.concatenate([tested["p_sentiment"].to_numpy(), tested["p_sustained"].to_numpy(),
                                            tested["p_volume"].to_numpy()]))
    q_single, q_win, q_vol = q[:m], q[m:2 * m], q[2 * m:]
    delta, ratio = np.nan_to_num(tested["delta"].to_numpy()), tested["volume_ratio"].to_numpy()
    win_delta = np.nan_to_num(tested["sustained_delta"].to_numpy())
    change = tested["n"].to_numpy() - np.nan_to_num(tested["baseline_mean_n"].to_numpy())
    single_hit = (np.nan_to_num(q_single, nan=1.0) <= settings.fdr) & (np.abs(delta) >= settings.min_delta)
    # A significant window marks its last period only when that period itself moved the same way.
    win_hit = ((np.nan_to_num(q_win, nan=1.0) <= settings.fdr) & (np.abs(win_delta) >= settings.min_delta)
               & (np.sign(delta) == np.sign(win_delta)) & (np.abs(delta) >= settings.min_delta))
    sent_hit = single_hit | win_hit
    q_sent = np.fmin(np.where(single_hit, q_single, np.nan), np.where(win_hit, q_win, np.nan))
    q_sent = np.where(sent_hit, q_sent, np.fmin(q_single, q_win))
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
