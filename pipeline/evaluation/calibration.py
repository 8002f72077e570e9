"""Post-hoc adjustments fitted on the validation split: temperature scaling and class-prior offsets.

Both act on a model's logits as ``z / T + b``:

- the temperature ``T`` (Guo et al. 2017) minimises validation log-loss; it never changes a
  prediction, only how confident the probabilities are, so a low-confidence flag means what
  it says. It is kept only when it lowers the validation ECE;
- the per-class offsets ``b`` move the decision boundaries (the neutral class above all):
  class-weighted training pushes many positives into neutral, and offsets fitted to
  maximise validation macro-F1 undo the excess without retraining.

Fitting never sees the test split. :func:`pipeline.models.heads.bake_adjustment` writes the
result into the model's output layer, so every predictor applies it without knowing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from pipeline.evaluation.metrics import compute_classification_metrics, expected_calibration_error

# Temperatures tried (log-spaced, 0.25 .. 8).
TEMPERATURE_GRID = np.exp(np.linspace(np.log(0.25), np.log(8.0), 121))
# Offsets tried per class, in logit units after the temperature.
BIAS_GRID = np.round(np.arange(-2.0, 2.0001, 0.05), 4)
# Coordinate-ascent sweeps over the classes when fitting offsets.
BIAS_SWEEPS = 3
# Offsets are kept only when, fitted on one half of the validation split, they raise macro-F1 on the
# other half by at least this much on average (both ways round): offsets fitted and judged on the same
# ~800 reviews always "gain" a little from noise.
MIN_BIAS_GAIN = 0.005


@dataclass
class Adjustment:
    """What was fitted on validation and whether each part is applied."""

    temperature: float = 1.0
    class_bias: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    temperature_applied: bool = False
    bias_applied: bool = False
    val_ece_before: float | None = None
    val_ece_after: float | None = None
    val_macro_f1_before: float | None = None
    val_macro_f1_after: float | None = None
    n_val: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    def apply(self, logits: np.ndarray) -> np.ndarray:
        """Adjusted logits ``z / T + b``."""
        return np.asarray(logits, dtype=np.float64) / self.temperature + np.asarray(self.class_bias)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def log_loss(logits: np.ndarray, labels: np.ndarray) -> float:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising log-loss of ``softmax(logits / T)`` (1.0 without data).

    Example:
        >>> fit_temperature(np.array([[9.0, 0, 0], [0, 9.0, 0], [9.0, 0, 0]]), np.array([0, 1, 1])) > 1
        True
    """
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        return 1.0
    losses = [log_loss(logits / t, labels) for t in TEMPERATURE_GRID]
    return float(TEMPERATURE_GRID[int(np.argmin(losses))])


def fit_class_bias(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-class logit offsets (the first class fixed at 0) maximising macro-F1, by coordinate ascent.

    Ties keep the offset closest to zero, so without a gain the answer is all zeros.

    Example:
        >>> z = np.array([[2.0, 1.5, 0], [2.0, 1.6, 0], [0, 1.0, 2.0]])
        >>> fit_class_bias(z, np.array([0, 1, 2]))[1] > 0
        True
    """
    labels = np.asarray(labels, dtype=np.int64)
    k = logits.shape[1]
    bias = np.zeros(k)
    if len(labels) == 0:
        return bias
    best = _macro_f1(logits, labels, bias)
    for _ in range(BIAS_SWEEPS):
        changed = False
        for c in range(1, k):
            scores = []
            for value in BIAS_GRID:
                trial = bias.copy()
                trial[c] = value
                scores.append((_macro_f1(logits, labels, trial), -abs(value), value))
            score, _, value = max(scores)
            if score > best + 1e-12 or (score >= best - 1e-12 and abs(value) < abs(bias[c])):
                changed = changed or value != bias[c]
                best, bias[c] = max(best, score), value
        if not changed:
            break
    return bias


def fit_adjustment(logits: np.ndarray, labels: np.ndarray, *, calibrate: bool = True, prior_adjust: bool = False) -> Adjustment:
    """Fit the temperature and (optionally) class offsets on validation logits.

    Args:
        logits: (n, k) validation logits of the model.
        labels: (n,) true class ids.
        calibrate: fit a temperature; applied when it lowers validation ECE.
        prior_adjust: fit class offsets; applied when offsets fitted on one half of the validation split raise
            macro-F1 on the other half by ``MIN_BIAS_GAIN`` on average (2-fold cross-fitting), then refitted on all of it.

    Returns:
        An :class:`Adjustment` with the fitted values and before/after validation ECE and macro-F1.

    Example:
        >>> adj = fit_adjustment(np.array([[4.0, 0, 0], [0, 4.0, 0]]), np.array([0, 1]))
        >>> adj.val_macro_f1_before
        0.6666666666666666
    """
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    adj = Adjustment(class_bias=[0.0] * logits.shape[1], n_val=int(len(labels)))
    if len(labels) == 0:
        return adj
    adj.val_ece_before = expected_calibration_error(softmax(logits), labels)
    adj.val_macro_f1_before = _macro_f1(logits, labels, np.zeros(logits.shape[1]))
    if calibrate:
        temperature = fit_temperature(logits, labels)
        ece = expected_calibration_error(softmax(logits / temperature), labels)
        if ece < adj.val_ece_before:
            adj.temperature, adj.temperature_applied = temperature, True
    scaled = logits / adj.temperature
    if prior_adjust and cross_fitted_bias_gain(scaled, labels) >= MIN_BIAS_GAIN:
        bias = fit_class_bias(scaled, labels)
        adj.class_bias, adj.bias_applied = [float(b) for b in bias], True
    adjusted = adj.apply(logits)
    adj.val_ece_after = expected_calibration_error(softmax(adjusted), labels)
    adj.val_macro_f1_after = _macro_f1(adjusted, labels, np.zeros(logits.shape[1]))
    return adj


def cross_fitted_bias_gain(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean macro-F1 gain of class offsets on one half of the data when fitted on the other (2-fold, stratified).

    Example:
        >>> z = np.tile([[2.0, 1.5, 0], [0, 1.0, 2.0]], (20, 1))
        >>> round(cross_fitted_bias_gain(z, np.tile([1, 2], 20)), 3)
        0.333
    """
    labels = np.asarray(labels, dtype=np.int64)
    order = np.argsort(labels, kind="stable")
    halves = [order[0::2], order[1::2]]
    gains = []
    for fit_idx, check_idx in (halves, halves[::-1]):
        if len(check_idx) == 0:
            return 0.0
        bias = fit_class_bias(logits[fit_idx], labels[fit_idx])
        zero = np.zeros(logits.shape[1])
        gains.append(_macro_f1(logits[check_idx], labels[check_idx], bias) - _macro_f1(logits[check_idx], labels[check_idx], zero))
    return float(np.mean(gains))


def _macro_f1(logits: np.ndarray, labels: np.ndarray, bias: np.ndarray) -> float:
    predicted = (logits + bias).argmax(axis=1)
    return compute_classification_metrics(predicted, labels, labels=tuple(str(i) for i in range(logits.shape[1])))["macro_f1"]
