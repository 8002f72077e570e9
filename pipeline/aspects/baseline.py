"""TF-IDF + logistic regression for aspects: the classic baseline the fine-tuned model must beat.

Per aspect, one binary logistic regression says whether a review mentions it, and one three-class
regression (trained on the reviews that mention the aspect with a polarity) says how; an aspect with too
few polarity examples falls back to one regression pooled over every aspect. Word 1-2-grams and character
2-5-grams, as the review-level TF-IDF member (:mod:`pipeline.models.tfidf`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.sparse import hstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

MIN_POLARITY_EXAMPLES = 30


@dataclass
class TfidfAspects:
    """A fitted baseline: ``predict(texts)`` gives (p_mentioned (R, A), p_polarity (R, A, 3))."""

    aspects: list[str]
    words: TfidfVectorizer = field(default_factory=lambda: TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True))
    chars: TfidfVectorizer = field(default_factory=lambda: TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5),
                                                                          min_df=2, sublinear_tf=True))
    detectors: list = field(default_factory=list)
    polarity: list = field(default_factory=list)

    def _features(self, texts, fit: bool = False):
        texts = [str(t) for t in texts]
        if fit:
            return hstack([self.words.fit_transform(texts), self.chars.fit_transform(texts)]).tocsr()
        return hstack([self.words.transform(texts), self.chars.transform(texts)]).tocsr()

    def fit(self, texts: Sequence[str], targets: np.ndarray, *, c: float = 4.0, seed: int = 0) -> TfidfAspects:
        x = self._features(texts, fit=True)
        polar = (targets >= 1) & (targets <= 3)
        pooled = LogisticRegression(C=c, max_iter=2000, random_state=seed)
        rows, cols = np.nonzero(polar)
        pooled.fit(x[rows], targets[rows, cols] - 1)
        self.detectors, self.polarity = [], []
        for a in range(len(self.aspects)):
            known = targets[:, a] != -100
            y = (targets[known, a] >= 1).astype(int)
            detector = LogisticRegression(C=c, max_iter=2000, class_weight="balanced", random_state=seed)
            self.detectors.append(detector.fit(x[known], y) if 0 < y.sum() < len(y) else None)
            mask = polar[:, a]
            labels = targets[mask, a] - 1
            if mask.sum() >= MIN_POLARITY_EXAMPLES and len(np.unique(labels)) == 3:
                self.polarity.append(LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(x[mask], labels))
            else:
                self.polarity.append(pooled)
        return self

    def predict(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        x = self._features(texts)
        p_m = np.zeros((x.shape[0], len(self.aspects)))
        p_pol = np.zeros((x.shape[0], len(self.aspects), 3))
        for a, (detector, polarity) in enumerate(zip(self.detectors, self.polarity)):
            if detector is not None:
                p_m[:, a] = detector.predict_proba(x)[:, 1]
            probs = polarity.predict_proba(x)
            p_pol[:, a, polarity.classes_] = probs
        return p_m, p_pol
