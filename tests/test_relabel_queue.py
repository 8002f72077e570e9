"""The relabel queue's store side: search and filters in SQL, comments with labels, undo of any
recent action, the labeling guidelines, and word attributions for one review."""

from __future__ import annotations

from datetime import date

import duckdb
import pandas as pd
import pytest

from pipeline.loop import relabel as rl
from pipeline.models.attribution import MAX_UNITS, word_attributions
from pipeline.models.predictors import VaderPredictor
from store.actors import Actor
from store.db import connect, transaction
from store.errors import PermissionDeniedError, TastebudError
from store.flags import QueueFilter, fetch_matching_review_ids, fetch_queue_filter_options, insert_flags, search_flag_queue
from store.guidelines import MAX_GUIDELINES_CHARS, get_guidelines
from store.labels import current_label
from store.migrations import migrate
from store.labels import fetch_label_history
from store.relabeling import MAX_COMMENT_CHARS, fetch_recent_actions
from tests.conftest import seed_reviews

ANA = Actor("ana", "labeler")
BO = Actor("bo", "labeler")
DARIO = Actor("dario", "data_scientist")


@pytest.fixture
def db(store_path):
    frame = pd.DataFrame({
        "review_id": [f"r{i}" for i in range(6)],
        "text": ["Great grits_and tacos", "Cold fries, 100% awful", "It was fine", "Loved the GRITS", "Never again",
                 "Okay I guess"],
        "stars": [5, 1, 3, 5, 1, 3],
        "restaurant_name": ["Krog", "Krog", "Dot", "Dot", "Krog", "Dot"],
        "neighborhood": ["East", "East", "West", "West", "East", "West"],
        "created_at": pd.to_datetime(["2025-01-01", "2025-01-05", "2025-02-01", "2025-02-10", "2025-03-01", "2025-03-02"]),
    })
    frame["label"] = frame["stars"].map({1: "negative", 3: "neutral", 5: "positive"})
    seed_reviews(store_path, frame)
    with transaction(store_path) as con:
        insert_flags(con, pd.DataFrame({
            "review_id": ["r0", "r1", "r2", "r3", "r4", "r5"],
            "reason": ["low_confidence", "label_issue", "low_confidence", "emerging_term", "low_confidence",
                       "rating_contradicts_text"],
            "priority": [0.9, 0.8, 0.7, 0.6, 0.5, 0.4],
            "term": [None, None, None, "grits", None, None],
        }))
    return store_path


def _ids(db, **filters) -> list[str]:
    with connect(db, read_only=True) as con:
        page, total = search_flag_queue(con, QueueFilter(**filters), limit=50)
    assert total == len(page)
    return page["review_id"].tolist()


def test_each_filter_narrows_the_queue_in_priority_order(db):
    assert _ids(db) == ["r0", "r1", "r2", "r3", "r4", "r5"]
    assert _ids(db, text="grits") == ["r0", "r3"]  # case-insensitive
    assert _ids(db, text="100%") == ["r1"]  # LIKE wildcards are literal
    assert _ids(db, text="grits_") == ["r0"]
    assert _ids(db, reasons=("low_confidence",)) == ["r0", "r2", "r4"]
    assert _ids(db, restaurants=("Krog",)) == ["r0", "r1", "r4"]
    assert _ids(db, neighborhoods=("West",)) == ["r2", "r3", "r5"]
    assert _ids(db, term="GRITS") == ["r3"]
    assert _ids(db, labels=("neutral",)) == ["r2", "r5"]
    assert _ids(db, stars=(1, 3)) == ["r1", "r2", "r4", "r5"]
    assert _ids(db, start=date(2025, 2, 1), end=date(2025, 3, 1)) == ["r2", "r3", "r4"]  # inclusive days
    assert _ids(db, restaurants=("Dot",), stars=(3,), labels=("neutral",)) == ["r2", "r5"]


def test_the_page_has_the_review_the_model_and_the_current_label(db):
    rl.relabel(db, ANA, "r2", "negative")  # resolves r2's flag
    with connect(db, read_only=True) as con:
        page, total = search_flag_queue(con, QueueFilter(), limit=2)
        matching = fetch_matching_review_ids(con, QueueFilter(restaurants=("Dot",)))
        options = fetch_queue_filter_options(con)
    assert total == 5 and page["review_id"].tolist() == ["r0", "r1"]
    assert page.loc[0, "text"] == "Great grits_and tacos"
    assert (page.loc[0, "current_label"], page.loc[0, "current_label_source"]) == ("positive", "stars")
    assert matching == ["r3", "r5"]  # r2 is no longer open
    assert options["restaurants"] == ["Dot", "Krog"] and options["terms"] == ["grits"]
    assert (options["first"], options["last"]) == (date(2025, 1, 1), date(2025, 3, 2))


@pytest.mark.parametrize("filters, message", [
    ({"reasons": ("bogus",)}, "unknown flag reasons"),
    ({"labels": ("great",)}, "unknown labels"),
    ({"stars": (6,)}, "stars are 1 to 5"),
    ({"start": date(2025, 3, 1), "end": date(2025, 1, 1)}, "starts .* after it ends"),
])
def test_bad_filters_are_refused(filters, message):
    with pytest.raises(ValueError, match=message):
        QueueFilter(**filters)


