"""The Aspects page and the comparison page's aspect section (AppTest, signed-in sessions): what shows
without an aspect model, the aspect table with intervals, the sentences behind a cell, trends, the
restaurant's open aspect alerts."""

from __future__ import annotations

import pandas as pd
import pytest
from streamlit import config as st_config

from dashboard_seed import private_copy, seed_dashboard_store, signed_in
from store import alerts as alert_store
from store.db import connect, transaction
from store.schema import init_store
from tests.aspect_seed import ASPECT_MODEL, register_aspect_model, seed_aspects_on_store
from tests.test_dashboard_pages import settled


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    db, _ = init_store(tmp_path_factory.mktemp("aspects") / "store.duckdb")
    seed_dashboard_store(db, rows=1200, flags=0)
    seed_aspects_on_store(db)
    return db


@pytest.fixture
def store(seeded, tmp_path, monkeypatch):
    return private_copy(seeded, tmp_path, monkeypatch)


@pytest.fixture(autouse=True)
def magic_on():
    """As in test_dashboard_pages: a stray expression statement on the page would show as a help block."""
    before = st_config.get_option("runner.magicEnabled")
    st_config.set_option("runner.magicEnabled", True)
    yield
    st_config.set_option("runner.magicEnabled", before)


def _open(screen: str, username: str = "vera"):
    return settled(signed_in(username, screen))


def _frame_with(at, column: str):
    return next(d.value for d in at.dataframe if column in d.value.columns)


def test_without_an_aspect_model_the_page_says_what_to_do(tmp_path, monkeypatch):
    db, _ = init_store(tmp_path / "store.duckdb")
    monkeypatch.setenv("TASTEBUD_DB", str(db))
    at = _open("aspects")
    assert [t.value for t in at.title] == ["Aspects"]
    [info] = [i.value for i in at.info]
    assert "No aspect model yet" in info and "tastebud train --task aspects" in info and "Training page" in info
    assert not at.get("plotly_chart") and not at.dataframe
    with transaction(db) as con:  # a champion that has not scored anything yet
        register_aspect_model(con, "am-unscored")
    at = _open("aspects")
    [info] = [i.value for i in at.info]
    assert "has not scored any reviews yet" in info and "tastebud score" in info
    assert not at.get("plotly_chart")


def test_all_restaurants_show_the_aspect_table_trends_and_the_restaurant_matrix(store):
    at = _open("aspects")
    assert not at.warning and not at.info
    subheaders = [s.value for s in at.subheader]
    assert subheaders[0] == "What reviews say about each aspect: all restaurants"
    assert {"The review sentences behind a cell", "Aspects over time: all restaurants", "Open aspect alerts",
            "Negative share of each aspect's mentions by restaurant"} <= set(subheaders)
    table = _frame_with(at, "Share of reviews")
    assert table["Aspect"].tolist() == ["food", "service", "price", "ambience", "anecdotes/miscellaneous"]
    with connect(store, read_only=True) as con:
        food_mentions = con.execute("SELECT count(*) FROM aspect_predictions WHERE model_id = ? AND aspect = 'food' "
                                    "AND polarity <> 'absent'", [ASPECT_MODEL]).fetchone()[0]
    food = table.set_index("Aspect").loc["food"]
    assert food["Mentions"] == food_mentions
    assert food["Negative"] + food["Neutral"] + food["Positive"] == food_mentions
    low, high = (float(x.rstrip("%")) / 100 for x in food["Negative 95% CI"].split("–"))
    assert low <= food["Negative share"] <= high and high - low < 0.2
    specs = [c.proto.spec for c in at.get("plotly_chart")]
    assert len(specs) == 2 and "Negative share of each aspect" in specs[1]
    matrix = _frame_with(at, "Restaurant")
    assert "Magnolia Table" in matrix["Restaurant"].tolist() and "food" in matrix.columns
    # The sentences behind the most mentioned aspect, every opinion.
    sentences = _frame_with(at, "evidence")
    assert len(sentences) > 0 and (sentences["p_present"] >= 0.5).all()
    assert all(text.startswith(sentence) for sentence, text in zip(sentences["evidence"], sentences["text"]))
    assert any(c.value.startswith("Newest ") for c in at.caption)
    assert [d.label for d in at.get("download_button")] == ["Download the aspect table (CSV)"]


