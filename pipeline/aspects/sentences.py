"""Split a review into sentences, as character spans, so a long review is read whole, sentence by sentence.

A rule-based splitter, on purpose: NLTK's punkt and spaCy's sentencizer models are downloads (none are
possible at run time here), and pysbd-style rule sets buy little for this job. A boundary that lands a
word early or late only moves text between two neighbouring segments, which the model reads either way;
what matters is that every character of the review lands in exactly one span, which the tests pin.
"""

from __future__ import annotations

import re

# A sentence ends at . ! ? or … (possibly repeated, possibly followed by closing quotes/brackets) when
# whitespace and then something other than a lower-case letter follow ("though... slow" goes on); a line
# break always ends one.
_BOUNDARY = re.compile(r"""(?:[.!?…]+["'”’)\]]*\s+(?![a-z]))|(?:\s*\n\s*)""")
# Abbreviations that end in a period without ending a sentence.
_ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "st", "jr", "sr", "vs", "etc", "e.g", "i.e", "approx", "no", "ave"})
# Sentences shorter than this (characters, stripped) are merged into the previous one ("Wow." "Ok!").
MIN_SENTENCE_CHARS = 3


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Character spans ``(start, end)`` of the sentences of ``text``, in order, whitespace trimmed.

    Every non-space character of ``text`` lies in exactly one span. An empty or blank text has none.

    Example:
        >>> t = "Great tacos! The service, though... slow. Dr. Li agreed."
        >>> [t[a:b] for a, b in split_sentences(t)]
        ['Great tacos!', 'The service, though... slow.', 'Dr. Li agreed.']
    """
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        end = match.start() + len(match.group(0).rstrip())
        if "\n" not in match.group(0) and _ends_with_abbreviation(text, start, end):
            continue
        _add(spans, text, start, end)
        start = match.end()
    _add(spans, text, start, len(text))
    return spans


def _ends_with_abbreviation(text: str, start: int, end: int) -> bool:
    if text[end - 1] != ".":
        return False
    words = text[start:end].rstrip(".").split()
    return bool(words) and words[-1].lower() in _ABBREVIATIONS


def _add(spans: list[tuple[int, int]], text: str, start: int, end: int) -> None:
    piece = text[start:end]
    stripped = piece.strip()
    if not stripped:
        return
    a = start + (len(piece) - len(piece.lstrip()))
    b = a + len(stripped)
    if spans and len(stripped) < MIN_SENTENCE_CHARS:
        spans[-1] = (spans[-1][0], b)
    else:
        spans.append((a, b))
