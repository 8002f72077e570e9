"""The one promotion rule: champion and challenger scored on the same test reviews, promoted on evidence.

``train --promote-if-better`` and ``retrain`` both decide here. Both models predict the
labeled test split as it stands *now* (a relabeled test review changes the answer key for
both alike), so no score taken on an older snapshot of the test split is ever compared with
a newer one. A stored evaluation that no longer matches the current answer key is replaced
with the fresh one. The challenger is promoted only when a paired bootstrap over the test
reviews puts the lower bound of its macro-F1 gain above ``PROMOTION_MIN_GAIN``.
"""

from __future__ import annotations

import numpy as np

from pipeline.evaluation.evaluator import is_current, load_test_frame, store_test_evaluation
from pipeline.evaluation.metrics import macro_f1
from pipeline.loop import thresholds as T
from pipeline.loop.registry import promote
from pipeline.models.predictors import load_predictor
from store.actors import Actor, require
from store.constants import LABEL_TO_ID
from store.db import connect
from store.evaluations import fetch_latest_evaluation
from store.models import get_champion

FIRST_MODEL_DECISION = "promoted: first model, nothing to compare against"


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
        deltas[start : start + len(idx)] = macro_f1(y_true[idx], b[idx]) - macro_f1(y_true[idx], a[idx])
    alpha = (1 - confidence) / 2
    champion, challenger = macro_f1(y_true, a), macro_f1(y_true, b)
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


def compare_on_test(db, champion_id: str, challenger_id: str) -> dict:
    """Score both models on the current labeled test split and bootstrap the macro-F1 difference.

    A model whose newest stored test evaluation was taken on another answer key (or never)
    gets a fresh one stored from these very predictions.

    Returns:
        :func:`paired_bootstrap`'s dict plus "refreshed" (model ids whose stored evaluation was renewed).

    Raises:
        TastebudError: the test split has no labeled review, or a model cannot be loaded.
    """
    frame = load_test_frame(db)
    y = frame["label"].map(LABEL_TO_ID).to_numpy()
    texts = frame["text"].tolist()
    predicted, refreshed = {}, []
    for model_id in (champion_id, challenger_id):
        probs = load_predictor(db, model_id).predict_proba(texts)
        predicted[model_id] = probs.argmax(axis=1)
        with connect(db, read_only=True) as con:
            stored = fetch_latest_evaluation(con, model_id)
        if not is_current(stored, frame):
            store_test_evaluation(db, model_id, frame, probs)
            refreshed.append(model_id)
    comparison = paired_bootstrap(y, predicted[champion_id], predicted[challenger_id])
    return {**comparison, "refreshed": refreshed}


def judge_challenger(db, champion_id: str | None, challenger_id: str) -> tuple[bool, str, dict | None]:
    """The promotion rule: (promote?, the decision in words, the comparison or None without a champion).

    Example:
        >>> judge_challenger("store.duckdb", "ft-old", "ft-new")[1]  # doctest: +SKIP
        'not promoted: the challenger is not better (macro-F1 change -0.0040, 95% CI [-0.0210, +0.0130])'
    """
    if champion_id is None:
        return True, FIRST_MODEL_DECISION, None
    comparison = compare_on_test(db, champion_id, challenger_id)
    promoted, decision = decide_promotion(comparison)
    return promoted, decision, comparison


def promote_if_better(db, model_id: str, actor: Actor) -> dict:
    """Promote ``model_id`` by the rule ``retrain`` uses (:func:`pipeline.loop.promotion.judge_challenger`):
    both models scored on the current test split, promoted only when a paired bootstrap backs the gain;
    the first model becomes champion.

    Returns:
        {"promoted": bool, "model_id", "champion" (before), "score", "champion_score" (macro-F1 on the
        current test split; None without a champion), "comparison", "message"}.

    Raises:
        TastebudError: a champion exists but the test split has no labeled review.

    Example:
        >>> promote_if_better("store.duckdb", "ft-20261125-101500-1a2b", cli_actor())["message"]  # doctest: +SKIP
        'not promoted: the challenger is not better (macro-F1 change -0.0040, 95% CI [-0.0210, +0.0130])'
    """
    require(actor, "promote")
    with connect(db, read_only=True) as con:
        champion = get_champion(con)
    champion_id = champion["model_id"] if champion else None
    outcome = {"model_id": model_id, "champion": champion_id, "promoted": False, "comparison": None,
               "score": None, "champion_score": None}
    if champion_id == model_id:
        return {**outcome, "message": f"{model_id} is already the champion"}
    promoted, decision, comparison = judge_challenger(db, champion_id, model_id)
    if comparison is not None:
        outcome.update(comparison=comparison, score=comparison["challenger_macro_f1"],
                       champion_score=comparison["champion_macro_f1"])
    if promoted:
        promote(db, model_id, actor, reason=f"auto: {decision}")
    return {**outcome, "promoted": promoted, "message": f"{model_id}: {decision}"}
