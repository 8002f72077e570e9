"""The demo's aspect stories: tagged phrases, true aspects per review, and the aspect labels it imports."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.data import demo_phrases as P
from pipeline.data.demo_data import (
    ASPECTS, DEFAULT_START, TRUE_ASPECT_COLUMNS, aspect_label_rows, demo_events, generate_reviews, load_demo_data,
)
from store.aspects import ASPECT_LABEL_VALUES, DEFAULT_ASPECTS, aspect_label_counts, count_annotated_reviews
from store.db import connect

POOLS = ("OPENERS", "FOOD", "SERVICE", "AMBIENCE", "LOCAL", "CLOSERS", "FOOD_HALL_TEXT")
FLAT_POOLS = ("COLLAPSE", "SARCASM", "FOOD_HALL_VARIETY", "FOOD_HALL_CROWDS")


@pytest.fixture(scope="module")
def demo() -> pd.DataFrame:
    return generate_reviews(6000, seed=11).to_pandas()


def _shares(frame: pd.DataFrame, column: str) -> pd.Series:
    mentioned = frame[frame[column] != "absent"][column]
    return mentioned.value_counts(normalize=True)


def test_every_phrase_says_which_aspects_it_speaks_of():
    assert ASPECTS == DEFAULT_ASPECTS
    tags = [P.phrase_aspects(pool, t, s) for pool in POOLS for s, ts in getattr(P, pool).items() for t in ts]
    tags += [P.phrase_aspects(pool, t) for pool in FLAT_POOLS for t in getattr(P, pool)]
    assert all(tags) and {a for pairs in tags for a, _ in pairs} == set(DEFAULT_ASPECTS)
    assert {p for pairs in tags for _, p in pairs} <= set(ASPECT_LABEL_VALUES)
    assert set(P.ASPECT_TAGS) <= {t for pool in POOLS for ts in getattr(P, pool).values() for t in ts} | {
        t for pool in FLAT_POOLS for t in getattr(P, pool)}  # no tag for a phrase that is not used
    with pytest.raises(KeyError, match="no aspect tag"):
        P.phrase_aspects("SARCASM_BY_MISTAKE", "Nice.")


def test_true_aspects_follow_the_phrases(demo):
    overpriced = demo[demo.text.str.contains("was dry and overpriced")]
    assert len(overpriced) and (overpriced.true_price != "absent").all()
    slow = demo[demo.text.str.contains("Service was painfully slow") & (demo.event == "")]
    assert len(slow) and (slow.true_service == "negative").all()
    # a plain review opens and closes on the place as a whole: anecdotes/miscellaneous follows its sentiment
    plain = demo[(demo.event == "") & ~demo.is_sarcastic]
    assert (plain.true_anecdotes == plain.true_label).mean() > 0.95
    assert set(demo[list(TRUE_ASPECT_COLUMNS.values())].stack()) <= set(ASPECT_LABEL_VALUES)


def test_food_hall_is_loved_for_its_food_and_hated_for_its_crowds(demo):
    hall = demo[demo.event == "food_hall"]
    assert len(hall) > 100
    food, ambience = _shares(hall, "true_food"), _shares(hall, "true_ambience")
    assert food.get("positive", 0) > 0.7 and ambience.get("negative", 0) > 0.9
    # both sides are widely spoken of, and often in one review
    assert (hall.true_food != "absent").mean() > 0.5 and (hall.true_ambience != "absent").mean() > 0.5
    both = hall[(hall.true_food == "positive") & (hall.true_ambience == "negative")]
    assert len(both) > 0.25 * len(hall)


def test_the_collapse_is_the_service_not_the_food(demo):
    ev = demo_events()
    start = np.datetime64(DEFAULT_START) + np.timedelta64(ev.collapse_start, "D")
    end = start + np.timedelta64(ev.collapse_days, "D")
    magnolia = demo[demo.restaurant_name == "Magnolia Table"]
    during = magnolia[(magnolia.created_at >= start) & (magnolia.created_at < end)]
    before = magnolia[magnolia.created_at < start]
    assert _shares(during, "true_service").get("negative", 0) > 0.85
    assert _shares(before, "true_service").get("negative", 0) < 0.25
    assert _shares(during, "true_food").get("positive", 0) > 0.6
    assert _shares(before, "true_food").get("positive", 0) > 0.6
    # what the review-level story showed before stays: a bad month in the stars
    assert during.stars.mean() < 2.5 < 3.5 < before.stars.mean()


def test_aspect_labels_are_a_deterministic_share_of_each_split(tmp_path):
    db = tmp_path / "demo.duckdb"
    first = load_demo_data(db, rows=2000)
    rows = aspect_label_rows(generate_reviews(2000), 0.5)
    assert first["aspect_labels_added"] == len(rows) > 0
    assert load_demo_data(db, rows=2000)["aspect_labels_added"] == 0  # re-running adds nothing
    with connect(db, read_only=True) as con:
        annotated = count_annotated_reviews(con)
        per_split = aspect_label_counts(con).groupby("split")["n"].sum()
        labels = con.execute(
            "SELECT l.review_id, l.aspect, l.polarity, l.source, r.restaurant_name, r.created_at "
            "FROM current_aspect_labels l JOIN reviews r USING (review_id)").df()
    assert 0.45 < annotated / 2000 < 0.55
    assert set(per_split.index) == {"train", "val", "test"} and per_split.min() > 50
    assert set(labels["source"]) == {"import"} and "absent" not in set(labels["polarity"])
    # the food hall's story is in the labels a model trains on
    hall = labels[labels.restaurant_name == "Krog District"]
    assert (hall[hall.aspect == "ambience"].polarity == "negative").mean() > 0.9
    assert (hall[hall.aspect == "food"].polarity == "positive").mean() > 0.7


def test_the_service_collapse_shows_in_the_labels_month_by_month(tmp_path):
    db = tmp_path / "demo.duckdb"
    load_demo_data(db, rows=8000)
    with connect(db, read_only=True) as con:
        labels = con.execute(
            "SELECT l.aspect, l.polarity, date_trunc('month', r.created_at) AS month "
            "FROM current_aspect_labels l JOIN reviews r USING (review_id) "
            "WHERE r.restaurant_name = 'Magnolia Table' AND l.aspect IN ('food', 'service')").df()
    negative = (labels.assign(negative=labels.polarity == "negative")
                .pivot_table(index="month", columns="aspect", values="negative", aggfunc="mean"))
    first = pd.Timestamp(demo_events().as_dict(DEFAULT_START)["collapse_start"]).to_period("M").to_timestamp()
    collapse = [first, first + pd.offsets.MonthBegin(1)]  # the month it began and the next
    assert negative.loc[collapse, "service"].min() > 0.6 > 0.4 > negative["service"].drop(collapse).max()
    # the food did not collapse with it: service and food part only in those months
    assert negative.loc[collapse, "food"].max() < 0.2
    gap = negative["service"] - negative["food"]
    assert gap.loc[collapse].min() > 0.5 > 0.1 > gap.drop(collapse).abs().max()


# --- the demo's first aspect model, in the background -----------------------------------------------


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory):
    """A demo store of 400 reviews with a review champion that scored them (no baselines: seconds)."""
    from store import models as model_store
    from store.actors import Actor
    from store.db import transaction
    from store.predictions import write_predictions

    db = tmp_path_factory.mktemp("demo-aspects") / "demo.duckdb"
    load_demo_data(db, rows=400)
    truth = generate_reviews(400).to_pandas()
    probs = pd.get_dummies(truth["true_label"]).reindex(columns=["negative", "neutral", "positive"]).astype(float)
    probs = probs * 0.8 + 0.2 / 3
    with transaction(db) as con:
        model_store.register_model(con, model_id="review-champion", kind="baseline", name="r", status="ready")
        write_predictions(con, "review-champion", pd.DataFrame({
            "review_id": truth["review_id"], "p_negative": probs["negative"], "p_neutral": probs["neutral"],
            "p_positive": probs["positive"]}))
        model_store.promote_model(con, Actor("ana", "admin"), "review-champion")
    return db


def test_the_demo_trains_scores_and_flags_with_a_first_aspect_model(small_demo, tmp_path):
    from pipeline.demo import aspects_pending, train_demo_aspects
    from pipeline.jobs import resolve_kind
    from store.models import get_champion
    from tests.tiny_model import save_tiny_classifier

    assert resolve_kind("demo-aspects").__name__ == "run_aspects_job"
    assert aspects_pending(small_demo)
    tiny = save_tiny_classifier(tmp_path / "tiny")
    outcome = train_demo_aspects(small_demo, train={"base_model": str(tiny), "epochs": 1, "max_length": 32,
                                                    "batch_size": 32, "max_train_examples": 100})
    with connect(small_demo, read_only=True) as con:
        champion = get_champion(con, task="aspects")["model_id"]
        scored = con.execute("SELECT count(DISTINCT review_id) FROM aspect_predictions WHERE model_id = ?",
                             [champion]).fetchone()[0]
        flagged = con.execute("SELECT count(*) FROM flags WHERE reason = 'aspect_disagreement'").fetchone()[0]
    # the store's first aspect model is its champion, has read every review, and the disagreements are queued
    assert outcome["promoted"] and outcome["model_id"] == champion and outcome["scored"] == scored == 400
    assert outcome["flags"] == {"aspect_disagreement": flagged}
    assert not aspects_pending(small_demo)


def test_the_aspect_job_waits_for_the_review_fine_tune(small_demo, monkeypatch):
    import subprocess
    import sys

    from pipeline import demo
    from pipeline.jobs import JobReporter, get_job
    from store import jobs as job_store
    from store.db import transaction

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1.5)"])
    with transaction(small_demo) as con:
        job_id = job_store.create_job(con, "demo-finetune", {}, "demo-setup")
        job_store.mark_started(con, job_id, pid=proc.pid, log_path=None)
    monkeypatch.setattr(demo, "WAIT_POLL_S", 0.1)
    assert get_job(small_demo, job_id)["status"] == "running"
    demo._wait_for_job(small_demo, job_id, JobReporter(small_demo, None))
    assert proc.poll() is not None  # it returned only once the job's process had ended
    assert get_job(small_demo, job_id)["status"] not in job_store.ACTIVE_STATUSES
    proc.wait()
