"""Relabel-retrain rounds: train on the current labels, compare with the champion, promote only on evidence.

A round trains a challenger on the current labels (human relabels outrank star labels),
then scores the frozen test split with both the champion and the challenger against the
*current* test labels (a relabeled test review changes the answer key for both models
alike). The challenger is promoted only when a paired bootstrap over test reviews puts the
lower bound of its macro-F1 gain above ``PROMOTION_MIN_GAIN``; otherwise the round says why
not. Each round records how many human labels it added per split (test relabels are
counted apart: they sharpen the yardstick, they do not teach the model) and the label
efficiency: macro-F1 gain per human label added to the train split.
"""

from __future__ import annotations

import os

import numpy as np

from pipeline.loop import thresholds as T
from pipeline.jobs import JobReporter
from store.actors import Actor, audit, require
from store.constants import LABEL_TO_ID
from store.db import connect, transaction
from store.errors import TastebudError
from store.reviews import fetch_labeled_split
from store.rounds import count_round_human_labels, finish_round, start_round

DbPath = str | os.PathLike | None


def macro_f1_from_labels(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int = 3) -> float:
    """Macro-F1 over ``num_classes`` classes (a class with no true or predicted rows scores 0).

    Example:
        >>> macro_f1_from_labels(np.array([0, 1, 2]), np.array([0, 1, 2]))
        1.0
    """
    return float(_macro_f1(y_true[None, :], y_pred[None, :], num_classes)[0])


