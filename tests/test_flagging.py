"""Flag store rules (no duplicates, no reopening) and each flag reason on constructed data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.loop import relabel as rl
from store.actors import Actor
from store.db import connect, transaction
from store.errors import TastebudError
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
            "text_changed": 0, "sarcasm": 0, "aspect_disagreement": 0,
        }


def test_insert_flags_rejects_unknown_reason(small_db):
    with pytest.raises(ValueError, match="unknown flag reasons: \\['vibes'\\]"):
        _insert(small_db, {"review_id": ["a"], "reason": ["vibes"], "priority": [1.0]})


# --- each reason on constructed data -------------------------------------------------------

from pipeline.loop.flagging import (  # noqa: E402
    flag,
    find_emerging_terms,
    find_label_issues,
    find_low_confidence,
    find_rating_contradictions,
    rank_label_issues,
)
from store.flags import fetch_disagreements  # noqa: E402
from store.predictions import write_predictions  # noqa: E402
from store import models as model_store
from store.actors import cli_actor
from tests.tiny_model import save_tiny_classifier


def _preds(rows: dict[str, tuple[float, float, float]], **extra) -> pd.DataFrame:
    frame = pd.DataFrame(
        [(rid, *p) for rid, p in rows.items()], columns=["review_id", "p_negative", "p_neutral", "p_positive"]
    )
    for key, values in extra.items():
        frame[key] = values
    return frame


def test_low_confidence_flags_close_or_flat_predictions_only():
    inputs = _preds({
        "torn": (0.40, 0.35, 0.25),     # margin 0.05
        "flat": (0.34, 0.33, 0.33),     # near-uniform
        "sure": (0.90, 0.05, 0.05),
        "leaning": (0.55, 0.30, 0.15),  # margin 0.25, entropy 0.89: not low enough
    })
    found = find_low_confidence(inputs)
    assert sorted(found.review_id) == ["flat", "torn"]
    assert found.set_index("review_id").priority["flat"] > found.set_index("review_id").priority["torn"]
    assert (found.reason == "low_confidence").all()


def test_rating_contradiction_needs_extreme_rating_and_confident_opposite():
    inputs = _preds(
        {
            "sarcastic5": (0.92, 0.05, 0.03),   # 5 stars, confidently negative
            "grumpy1": (0.05, 0.15, 0.80),      # 1 star, confidently positive
            "happy5": (0.03, 0.07, 0.90),       # agrees
            "middle3": (0.95, 0.03, 0.02),      # 3 stars: no direction to contradict
            "unsure5": (0.60, 0.20, 0.20),      # opposite but not confident
        },
        stars=[5, 1, 5, 3, 5],
    )
    found = find_rating_contradictions(inputs).set_index("review_id")
    assert sorted(found.index) == ["grumpy1", "sarcastic5"]
    assert found.priority["sarcastic5"] == pytest.approx(0.92)
    assert found.detail["grumpy1"]["predicted"] == "positive"


def test_disagreement_needs_different_labels_and_distance(small_db):
    with transaction(small_db) as con:
        write_predictions(con, "champ", _preds({"a": (0.8, 0.1, 0.1), "b": (0.40, 0.35, 0.25), "c": (0.1, 0.1, 0.8)}))
        write_predictions(con, "other", _preds({"a": (0.1, 0.1, 0.8), "b": (0.36, 0.40, 0.24), "c": (0.2, 0.1, 0.7)}))
        pairs = fetch_disagreements(con, "champ", ["other"], min_distance=0.3)
        none = fetch_disagreements(con, "champ", [], min_distance=0.3)
    assert pairs.review_id.tolist() == ["a"]  # b differs by a hair, c agrees
    assert pairs.iloc[0].other_label == "positive" and pairs.iloc[0].distance == pytest.approx(0.7)
    assert none.empty


def test_label_issues_found_in_held_out_and_train_rows():
    rng = np.random.default_rng(0)
    vocab = {"negative": "awful rude cold bland", "neutral": "okay average fine decent", "positive": "great tasty lovely superb"}
    rows = []
    for split in ("test", "train"):
        for label, words in vocab.items():
            for i in range(40):
                text = " ".join(rng.choice(words.split(), size=6)) + f" {rng.choice(['food', 'place', 'staff'])}"
                rows.append({"review_id": f"{split}-{label}-{i}", "split": split, "label": label, "text": text})
    frame = pd.DataFrame(rows)
    frame["label_source"] = "stars"
    wrong = {"test-negative-0", "test-negative-1", "test-neutral-2", "train-positive-3", "train-positive-4",
             "train-negative-5"}
    true_label = frame["label"].copy()
    frame.loc[frame.review_id.isin(wrong), "label"] = frame.loc[frame.review_id.isin(wrong), "label"].map(
        {"negative": "positive", "neutral": "negative", "positive": "negative"})
    # the champion's predictions follow the true label (confidently) on held-out rows
    onehot = np.eye(3)[true_label.map({"negative": 0, "neutral": 1, "positive": 2})] * 0.85 + 0.05
    frame[["p_negative", "p_neutral", "p_positive"]] = onehot
    # a human-labeled row is never questioned, whatever its label
    frame.loc[frame.review_id == "test-neutral-7", ["label", "label_source"]] = ["positive", "human"]

    found, notes = find_label_issues(frame, frame.loc[frame.split == "train", ["review_id", "text"]])
    flagged = set(found.review_id)
    assert {w for w in wrong if w.startswith("test")} <= flagged
    assert len({w for w in wrong if w.startswith("train")} & flagged) >= 2
    assert "test-neutral-7" not in flagged
    assert len(flagged - wrong) <= 3  # few false alarms on clean rows
    assert set(notes) == {"held_out", "train"}
    detail = found.set_index("review_id").detail["test-negative-0"]
    assert detail["given_label"] == "positive" and detail["suggested_label"] == "negative"

    few = frame[frame.split == "test"].head(15)  # one class only: nothing to learn from, skipped
    found_few, notes_few = find_label_issues(few, None)
    assert found_few.empty and notes_few["held_out"].startswith("skipped")


def test_emerging_term_needs_a_jump_a_minimum_count_and_model_doubt():
    rng = np.random.default_rng(1)
    generic = ["the tacos were good", "service was slow tonight", "nice patio and cold beer", "tacos again, solid"]
    prior_texts = list(rng.choice(generic, size=970)) + [f"patio heaters on, {i}" for i in range(30)]
    prior = pd.DataFrame({"review_id": [f"p{i}" for i in range(1000)], "text": prior_texts})
    recent_texts = (
        [f"{w} stalls at krog district" for w in ("mixed", "hmm", "odd", "busy", "fun", "meh", "loud", "ok")]
        + [f"the rooftop bar is superb {i}" for i in range(8)]      # new but the model is sure
        + [f"zephyr noodles {i}" for i in range(3)]                 # new, unsure, but too rare
        + [f"patio heaters again {i}" for i in range(5)]            # lift 3.9 but p = 0.02: a fluke
        + list(rng.choice(generic, size=30))                        # old terms, normal rate
    )
    recent = pd.DataFrame({"review_id": [f"r{i}" for i in range(len(recent_texts))], "text": recent_texts})
    unsure, sure = (0.35, 0.33, 0.32), (0.02, 0.03, 0.95)
    probs = {rid: (unsure if any(w in t for w in ("krog", "zephyr", "tacos", "patio")) else sure)
             for rid, t in zip(recent.review_id, recent.text)}
    inputs = _preds(probs)

    found, terms = find_emerging_terms(recent, prior, inputs)
    assert [t["term"] for t in terms] == ["krog district"]
    assert terms[0]["recent_count"] == 8 and terms[0]["prior_count"] == 0 and terms[0]["lift"] >= 3
    assert terms[0]["p_value"] < 1e-6
    assert len(found) == 5 and (found.term == "krog district").all()
    assert set(found.review_id) <= {f"r{i}" for i in range(8)}

    # without an earlier period there is nothing to compare against
    assert find_emerging_terms(recent, prior.iloc[:0], inputs)[1] == []


# --- flag() end to end on a constructed store --------------------------------------------------


def _constructed_store(db, tmp_path):
    """240 old and 20 recent reviews, champion and challenger predictions chosen to trigger each reason."""
    old = pd.Timestamp("2025-01-01")
    rows = []
    for i in range(240):
        stars = [1, 3, 5][i % 3]
        rows.append({"review_id": f"old{i:02d}", "text": ["cold soup", "fine lunch", "lovely tacos"][i % 3],
                     "stars": stars, "created_at": old + pd.Timedelta(days=i)})
    for i in range(20):
        words = ["stalls", "noodles", "crowds", "bar", "prices", "music", "seating", "lines"]
        text = f"{words[i]} at krog district" if i < 8 else "lovely tacos again"
        rows.append({"review_id": f"new{i:02d}", "text": text, "stars": 4, "created_at": pd.Timestamp("2026-06-01") + pd.Timedelta(days=i)})
    frame = pd.DataFrame(rows)
    frame.loc[frame.review_id == "old08", "text"] = "cold soup"  # 5 stars on a clearly negative text: label error
    frame["label"] = frame["stars"].map({1: "negative", 3: "neutral", 4: "positive", 5: "positive"})
    seed_reviews(db, frame)
    sure = {"negative": (0.9, 0.05, 0.05), "neutral": (0.05, 0.9, 0.05), "positive": (0.05, 0.05, 0.9)}
    champ = {r: sure[label] for r, label in zip(frame.review_id, frame.label)}
    champ["old05"] = (0.92, 0.04, 0.04)   # 5 stars, confidently negative: contradiction
    champ["old08"] = (0.90, 0.05, 0.05)   # the mislabeled one: contradiction and label issue
    champ["old01"] = (0.40, 0.35, 0.25)   # torn: low confidence
    for i in range(8):
        champ[f"new{i:02d}"] = (0.36, 0.30, 0.34)  # unsure about the new food hall
    other = dict(champ)
    other["old02"] = (0.9, 0.05, 0.05)    # the challenger calls a 5-star "lovely tacos" negative
    path = str(save_tiny_classifier(tmp_path / "m"))
    with transaction(db) as con:
        for model_id, probs in (("champ", champ), ("challenger", other)):
            model_store.register_model(con, model_id=model_id, kind="finetuned", name=model_id, path=path)
            write_predictions(con, model_id, _preds(probs))
        model_store.promote_model(con, cli_actor(), "champ")
    return frame


def test_flag_run_raises_each_reason_once(store_path, tmp_path):
    _constructed_store(store_path, tmp_path)
    result = flag(store_path)
    assert result["model_id"] == "champ" and result["scored_reviews"] == 260
    with connect(store_path, read_only=True) as con:
        queue = fetch_flag_queue(con, limit=500)
    by_reason = queue.groupby("reason").review_id.apply(set).to_dict()
    assert by_reason["rating_contradicts_text"] == {"old05", "old08"}
    assert "old01" in by_reason["low_confidence"] and "old05" not in by_reason["low_confidence"]
    assert by_reason["disagreement"] == {"old02"}
    assert "old08" in by_reason["label_issue"] and by_reason["label_issue"] <= {"old05", "old08"}
    assert set(result["notes"]["label_issue"]) == {"held_out", "train"}
    assert [t["term"] for t in result["terms"]] == ["krog district"]
    assert by_reason["emerging_term"] <= {f"new{i:02d}" for i in range(8)} and len(by_reason["emerging_term"]) == 5
    assert set(queue.model_id) == {"champ"} and queue.text.notna().all()
    top = queue[(queue.review_id == "old05") & (queue.reason == "rating_contradicts_text")].iloc[0]
    assert top["model_label"] == "negative" and top["current_label"] == "positive"

    again = flag(store_path)  # nothing new: every candidate was flagged before
    assert sum(again["inserted"].values()) == 0
    with pytest.raises(TastebudError, match="unknown flag reasons: vibes"):
        flag(store_path, reasons=["vibes"])


def test_flag_needs_scored_reviews(store_path, tmp_path):
    seed_reviews(store_path, pd.DataFrame({"review_id": ["a"], "text": ["x"], "stars": [5]}))
    with pytest.raises(TastebudError, match="there is no champion model yet"):
        flag(store_path)
    with transaction(store_path) as con:
        model_store.register_model(con, model_id="m", kind="finetuned", name="m", path=str(tmp_path))
        model_store.promote_model(con, cli_actor(), "m")
    with pytest.raises(TastebudError, match="model m has scored no reviews yet: run `tastebud score` first"):
        flag(store_path)


def test_label_issue_ranking_never_forks(monkeypatch):
    """A fork taken while a job's other threads hold a lock can hang the child forever (an import job hung at
    "flagging" that way): cleanlab must run in this process."""
    import os

    def no_fork():
        raise AssertionError("flagging forked a process")

    monkeypatch.setattr(os, "fork", no_fork)
    rng = np.random.default_rng(0)
    labels = rng.choice(["negative", "neutral", "positive"], 3000)
    probs = rng.dirichlet([1, 1, 1], 3000)
    frame = pd.DataFrame({"review_id": [f"r{i}" for i in range(3000)], "label": labels})
    ranked = rank_label_issues(frame, probs, "test")
    assert len(ranked) > 0
