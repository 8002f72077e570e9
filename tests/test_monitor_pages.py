"""The monitoring parts of the dashboard (AppTest): Overview for the product team, shifts and model
health on Sentiment trends, the retrain banner on Training, the local-references slice."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard_seed import CHAMPION, private_copy, seed_dashboard_store, signed_in
from pipeline.monitor.health import run_monitor
from store import alerts as alert_store
from store import jobs as job_store
from store.db import connect, transaction
from store.schema import init_store

ALERT = {"kind": "model_health", "metric": "class_mix_js", "subject": CHAMPION, "period": date(2026, 10, 19),
         "value": 0.31, "threshold": 0.2, "message": "week of 2026-10-19: predicted class mix drifted (test alert)"}


@pytest.fixture(scope="module")
def monitored(tmp_path_factory) -> Path:
    db, _ = init_store(tmp_path_factory.mktemp("monitored") / "store.duckdb")
    seed_dashboard_store(db)
    run_monitor(db)
    with transaction(db) as con:
        alert_store.raise_alerts(con, [ALERT])
    return db


@pytest.fixture
def store(monitored, tmp_path, monkeypatch) -> Path:
    return private_copy(monitored, tmp_path, monkeypatch)


def open_screen(username: str, screen: str, *, query: dict | None = None) -> AppTest:
    return signed_in(username, screen, query=query)


def test_overview_puts_kpis_movers_and_alerts_first(store):
    at = open_screen("vera", "overview")
    labels = [m.label for m in at.metric]
    assert labels[:6] == ["Negative share", "Average stars", "Reviews"] * 2  # week, then month
    assert all(m.delta for m in at.metric[:6])  # each against the period before
    subheaders = [s.value for s in at.subheader]
    assert subheaders.index("Biggest movers") < subheaders.index("Model operations")
    assert any(s.startswith("Open alerts (") for s in subheaders)
    alerts = at.dataframe[0].value
    assert ALERT["message"] in alerts["message"].tolist()
    assert alerts["period"].is_monotonic_decreasing  # newest week first
    assert "Model operations" in subheaders and "Recent jobs" in subheaders
    # 1,500 reviews over two years: no group has 5 reviews in a week, but in a month they do.
    assert any("had 5+ reviews and a baseline in the latest complete week" in c.value for c in at.caption)
    at.segmented_control(key="overview-movers-grain").set_value("month").run()
    assert not at.exception
    links = at.get("page_link")
    assert links and all(link.proto.page == "trends" for link in links)
    assert all(link.proto.query_string.split("=")[0] in ("restaurant", "neighborhood") for link in links)
    assert all("negative vs" in link.proto.label for link in links)


def test_trends_opened_from_a_mover_link_is_filtered_and_shows_health(store):
    at = open_screen("vera", "trends", query={"restaurant": "Magnolia Table"})
    assert at.multiselect(key="trend-restaurants").value == ["Magnolia Table"]
    subheaders = [s.value for s in at.subheader]
    assert "Sudden shifts by restaurant and neighbourhood" in subheaders
    assert "Model health over time" in subheaders
    assert any("rolling mean" in (c.proto.spec or "") for c in at.get("plotly_chart"))
    assert any(ALERT["message"] in str(d.value.to_dict()) for d in at.dataframe)
    assert any("Emerging-term scans" in m.value for m in at.markdown)


def test_trends_warns_about_an_unknown_restaurant_in_the_link(store):
    at = open_screen("vera", "trends", query={"restaurant": "Nowhere Diner"})
    assert any("No restaurant named Nowhere Diner" in w.value for w in at.warning)
    assert at.multiselect(key="trend-restaurants").value == []


def test_training_recommends_retraining_and_starts_a_round(store):
    at = open_screen("dario", "training")
    banner = [w.value for w in at.warning if "Retrain recommended" in w.value]
    assert banner and "predicted class mix drifted" in banner[0]
    at.button(key="retrain-recommended").click().run()
    assert not at.exception
    with connect(store, read_only=True) as con:
        jobs = job_store.list_jobs(con)
    job = jobs[jobs["kind"] == "retrain"].iloc[0]
    from pipeline.jobs import cancel_job
    from store.actors import Actor

    cancel_job(store, job["job_id"], Actor("dario", "data_scientist"))  # only the start is under test
    assert any(f"Started retrain job {job['job_id']}" in s.value for s in at.success)


def test_no_banner_once_the_alerts_are_acknowledged(store):
    from store.actors import Actor

    with transaction(store) as con:
        ids = alert_store.list_alerts(con, kind="model_health")["alert_id"].tolist()
        alert_store.acknowledge_alerts(con, ids, Actor("dario", "data_scientist"))
    at = open_screen("dario", "training")
    assert not [w for w in at.warning if "Retrain recommended" in w.value]


def test_comparison_shows_the_local_references_slice(store):
    at = open_screen("vera", "comparison")
    assert "Local references" in [s.value for s in at.subheader]
    table = next(d.value for d in at.dataframe if "slice" in d.value.columns and "local reference" in set(d.value["slice"]))
    assert set(table["model_id"]) >= {CHAMPION} and (table["n"] > 0).all()
