"""Head+tail truncation: keep a review's opening and its ending when it is longer than max_length.

Restaurant reviews often end with the verdict ("... won't be back"), and plain truncation
cuts the ending off exactly where the median review (~130 tokens) crosses a 128-token
limit. Keeping the first quarter and the last three quarters of the token budget costs
nothing extra and was the best strategy for long texts in Sun et al. (2019), "How to
Fine-Tune BERT for Text Classification?". Training and every predictor must cut the same
way, so a model's config records which strategy it was trained with.
"""

from __future__ import annotations

from collections.abc import Sequence

# Share of the token budget given to the opening of a long text (the rest goes to its ending).
HEAD_FRACTION = 0.25
TRUNCATIONS = ("head", "head_tail")


def encode(tokenizer, texts: Sequence[str], *, max_length: int, truncation: str = "head_tail") -> dict[str, list]:
    """Tokenize without padding, cutting long texts by ``truncation`` ("head" or "head_tail").

    Returns:
        A dict of lists (input_ids, attention_mask, ...) like ``tokenizer(texts)``.

    Example:
        >>> enc = encode(tok, ["a very long review ..."], max_length=128)  # doctest: +SKIP
        >>> len(enc["input_ids"][0]) <= 128  # doctest: +SKIP
        True
    """
    if truncation not in TRUNCATIONS:
        raise ValueError(f"truncation must be one of {', '.join(TRUNCATIONS)}, got {truncation!r}")
    if truncation == "head":
        return dict(tokenizer(list(texts), truncation=True, max_length=max_length, padding=False))
    encoded = dict(tokenizer(list(texts), truncation=False, padding=False))
    head = max(1, int(max_length * HEAD_FRACTION))
    tail = max_length - head
    for key, rows in encoded.items():
        encoded[key] = [row if len(row) <= max_length else row[:head] + row[-tail:] for row in rows]
    return encoded


class HeadTailTokenizer:
    """Wraps a tokenizer so that ``tokenizer(texts, truncation=True, max_length=n)`` cuts head+tail.

    Lets code that only calls a tokenizer (e.g. :func:`pipeline.models.inference.predict_proba`)
    score a model trained with head+tail truncation; everything else is delegated.
    """

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer

    def __call__(self, texts, *args, truncation=False, max_length=None, **kwargs):
        if truncation and max_length and not args and not kwargs.get("return_tensors") and isinstance(texts, (list, tuple)):
            return encode(self._tokenizer, texts, max_length=max_length, truncation="head_tail")
        return self._tokenizer(texts, *args, truncation=truncation, max_length=max_length, **kwargs)

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)
