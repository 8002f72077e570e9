"""The aspect_disagreement flag: aspects that contradict a review's overall label, on constructed predictions."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from pipeline.loop import relabel as rl
from pipeline.loop.flagging import find_aspect_disagreements, flag
from store import aspects as aspect_store
from store import models as model_store
from store.actors import Actor
from store.db import connect, transaction
from store.flags import fetch_flag_queue
from store.predictions import write_predictions
from tests.conftest import seed_reviews

ADMIN = Actor("ana", "admin")
LABELER = Actor("lee", "labeler")

# review -> (stars, sentiment probabilities, {aspect: (p_present, p_negative, p_neutral, p_positive)})
CASES = {
    # labeled positive, the service confidently negative: the example
    "mixed": (5, (0.1, 0.1, 0.8), {"food": (0.95, 0.02, 0.08, 0.9), "service": (0.95, 0.9, 0.05, 0.05)}),
    "consistent": (5, (0.05, 0.05, 0.9), {"food": (0.9, 0.05, 0.05, 0.9)}),
    # the aspect model is not sure enough of the negative service (0.6 * 0.6)
    "unsure": (5, (0.1, 0.1, 0.8), {"service": (0.6, 0.6, 0.2, 0.2)}),
    # labeled negative, yet everything it speaks of reads positive
    "negative_praise": (1, (0.7, 0.1, 0.2), {"food": (0.9, 0.05, 0.05, 0.9), "ambience": (0.8, 0.1, 0.1, 0.8)}),
    # negative with good food and bad service: an ordinary negative review
    "negative_mixed": (1, (0.8, 0.1, 0.1), {"food": (0.9, 0.05, 0.05, 0.9), "service": (0.9, 0.9, 0.05, 0.05)}),
    "neutral": (3, (0.2, 0.6, 0.2), {"service": (0.95, 0.95, 0.03, 0.02)}),
    # no label: the sentiment model's call (positive) is the overall one
    "unlabeled": (None, (0.05, 0.1, 0.85), {"price": (0.9, 0.85, 0.1, 0.05)}),
    # a person annotated its aspects: settled
    "annotated": (5, (0.1, 0.1, 0.8), {"service": (0.95, 0.95, 0.03, 0.02)}),
    # the aspect model hears nothing
    "silent": (5, (0.1, 0.1, 0.8), {"food": (0.1, 0.9, 0.05, 0.05)}),
}


def _aspect_rows(model_aspects: dict) -> pd.DataFrame:
    rows = []
    for review_id, (_, _, aspects) in model_aspects.items():
        for aspect, (present, neg, neu, pos) in aspects.items():
            rows.append({"review_id": review_id, "aspect": aspect, "p_present": present, "p_negative": neg,
                         "p_neutral": neu, "p_positive": pos, "evidence_start": 0, "evidence_end": 4})
    return pd.DataFrame(rows)


@pytest.fixture
def db(store_path):
    stars = {r: c[0] for r, c in CASES.items()}
    seed_reviews(store_path, pd.DataFrame({
        "review_id": list(CASES), "text": [f"Review {r}. It says things." for r in CASES],
        "stars": [s for s in stars.values()],
        "label": [None if s is None else ("positive" if s >= 4 else "negative" if s <= 2 else "neutral")
                  for s in stars.values()],
    }))
    probs = pd.DataFrame([(r, *c[1]) for r, c in CASES.items()],
                         columns=["review_id", "p_negative", "p_neutral", "p_positive"])
    with transaction(store_path) as con:
        model_store.register_model(con, model_id="s1", kind="finetuned", name="s1", status="ready")
        write_predictions(con, "s1", probs)
        model_store.promote_model(con, ADMIN, "s1")
        aspect_store.set_review_aspects(con, LABELER, "annotated", {"service": "neutral"})
    return store_path


def _add_aspect_champion(db, model_id="a1"):
    with transaction(db) as con:
        model_store.register_model(con, model_id=model_id, kind="finetuned", name=model_id, status="ready",
                                   task="aspects")
        aspect_store.write_aspect_predictions(con, model_id, _aspect_rows(CASES))
        model_store.promote_model(con, ADMIN, model_id)


def _open(db) -> pd.DataFrame:
    with connect(db, read_only=True) as con:
        return fetch_flag_queue(con, reasons=["aspect_disagreement"], status=None, limit=100)


def test_flags_positive_reviews_with_a_negative_aspect_and_negative_ones_that_praise_everything(db):
    _add_aspect_champion(db)
    result = flag(db, reasons=["aspect_disagreement"])
    assert result["inserted"] == {"aspect_disagreement": 3}
    assert "compared with their overall label" in result["notes"]["aspect_disagreement"]
    queue = _open(db)
    # highest confidence first: 0.95 * 0.9 (mixed), 0.9 * 0.9 (negative praise), 0.9 * 0.85 (unlabeled)
    assert queue["review_id"].tolist() == ["mixed", "negative_praise", "unlabeled"]
    assert queue["priority"].tolist() == pytest.approx([0.855, 0.81, 0.765])
    assert set(queue["model_id"]) == {"s1"}  # the flag run's model: the page's word highlights come from it
    details = {r: json.loads(d) for r, d in zip(queue["review_id"], queue["detail"])}
    assert details["mixed"] == {
        "aspect_model_id": "a1", "overall": "positive", "overall_from": "stars",
        "against": [{"aspect": "service", "polarity": "negative", "confidence": 0.855}],
        "aspects": {"food": "positive", "service": "negative"},
    }
    # both aspects are positive; only the food is heard surely enough to count against the label (0.8 * 0.8 < 0.7)
    assert [a["aspect"] for a in details["negative_praise"]["against"]] == ["food"]
    assert details["negative_praise"]["aspects"] == {"food": "positive", "ambience": "positive"}
    assert details["unlabeled"]["overall_from"] == "prediction" and details["unlabeled"]["overall"] == "positive"


def test_a_review_and_reason_is_flagged_once_ever(db):
    _add_aspect_champion(db)
    flag(db, reasons=["aspect_disagreement"])
    first = _open(db)
    rl.dismiss_flag(db, LABELER, int(first["flag_id"].iloc[0]))
    rl.relabel(db, LABELER, "negative_praise", "positive")
    assert flag(db, reasons=["aspect_disagreement"])["inserted"] == {"aspect_disagreement": 0}
    statuses = _open(db).set_index("review_id")["status"].to_dict()
    assert statuses == {"mixed": "dismissed", "negative_praise": "resolved", "unlabeled": "open"}
    # a new aspect champion hearing the same things raises nothing new either
    _add_aspect_champion(db, "a2")
    assert flag(db, reasons=["aspect_disagreement"])["inserted"] == {"aspect_disagreement": 0}


def test_annotating_the_aspects_settles_a_review(db):
    with transaction(db) as con:
        aspect_store.set_review_aspects(con, LABELER, "mixed", {"food": "positive", "service": "negative"})
    _add_aspect_champion(db)
    flag(db, reasons=["aspect_disagreement"])
    assert "mixed" not in _open(db)["review_id"].tolist()


def test_without_an_aspect_model_nothing_is_flagged_and_the_note_says_why(db):
    result = flag(db, reasons=["aspect_disagreement"])
    assert result["inserted"] == {"aspect_disagreement": 0}
    assert result["notes"]["aspect_disagreement"].startswith("no aspect model is promoted")
    with transaction(db) as con:
        model_store.register_model(con, model_id="a1", kind="finetuned", name="a1", status="ready", task="aspects")
        model_store.promote_model(con, ADMIN, "a1")
    result = flag(db, reasons=["aspect_disagreement"])
    assert result["notes"]["aspect_disagreement"] == (
        "aspect model a1 has no mentioned aspects stored: run `tastebud score`")


def test_find_aspect_disagreements_ignores_neutral_and_conflicting_polarity_columns():
    inputs = pd.DataFrame({"review_id": ["x"], "label": ["positive"], "label_source": ["import"],
                           "p_negative": [0.1], "p_neutral": [0.1], "p_positive": [0.8]})
    aspects = pd.DataFrame({"review_id": ["x", "x"], "aspect": ["food", "service"], "p_present": [0.99, 0.4],
                            "p_negative": [0.2, 0.99], "p_neutral": [0.7, 0.0], "p_positive": [0.1, 0.01],
                            "polarity": ["neutral", "absent"]})
    assert find_aspect_disagreements(inputs, aspects, "a1").empty
