"""Which words drove a model's call on one review: occlusion over words.

Each word (or, in a long review, each run of neighbouring words) is removed in turn and the
review scored again; a word's weight is how much the predicted class's probability drops
without it (negative when removing it makes the call *more* likely). It needs nothing but
``predict_proba``, so it explains fine-tuned models and baselines alike, and costs one batched
forward pass of at most ``max_units + 1`` texts: well under a second for one review on a CPU.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from store.constants import LABELS

# At most this many occlusion units per review; longer reviews occlude runs of neighbouring words.
MAX_UNITS = 48
# Texts scored per forward pass.
BATCH_SIZE = 16
_PIECES = re.compile(r"\S+|\s+")


@dataclass(frozen=True)
class WordAttribution:
    """A review cut into pieces that concatenate back to its exact text, each word with a weight.

    ``pieces`` are (text, weight) with weight None for whitespace; ``label`` is the explained class
    (the model's call) and ``probabilities`` the model's class probabilities for the whole review.
    """

    label: str
    probabilities: tuple[float, float, float]
    pieces: tuple[tuple[str, float | None], ...]

    def top_words(self, n: int = 5) -> list[tuple[str, float]]:
        """The ``n`` words with the largest positive weight (those that most support the call)."""
        words = [(text, w) for text, w in self.pieces if w is not None and w > 0]
        return sorted(words, key=lambda item: -item[1])[:n]


def _units(n_words: int, max_units: int) -> list[range]:
    """Word index ranges to occlude: one per word, or even runs when there are more than ``max_units``."""
    per_unit = max(1, -(-n_words // max_units))
    return [range(i, min(i + per_unit, n_words)) for i in range(0, n_words, per_unit)]


def word_attributions(predictor, text: str, *, max_units: int = MAX_UNITS, batch_size: int = BATCH_SIZE) -> WordAttribution:
    """Occlusion weights of the words of ``text`` for ``predictor``'s predicted class.

    Args:
        predictor: anything with ``predict_proba(texts) -> (n, 3)`` (``pipeline.models.predictors``).
        text: one review.
        max_units: most occlusions scored (neighbouring words are grouped beyond it).
        batch_size: texts per ``predict_proba`` call.

    Returns:
        A :class:`WordAttribution` whose pieces join back to ``text``.

    Raises:
        ValueError: ``text`` is empty or ``max_units`` is below 1.

    Example:
        >>> from pipeline.models.predictors import VaderPredictor
        >>> word_attributions(VaderPredictor(), "Cold food, rude staff.").label
        'negative'
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("word attributions need a non-empty text")
    if max_units < 1:
        raise ValueError(f"max_units must be at least 1, got {max_units}")
    pieces = _PIECES.findall(text)
    word_at = [i for i, piece in enumerate(pieces) if not piece.isspace()]
    units = _units(len(word_at), max_units)
    variants = []
    for unit in units:
        dropped = {word_at[w] for w in unit}
        variants.append("".join(p for i, p in enumerate(pieces) if i not in dropped).strip() or " ")
    probs = _predict(predictor, [text, *variants], batch_size)
    base = probs[0]
    call = int(base.argmax())
    weights: dict[int, float] = {}
    for unit, row in zip(units, probs[1:]):
        drop = float(base[call] - row[call])
        for w in unit:
            weights[word_at[w]] = drop / len(unit)
    return WordAttribution(
        label=LABELS[call],
        probabilities=tuple(float(p) for p in base),
        pieces=tuple((piece, weights.get(i)) for i, piece in enumerate(pieces)),
    )


def _predict(predictor, texts: Sequence[str], batch_size: int) -> np.ndarray:
    parts = [np.asarray(predictor.predict_proba(list(texts[i:i + batch_size])), dtype=float)
             for i in range(0, len(texts), batch_size)]
    return np.concatenate(parts)
