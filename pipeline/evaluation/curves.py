"""Curves and intervals the Model comparison page draws: reliability bins, per-class precision-recall
curves, and bootstrap intervals of macro-F1 (for slices).

All work on stored probabilities ``(n, 3)`` and true class ids, so they never load a model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, precision_recall_curve

from store.constants import LABELS

# Confidence bins of the reliability diagram (the same equal-width scheme as the ECE).
RELIABILITY_BINS = 10
# Bootstrap resamples and level for slice intervals.
SLICE_RESAMPLES = 500
SLICE_CONFIDENCE = 0.95
# Slices smaller than this get no interval (a resample of a handful of reviews says nothing).
MIN_INTERVAL_N = 10


def reliability_bins(probs: np.ndarray, references: np.ndarray, *, bins: int = RELIABILITY_BINS) -> pd.DataFrame:
    """Mean confidence and accuracy of the top prediction per equal-width confidence bin.

    Returns:
        bin_low, bin_high, n, confidence, accuracy; empty bins are left out.

    Example:
        >>> reliability_bins(np.array([[0.9, 0.05, 0.05]]), np.array([0]))[["n", "accuracy"]].values.tolist()
        [[1.0, 1.0]]
    """
    probs, references = np.asarray(probs, dtype=float), np.asarray(references)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == references
    index = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    rows = []
    for b in range(bins):
        mask = index == b
        if mask.any():
            rows.append({"bin_low": b / bins, "bin_high": (b + 1) / bins, "n": int(mask.sum()),
                         "confidence": float(confidence[mask].mean()), "accuracy": float(correct[mask].mean())})
    return pd.DataFrame(rows, columns=["bin_low", "bin_high", "n", "confidence", "accuracy"])


def precision_recall_curves(probs: np.ndarray, references: np.ndarray) -> dict[str, pd.DataFrame]:
    """One-vs-rest precision-recall curve per class; each frame's ``attrs["ap"]`` is its average precision.

    A class absent from ``references`` has no curve.
    """
    probs, references = np.asarray(probs, dtype=float), np.asarray(references)
    curves = {}
    for i, label in enumerate(LABELS):
        truth = references == i
        if not truth.any():
            continue
        precision, recall, _ = precision_recall_curve(truth, probs[:, i])
        frame = pd.DataFrame({"recall": recall, "precision": precision})
        frame.attrs["ap"] = float(average_precision_score(truth, probs[:, i]))
        curves[label] = frame
    return curves


def _macro_f1_rows(y_true: np.ndarray, y_pred: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Macro-F1 of each row of (B, n) label matrices over ``classes``."""
    scores = []
    for c in classes:
        t, p = y_true == c, y_pred == c
        tp = (t & p).sum(axis=1)
        denom = t.sum(axis=1) + p.sum(axis=1)
        scores.append(np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0))
    return np.mean(scores, axis=0)


def bootstrap_macro_f1_interval(
    y_true: np.ndarray, y_pred: np.ndarray, *, resamples: int = SLICE_RESAMPLES, confidence: float = SLICE_CONFIDENCE,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of macro-F1 (over the classes present in ``y_true``, as slices are scored).

    Returns:
        (low, high), or None when there are fewer than ``MIN_INTERVAL_N`` examples.

    Example:
        >>> bootstrap_macro_f1_interval(np.array([0, 1] * 20), np.array([0, 1] * 20))
        (1.0, 1.0)
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    n = len(y_true)
    if n < MIN_INTERVAL_N:
        return None
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n))
    scores = _macro_f1_rows(y_true[idx], y_pred[idx], np.unique(y_true))
    alpha = (1 - confidence) / 2
    return float(np.quantile(scores, alpha)), float(np.quantile(scores, 1 - alpha))
