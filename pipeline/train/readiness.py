"""Data readiness: the seed's rule of at least 500 labeled training examples per class.

Fine-tuning on fewer examples of a class than that rarely learns the class (neutral above
all); ``tastebud train`` warns and the Training page shows the same check.
"""

from __future__ import annotations

from store.constants import LABELS
from store.db import connect
from store.quality import MIN_EXAMPLES_PER_CLASS, fetch_class_counts


def readiness_warnings(counts: dict[str, int], *, minimum: int = MIN_EXAMPLES_PER_CLASS) -> list[str]:
    """One warning per class with fewer than ``minimum`` labeled training examples.

    Example:
        >>> readiness_warnings({"negative": 900, "neutral": 120, "positive": 3000})
        ['only 120 labeled training examples of neutral (at least 500 recommended; label 380 more)']
    """
    return [
        f"only {counts.get(label, 0)} labeled training examples of {label} "
        f"(at least {minimum} recommended; label {minimum - counts.get(label, 0)} more)"
        for label in LABELS
        if counts.get(label, 0) < minimum
    ]


def check_data_readiness(db, *, minimum: int = MIN_EXAMPLES_PER_CLASS) -> dict:
    """Labeled training examples per class in the store and the warnings for classes below ``minimum``.

    Returns:
        {"counts": {label: n}, "minimum": minimum, "ready": bool, "warnings": [str]}.

    Example:
        >>> check_data_readiness("store.duckdb")["ready"]  # doctest: +SKIP
        False
    """
    with connect(db, read_only=True) as con:
        counts = fetch_class_counts(con, "train")
    warnings = readiness_warnings(counts, minimum=minimum)
    return {"counts": counts, "minimum": minimum, "ready": not warnings, "warnings": warnings}