def test_a_comment_is_stored_with_its_label(db):
    rl.relabel(db, ANA, "r0", "neutral", comment="  mixed: grits great, service slow  ")
    rl.relabel(db, ANA, "r1", "negative", comment="   ")
    with connect(db, read_only=True) as con:
        history = fetch_label_history(con, "r0")
        blank = fetch_label_history(con, "r1")
    assert history["comment"].tolist()[-1] == "mixed: grits great, service slow"
    assert blank["comment"].isna().all()


def test_a_too_long_comment_is_refused_and_writes_nothing(db):
    with pytest.raises(TastebudError, match="limited to 2,000 characters"):
        rl.relabel(db, ANA, "r0", "neutral", comment="x" * (MAX_COMMENT_CHARS + 1))
    with connect(db, read_only=True) as con:
        assert current_label(con, "r0")["source"] == "stars"


def test_any_recent_action_can_be_undone_but_only_by_its_author_and_once(db):
    first = rl.relabel(db, ANA, "r0", "neutral", comment="sarcasm?")
    rl.relabel(db, ANA, "r1", "positive")
    dismissed = rl.dismiss_flag(db, ANA, 3)  # r2's flag
    with connect(db, read_only=True) as con:
        recent = fetch_recent_actions(con, "ana")
    assert recent["kind"].tolist() == ["dismiss", "relabel", "relabel"]
    assert recent.iloc[2][["label", "comment", "review_id", "text"]].tolist() == [
        "neutral", "sarcasm?", "r0", "Great grits_and tacos"]
    assert not recent["undone"].any()

    result = rl.undo_action(db, ANA, first["action_id"])  # the oldest, not the last
    assert (result["retracted_labels"], result["reopened_flags"]) == (1, 1)
    with connect(db, read_only=True) as con:
        assert current_label(con, "r0")["source"] == "stars"
        assert current_label(con, "r1")["label"] == "positive"  # later actions stand
        assert fetch_recent_actions(con, "ana")["undone"].tolist() == [False, False, True]
    with pytest.raises(TastebudError, match="undone already"):
        rl.undo_action(db, ANA, first["action_id"])
    with pytest.raises(TastebudError, match="is ana's; you can undo only your own"):
        rl.undo_action(db, BO, dismissed["action_id"])
    with pytest.raises(TastebudError, match="no relabel, dismissal or aspect correction 999"):
        rl.undo_action(db, ANA, 999)


def test_a_ticked_batch_is_one_undo(db):
    batch = rl.bulk_relabel(db, ANA, ["r3", "r5"], "neutral")
    rl.undo_action(db, ANA, batch["action_id"])
    with connect(db, read_only=True) as con:
        assert [current_label(con, r)["source"] for r in ("r3", "r5")] == ["stars", "stars"]


def test_guidelines_are_versioned_and_only_data_scientists_edit_them(db):
    with connect(db, read_only=True) as con:
        assert get_guidelines(con) is None
    assert rl.save_guidelines(db, DARIO, "# Rules\nSarcasm is negative.") == 1
    assert rl.save_guidelines(db, DARIO, "# Rules v2") == 2
    with connect(db, read_only=True) as con:
        current = get_guidelines(con)
    assert (current["version"], current["body"], current["author"]) == (2, "# Rules v2", "dario")
    with pytest.raises(PermissionDeniedError, match="may not import"):
        rl.save_guidelines(db, ANA, "# mine")
    with pytest.raises(TastebudError, match="cannot be empty"):
        rl.save_guidelines(db, DARIO, "  \n")
    with pytest.raises(TastebudError, match="limited to 50,000 characters"):
        rl.save_guidelines(db, DARIO, "x" * (MAX_GUIDELINES_CHARS + 1))


def test_an_older_store_gains_the_comment_and_guideline_tables(tmp_path):
    con = duckdb.connect(str(tmp_path / "old.duckdb"))
    try:
        migrate(con, target=50)
        assert {81, 82} <= set(migrate(con))
        columns = con.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_name IN ('label_comments', 'labeling_guidelines') ORDER BY table_name, ordinal_position"
        ).fetchall()
    finally:
        con.close()
    assert columns == [("label_comments", "label_id"), ("label_comments", "comment"), ("label_comments", "created_at"),
                       ("labeling_guidelines", "version"), ("labeling_guidelines", "body"),
                       ("labeling_guidelines", "author"), ("labeling_guidelines", "created_at")]


class _Counting:
    """A predictor that counts the texts it scores."""

    def __init__(self, inner):
        self.inner, self.texts = inner, 0

    def predict_proba(self, texts):
        self.texts += len(texts)
        return self.inner.predict_proba(texts)


def test_word_attributions_point_at_the_words_that_carry_the_sentiment():
    text = "The waiter was rude and the soup   was cold.\nNever again."
    result = word_attributions(VaderPredictor(), text)
    assert "".join(piece for piece, _ in result.pieces) == text  # the exact text, whitespace kept
    assert result.label == "negative"
    assert {w for w, _ in result.top_words(3)} & {"rude", "Never", "cold."}
    weights = dict((p, w) for p, w in result.pieces if w is not None)
    assert weights["rude"] > weights["soup"]


def test_a_long_review_is_occluded_in_runs_of_words():
    predictor = _Counting(VaderPredictor())
    text = " ".join(["fine"] * 200 + ["terrible"])
    result = word_attributions(predictor, text, max_units=MAX_UNITS)
    assert predictor.texts <= MAX_UNITS + 1
    assert sum(1 for _, w in result.pieces if w is not None) == 201


def test_word_attributions_need_text():
    with pytest.raises(ValueError, match="non-empty text"):
        word_attributions(VaderPredictor(), "   ")
