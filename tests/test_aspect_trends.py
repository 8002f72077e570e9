"""Aspect analytics in the store: per-restaurant aspect tables with Wilson intervals, the sentences behind
a cell, trends per aspect, and the counts the shift detector reads."""

from __future__ import annotations

from datetime import date, datetime

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from store import aspects as aspect_store
from store.aspect_trends import (
    fetch_aspect_evidence,
    fetch_aspect_group_period_counts,
    fetch_aspect_summary,
    fetch_aspect_table,
    fetch_aspect_trend,
    resolve_aspect_model,
    wilson_interval,
)
from store.db import connect, transaction
from store.models import register_model
from store.trends import ReviewFilter
from tests.aspect_seed import collapse_series, register_aspect_model
from tests.conftest import seed_reviews

TEXTS = {
    "m1": "The food was delicious. The service was painfully slow.",
    "m2": "Service was rude. Food was fine.",
    "m3": "Loved it.",
    "k1": "Great variety. Far too crowded.",
}


def _row(review_id, aspect, p_present, polarity=None, p=0.8, span=None):
    probs = {q: (p if q == polarity else (1 - p) / 2) for q in ("negative", "neutral", "positive")}
    start, end = span or (None, None)
    return {"review_id": review_id, "aspect": aspect, "p_present": p_present, **{f"p_{q}": v for q, v in probs.items()},
            "evidence_start": start, "evidence_end": end}


@pytest.fixture
def small_store(store_path):
    """Three Magnolia Table reviews and one Krog District review, with hand-made aspect predictions."""
    seed_reviews(store_path, pd.DataFrame({
        "review_id": ["m1", "m2", "m3", "k1"],
        "restaurant_name": ["Magnolia Table", "Magnolia Table", "Magnolia Table", "Krog District"],
        "restaurant_id": ["r-m", "r-m", "r-m", "r-k"],
        "created_at": [datetime(2026, 1, 5, 12), datetime(2026, 1, 12, 12), datetime(2026, 1, 13, 12),
                       datetime(2026, 1, 6, 12)],
        "stars": [2, 1, 5, 4],
        "text": [TEXTS[k] for k in ("m1", "m2", "m3", "k1")],
    }))
    rows = [
        _row("m1", "food", 0.95, "positive", span=(0, 23)), _row("m1", "service", 0.9, "negative", 0.9, span=(24, 55)),
        _row("m1", "ambience", 0.1),
        _row("m2", "food", 0.7, "neutral", span=(18, 32)), _row("m2", "service", 0.99, "negative", 0.6, span=(0, 17)),
        _row("m2", "ambience", 0.2),
        _row("m3", "food", 0.3), _row("m3", "service", 0.1), _row("m3", "ambience", 0.05),
        _row("k1", "food", 0.8, "positive", span=(0, 14)), _row("k1", "service", 0.2),
        _row("k1", "ambience", 0.9, "negative", span=(15, 31)),
    ]
    with transaction(store_path) as con:
        register_aspect_model(con, "am")
        aspect_store.write_aspect_predictions(con, "am", pd.DataFrame(rows))
        # Another aspect model's predictions never leak into "am"'s numbers.
        register_aspect_model(con, "other", promote=False)
        aspect_store.write_aspect_predictions(con, "other", pd.DataFrame([_row("m3", "service", 0.9, "negative")]))
    return store_path


def test_wilson_interval_matches_scipy_and_is_nan_without_trials():
    low, high = wilson_interval([0, 6, 20, 3], [20, 20, 20, 0])
    for i, (k, n) in enumerate([(0, 20), (6, 20), (20, 20)]):
        ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert low[i] == pytest.approx(ci.low, abs=1e-9) and high[i] == pytest.approx(ci.high, abs=1e-9)
    assert np.isnan(low[3]) and np.isnan(high[3])


def test_aspect_table_counts_shares_and_intervals(small_store):
    with connect(small_store, read_only=True) as con:
        table = fetch_aspect_table(con, "am", ReviewFilter(restaurants=("Magnolia Table",)))
        everywhere = fetch_aspect_table(con, "am", by_restaurant=True)
        january_12_on = fetch_aspect_table(con, "am", ReviewFilter(start=date(2026, 1, 7)))
    # The store's order: food, service, price, ambience (price has no predictions at all).
    assert table["aspect"].tolist() == ["food", "service", "ambience"]
    service = table.set_index("aspect").loc["service"]
    assert (service["reviews"], service["mentions"], service["negative"], service["positive"]) == (3, 2, 2, 0)
    assert service["mention_share"] == pytest.approx(2 / 3)
    assert service["negative_share"] == pytest.approx(1.0) and service["positive_share"] == 0
    low, high = wilson_interval([2], [2])
    assert service["negative_low"] == pytest.approx(low[0]) and service["negative_high"] == pytest.approx(high[0])
    low, high = wilson_interval([2], [3])
    assert service["mention_low"] == pytest.approx(low[0]) and service["mention_high"] == pytest.approx(high[0])
    food = table.set_index("aspect").loc["food"]
    assert (food["mentions"], food["neutral"], food["positive"]) == (2, 1, 1)
    ambience = table.set_index("aspect").loc["ambience"]
    assert ambience["mentions"] == 0 and np.isnan(ambience["negative_share"]) and np.isnan(ambience["negative_low"])
    krog = everywhere.set_index(["restaurant", "aspect"]).loc[("Krog District", "ambience")]
    assert (krog["reviews"], krog["mentions"], krog["negative"]) == (1, 1, 1)
    assert everywhere["restaurant"].tolist()[:3] == ["Krog District"] * 3
    later = january_12_on.set_index("aspect")
    assert later.loc["service", "reviews"] == 2 and later.loc["service", "mentions"] == 1


