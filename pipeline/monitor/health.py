"""The champion's health per week, and the alerts raised when a number crosses its threshold.

Per week of review date, for one model's stored predictions:

- agreement with star-derived labels (an accuracy proxy where nobody labeled) and with human labels;
- mean top probability and the share of low-confidence predictions;
- the predicted class mix against the mix the model was trained on (a baseline: its own mix
  on the train split): Jensen-Shannon distance
  (base 2, 0 same .. 1 disjoint) and a chi-square goodness-of-fit p-value, so a small week's
  wobble is not mistaken for drift;
- vocabulary drift: the share of a week's term occurrences never seen in the training reviews.

A week raises an alert when an effect crosses its threshold in :mod:`pipeline.monitor.thresholds`
and, for the rate metrics, the change is significant after a Benjamini-Hochberg correction over
the weeks. :func:`run_monitor` also turns the week-grain sentiment and volume shifts of
:mod:`pipeline.monitor.shifts` into alerts, so the product team sees them on Overview.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial.distance import jensenshannon

from pipeline.monitor import thresholds as T
from pipeline.monitor.aspect_shifts import run_aspect_monitor
from pipeline.monitor.shifts import ShiftSettings, detect_shifts, marked_shifts
from store import alerts as alert_store
from store import model_health as health_store
from store.constants import LABELS
from store.db import connect, transaction
from store.errors import TastebudError
from store.shifts import fetch_group_period_counts, newest_review_date
from store.trends import resolve_sentiment_source

DbPath = str | os.PathLike | None
# Reviews per week read for vocabulary drift at most (a deterministic sample keeps big stores fast).
VOCAB_SAMPLE_PER_WEEK = 500
# Benjamini-Hochberg level for the per-week tests of the rate metrics.
HEALTH_FDR = 0.05


def training_vocabulary(texts: list[str]):
    """(analyzer, vocabulary) from training texts: unigram terms (English stop words out) in at least
    ``HEALTH_VOCAB_MIN_DF`` reviews."""
    from sklearn.feature_extraction.text import CountVectorizer

    vectorizer = CountVectorizer(stop_words="english", token_pattern=r"(?u)\b[^\W\d_][\w'-]+\b")
    analyzer = vectorizer.build_analyzer()
    if len(texts) < T.HEALTH_VOCAB_MIN_DF:
        return analyzer, frozenset()
    vectorizer.set_params(min_df=T.HEALTH_VOCAB_MIN_DF)
    try:
        vectorizer.fit(texts)
    except ValueError:  # nothing reaches min_df
        return analyzer, frozenset()
    return analyzer, frozenset(vectorizer.vocabulary_)


def unseen_term_share(texts: pd.DataFrame, analyzer, vocabulary: frozenset) -> pd.Series:
    """Per period of ``texts`` (period, text): occurrences of terms outside ``vocabulary`` / all occurrences."""
    if not vocabulary:
        return pd.Series(dtype=float)
    totals: dict = {}
    for period, text in zip(texts["period"], texts["text"]):
        terms = analyzer(text or "")
        seen, unseen = totals.get(period, (0, 0))
        totals[period] = (seen + len(terms), unseen + sum(t not in vocabulary for t in terms))
    return pd.Series({p: (u / s if s else np.nan) for p, (s, u) in totals.items()}, dtype=float)


def _js_and_p(counts: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    n = counts.sum()
    if n == 0 or reference.sum() == 0:
        return math.nan, math.nan
    expected = np.clip(reference / reference.sum(), 1e-6, None)
    expected = expected / expected.sum()
    js = float(jensenshannon(counts / n, expected, base=2))
    p = float(stats.chisquare(counts, expected * n).pvalue)
    return js, p


def compute_health(db: DbPath, model_id: str) -> pd.DataFrame:
    """The weekly health numbers of ``model_id`` from its stored predictions.

    Returns:
        One row per week with ``store.model_health.HEALTH_COLUMNS``; human_agreement is NaN where a
        week has fewer than ``HEALTH_MIN_HUMAN_LABELS`` human labels.

    Example:
        >>> compute_health("tastebud.duckdb", "ft-20261125-...")[["period", "star_agreement"]].head(1)  # doctest: +SKIP
    """
    with connect(db, read_only=True) as con:
        weekly = health_store.fetch_weekly_prediction_stats(con, model_id, low_confidence_prob=T.HEALTH_LOW_CONFIDENCE_PROB)
        mix, mix_source = health_store.fetch_training_label_mix(con, model_id)
        train_texts = health_store.fetch_training_texts(con, limit=T.HEALTH_VOCAB_MAX_TRAIN_DOCS)
        texts = health_store.fetch_weekly_texts(con, model_id, per_week=VOCAB_SAMPLE_PER_WEEK)
    if weekly.empty:
        return pd.DataFrame(columns=list(health_store.HEALTH_COLUMNS))
    reference = np.array([mix[label] for label in LABELS], dtype=float)
    counts = weekly[[f"pred_{label}" for label in LABELS]].to_numpy(dtype=float)
    js_p = [_js_and_p(row, reference) for row in counts]
    analyzer, vocabulary = training_vocabulary(train_texts)
    unseen = unseen_term_share(texts, analyzer, vocabulary)
    n = weekly["n"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        health = pd.DataFrame({
            "period": weekly["period"],
            "n": weekly["n"].astype(int),
            "star_agreement": np.where(weekly["n_stars"] > 0, weekly["star_agree"] / weekly["n_stars"], np.nan),
            "n_human": weekly["n_human"].astype(int),
            "human_agreement": np.where(weekly["n_human"] >= T.HEALTH_MIN_HUMAN_LABELS,
                                        weekly["human_agree"] / weekly["n_human"], np.nan),
            "mean_confidence": weekly["mean_confidence"],
            "low_confidence_share": weekly["low_confidence"] / n,
            **{f"share_{label}": counts[:, i] / n for i, label in enumerate(LABELS)},
            "class_mix_js": [v[0] for v in js_p],
            "class_mix_p": [v[1] for v in js_p],
        })  # fmt: skip
    health["unseen_term_share"] = health["period"].map(unseen).astype(float)
    # Kept for the binomial tests of the alerts; not stored.
    health.attrs["star_counts"] = (weekly["star_agree"].to_numpy(), weekly["n_stars"].to_numpy())
    health.attrs["low_counts"] = weekly["low_confidence"].to_numpy()
    health.attrs["training_mix"] = reference
    health.attrs["training_mix_source"] = mix_source
    return health


def _bh(p: np.ndarray) -> np.ndarray:
    q = np.full(len(p), np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        q[ok] = stats.false_discovery_control(p[ok], method="bh")
    return q


def _fmt(metric: str, value: float) -> str:
    return f"{value:.2f}" if metric == "class_mix_js" else f"{value:.0%}"


def health_alerts(health: pd.DataFrame, model_id: str) -> list[dict]:
    """The weeks whose health crosses a threshold, as alerts for ``model_id``.

    Rules (thresholds in :mod:`pipeline.monitor.thresholds`), each only for weeks with at least
    ``HEALTH_MIN_WEEK_REVIEWS`` scored reviews:

    - star agreement at least ``HEALTH_MAX_STAR_AGREEMENT_DROP`` below the model's median week,
      and significantly so (one-sided binomial, BH over weeks);
    - low-confidence share at least ``HEALTH_MAX_LOW_CONFIDENCE_RISE`` above the median week, likewise;
    - class mix Jensen-Shannon distance from the training mix of at least ``HEALTH_MAX_CLASS_MIX_JS``
      with a significant chi-square (BH over weeks);
    - human agreement below ``HEALTH_MIN_HUMAN_AGREEMENT`` (weeks with enough human labels);
    - unseen-term share above ``HEALTH_MAX_UNSEEN_TERM_SHARE``.
    """
    if health.empty:
        return []
    big = (health["n"] >= T.HEALTH_MIN_WEEK_REVIEWS).to_numpy()
    periods = pd.to_datetime(health["period"]).dt.date.to_numpy()
    alerts: list[dict] = []

    def add(mask, metric: str, values, threshold: float, text: str, details=None, suffixes=None) -> None:
        for i in np.flatnonzero(mask):
            suffix = suffixes[i] if suffixes is not None else ""
            alerts.append({
                "kind": "model_health", "metric": metric, "subject": model_id, "period": periods[i],
                "value": round(float(values[i]), 4), "threshold": round(float(threshold), 4),
                "message": f"week of {periods[i]:%Y-%m-%d}: {text.format(value=_fmt(metric, float(values[i])))}{suffix}",
                "detail": {"n": int(health["n"].iloc[i]), **(details[i] if details is not None else {})},
            })  # fmt: skip

    agree, n_stars = health.attrs.get("star_counts", (None, None))
    star = health["star_agreement"].to_numpy(dtype=float)
    if agree is not None and big.any():
        reference = float(np.nanmedian(star[big]))
        p = np.where(big & (n_stars > 0), stats.binom.cdf(agree, np.maximum(n_stars, 1), reference), np.nan)
        hit = big & (star <= reference - T.HEALTH_MAX_STAR_AGREEMENT_DROP) & (np.nan_to_num(_bh(p), nan=1) <= HEALTH_FDR)
        add(hit, "star_agreement", star, reference - T.HEALTH_MAX_STAR_AGREEMENT_DROP,
            f"agreement with star ratings fell to {{value}} (usually {reference:.0%})")
    low = health["low_confidence_share"].to_numpy(dtype=float)
    low_counts = health.attrs.get("low_counts")
    if low_counts is not None and big.any():
        reference = float(np.nanmedian(low[big]))
        p = np.where(big, stats.binom.sf(low_counts - 1, health["n"].to_numpy(), max(reference, 0.01)), np.nan)
        hit = big & (low >= reference + T.HEALTH_MAX_LOW_CONFIDENCE_RISE) & (np.nan_to_num(_bh(p), nan=1) <= HEALTH_FDR)
        add(hit, "low_confidence_share", low, reference + T.HEALTH_MAX_LOW_CONFIDENCE_RISE,
            f"low-confidence predictions rose to {{value}} (usually {reference:.0%})")
    js = health["class_mix_js"].to_numpy(dtype=float)
    q = _bh(np.where(big, health["class_mix_p"].to_numpy(dtype=float), np.nan))
    hit = big & (np.nan_to_num(js) >= T.HEALTH_MAX_CLASS_MIX_JS) & (np.nan_to_num(q, nan=1) <= HEALTH_FDR)
    mixes = [{f"share_{label}": round(float(health[f"share_{label}"].iloc[i]), 3) for label in LABELS}
             for i in range(len(health))]
    neg = health["share_negative"].to_numpy(dtype=float)
    reference_mix = np.asarray(health.attrs.get("training_mix", np.ones(len(LABELS))), dtype=float)
    train_neg = reference_mix[0] / max(reference_mix.sum(), 1)
    mix_source = health.attrs.get("training_mix_source", "training labels")
    add(hit, "class_mix_js", js, T.HEALTH_MAX_CLASS_MIX_JS,
        "predicted class mix drifted from the training mix (Jensen-Shannon {value})", mixes,
        [f": {v:.0%} predicted negative (reference {train_neg:.0%}, from {mix_source})" for v in neg])
    human = health["human_agreement"].to_numpy(dtype=float)
    add(~np.isnan(human) & (human < T.HEALTH_MIN_HUMAN_AGREEMENT), "human_agreement", human,
        T.HEALTH_MIN_HUMAN_AGREEMENT, "agreement with human labels is {value}")
    unseen = health["unseen_term_share"].to_numpy(dtype=float)
    add(big & (np.nan_to_num(unseen) > T.HEALTH_MAX_UNSEEN_TERM_SHARE), "unseen_term_share", unseen,
        T.HEALTH_MAX_UNSEEN_TERM_SHARE, "{value} of the words are unseen in training (vocabulary drift)")
    return alerts


def shift_alerts(shifts: pd.DataFrame) -> list[dict]:
    """Alerts for the marked rows of :func:`pipeline.monitor.shifts.detect_shifts`."""
    alerts = []
    for row in marked_shifts(shifts).itertuples(index=False):
        period = pd.Timestamp(row.period).date()
        subject = f"{row.by}:{row.grp}"
        if row.sentiment_shift is not None:
            alerts.append({
                "kind": "sentiment_shift", "metric": "negative_share", "subject": subject, "period": period,
                "value": float(row.negative_share), "threshold": float(row.baseline_share),
                "message": f"{row.grp}: negative share {row.sentiment_shift} to {row.negative_share:.0%} in the week of "
                           f"{period:%Y-%m-%d} (usually {row.baseline_share:.0%}, {row.n} reviews)",
                "detail": {"by": row.by, "grp": row.grp, "q": float(row.q_sentiment), "n": int(row.n)},
            })  # fmt: skip
        if row.volume_shift is not None:
            alerts.append({
                "kind": "volume_shift", "metric": "reviews", "subject": subject, "period": period,
                "value": float(row.n), "threshold": float(row.baseline_mean_n),
                "message": f"{row.grp}: review volume {row.volume_shift} to {row.n} in the week of {period:%Y-%m-%d} "
                           f"(usually {row.baseline_mean_n:.1f})",
                "detail": {"by": row.by, "grp": row.grp, "q": float(row.q_volume)},
            })  # fmt: skip
    return alerts


def run_monitor(db: DbPath, *, model_id: str | None = None, reporter=None) -> dict:
    """Recompute the champion's (or ``model_id``'s) weekly health, store it, and raise new alerts.

    Shifts are detected at week grain with default settings on the same model's predictions
    (the current labels when it has none). When an aspect model is champion, its per-aspect shifts
    are looked for too (:func:`pipeline.monitor.aspect_shifts.run_aspect_monitor`).

    Returns:
        {"model_id" (None when no review model is champion), "weeks", "alerts_new", "alerts_found": {kind: n},
        "shifts": n, "source": "predictions" or "labels" (what the review-level shifts were read from),
        "aspects": the aspect monitor's result or None}.

    Example:
        >>> run_monitor("tastebud.duckdb")["alerts_new"]  # doctest: +SKIP
        3
    """
    from store.aspect_trends import resolve_aspect_model
    from store.models import get_champion

    with connect(db, read_only=True) as con:
        if model_id is None:
            champion = get_champion(con)
            # Without a review champion the review-level shifts are read from the current labels (as the
            # trends page does) and there is no model health to compute; an aspect champion alone is
            # enough to monitor. With neither there is nothing a monitor could say about a model.
            if champion is None and resolve_aspect_model(con, None) is None:
                raise TastebudError("no champion model yet: promote a review or aspect model (or pass --model) "
                                    "before monitoring")
            model_id = champion["model_id"] if champion is not None else None
        source = resolve_sentiment_source(con, model_id)
        counts = fetch_group_period_counts(con, source, grain="week")
        newest = newest_review_date(con)
    if reporter is not None:
        reporter.progress(0.1, f"computing weekly health of {model_id}" if model_id else
                          "no review champion: looking for shifts in the current labels", force=True)
    health = compute_health(db, model_id) if source.kind == "predictions" else pd.DataFrame()
    shifts = detect_shifts(counts, ShiftSettings(grain="week"), newest=newest)
    found = (health_alerts(health, model_id) if not health.empty else []) + shift_alerts(shifts)
    with transaction(db) as con:
        if not health.empty:
            health_store.replace_model_health(con, model_id, health)
        new = alert_store.raise_alerts(con, found)
    by_kind: dict[str, int] = {}
    for alert in found:
        by_kind[alert["kind"]] = by_kind.get(alert["kind"], 0) + 1
    # Per-aspect shifts when an aspect model is champion (None otherwise).
    aspects = run_aspect_monitor(db, reporter=reporter)
    if reporter is not None:
        reporter.progress(1.0, f"{new + (aspects['alerts_new'] if aspects else 0)} new alerts", force=True)
    return {"model_id": model_id, "weeks": len(health), "alerts_new": new, "alerts_found": by_kind,
            "shifts": int(len(marked_shifts(shifts))), "source": source.kind, "aspects": aspects}


def run_job(db: DbPath, params: dict, reporter) -> dict:
    """Job kind "monitor": params model_id (optional)."""
    return run_monitor(db, model_id=params.get("model_id"), reporter=reporter)