def _macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Row-wise macro-F1 of (B, n) label matrices."""
    scores = []
    for c in range(num_classes):
        t, p = y_true == c, y_pred == c
        tp = (t & p).sum(axis=1)
        denom = t.sum(axis=1) + p.sum(axis=1)
        scores.append(np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0))
    return np.mean(scores, axis=0)


def paired_bootstrap(
    y_true: np.ndarray,
    pred_champion: np.ndarray,
    pred_challenger: np.ndarray,
    *,
    resamples: int = T.BOOTSTRAP_RESAMPLES,
    confidence: float = T.BOOTSTRAP_CONFIDENCE,
    seed: int = 0,
) -> dict:
    """Confidence interval of (challenger - champion) macro-F1 by resampling test reviews in pairs.

    Both models are scored on the same resampled reviews each time, so the interval reflects
    the difference between them, not the difficulty of the sample.

    Args:
        y_true: class ids of the test reviews.
        pred_champion, pred_challenger: predicted class ids of the two models, same order.
        resamples: bootstrap resamples.
        confidence: two-sided level of the percentile interval.
        seed: resampling seed.

    Returns:
        {"champion_macro_f1", "challenger_macro_f1", "delta", "ci_low", "ci_high", "p_better"
        (share of resamples where the challenger wins), "n", "resamples"}.

    Example:
        >>> paired_bootstrap(y, a, b)["ci_low"] > 0  # doctest: +SKIP
        True
    """
    y_true, a, b = (np.asarray(v) for v in (y_true, pred_champion, pred_challenger))
    n = len(y_true)
    if n == 0 or len(a) != n or len(b) != n:
        raise ValueError("paired bootstrap needs three equally long, non-empty label arrays")
    rng = np.random.default_rng(seed)
    deltas = np.empty(resamples)
    step = max(1, 2_000_000 // n)  # resample in blocks to bound memory on large test sets
    for start in range(0, resamples, step):
        idx = rng.integers(0, n, size=(min(step, resamples - start), n))
        yt = y_true[idx]
        deltas[start : start + len(idx)] = _macro_f1(yt, b[idx], 3) - _macro_f1(yt, a[idx], 3)
    alpha = (1 - confidence) / 2
    champion, challenger = macro_f1_from_labels(y_true, a), macro_f1_from_labels(y_true, b)
    return {
        "champion_macro_f1": champion,
        "challenger_macro_f1": challenger,
        "delta": challenger - champion,
        "ci_low": float(np.quantile(deltas, alpha)),
        "ci_high": float(np.quantile(deltas, 1 - alpha)),
        "p_better": float((deltas > 0).mean()),
        "n": n,
        "resamples": resamples,
    }


def decide_promotion(comparison: dict, *, min_gain: float = T.PROMOTION_MIN_GAIN) -> tuple[bool, str]:
    """Promote only when the bootstrap lower bound of the gain exceeds ``min_gain``; says why either way.

    Example:
        >>> decide_promotion({"delta": 0.05, "ci_low": 0.01, "ci_high": 0.09})[0]
        True
    """
    interval = f"macro-F1 change {comparison['delta']:+.4f}, {T.BOOTSTRAP_CONFIDENCE:.0%} CI " \
               f"[{comparison['ci_low']:+.4f}, {comparison['ci_high']:+.4f}]"
    if comparison["ci_low"] > min_gain:
        return True, f"promoted: {interval}; the lower bound is above {min_gain:+.4f}"
    if comparison["delta"] <= 0:
        return False, f"not promoted: the challenger is not better ({interval})"
    return False, f"not promoted: the gain is not backed by the test set ({interval}; lower bound not above {min_gain:+.4f})"


class _SpanReporter(JobReporter):
    """Maps a sub-task's 0-1 progress into a span of the parent job's progress."""

    def __init__(self, parent: JobReporter, start: float, end: float):
        super().__init__(parent.db, parent.job_id, echo=parent._echo)
        self._start, self._end = start, end

    def progress(self, fraction: float, message: str | None = None, *, force: bool = False) -> None:
        super().progress(self._start + (self._end - self._start) * fraction, message, force=force)


def _test_predictions(db: DbPath, model_ids: list[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    from pipeline.models.predictors import load_predictor

    with connect(db, read_only=True) as con:
        test = fetch_labeled_split(con, "test")
    if test.empty:
        raise TastebudError("the test split has no labeled reviews; import more reviews first")
    y = test["label"].map(LABEL_TO_ID).to_numpy()
    texts = test["text"].tolist()
    return y, {m: load_predictor(db, m).predict_proba(texts).argmax(axis=1) for m in model_ids}


def retrain(db: DbPath, config, *, actor: Actor, reporter: JobReporter | None = None) -> dict:
    """Run one round: train on the current labels, compare with the champion, promote on evidence.

    Args:
        db: the store.
        config: a :class:`pipeline.train.config.TrainConfig`.
        actor: who runs the round (needs "train"; promotion needs "promote").
        reporter: progress and cancellation.

    Returns:
        {"round_id", "model_id", "champion_before", "promoted", "decision", "human_labels"
        {train, val, test, other}, "comparison" (bootstrap result or None), "label_efficiency"}.

    Example:
        >>> retrain("tastebud.duckdb", TrainConfig(epochs=2), actor=cli_actor())["promoted"]  # doctest: +SKIP
        True
    """
    from pipeline.models.loading import check_base_model
    from pipeline.train.run import train
    from store.models import get_champion, promote_model

    require(actor, "train")
    require(actor, "promote")
    check_base_model(config.base_model)  # a bad --base-model fails before a round row exists
    reporter = reporter or JobReporter(db, None)
    with transaction(db) as con:
        round_id = start_round(con, actor=actor.name, job_id=reporter.job_id)
        champion = get_champion(con)
        audit(con, actor, "round.start", target=str(round_id), detail={"config": config.to_dict()})
    champion_id = champion["model_id"] if champion else None
    try:
        reporter.log(f"round {round_id}: training on the current labels (champion: {champion_id or 'none'})")
        model_id = train(db, config, reporter=_SpanReporter(reporter, 0.0, 0.85), actor=actor)
        with connect(db, read_only=True) as con:
            added = count_round_human_labels(con, round_id)
        comparison = None
        if champion_id is None:
            promoted, decision = True, "promoted: first model, nothing to compare against"
        else:
            reporter.progress(0.88, "scoring the test split with champion and challenger", force=True)
            y, preds = _test_predictions(db, [champion_id, model_id])
            comparison = paired_bootstrap(y, preds[champion_id], preds[model_id])
            promoted, decision = decide_promotion(comparison)
        delta = comparison["delta"] if comparison else None
        efficiency = delta / added["train"] if delta is not None and added["train"] else None
        with transaction(db) as con:
            if promoted:
                promote_model(con, actor, model_id, reason=f"round {round_id}: {decision}")
            finish_round(
                con, round_id, status="succeeded", model_id=model_id, champion_before=champion_id,
                promoted=promoted, decision=decision,
                human_labels_train=added["train"], human_labels_val=added["val"],
                human_labels_test=added["test"], human_labels_other=added["other"],
                test_n=comparison["n"] if comparison else None,
                champion_macro_f1=comparison["champion_macro_f1"] if comparison else None,
                challenger_macro_f1=comparison["challenger_macro_f1"] if comparison else None,
                delta_macro_f1=delta, ci_low=comparison["ci_low"] if comparison else None,
                ci_high=comparison["ci_high"] if comparison else None, label_efficiency=efficiency,
                detail={"config": config.to_dict(), "comparison": comparison},
            )
            audit(con, actor, "round.finish", target=str(round_id),
                  detail={"model_id": model_id, "promoted": promoted, "decision": decision})
    except BaseException as exc:
        with transaction(db) as con:
            finish_round(con, round_id, status="failed", champion_before=champion_id,
                         decision=f"failed: {type(exc).__name__}: {exc}")
        raise
    reporter.log(f"round {round_id}: {decision}")
    reporter.progress(1.0, decision, force=True)
    return {
        "round_id": round_id,
        "model_id": model_id,
        "champion_before": champion_id,
        "promoted": promoted,
        "decision": decision,
        "human_labels": added,
        "comparison": comparison,
        "label_efficiency": efficiency,
    }


def run_job(db: DbPath, params: dict, reporter: JobReporter) -> dict:
    """Job kind "retrain": params are ``TrainConfig.to_dict()`` fields (all optional)."""
    from pipeline.train.config import TrainConfig
    from store.jobs import get_job

    try:
        config = TrainConfig.from_dict(dict(params or {}))
    except ValueError as exc:
        raise TastebudError(f"bad training parameters: {exc}") from exc
    name = "job"
    if reporter.job_id:
        with connect(db, read_only=True) as con:
            name = (get_job(con, reporter.job_id) or {}).get("actor") or name
    # start_job already checked that this person may run a retrain (permission "train").
    return retrain(db, config, actor=Actor(name=name, role="data_scientist"), reporter=reporter)
