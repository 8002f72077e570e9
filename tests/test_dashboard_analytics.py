"""The dashboard's store reads (trends, terms, agreement, flags, stats) on real temporary stores: exact counts, shift marks, terms, disagreements."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pandas as pd
import pytest

from conftest import seed_reviews
from pipeline.data.demo_data import load_demo_data
from store import agreement as agreement_store
from store import flags as flag_store
from store import stats as stats_store
from store import terms as term_store
from store import trends as trend_store
from store import predictions as prediction_store
from store.db import connect, transaction
from dashboard_seed import seed_dashboard_store
from store.schema import init_store


def _reviews(rows: list[tuple]) -> pd.DataFrame:
    """rows of (review_id, restaurant, neighborhood, day offset, stars, text, label)."""
    start = datetime(2025, 1, 6)  # a Monday, so weeks line up with date_trunc('week')
    return pd.DataFrame(
        {
            "review_id": [r[0] for r in rows],
            "restaurant_name": [r[1] for r in rows],
            "neighborhood": [r[2] for r in rows],
            "created_at": [start + timedelta(days=r[3]) for r in rows],
            "stars": [r[4] for r in rows],
            "text": [r[5] for r in rows],
            "label": [r[6] for r in rows],
        }
    )


@pytest.fixture
def small_store(store_path):
    rows = [
        ("a1", "Bistro O'Hare", "Midtown", 0, 5, "lovely food", "positive"),
        ("a2", "Bistro O'Hare", "Midtown", 1, 1, "cold food rude staff", "negative"),
        ("a3", "Bistro O'Hare", "Midtown", 8, 3, "it was fine", "neutral"),
        ("b1", "Taco Stop", "Decatur", 2, 4, "great tacos", "positive"),
        ("b2", "Taco Stop", "Decatur", 9, 2, "slow service", "negative"),
        ("b3", "Taco Stop", "Decatur", 40, 5, "great again", "positive"),
    ]
    seed_reviews(store_path, _reviews(rows))
    return store_path


def test_trend_summary_counts_labels_per_period_and_group(small_store):
    with connect(small_store, read_only=True) as con:
        summary = trend_store.fetch_trend_summary(con, trend_store.SentimentSource("labels"), grain="week", by="restaurant")
    trend = summary.trend.set_index("period")
    assert trend.loc[pd.Timestamp("2025-01-06"), ["n", "negative", "neutral", "positive"]].tolist() == [3, 1, 0, 2]
    assert trend.loc[pd.Timestamp("2025-01-13"), ["n", "negative", "neutral"]].tolist() == [2, 1, 1]
    assert trend.loc[pd.Timestamp("2025-01-06"), "avg_stars"] == pytest.approx((5 + 1 + 4) / 3)
    assert trend["n"].sum() == 6
    breakdown = summary.breakdown.set_index("grp")
    assert breakdown.loc["Bistro O'Hare", ["n", "negative", "neutral", "positive"]].tolist() == [3, 1, 1, 1]
    assert breakdown.loc["Taco Stop", "positive_share"] == pytest.approx(2 / 3)
    group = summary.group_trend
    assert set(group["grp"]) == {"Bistro O'Hare", "Taco Stop"}
    assert group["n"].sum() == 6


def test_filters_are_bound_values_and_end_is_inclusive(small_store):
    flt = trend_store.ReviewFilter(start=date(2025, 1, 6), end=date(2025, 1, 7), restaurants=("Bistro O'Hare",))
    with connect(small_store, read_only=True) as con:
        summary = trend_store.fetch_trend_summary(con, trend_store.SentimentSource("labels"), flt, grain="day")
        by_hood = trend_store.fetch_trend_summary(
            con, trend_store.SentimentSource("labels"), trend_store.ReviewFilter(neighborhoods=("Decatur",)), by="neighborhood"
        )
        reviews = trend_store.fetch_selection_reviews(con, trend_store.SentimentSource("labels"), flt, label="negative")
    assert summary.trend["n"].tolist() == [1, 1]  # a1 on the 6th, a2 on the 7th (end day included)
    assert by_hood.breakdown["grp"].tolist() == ["Decatur"]
    assert reviews["review_id"].tolist() == ["a2"]
    assert reviews["text"].tolist() == ["cold food rude staff"]


def test_bad_filters_and_options_are_refused():
    with pytest.raises(ValueError, match="after its end"):
        trend_store.ReviewFilter(start=date(2025, 2, 1), end=date(2025, 1, 1))
    with pytest.raises(ValueError, match="needs a model_id"):
        trend_store.SentimentSource("predictions")
    with pytest.raises(ValueError, match="unknown time grain"):
        trend_store.period_bounds(date(2025, 1, 1), "year")


def test_period_bounds():
    assert trend_store.period_bounds(date(2024, 2, 1), "month") == (date(2024, 2, 1), date(2024, 2, 29))
    assert trend_store.period_bounds(date(2024, 12, 1), "month") == (date(2024, 12, 1), date(2024, 12, 31))
    assert trend_store.period_bounds(date(2025, 1, 6), "week") == (date(2025, 1, 6), date(2025, 1, 12))


def test_predictions_source_is_used_when_the_model_has_predictions(small_store):
    frame = pd.DataFrame(
        {"review_id": ["a1", "a2", "a3", "b1", "b2", "b3"], "p_negative": [0.8] * 6, "p_neutral": [0.1] * 6,
         "p_positive": [0.1] * 6}
    )
    with transaction(small_store) as con:
        prediction_store.write_predictions(con, "m1", frame)
    with connect(small_store, read_only=True) as con:
        assert trend_store.resolve_sentiment_source(con, "m1") == trend_store.SentimentSource("predictions", "m1")
        assert trend_store.resolve_sentiment_source(con, "unscored") == trend_store.SentimentSource("labels")
        assert trend_store.resolve_sentiment_source(con, None) == trend_store.SentimentSource("labels")
        summary = trend_store.fetch_trend_summary(con, trend_store.SentimentSource("predictions", "m1"), grain="month")
    assert summary.trend["negative"].sum() == 6


def test_a_sudden_rise_in_negative_share_is_marked_as_a_spike(store_path):
    rows, n = [], 0
    for week in range(10):
        bad_week = week == 8
        for i in range(30):
            negative = i < (24 if bad_week else 3)
            rows.append((f"r{n}", "Diner", "Kirkwood", week * 7 + i % 7, 1 if negative else 5,
                         "awful wait" if negative else "tasty", "negative" if negative else "positive"))
            n += 1
    seed_reviews(store_path, _reviews(rows))
    with connect(store_path, read_only=True) as con:
        trend = trend_store.fetch_trend_summary(con, trend_store.SentimentSource("labels"), grain="week").trend
    marked = trend[trend["shift"].notna()]
    assert marked["period"].tolist() == [pd.Timestamp("2025-01-06") + pd.Timedelta(weeks=8)]
    assert marked["shift"].tolist() == ["spike"]
    assert marked["shift_z"].iloc[0] > 3


def test_distinguishing_terms_separate_the_classes(store_path):
    rows = []
    for i in range(40):
        rows.append((f"n{i}", "X", "Y", i, 1, f"the soup was cold and the waiter rude {i}", "negative"))
        rows.append((f"p{i}", "X", "Y", i, 5, f"the soup was delicious and the waiter kind {i}", "positive"))
    seed_reviews(store_path, _reviews(rows))
    with connect(store_path, read_only=True) as con:
        terms = term_store.fetch_distinguishing_terms(con, trend_store.SentimentSource("labels"), k=3)
    negative = terms[terms["side"] == "negative"]["term"].tolist()
    positive = terms[terms["side"] == "positive"]["term"].tolist()
    assert {"cold", "rude"} <= set(negative)
    assert {"delicious", "kind"} <= set(positive)
    assert "soup" not in negative + positive  # in every review: no signal
    assert "the" not in negative + positive  # a stopword
    assert terms["n_negative"].iloc[0] == 40 and terms["n_positive"].iloc[0] == 40


def test_disagreements_and_agreement_between_two_models(small_store):
    ids = ["a1", "a2", "a3", "b1", "b2", "b3"]
    sure = {"negative": [0.9, 0.05, 0.05], "neutral": [0.05, 0.9, 0.05], "positive": [0.05, 0.05, 0.9]}

    def frame(labels):
        probs = [sure[label] for label in labels]
        return pd.DataFrame({"review_id": ids, "p_negative": [p[0] for p in probs],
                             "p_neutral": [p[1] for p in probs], "p_positive": [p[2] for p in probs]})

    with transaction(small_store) as con:
        prediction_store.write_predictions(con, "a", frame(["positive", "negative", "neutral", "positive", "negative", "positive"]))
        prediction_store.write_predictions(con, "b", frame(["positive", "positive", "neutral", "negative", "negative", "positive"]))
    with connect(small_store, read_only=True) as con:
        agreement = agreement_store.fetch_prediction_agreement(con, "a", "b", split=None)
        disagreements = agreement_store.fetch_disagreements(con, "a", "b", split=None)
        scored = agreement_store.list_scored_models(con)
    assert int(agreement.values.sum()) == 6
    assert agreement.loc["negative", "positive"] == 1 and agreement.loc["positive", "negative"] == 1
    assert sorted(disagreements["review_id"]) == ["a2", "b1"]
    row = disagreements.set_index("review_id").loc["a2"]
    assert (row["label_a"], row["label_b"], row["current_label"]) == ("negative", "positive", "negative")
    assert set(scored["model_id"]) == {"a", "b"}


def test_overview_counts(small_store):
    with connect(small_store, read_only=True) as con:
        overview = stats_store.fetch_overview(con)
    assert overview["reviews"] == 6
    assert overview["labeled"] == 6
    assert overview["labels_by_source"] == {"stars": 6}
    assert overview["open_flags"] == {}
    assert overview["last_scored_at"] is None


def test_the_demo_stores_scripted_events_show(tmp_path):
    db = tmp_path / "demo.duckdb"
    load_demo_data(db, rows=20_000)
    with connect(db, read_only=True) as con:
        summary = trend_store.fetch_trend_summary(con, trend_store.SentimentSource("labels"), grain="week", by="restaurant")
        options = trend_store.fetch_filter_options(con)
    spikes = summary.group_trend[summary.group_trend["shift"] == "spike"]
    assert "Magnolia Table" in set(spikes["grp"])
    magnolia = spikes[spikes["grp"] == "Magnolia Table"]["period"]
    assert magnolia.between(pd.Timestamp("2025-08-01"), pd.Timestamp("2025-09-30")).all()
    breakdown = summary.breakdown.set_index("grp")
    assert bool(breakdown.loc["Krog District", "is_new"])
    assert not breakdown.drop(index="Krog District")["is_new"].any()
    assert 0.3 < breakdown.loc["Krog District", "negative_share"] < 0.5  # mixed, unlike the others
    assert options["restaurants"][0] == "Magnolia Table"


@pytest.fixture(scope="module")
def seeded_store(tmp_path_factory):
    db, _ = init_store(tmp_path_factory.mktemp("seeded") / "store.duckdb")
    seed_dashboard_store(db)
    return db


def test_flag_queue_pages_by_priority_with_current_labels(seeded_store):
    with connect(seeded_store, read_only=True) as con:
        first = flag_store.fetch_flag_queue(con, limit=5)
        rest = flag_store.fetch_flag_queue(con, limit=100, offset=5)
        low = flag_store.fetch_flag_queue(con, reasons=["low_confidence"], limit=100)
        resolved = flag_store.fetch_flag_queue(con, status="resolved")
        statuses = flag_store.count_flags_by_status(con)
    queue = pd.concat([first, rest], ignore_index=True)
    assert len(first) == 5 and len(queue) == 12 and queue["flag_id"].is_unique
    assert queue["priority"].is_monotonic_decreasing
    assert set(low["reason"]) == {"low_confidence"} and len(low) == 8
    assert resolved.empty and statuses == {"open": 12, "resolved": 0, "dismissed": 0}
    # The demo store labels every review from its stars; the queue carries that label.
    assert set(queue["current_label_source"]) == {"stars"} and queue["current_label"].notna().all()


def test_store_stats_counts_reviews_labels_and_splits(seeded_store):
    with connect(seeded_store, read_only=True) as con:
        stats = stats_store.store_stats(con)
        labeled_per_split = dict(con.execute(
            "SELECT split, count(*) FROM splits JOIN labels USING (review_id) GROUP BY 1").fetchall())
    assert stats["reviews"] == 1500 and stats["labeled"] + stats["unlabeled"] == 1500
    assert sum(stats["labels"].values()) == stats["labeled"] == stats["label_sources"]["stars"]
    assert sum(stats["splits"].values()) == 1500
    assert {split: sum(counts.values()) for split, counts in stats["labels_by_split"].items()} == labeled_per_split
    assert stats["label_history_rows"]["human"] == 0


def test_terms_with_known_class_counts_match_the_counted_ones(seeded_store):
    source = trend_store.SentimentSource("predictions", "ft-seed-champion")
    with connect(seeded_store, read_only=True) as con:
        counted = term_store.fetch_distinguishing_terms(con, source)
        summary = trend_store.fetch_trend_summary(con, source)
        given = term_store.fetch_distinguishing_terms(
            con, source, class_counts=(summary.trend["negative"].sum(), summary.trend["positive"].sum()))
    pd.testing.assert_frame_equal(counted, given)
    assert len(counted) == 30


def test_a_labels_snapshot_gives_the_same_aggregates(seeded_store):
    with connect(seeded_store, read_only=True) as con:
        live = trend_store.fetch_trend_summary(con, trend_store.SentimentSource("labels"), grain="month")
        snap = trend_store.fetch_trend_summary(con, trend_store.snapshot_current_labels(con), grain="month")
    pd.testing.assert_frame_equal(live.trend, snap.trend)
    pd.testing.assert_frame_equal(live.breakdown, snap.breakdown)
    with pytest.raises(ValueError, match="only a labels source"):
        trend_store.SentimentSource("predictions", "m", snapshot=True)


def test_summary_class_counts_and_shift_list(small_store):
    with connect(small_store, read_only=True) as con:
        summary = trend_store.fetch_trend_summary(con, trend_store.SentimentSource("labels"), grain="week", by="restaurant")
    assert summary.class_counts() == (2, 3)
    assert summary.class_counts(period=date(2025, 1, 6)) == (1, 2)
    assert summary.class_counts(group="Taco Stop") == (1, 2)
    assert summary.class_counts(period=date(2025, 1, 13), group="Taco Stop") == (1, 0)
    assert summary.shifts().empty  # too few reviews to mark anything
