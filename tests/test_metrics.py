"""The offline evaluate metric module agrees with scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from pipeline.evaluation.metrics import (
    SentimentMetrics,
    compute_classification_metrics,
    expected_calibration_error,
    macro_f1,
)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_metric_module_agrees_with_sklearn_on_random_data(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 400))
    references = rng.integers(0, 3, n)
    probs = rng.dirichlet([0.7, 0.7, 0.7], size=n).astype(np.float32)
    predicted = probs.argmax(axis=1)

    result = SentimentMetrics().compute(predictions=probs.tolist(), references=references.tolist())

    p, r, f, s = precision_recall_fscore_support(references, predicted, labels=[0, 1, 2], zero_division=0)
    mp, mr, mf, _ = precision_recall_fscore_support(references, predicted, labels=[0, 1, 2], average="macro", zero_division=0)
    assert result["accuracy"] == pytest.approx(accuracy_score(references, predicted))
    assert result["macro_precision"] == pytest.approx(mp)
    assert result["macro_recall"] == pytest.approx(mr)
    assert result["macro_f1"] == pytest.approx(mf)
    for i, label in enumerate(("negative", "neutral", "positive")):
        assert result["per_class"][label]["precision"] == pytest.approx(p[i])
        assert result["per_class"][label]["recall"] == pytest.approx(r[i])
        assert result["per_class"][label]["f1"] == pytest.approx(f[i])
        assert result["per_class"][label]["support"] == s[i]
    assert result["confusion_matrix"] == confusion_matrix(references, predicted, labels=[0, 1, 2]).tolist()
    assert result["n"] == n


def test_class_ids_and_absent_class_match_sklearn():
    references = np.array([0, 0, 2, 2, 2, 0])
    predicted = np.array([0, 2, 2, 2, 0, 0])  # neutral never occurs
    result = SentimentMetrics().compute(predictions=predicted.tolist(), references=references.tolist())
    _, _, mf, _ = precision_recall_fscore_support(references, predicted, labels=[0, 1, 2], average="macro", zero_division=0)
    assert result["macro_f1"] == pytest.approx(mf)
    assert result["ece"] is None  # no probabilities, no calibration error
    present = compute_classification_metrics(predicted, references, average_over="present")
    _, _, pf, _ = precision_recall_fscore_support(references, predicted, average="macro", zero_division=0)
    assert present["macro_f1"] == pytest.approx(pf)


def test_ece_matches_a_hand_computation():
    # Two bins: conf 0.9 (2 examples, 1 correct -> gap 0.4) and conf 0.6 (2 examples, both correct -> gap 0.4).
    probs = np.array([[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.2, 0.6, 0.2], [0.2, 0.6, 0.2]])
    references = np.array([0, 1, 1, 1])
    assert expected_calibration_error(probs, references) == pytest.approx(0.4)
    # Perfectly calibrated: confidence 1.0 and always right.
    assert expected_calibration_error(np.eye(3), np.arange(3)) == pytest.approx(0.0)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="class ids must lie in 0..2"):
        compute_classification_metrics(np.array([0, 3]), np.array([0, 1]))
    with pytest.raises(ValueError, match="2 predictions for 3 references"):
        compute_classification_metrics(np.array([0, 1]), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="expected 3"):
        compute_classification_metrics(np.ones((2, 2)) / 2, np.array([0, 1]))


def test_macro_f1_is_one_number_everywhere():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    assert macro_f1(y, p) == pytest.approx(f1_score(y, p, average="macro", labels=[0, 1, 2]))
    assert macro_f1(y, p) == pytest.approx(compute_classification_metrics(p, y)["macro_f1"])
    only_two = np.array([0, 0, 2, 2])  # class 1 absent in both: counts as 0, like sklearn with labels=[0,1,2]
    assert macro_f1(only_two, only_two) == pytest.approx(
        f1_score(only_two, only_two, average="macro", labels=[0, 1, 2], zero_division=0))
    rows_y, rows_p = rng.integers(0, 3, (5, 40)), rng.integers(0, 3, (5, 40))
    assert macro_f1(rows_y, rows_p) == pytest.approx([macro_f1(a, b) for a, b in zip(rows_y, rows_p)])
    with pytest.raises(ValueError, match="predictions for"):
        macro_f1(y, p[:-1])
