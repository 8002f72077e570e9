"""Which test set an evaluation saw: a short hash of the (review_id, label) pairs of the labeled test split.

Kept apart from the evaluator (which loads models) so the dashboard can check, cheaply and without
torch, whether a stored evaluation is still comparable with the current test set.
"""

from __future__ import annotations

import pandas as pd

from store import evaluations as evaluation_store
from store.db import connect


def snapshot_hash(frame: pd.DataFrame) -> str:
    """A short hash of the (review_id, label) pairs of ``frame``, so a grown or relabeled test set is detectable.

    Example:
        >>> snapshot_hash(pd.DataFrame({"review_id": ["a"], "label": ["positive"]})) == snapshot_hash(
        ...     pd.DataFrame({"review_id": ["a"], "label": ["positive"]}))
        True
    """
    pairs = frame[["review_id", "label"]].sort_values("review_id")
    return f"{pd.util.hash_pandas_object(pairs, index=False).sum() & 0xFFFFFFFFFFFF:012x}"


def current_test_snapshot(db) -> dict:
    """The labeled test split as an evaluation would see it now: {"n", "test_snapshot"} (the hash
    :func:`pipeline.evaluation.evaluator.evaluate_model` stores).

    Example:
        >>> current_test_snapshot("store.duckdb")["n"]  # doctest: +SKIP
        401
    """
    with connect(db, read_only=True) as con:
        pairs = evaluation_store.fetch_test_labels(con)
    return {"n": len(pairs), "test_snapshot": snapshot_hash(pairs) if len(pairs) else None}
