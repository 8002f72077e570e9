"""The demo generator: deterministic, realistic, and carrying its scripted events."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from conftest import cli_cmd
from pipeline.data.demo_data import demo_events, generate_reviews, DEFAULT_START
from store.constants import STARS_TO_LABEL
from store.db import connect


@pytest.fixture(scope="module")
def demo():
    return generate_reviews(6000, seed=11).to_pandas()


def test_same_seed_same_reviews_other_seed_other_reviews():
    a, b, c = (generate_reviews(400, seed=s) for s in (3, 3, 4))
    assert a.equals(b)
    assert not a.column("text").equals(c.column("text"))


def test_rejects_bad_sizes():
    with pytest.raises(ValueError, match="at least one review"):
        generate_reviews(0)


def test_two_years_of_time_with_busier_weekends(demo):
    span = demo.created_at.max() - demo.created_at.min()
    assert span.days >= 700
    assert demo.created_at.is_monotonic_increasing
    by_weekday = demo.created_at.dt.day_of_week.value_counts(normalize=True)
    assert by_weekday[5] > by_weekday[1] * 1.5  # Saturday vs Tuesday


def test_stars_mostly_but_not_always_agree_with_text(demo):
    star_label = demo.stars.map(STARS_TO_LABEL)
    agreement = (star_label == demo.true_label).mean()
    assert 0.75 < agreement < 0.97
    contradictions = demo[(demo.stars == 5) & (demo.true_label == "negative")]
    assert len(contradictions) > 0


def test_sarcasm_slow_service_local_and_neutral_reviews_present(demo):
    sarcastic = demo[demo.is_sarcastic]
    assert len(sarcastic) > 20 and (sarcastic.stars <= 3).all()
    assert sarcastic.text.str.contains("Just what I wanted|masterpiece|Ten out of ten|Impressive").any()
    assert demo.text.str.contains("DMV on Memorial Drive").any()
    assert demo.text.str.contains("45 minutes|painfully slow|forever").sum() > 50
    assert (demo.true_label == "neutral").mean() > 0.08


def test_service_collapse_is_a_visible_month(demo):
    ev = demo_events()
    start = np.datetime64(DEFAULT_START) + np.timedelta64(ev.collapse_start, "D")
    end = start + np.timedelta64(ev.collapse_days, "D")
    magnolia = demo[demo.restaurant_name == "Magnolia Table"]
    during = magnolia[(magnolia.created_at >= start) & (magnolia.created_at < end)]
    outside = magnolia[(magnolia.created_at < start) | (magnolia.created_at >= end)]
    assert len(during) >= 40
    assert during.stars.mean() < 2.5 < 3.5 < outside.stars.mean()
    assert (during.event == "collapse").mean() > 0.95


def test_food_hall_appears_mid_stream_with_mixed_sentiment(demo):
    ev = demo_events()
    opening = np.datetime64(DEFAULT_START) + np.timedelta64(ev.food_hall_open, "D")
    hall = demo[demo.restaurant_name == "Krog District"]
    assert len(hall) > 100
    assert hall.created_at.min() >= opening
    assert not demo[demo.created_at < opening].text.str.contains("Krog District").any()
    shares = hall.true_label.value_counts(normalize=True)
    assert shares["positive"] > 0.25 and shares["negative"] > 0.25
    assert hall.text.str.contains("variety|options|choices").any() and hall.text.str.contains("crowd|packed|zoo").any()


def test_demo_data_command_is_idempotent(tmp_path):
    db = tmp_path / "demo.duckdb"
    first = subprocess.run(cli_cmd("--db", str(db), "demo-data", "--rows", "800"), capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert "800 new" in first.stdout
    again = subprocess.run(cli_cmd("--db", str(db), "demo-data", "--rows", "800"), capture_output=True, text=True)
    assert "0 new" in again.stdout and "800 unchanged" in again.stdout
    with connect(db, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM reviews").fetchone()[0] == 800
        assert con.execute("SELECT count(*) FROM labels WHERE source = 'stars'").fetchone()[0] == 800
        assert con.execute("SELECT count(*) FROM splits").fetchone()[0] == 800