def test_one_restaurant_a_cell_and_its_sentences(store):
    at = _open("aspects")
    at.selectbox(key="aspect-restaurant").set_value("Magnolia Table").run()
    settled(at)
    assert at.subheader[0].value == "What reviews say about each aspect: Magnolia Table"
    assert not any("Negative share of each aspect's mentions by restaurant" == s.value for s in at.subheader)
    at.selectbox(key="aspect-cell-aspect").set_value("service").run()
    at.segmented_control(key="aspect-cell-polarity").set_value("negative").run()
    settled(at)
    assert not at.warning
    sentences = _frame_with(at, "evidence")
    assert len(sentences) > 0
    assert set(sentences["restaurant"]) == {"Magnolia Table"} and set(sentences["polarity"]) == {"negative"}
    assert (sentences["stars"] <= 2).all()  # the seed's negative mentions come from 1-2 star reviews
    assert sentences["created_at"].is_monotonic_decreasing
    table = _frame_with(at, "Share of reviews").set_index("Aspect")
    assert len(sentences) == min(table.loc["service", "Negative"], 100)
    at.radio(key="aspect-cell-order").set_value("confident").run()
    settled(at)
    assert any(c.value.startswith("Most confident ") for c in at.caption)


def test_a_clicked_cell_picks_the_aspect_and_opinion(store):
    at = _open("aspects")
    at.session_state["aspect-table"] = {"selection": {"rows": [], "columns": [], "cells": [[1, "Positive"]]}}
    at.run()
    settled(at)
    assert at.selectbox(key="aspect-cell-aspect").value == "service"
    assert at.segmented_control(key="aspect-cell-polarity").value == "positive"
    assert set(_frame_with(at, "evidence")["polarity"]) == {"positive"}


def test_the_restaurant_s_open_aspect_alerts_are_listed_and_marked(store):
    message = ("service at Magnolia Table turned negative in week 37 (2025-09-08): 62% negative of 24 mentions "
               "vs 12% before")
    with transaction(store) as con:
        alert_store.raise_alerts(con, [{
            "kind": "sentiment_shift", "metric": "aspect_negative_share",
            "subject": "aspect:service@restaurant:Magnolia Table", "period": "2025-09-08", "value": 0.62,
            "threshold": 0.12, "message": message,
            "detail": {"aspect": "service", "restaurant_id": "r1", "restaurant_name": "Magnolia Table"},
        }])
    at = _open("aspects")
    at.selectbox(key="aspect-restaurant").set_value("Magnolia Table").run()
    settled(at)
    alerts = _frame_with(at, "message")
    assert alerts["message"].tolist() == [message]
    assert at.multiselect(key="aspect-trend-aspects").value[0] == "service"  # an alerted aspect is drawn first
    assert "turned negative in week 37" in at.get("plotly_chart")[1].proto.spec  # its week marked on the trend
    at.selectbox(key="aspect-restaurant").set_value("Krog District").run()
    settled(at)
    assert not any("message" in d.value.columns for d in at.dataframe)
    assert any(m.value.startswith("None: no aspect has turned negative") for m in at.markdown)


def test_comparison_lists_aspect_models_with_their_scores(store):
    at = _open("comparison")
    subheaders = [s.value for s in at.subheader]
    assert subheaders[0] == "Every model on the frozen test set"  # the sentiment part comes first, unchanged
    assert subheaders[-1] == "Aspect models on their test set"
    models = _frame_with(at, "Detection micro-F1")
    assert models["Model"].tolist() == [ASPECT_MODEL] and models["Champion"].tolist() == ["★"]
    assert models["Detection micro-F1"].iloc[0] == pytest.approx(0.86)
    assert models["Polarity accuracy"].iloc[0] == pytest.approx(0.82)
    sentiment = _frame_with(at, "Macro-F1")
    assert ASPECT_MODEL not in sentiment["Model"].tolist()
    per_aspect = _frame_with(at, "Detection F1")
    assert per_aspect["Aspect"].tolist()[:2] == ["food", "service"]
    assert any('"polarity"' in c.proto.spec or "polarity" in c.proto.spec for c in at.get("plotly_chart"))


def test_the_data_page_exports_the_aspect_labels_as_aspect_import_reads_them(store):
    import io

    with connect(store, read_only=True) as con:
        current = con.execute("SELECT review_id, aspect, polarity FROM current_aspect_labels").fetchall()
        test_rows = con.execute("SELECT count(*) FROM current_aspect_labels JOIN splits USING (review_id) "
                                "WHERE split = 'test'").fetchone()[0]
    reviews = len({r for r, _, _ in current})
    assert reviews and test_rows
    at = _open("data", "dario")
    assert f"The current aspect labels of {reviews:,} reviews" in " ".join(c.value for c in at.get("caption"))
    at.button(key="aspect-export-prepare").click().run()
    assert not at.exception
    frame = pd.read_csv(io.BytesIO(at.session_state["aspect-export-ready"][1]))
    assert sorted(zip(frame["review_id"], frame["aspect"], frame["polarity"])) == sorted(current)
    assert frame["text"].notna().all() and "aspect-export-download" in [b.key for b in at.get("download_button")]
    at.radio(key="aspect-export-format").set_value("jsonl").run()
    assert "aspect-export-download" not in [b.key for b in at.get("download_button")]  # CSV bytes are not offered as JSONL
    at.selectbox(key="aspect-export-split").set_value("test").run()
    at.button(key="aspect-export-prepare").click().run()
    lines = at.session_state["aspect-export-ready"][1].decode().splitlines()
    assert len(lines) == test_rows and all(line.startswith('{"review_id":') and '"split":"test"' in line for line in lines)


