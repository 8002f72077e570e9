"""Flag store rules (no duplicates, no reopening) and each flag reason on constructed data."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline import relabel as rl
from store.actors import Actor
from store.db import connect, transaction
from store.flags import count_open_flags_by_reason, fetch_flag_queue, insert_flags
from tests.conftest import seed_reviews

ANA = Actor("ana", "labeler")


@pytest.fixture
def small_db(store_path):
    frame = pd.DataFrame({"review_id": ["a", "b", "c"], "text": ["x", "y", "z"], "stars": [5, 1, 3]})
    seed_reviews(store_path, frame.assign(label=["positive", "negative", "neutral"]))
    return store_path


def _insert(db, rows):
    with transaction(db) as con:
        return insert_flags(con, pd.DataFrame(rows))


def test_insert_flags_never_duplicates_nor_reopens(small_db):
    rows = {"review_id": ["a", "a", "b", "zzz"], "reason": ["low_confidence"] * 4, "priority": [0.2, 0.6, 0.5, 0.9]}
    assert _insert(small_db, rows) == 2  # duplicate within the batch collapses, unknown id skipped
    with connect(small_db, read_only=True) as con:
        queue = fetch_flag_queue(con)
    assert queue.review_id.tolist() == ["a", "b"] and queue.priority.tolist() == [0.6, 0.5]
    assert _insert(small_db, rows) == 0  # already open

    rl.relabel(small_db, ANA, "a", "neutral")  # resolves a's flag
    rl.dismiss_flag(small_db, ANA, int(queue.flag_id.iloc[1]))  # dismisses b's
    assert _insert(small_db, rows) == 0  # neither comes back
    # a has a human label: no reason flags it any more; b still can get a different reason
    assert _insert(small_db, {"review_id": ["a", "b"], "reason": ["label_issue"] * 2, "priority": [1.0, 1.0]}) == 1
    # the same review and reason with different emerging terms are different flags
    terms = {"review_id": ["c", "c"], "reason": ["emerging_term"] * 2, "priority": [0.5, 0.4], "term": ["t1", "t2"]}
    assert _insert(small_db, terms) == 2
    with connect(small_db, read_only=True) as con:
        assert count_open_flags_by_reason(con) == {
            "low_confidence": 0, "disagreement": 0, "rating_contradicts_text": 0, "label_issue": 1, "emerging_term": 2,
        }


def test_insert_flags_rejects_unknown_reason(small_db):
    with pytest.raises(ValueError, match="unknown flag reasons: \\['vibes'\\]"):
        _insert(small_db, {"review_id": ["a"], "reason": ["vibes"], "priority": [1.0]})
