"""Aspect metrics, as SemEval-2014 Task 4 measures them (subtasks 3 and 4, restaurants).

- Detection (subtask 3): over every (review, aspect) pair, "mentioned" predicted (p >= 0.5) against
  mentioned in the labels (any polarity, "conflict" included); micro precision / recall / F1 and the same
  per aspect.
- Polarity (subtask 4): over the pairs the labels say are mentioned with a polarity (conflict set aside),
  the predicted polarity (given the gold aspect, whatever detection said) against the label: accuracy,
  macro-F1 over the three polarities, confusion matrix, and accuracy / macro-F1 per aspect.

scikit-learn computes the per-class numbers; this module only arranges the pairs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

from pipeline.aspects.model import IGNORE, POLARITY_NAMES

MENTION_THRESHOLD = 0.5


def _prf(gold: np.ndarray, pred: np.ndarray) -> dict:
    tp = int(np.sum(gold & pred))
    fp = int(np.sum(~gold & pred))
    fn = int(np.sum(gold & ~pred))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "support": int(gold.sum()), "predicted": int(pred.sum())}


def aspect_metrics(targets: np.ndarray, p_mentioned: np.ndarray, p_polarity: np.ndarray,
                   aspects: Sequence[str], *, threshold: float = MENTION_THRESHOLD) -> dict:
    """Detection and polarity metrics of predictions against target codes.

    Args:
        targets: ``(R, A)`` codes (0 absent, 1-3 negative/neutral/positive, 4 conflict, IGNORE unknown).
        p_mentioned: ``(R, A)`` probability that each aspect is mentioned.
        p_polarity: ``(R, A, 3)`` polarity probabilities given a mention.
        aspects: the aspect names, in column order.

    Returns:
        {"detection": {micro_precision, micro_recall, micro_f1, per_aspect}, "polarity": {accuracy,
        macro_f1, n, confusion, per_aspect}, "score": mean of detection micro-F1 and polarity accuracy
        (what validation and promotion compare), "n_reviews"}.
    """
    known = targets != IGNORE
    gold = (targets >= 1) & known
    pred = (p_mentioned >= threshold) & known
    micro = _prf(gold[known], pred[known])
    per_aspect_detection = {a: _prf(gold[known[:, i], i], pred[known[:, i], i]) for i, a in enumerate(aspects)}
    polar = (targets >= 1) & (targets <= 3)
    y_true = targets[polar] - 1
    y_pred = p_polarity.argmax(-1)[polar]
    labels = list(range(len(POLARITY_NAMES)))
    per_aspect_polarity = {}
    for i, a in enumerate(aspects):
        mask = polar[:, i]
        t, p = targets[mask, i] - 1, p_polarity[mask, i].argmax(-1)
        per_aspect_polarity[a] = {
            "accuracy": float(np.mean(t == p)) if mask.any() else None,
            "macro_f1": float(f1_score(t, p, labels=labels, average="macro", zero_division=0)) if mask.any() else None,
            "n": int(mask.sum()),
        }
    if len(y_true):
        precision, recall, f1, support = precision_recall_fscore_support(
            y_true, y_pred, labels=labels, zero_division=0
        )
        polarity = {
            "accuracy": float(np.mean(y_true == y_pred)),
            "macro_f1": float(np.mean(f1)),
            "n": int(len(y_true)),
            "per_class": {name: {"precision": float(precision[k]), "recall": float(recall[k]), "f1": float(f1[k]),
                                 "support": int(support[k])} for k, name in enumerate(POLARITY_NAMES)},
            "confusion": {"labels": list(POLARITY_NAMES),
                          "matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist()},
        }
    else:
        polarity = {"accuracy": None, "macro_f1": None, "n": 0, "per_class": {}, "confusion": None}
    polarity["per_aspect"] = per_aspect_polarity
    detection = {"micro_precision": micro["precision"], "micro_recall": micro["recall"], "micro_f1": micro["f1"],
                 "support": micro["support"], "per_aspect": per_aspect_detection}
    parts = [detection["micro_f1"]] + ([polarity["accuracy"]] if polarity["accuracy"] is not None else [])
    return {"detection": detection, "polarity": polarity, "score": float(np.mean(parts)), "n_reviews": int(len(targets)),
            "threshold": threshold}


def headline(metrics: dict) -> str:
    """One line: detection micro-F1, polarity accuracy and macro-F1."""
    det, pol = metrics["detection"], metrics["polarity"]
    acc = "n/a" if pol["accuracy"] is None else f"{pol['accuracy']:.3f}"
    mf1 = "n/a" if pol["macro_f1"] is None else f"{pol['macro_f1']:.3f}"
    return (f"detection micro-F1 {det['micro_f1']:.3f} (P {det['micro_precision']:.3f} R {det['micro_recall']:.3f}), "
            f"polarity accuracy {acc}, macro-F1 {mf1} ({pol['n']} mentions)")
