"""TF-IDF + logistic regression: the cheap learned baseline a fine-tuned model must beat.

Word 1-2 gram TF-IDF (sublinear tf) and a class-balanced multinomial logistic regression,
its C chosen by validation macro-F1. Trains in seconds on a CPU. Saved as plain arrays
(``tfidf.npz`` + ``tfidf.json``: vocabulary, idf, coefficients), never pickled, so loading
a model directory cannot run code.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline.evaluation.calibration import softmax
from pipeline.evaluation.metrics import compute_classification_metrics
from store.constants import LABELS
from store.errors import TastebudError

# Inverse regularisation strengths tried; the best by validation macro-F1 is kept.
C_GRID = (0.5, 1.0, 2.0, 4.0, 8.0)
# A term must occur in at least this many training reviews (drops typos and names).
MIN_DF = 2
ARRAYS_FILE = "tfidf.npz"
CONFIG_FILE = "tfidf.json"


class TfidfModel:
    """A fitted TF-IDF vectoriser and linear classifier with ``predict_proba(texts)``.

    Example:
        >>> model = fit_tfidf(train_texts, train_ids, val_texts, val_ids)  # doctest: +SKIP
        >>> model.predict_proba(["Great tacos"]).shape  # doctest: +SKIP
        (1, 3)
    """

    def __init__(self, vectorizer, coef: np.ndarray, intercept: np.ndarray, *, c: float, val_macro_f1: float | None = None):
        self.vectorizer, self.coef, self.intercept = vectorizer, coef, intercept
        self.c, self.val_macro_f1 = c, val_macro_f1

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, len(LABELS)))
        features = self.vectorizer.transform([str(t) for t in texts])
        return np.asarray(features @ self.coef.T) + self.intercept

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return softmax(self.logits(texts)).astype(np.float32)

    def save(self, out_dir: str | os.PathLike) -> Path:
        """Write ``tfidf.npz`` and ``tfidf.json`` into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        vocabulary = {term: int(i) for term, i in self.vectorizer.vocabulary_.items()}
        np.savez_compressed(out / ARRAYS_FILE, idf=self.vectorizer.idf_, coef=self.coef, intercept=self.intercept)
        (out / CONFIG_FILE).write_text(json.dumps({
            "ngram_range": list(self.vectorizer.ngram_range), "sublinear_tf": self.vectorizer.sublinear_tf,
            "min_df": MIN_DF, "C": self.c, "val_macro_f1": self.val_macro_f1, "labels": list(LABELS), "vocabulary": vocabulary,
        }))
        return out

    @classmethod
    def load(cls, model_dir: str | os.PathLike) -> TfidfModel:
        """Read a directory written by :meth:`save`."""
        from sklearn.feature_extraction.text import TfidfVectorizer

        folder = Path(model_dir)
        if not (folder / ARRAYS_FILE).is_file() or not (folder / CONFIG_FILE).is_file():
            raise TastebudError(f"no TF-IDF model at {folder} (expected {ARRAYS_FILE} and {CONFIG_FILE})")
        config = json.loads((folder / CONFIG_FILE).read_text())
        arrays = np.load(folder / ARRAYS_FILE)
        vectorizer = TfidfVectorizer(ngram_range=tuple(config["ngram_range"]), sublinear_tf=config["sublinear_tf"])
        vectorizer.vocabulary_ = config["vocabulary"]
        vectorizer.idf_ = arrays["idf"]
        return cls(vectorizer, arrays["coef"], arrays["intercept"], c=config["C"], val_macro_f1=config.get("val_macro_f1"))


def fit_tfidf(train_texts: Sequence[str], train_labels: np.ndarray, val_texts: Sequence[str], val_labels: np.ndarray,
              *, c_grid: Sequence[float] = C_GRID) -> TfidfModel:
    """Fit on the train texts, choosing C by validation macro-F1 (the test split is never read).

    Args:
        train_texts, train_labels: training reviews and class ids (0 negative, 1 neutral, 2 positive).
        val_texts, val_labels: validation reviews and class ids, for choosing C.
        c_grid: the C values tried.

    Raises:
        TastebudError: fewer than two classes or no validation review.

    Example:
        >>> fit_tfidf(["good", "bad", "ok"] * 5, np.array([2, 0, 1] * 5), ["good"], np.array([2])).c  # doctest: +SKIP
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    train_labels = np.asarray(train_labels, dtype=np.int64)
    val_labels = np.asarray(val_labels, dtype=np.int64)
    if len(set(train_labels.tolist())) < 2:
        raise TastebudError("TF-IDF + LR needs at least two classes in the train split")
    if len(val_labels) == 0:
        raise TastebudError("TF-IDF + LR needs validation reviews to choose its regularisation")
    min_df = MIN_DF if len(train_texts) >= 50 else 1
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=min_df, sublinear_tf=True)
    features = vectorizer.fit_transform([str(t) for t in train_texts])
    val_features = vectorizer.transform([str(t) for t in val_texts])
    best = None
    for c in c_grid:
        clf = LogisticRegression(C=c, class_weight="balanced", max_iter=3000).fit(features, train_labels)
        coef, intercept = _full_coef(clf)
        probs = softmax(np.asarray(val_features @ coef.T) + intercept)
        f1 = compute_classification_metrics(probs, val_labels)["macro_f1"]
        if best is None or f1 > best[0] + 1e-12:
            best = (f1, c, coef, intercept)
    f1, c, coef, intercept = best
    return TfidfModel(vectorizer, coef, intercept, c=float(c), val_macro_f1=float(f1))


def _full_coef(clf) -> tuple[np.ndarray, np.ndarray]:
    """(3, n_features) coefficients and (3,) intercepts in label order, whatever classes the train split had."""
    k = len(LABELS)
    coef = np.zeros((k, clf.coef_.shape[1]))
    intercept = np.full(k, -1e4)  # a class never seen in training is never predicted
    classes = list(clf.classes_)
    if len(classes) == 2:  # sklearn stores one row for two classes: logit of the second against the first
        coef[classes[1]], intercept[classes[1]] = clf.coef_[0], clf.intercept_[0]
        intercept[classes[0]] = 0.0
    else:
        for row, cls in enumerate(classes):
            coef[cls], intercept[cls] = clf.coef_[row], clf.intercept_[row]
    return coef, intercept