def _marker_y(spec: str) -> list:
    import json

    import base64

    import numpy as np

    def values(y):  # plotly sends numeric arrays as {"dtype", "bdata": base64}
        if isinstance(y, dict):
            return np.frombuffer(base64.b64decode(y["bdata"]), dtype=y["dtype"]).tolist()
        return list(y)

    figure = json.loads(spec)
    return [y for trace in figure["data"] if (trace.get("marker") or {}).get("symbol") == "triangle-up"
            for y in values(trace["y"])]


def test_monthly_periods_keep_the_alert_marker(store):
    with transaction(store) as con:
        alert_store.raise_alerts(con, [{
            "kind": "sentiment_shift", "metric": "aspect_negative_share",
            "subject": "aspect:service@restaurant:Magnolia Table", "period": "2025-09-08", "value": 0.62,
            "threshold": 0.12, "message": "service at Magnolia Table turned negative in week 37",
            "detail": {"aspect": "service", "restaurant_id": "r1", "restaurant_name": "Magnolia Table"},
        }])
    at = _open("aspects")
    at.selectbox(key="aspect-restaurant").set_value("Magnolia Table").run()
    settled(at)
    weekly = _marker_y(at.get("plotly_chart")[1].proto.spec)
    at.segmented_control(key="aspect-grain").set_value("month").run()
    settled(at)
    monthly = _marker_y(at.get("plotly_chart")[1].proto.spec)
    # the weekly alert is marked on the month it falls in, at that month's negative share (a number, not NaN)
    assert len(weekly) == len(monthly) == 1 and all(isinstance(y, float) and 0 <= y <= 1 for y in weekly + monthly)


def test_a_store_whose_reviews_have_no_dates_shows_the_table_and_says_why_there_is_no_trend(store):
    with transaction(store) as con:
        con.execute("UPDATE reviews SET created_at = NULL")
    at = _open("aspects")
    assert not at.exception and not at.info
    table = _frame_with(at, "Share of reviews")
    assert table["Mentions"].sum() > 0
    assert len(_frame_with(at, "evidence")) > 0
    captions = " ".join(c.value for c in at.caption)
    assert "No review has a date" in captions and "no trend to draw" in captions
    assert len(at.get("plotly_chart")) == 1  # the aspect figure, no trend


def test_aspects_the_model_does_not_predict_are_named(store):
    from store import aspects as aspect_store
    from tests.aspect_seed import ADMIN

    with transaction(store) as con:
        aspect_store.add_aspect(con, ADMIN, "wait")
    at = _open("aspects")
    assert any(c.value.replace("\\", "").startswith(f"Not predicted by {ASPECT_MODEL}: wait (added to the store after "
                                                      "it was trained") for c in at.caption)
    assert "wait" not in _frame_with(at, "Share of reviews")["Aspect"].tolist()


def test_comparison_shows_aspect_models_without_review_models_and_warns_of_other_test_sets(tmp_path, monkeypatch):
    from store import evaluations as evaluation_store
    from store import models as model_store
    from tests.aspect_seed import aspect_metrics

    db, _ = init_store(tmp_path / "store.duckdb")
    monkeypatch.setenv("TASTEBUD_DB", str(db))
    with transaction(db) as con:
        for model_id, n, snapshot in (("am-1", 16, "s1"), ("am-2", 22, "s2")):
            model_store.register_model(con, model_id=model_id, kind="finetuned", name="aspects-minilm", status="ready",
                                       task="aspects")
            evaluation_store.insert_evaluation(con, model_id, "test",
                                               {**aspect_metrics(0.9, 0.8), "n": n, "test_snapshot": snapshot})
    at = _open("comparison")
    assert not at.exception
    assert any("No review-sentiment models yet" in i.value for i in at.info)
    assert [s.value for s in at.subheader] == ["Aspect models on their test set"]
    [warning] = [w.value for w in at.warning]
    assert "different test sets (n = 16, 22)" in warning
    # two runs of the same recipe share a name: the id tells them apart
    assert sorted(_frame_with(at, "Detection micro-F1")["Model"]) == ["aspects-minilm (am-1)", "aspects-minilm (am-2)"]
