"""Classification metrics as an offline ``evaluate`` module.

``evaluate.load("f1")`` fetches its script from the Hugging Face hub, which tastebud
never reaches, so the metrics every model is judged by live here as one
``evaluate.Metric`` subclass: accuracy, per-class and macro precision / recall / F1, the
confusion matrix and, when class probabilities are given, the expected calibration
error. Everything is computed from the confusion matrix, so the numbers agree with
scikit-learn's by construction (tests check it on random data).
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np

from store.constants import LABELS

# Equal-width confidence bins for the expected calibration error (the usual choice, Guo et al. 2017).
ECE_BINS = 10

_DESCRIPTION = "Accuracy, per-class and macro precision/recall/F1, confusion matrix and ECE for 3-class sentiment."
_INPUTS = """
Args:
    predictions: class probabilities per example (list of floats, one per class) or class ids.
    references: true class ids.
    average_over: "all" averages per-class scores over every class (default); "present" only over
        classes that occur in references or predictions (for small slices).
Returns:
    dict with accuracy, macro_precision, macro_recall, macro_f1, per_class, confusion_matrix, ece, n.
"""


class SentimentMetrics(evaluate.Metric):
    """Offline metric module for tastebud's 3-class sentiment labels.

    Example:
        >>> m = SentimentMetrics()
        >>> m.compute(predictions=[0, 1, 2, 2], references=[0, 1, 2, 1])["accuracy"]
        0.75
    """

    def __init__(self, labels: tuple[str, ...] = LABELS, **kwargs):
        self.labels = tuple(labels)
        kwargs.setdefault("keep_in_memory", True)
        super().__init__(**kwargs)

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_INPUTS,
            features=[
                datasets.Features(
                    {"predictions": datasets.Sequence(datasets.Value("float32")), "references": datasets.Value("int32")}
                ),
                datasets.Features({"predictions": datasets.Value("int32"), "references": datasets.Value("int32")}),
            ],
        )

    def _compute(self, predictions, references, average_over: str = "all") -> dict:
        return compute_classification_metrics(
            np.asarray(predictions), np.asarray(references), labels=self.labels, average_over=average_over
        )


def compute_classification_metrics(
    predictions: np.ndarray,
    references: np.ndarray,
    *,
    labels: tuple[str, ...] = LABELS,
    average_over: str = "all",
) -> dict:
    """The metrics of :class:`SentimentMetrics` without the ``evaluate`` input plumbing.

    Args:
        predictions: (n, k) probabilities or (n,) class ids.
        references: (n,) true class ids in ``range(k)``.
        labels: class names, in id order.
        average_over: "all" or "present" (see :class:`SentimentMetrics`).

    Returns:
        dict with accuracy, macro_precision, macro_recall, macro_f1, per_class (name -> precision,
        recall, f1, support), confusion_matrix (rows true, columns predicted), ece (None without
        probabilities) and n.

    Example:
        >>> compute_classification_metrics(np.array([0, 2]), np.array([0, 1]))["macro_f1"]
        0.3333333333333333
    """
    if average_over not in ("all", "present"):
        raise ValueError(f"average_over must be 'all' or 'present', got {average_over!r}")
    k = len(labels)
    references = np.asarray(references, dtype=np.int64).reshape(-1)
    probs = None
    if predictions.ndim == 2:
        if predictions.shape[1] != k:
            raise ValueError(f"probabilities have {predictions.shape[1]} columns, expected {k}")
        probs = predictions.astype(np.float64)
        predicted = probs.argmax(axis=1)
    else:
        predicted = np.asarray(predictions, dtype=np.int64).reshape(-1)
    if len(predicted) != len(references):
        raise ValueError(f"{len(predicted)} predictions for {len(references)} references")
    n = len(references)
    if n and (references.min() < 0 or references.max() >= k or predicted.min() < 0 or predicted.max() >= k):
        raise ValueError(f"class ids must lie in 0..{k - 1}")
    confusion = np.bincount(references * k + predicted, minlength=k * k).reshape(k, k)
    true_pos = np.diag(confusion).astype(np.float64)
    support = confusion.sum(axis=1)
    predicted_count = confusion.sum(axis=0)
    precision = np.divide(true_pos, predicted_count, out=np.zeros(k), where=predicted_count > 0)
    recall = np.divide(true_pos, support, out=np.zeros(k), where=support > 0)
    f1 = _f1_from_counts(true_pos, support, predicted_count)
    present = np.ones(k, dtype=bool) if average_over == "all" else (support + predicted_count) > 0
    mean = (lambda v: float(v[present].mean())) if present.any() else (lambda v: 0.0)
    return {
        "n": int(n),
        "accuracy": float(true_pos.sum() / n) if n else 0.0,
        "macro_precision": mean(precision),
        "macro_recall": mean(recall),
        "macro_f1": mean(f1),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(labels)
        },
        "confusion_matrix": confusion.tolist(),
        "ece": expected_calibration_error(probs, references) if probs is not None else None,
    }


def macro_f1(references: np.ndarray, predicted: np.ndarray, *, num_classes: int = len(LABELS)) -> float | np.ndarray:
    """Macro-F1 of class ids over all ``num_classes`` classes (a class never true nor predicted scores 0).

    The same number as ``compute_classification_metrics(...)["macro_f1"]``; 2-D inputs of shape
    (B, n) give one score per row, which is how a bootstrap scores its resamples in one go.

    Example:
        >>> macro_f1(np.array([0, 1, 2]), np.array([0, 1, 1]))
        0.5555555555555555
    """
    references, predicted = np.asarray(references), np.asarray(predicted)
    if references.shape != predicted.shape:
        raise ValueError(f"{predicted.shape} predictions for {references.shape} references")
    classes = np.arange(num_classes)
    is_true, is_predicted = references[..., None] == classes, predicted[..., None] == classes
    f1 = _f1_from_counts((is_true & is_predicted).sum(axis=-2), is_true.sum(axis=-2), is_predicted.sum(axis=-2))
    scores = f1.mean(axis=-1)
    return float(scores) if scores.ndim == 0 else scores


def _f1_from_counts(true_pos: np.ndarray, support: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """F1 per class (classes on the last axis) from counts: 2 tp / (support + predicted), 0 when both are 0."""
    denom = np.asarray(support + predicted, dtype=np.float64)
    return np.divide(2.0 * true_pos, denom, out=np.zeros(denom.shape), where=denom > 0)


def expected_calibration_error(probs: np.ndarray, references: np.ndarray, *, bins: int = ECE_BINS) -> float:
    """Bin-weighted gap between confidence (top probability) and accuracy.

    Example:
        >>> expected_calibration_error(np.array([[0.9, 0.1, 0.0]]), np.array([0]))
        0.09999999999999998
    """
    if len(references) == 0:
        return 0.0
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == references).astype(np.float64)
    # Right-closed bins so a confidence of exactly 1.0 falls in the last one.
    index = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        in_bin = index == b
        if in_bin.any():
            total += in_bin.sum() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(total / len(references))