def test_evidence_is_the_sentence_behind_the_cell(small_store):
    with connect(small_store, read_only=True) as con:
        newest = fetch_aspect_evidence(con, "am", "service", ReviewFilter(restaurants=("Magnolia Table",)),
                                       polarity="negative")
        confident = fetch_aspect_evidence(con, "am", "service", polarity="negative", order="confident")
        food = fetch_aspect_evidence(con, "am", "food", limit=1)
        none = fetch_aspect_evidence(con, "am", "service", polarity="positive")
    assert newest["review_id"].tolist() == ["m2", "m1"]  # newest first
    assert newest["evidence"].tolist() == ["Service was rude.", "The service was painfully slow."]
    assert newest["stars"].tolist() == [1, 2] and set(newest["polarity"]) == {"negative"}
    # m1: 0.9 x 0.9 = 0.81 beats m2: 0.99 x 0.6 = 0.59.
    assert confident["review_id"].tolist() == ["m1", "m2"]
    assert food["review_id"].tolist() == ["m2"] and food["evidence"].iloc[0] == "Food was fine."
    assert none.empty
    with pytest.raises(ValueError, match="unknown polarity 'bad'"):
        with connect(small_store, read_only=True) as con:
            fetch_aspect_evidence(con, "am", "service", polarity="bad")


def test_the_aspects_champion_is_the_default_model(small_store):
    with transaction(small_store) as con:
        register_model(con, model_id="sent", kind="finetuned", name="sent")
    with connect(small_store, read_only=True) as con:
        assert resolve_aspect_model(con) == "am"
        assert resolve_aspect_model(con, "other") == "other"
        with pytest.raises(ValueError, match="'sent' is not an aspect model"):
            resolve_aspect_model(con, "sent")


def test_trend_per_aspect_and_week_shows_the_service_collapse(store_path):
    reviews, predictions = collapse_series()
    seed_reviews(store_path, reviews)
    with transaction(store_path) as con:
        register_aspect_model(con)
        aspect_store.write_aspect_predictions(con, "aspects-seed", predictions)
    with connect(store_path, read_only=True) as con:
        magnolia = fetch_aspect_trend(con, "aspects-seed", ReviewFilter(restaurants=("Magnolia Table",)),
                                      aspects=["food", "service"])
        monthly = fetch_aspect_trend(con, "aspects-seed", grain="month")
        counts = fetch_aspect_group_period_counts(con, "aspects-seed")
    assert magnolia["aspect"].tolist() == ["food"] * 20 + ["service"] * 20  # store order, then period
    assert magnolia["period"].iloc[:20].is_monotonic_increasing
    service = magnolia[magnolia["aspect"] == "service"].set_index("period")
    food = magnolia[magnolia["aspect"] == "food"].set_index("period")
    collapse = pd.Timestamp("2026-09-07")
    assert service.loc[collapse, "negative_share"] > 0.5 > food.loc[collapse, "negative_share"]
    assert service.loc[collapse, "negative_low"] > service.loc[pd.Timestamp("2026-08-31"), "negative_high"]
    assert (service["reviews"] == 30).all()
    assert set(monthly["period"].dt.day) == {1} and monthly["reviews"].sum() == 4 * 1200
    # Shaped for the detector: by = aspect, grp = restaurant, n = mentions of the aspect.
    assert {"by", "grp", "period", "n", "negative", "reviews", "restaurant_id"} <= set(counts.columns)
    week = counts[(counts["by"] == "service") & (counts["grp"] == "Magnolia Table") & (counts["period"] == collapse)]
    assert int(week["n"].iloc[0]) == int(service.loc[collapse, "mentions"])
    assert int(week["negative"].iloc[0]) == int(service.loc[collapse, "negative"])
    assert week["restaurant_id"].iloc[0] == "r-magnolia"


def test_one_scan_summary_matches_the_separate_reads_and_undated_reviews_count_only_in_tables(small_store):
    seed_reviews(small_store, pd.DataFrame({"review_id": ["u1"], "restaurant_name": ["Krog District"],
                                            "text": ["Slow service."], "stars": [2]}))
    with transaction(small_store) as con:
        aspect_store.write_aspect_predictions(con, "am", pd.DataFrame([
            _row("u1", "food", 0.1), _row("u1", "service", 0.9, "negative", span=(0, 13)),
            _row("u1", "ambience", 0.1)]))
    with connect(small_store, read_only=True) as con:
        summary = fetch_aspect_summary(con, "am", grain="month", by_restaurant=True)
        table = fetch_aspect_table(con, "am")
        matrix = fetch_aspect_table(con, "am", by_restaurant=True)
        trend = fetch_aspect_trend(con, "am", grain="month")
        alone = fetch_aspect_summary(con, "am")
    pd.testing.assert_frame_equal(summary["table"], table)
    pd.testing.assert_frame_equal(summary["matrix"], matrix)
    pd.testing.assert_frame_equal(summary["trend"], trend)
    assert alone["matrix"].empty and "negative_low" in alone["matrix"].columns
    service = table.set_index("aspect").loc["service"]
    assert (service["reviews"], service["negative"]) == (5, 3)  # u1 has no date and still counts here...
    assert trend[trend["aspect"] == "service"]["reviews"].sum() == 4  # ...but in no period
    assert trend["period"].tolist() == [pd.Timestamp("2026-01-01")] * 3
