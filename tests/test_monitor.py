"""Monitoring: shift detection (with the demo acceptance check), KPIs, alerts, model health, the
monitor run and its CLI, emerging terms on demo data, the sarcasm reason, the local-references slice."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pipeline.data.demo_data import DEFAULT_START, demo_events, generate_reviews, load_demo_data
from pipeline.monitor.health import compute_health, health_alerts, run_monitor
from pipeline.monitor.kpis import latest_complete_period, period_kpis
from pipeline.monitor.shifts import ShiftSettings, biggest_movers, detect_shifts, marked_shifts
from store import alerts as alert_store
from store import model_health as health_store
from store import models as model_store
from store import predictions as prediction_store
from store.actors import Actor
from store.constants import LABELS
from store.db import connect, transaction
from store.errors import PermissionDeniedError
from store.shifts import fetch_group_period_counts, fetch_period_totals, newest_review_date
from store.trends import SentimentSource

ADMIN = Actor("test-admin", "admin")
# The acceptance bound stated in bench/RESULTS.md (round 3, monitoring): on the default demo stream at week grain,
# at most this many group-weeks outside the scripted collapse are flagged (measured: 0).
MAX_OTHER_FLAGGED_WEEKS = 2


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory):
    """The default demo stream (4,000 reviews) with star labels, no model."""
    db = tmp_path_factory.mktemp("demo") / "demo.duckdb"
    load_demo_data(db)
    return db


def _collapse_weeks() -> set[pd.Timestamp]:
    events = demo_events().as_dict(DEFAULT_START)
    start, end = date.fromisoformat(events["collapse_start"]), date.fromisoformat(events["collapse_end"])
    days = [start + timedelta(days=i) for i in range((end - start).days)]
    return {pd.Timestamp(d - timedelta(days=d.weekday())) for d in days}


def _detect(db, grain: str) -> pd.DataFrame:
    with connect(db, read_only=True) as con:
        counts = fetch_group_period_counts(con, SentimentSource("labels"), grain=grain)
        newest = newest_review_date(con)
    return detect_shifts(counts, ShiftSettings(grain=grain), newest=newest)


def test_demo_collapse_found_in_its_weeks_and_little_else(demo_store):
    marked = marked_shifts(_detect(demo_store, "week"))
    scripted = _collapse_weeks()
    magnolia = marked[(marked["grp"] == "Magnolia Table") & (marked["by"] == "restaurant")]
    assert set(magnolia["period"]) <= scripted
    assert len(set(magnolia["period"])) >= 3 and (magnolia["sentiment_shift"] == "spike").all()
    # Inman Park is Magnolia Table's neighbourhood: its shifts in the same weeks are the same event.
    event = marked["period"].isin(scripted) & marked["grp"].isin(["Magnolia Table", "Inman Park"])
    assert len(marked[~event]) <= MAX_OTHER_FLAGGED_WEEKS, marked[~event]


def test_demo_collapse_at_month_grain(demo_store):
    marked = marked_shifts(_detect(demo_store, "month"))
    magnolia = marked[marked["grp"] == "Magnolia Table"]
    assert set(magnolia["period"].dt.month) == {8, 9} and set(magnolia["period"].dt.year) == {2025}
    assert marked["grp"].isin(["Magnolia Table", "Inman Park"]).all()


def _counts(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["by", "grp", "period", "n", "negative"])


def test_detect_shifts_marks_spikes_and_surges_not_small_or_noisy_weeks():
    rng = np.random.default_rng(3)
    weeks = pd.date_range("2025-01-06", periods=30, freq="W-MON")
    rows = []
    for g in range(40):  # forty steady groups: 20% negative of ~12 reviews a week, pure noise
        for w in weeks:
            n = int(rng.poisson(12))
            rows.append(("restaurant", f"steady{g}", w, n, int(rng.binomial(n, 0.2))))
    for i, w in enumerate(weeks):
        spike = i == 20
        rows.append(("restaurant", "spiky", w, 20 if spike else 12, 17 if spike else [2, 3, 2][i % 3]))
        rows.append(("restaurant", "busy", w, 60 if i == 25 else 12, 3))
        rows.append(("restaurant", "tiny", w, 2, 2 if i == 22 else 0))  # 100% negative of 2: says nothing
    result = detect_shifts(_counts(rows), ShiftSettings(grain="week"))
    marked = marked_shifts(result)
    assert set(zip(marked["grp"], marked["period"])) == {("spiky", weeks[20]), ("busy", weeks[25])}
    assert marked.set_index("grp").loc["spiky", "sentiment_shift"] == "spike"
    assert marked.set_index("grp").loc["busy", "volume_shift"] == "surge"
    assert result[result["grp"] == "tiny"]["p_sentiment"].isna().all()
    # the last week is incomplete when the newest review came before its end: no volume test there
    partial = detect_shifts(_counts(rows), ShiftSettings(grain="week"), newest=weeks[-1].date())
    assert np.isnan(partial[partial["period"] == weeks[-1]]["p_volume"]).all()


def test_detect_shifts_rejects_bad_input():
    with pytest.raises(ValueError, match="counts lack columns: \\['negative'\\]"):
        detect_shifts(pd.DataFrame({"by": [], "grp": [], "period": [], "n": []}))
    with pytest.raises(ValueError, match="unknown time grain 'year'"):
        ShiftSettings(grain="year")
    with pytest.raises(ValueError, match="at least 2 periods"):
        ShiftSettings(baseline_periods=1)
    assert detect_shifts(_counts([])).empty


def test_biggest_movers_rank_by_change_against_own_baseline(demo_store):
    result = _detect(demo_store, "week")
    week = pd.Timestamp("2025-08-25")
    movers = biggest_movers(result, week.date(), limit=3)
    top = movers[movers["by"] == "restaurant"].iloc[0]
    assert top["grp"] == "Magnolia Table" and top["delta"] > 0.5
    assert (movers.groupby("by").size() <= 3).all() and (movers["n"] >= 5).all()


def test_kpis_compare_latest_complete_period_with_the_one_before(demo_store):
    assert latest_complete_period(date(2026, 10, 31), "week") == date(2026, 10, 19)
    assert latest_complete_period(date(2026, 11, 1), "week") == date(2026, 10, 26)
    assert latest_complete_period(date(2026, 10, 30), "month") == date(2026, 9, 1)
    with connect(demo_store, read_only=True) as con:
        totals = fetch_period_totals(con, SentimentSource("labels"), grain="week")
        newest = newest_review_date(con)
    kpi = period_kpis(totals, newest, "week")
    row = totals[totals["period"] == pd.Timestamp(kpi["period"])].iloc[0]
    assert kpi["n"] == row["n"] and kpi["negative_share"] == pytest.approx(row["negative"] / row["n"])
    assert kpi["previous"] == kpi["period"] - timedelta(days=7) and kpi["previous_n"] > 0


def test_alerts_are_raised_once_listed_newest_first_and_acknowledged(store_path):
    alert = {"kind": "model_health", "metric": "class_mix_js", "subject": "m1", "period": date(2025, 8, 25),
             "value": 0.3, "threshold": 0.2, "message": "drift", "detail": {"n": 40}}
    later = {**alert, "period": date(2025, 9, 1), "message": "drift again"}
    with transaction(store_path) as con:
        assert alert_store.raise_alerts(con, [alert, later]) == 2
        assert alert_store.raise_alerts(con, [alert]) == 0  # same kind, metric, subject, period
        listed = alert_store.list_alerts(con)
        assert listed["message"].tolist() == ["drift again", "drift"]
        with pytest.raises(PermissionDeniedError):
            alert_store.acknowledge_alerts(con, [int(listed["alert_id"][0])], Actor("v", "viewer"))
        with pytest.raises(ValueError, match="no alert with id 999"):
            alert_store.acknowledge_alerts(con, [999], ADMIN)
        assert alert_store.acknowledge_alerts(con, [int(listed["alert_id"][0])], ADMIN) == 1
        assert alert_store.list_alerts(con)["message"].tolist() == ["drift"]
        assert len(alert_store.list_alerts(con, status=None)) == 2
        with pytest.raises(ValueError, match="unknown alert kind"):
            alert_store.raise_alerts(con, [{**alert, "kind": "weather"}])


def _write_model(db, model_id: str, probs: pd.DataFrame, *, label_counts=None) -> None:
    with transaction(db) as con:
        model_store.register_model(con, model_id=model_id, kind="finetuned", name=model_id, status="ready",
                                   label_counts=label_counts)
        prediction_store.write_predictions(con, model_id, probs)
        model_store.promote_model(con, ADMIN, model_id)


def _probs_from_labels(labels: np.ndarray, confidence: float) -> pd.DataFrame:
    probs = np.full((len(labels), 3), (1 - confidence) / 2)
    probs[np.arange(len(labels)), [LABELS.index(x) for x in labels]] = confidence
    return pd.DataFrame(probs, columns=["p_negative", "p_neutral", "p_positive"])


@pytest.fixture(scope="module")
def drift_store(tmp_path_factory):
    """Demo reviews; a champion that reads stars right, except in one week where it calls everything negative."""
    db = tmp_path_factory.mktemp("drift") / "drift.duckdb"
    load_demo_data(db, rows=3000)
    table = generate_reviews(3000).to_pandas()
    week = pd.Timestamp("2026-03-02")
    in_week = (table["created_at"] >= week) & (table["created_at"] < week + pd.Timedelta(days=7))
    labels = np.where(table["stars"] <= 2, "negative", np.where(table["stars"] == 3, "neutral", "positive"))
    labels = np.where(in_week, "negative", labels)
    probs = _probs_from_labels(labels, 0.9).assign(review_id=table["review_id"])
    _write_model(db, "champ", probs)
    return db, week


def test_health_per_week_and_the_alert_a_person_would_agree_with(drift_store):
    db, week = drift_store
    health = compute_health(db, "champ")
    assert list(health.columns) == list(health_store.HEALTH_COLUMNS)
    row = health.set_index("period").loc[week]
    assert row["share_negative"] == 1.0 and row["star_agreement"] < 0.5 and row["class_mix_js"] > 0.5
    normal = health[health["period"] != week]
    assert (normal["star_agreement"] == 1.0).all() and np.allclose(normal["mean_confidence"], 0.9)
    assert normal["unseen_term_share"].max() < 0.05 and health["human_agreement"].isna().all()
    alerts = health_alerts(health, "champ")
    assert {(a["metric"], a["period"]) for a in alerts} == {("star_agreement", week.date()), ("class_mix_js", week.date())}
    assert any("100% predicted negative" in a["message"] for a in alerts)


def test_unseen_terms_raise_vocabulary_drift(tmp_path):
    db = tmp_path / "vocab.duckdb"
    load_demo_data(db, rows=1500)
    table = generate_reviews(1500).to_pandas()
    labels = np.where(table["stars"] <= 2, "negative", np.where(table["stars"] == 3, "neutral", "positive"))
    _write_model(db, "champ", _probs_from_labels(labels, 0.8).assign(review_id=table["review_id"]))
    from store.reviews import upsert_reviews
    import pyarrow as pa

    when = datetime(2026, 11, 2, 12)  # a new week after the stream, in words the model never saw
    texts = [f"zorblax quintessa vrimble {i} flumptastic gnarbles" for i in range(25)]
    new = pa.table({"review_id": [f"new{i}" for i in range(25)], "restaurant_id": ["x"] * 25,
                    "restaurant_name": ["Zorblax Hall"] * 25, "neighborhood": ["Nowhere"] * 25,
                    "created_at": pa.array([when] * 25, pa.timestamp("s")), "stars": pa.array([4] * 25, pa.int8()),
                    "text": texts, "source": ["test"] * 25})
    with transaction(db) as con:
        upsert_reviews(con, new)
        prediction_store.write_predictions(con, "champ", _probs_from_labels(np.array(["positive"] * 25), 0.8)
                                           .assign(review_id=[f"new{i}" for i in range(25)]))
    health = compute_health(db, "champ")
    last = health.iloc[-1]
    assert last["period"] == pd.Timestamp("2026-11-02") and last["unseen_term_share"] == 1.0
    metrics = {a["metric"]: a for a in health_alerts(health, "champ")}
    assert metrics["unseen_term_share"]["period"] == date(2026, 11, 2)
    assert "100% of the words are unseen in training" in metrics["unseen_term_share"]["message"]


def test_run_monitor_stores_health_and_alerts_and_the_cli_lists_them(drift_store, tmp_path, monkeypatch):
    import shutil

    db = tmp_path / "copy.duckdb"
    shutil.copy(drift_store[0], db)
    first = run_monitor(db)
    assert first["model_id"] == "champ" and first["alerts_found"]["model_health"] == 2 and first["alerts_new"] >= 2
    assert run_monitor(db)["alerts_new"] == 0  # nothing new the second time
    with connect(db, read_only=True) as con:
        assert len(health_store.fetch_model_health(con, "champ")) == first["weeks"]
    from pipeline.cli import app

    monkeypatch.setenv("TASTEBUD_DB", str(db))
    runner = CliRunner()
    listed = runner.invoke(app, ["alerts"])
    assert listed.exit_code == 0 and "predicted class mix drifted" in listed.output
    bad = runner.invoke(app, ["alerts", "--ack", "12345"])
    assert bad.exit_code != 0 and "no alert with id 12345" in bad.output
    with connect(db, read_only=True) as con:
        first_id = int(alert_store.list_alerts(con)["alert_id"].iloc[0])
    assert runner.invoke(app, ["alerts", "--ack", str(first_id)]).output.strip() == "acknowledged 1 alerts"
    checked = runner.invoke(app, ["monitor"])
    assert checked.exit_code == 0 and "0 new alerts" in checked.output


def test_run_monitor_needs_a_champion(store_path):
    from store.errors import TastebudError

    with pytest.raises(TastebudError, match="no champion model yet: promote a review or aspect model"):
        run_monitor(store_path)


def test_emerging_terms_find_krog_district_on_demo_data_and_every_scan_is_recorded(tmp_path):
    from pipeline.loop.flagging import flag

    db = tmp_path / "krog.duckdb"
    load_demo_data(db)
    table = generate_reviews(4000).to_pandas()
    labels = np.where(table["stars"] <= 2, "negative", np.where(table["stars"] == 3, "neutral", "positive"))
    # a model that sounds sure everywhere: Krog District is still new, so it is still flagged
    _write_model(db, "champ", _probs_from_labels(labels, 0.7).assign(review_id=table["review_id"]))
    result = flag(db, reasons=["emerging_term"])
    assert result["terms"][0]["term"] == "krog district" and result["terms"][0]["prior_count"] == 0
    assert result["inserted"]["emerging_term"] >= 5
    krog_ids = set(table.loc[table["restaurant_name"] == "Krog District", "review_id"])
    with connect(db, read_only=True) as con:
        flagged = set(con.execute("SELECT review_id FROM flags WHERE term = 'krog district'").df()["review_id"])
        scans = health_store.list_term_scans(con)
    assert flagged and flagged <= krog_ids
    assert scans["outcome"].iloc[0].startswith("found 'krog district'") and scans["flagged"].iloc[0] >= 5
    again = flag(db, reasons=["emerging_term"])  # a second run still reports, though nothing is new to flag
    with connect(db, read_only=True) as con:
        scans = health_store.list_term_scans(con)
    assert len(scans) == 2 and again["inserted"]["emerging_term"] == 0 and scans["flagged"].iloc[0] == 0


def test_emerging_terms_say_why_nothing_was_found(tmp_path):
    from pipeline.loop.flagging import scan_emerging_terms

    db = tmp_path / "quiet.duckdb"
    load_demo_data(db, rows=600)
    table = generate_reviews(600).to_pandas()
    table = table[table["restaurant_name"] != "Krog District"]
    inputs = _probs_from_labels(np.array(["positive"] * len(table)), 0.9).assign(review_id=table["review_id"].to_numpy())
    _, terms, scan = scan_emerging_terms(db, inputs)
    assert scan["outcome"].startswith("nothing: ") and scan["recent_docs"] > 0
    empty = tmp_path / "empty.duckdb"
    from store.schema import init_store

    init_store(empty)
    assert scan_emerging_terms(empty, inputs)[2]["outcome"] == "no dated reviews to scan"


def test_sarcasm_needs_low_stars_irony_markers_and_a_positive_reading():
    from pipeline.loop.flagging import find_sarcasm, irony_markers

    assert irony_markers("Oh great, another 45-minute wait. Just what I wanted.") == ["Oh great", "Just what I wanted"]
    assert irony_markers("Great food, we wanted more.") == []
    texts = {
        "sarcastic": "Oh great, cold grits again. Just what I wanted.",
        "sincere_low": "Cold grits and a rude server.",
        "happy_high": "Oh great, they have grits! Ten out of ten.",
        "model_right": "Wow, what a treat: soggy fries.",
    }
    inputs = pd.DataFrame({
        "review_id": list(texts), "stars": [1, 1, 5, 2],
        "p_negative": [0.2, 0.2, 0.1, 0.8], "p_neutral": [0.1, 0.1, 0.1, 0.1], "p_positive": [0.7, 0.7, 0.8, 0.1],
    })
    found = find_sarcasm(inputs, pd.DataFrame({"review_id": list(texts), "text": list(texts.values())}))
    assert found["review_id"].tolist() == ["sarcastic"]
    assert found["priority"].iloc[0] == pytest.approx(0.8)  # 0.7 + 0.1 for the second marker
    assert found["detail"].iloc[0]["markers"] == ["Oh great", "Just what I wanted"]


def test_sarcasm_precision_on_the_labeled_demo_stream():
    from pipeline.loop.flagging import find_sarcasm

    table = generate_reviews(4000).to_pandas()
    # a model fooled by praise words: positive wherever the text's words are positive or sarcastic
    fooled = np.where(table["is_sarcastic"] | (table["true_label"] == "positive"), "positive", table["true_label"])
    inputs = _probs_from_labels(fooled, 0.8).assign(review_id=table["review_id"], stars=table["stars"])
    found = find_sarcasm(inputs, table[["review_id", "text"]])
    truth = table.set_index("review_id").loc[found["review_id"], "is_sarcastic"]
    assert len(found) >= 40 and truth.mean() >= 0.95


def test_local_reference_slice_scores_each_model_on_test_reviews(drift_store):
    from pipeline.monitor.local_refs import local_reference_slice, mentions_local_reference

    assert mentions_local_reference(pd.Series(["slower than the DMV on Memorial Drive", "dmvx", None])).tolist() == [
        True, False, False]
    table = local_reference_slice(drift_store[0], ["champ", "missing"])
    champ = table[table["model_id"] == "champ"].set_index("slice")
    assert champ.loc["local reference", "n"] > 10 and champ.loc["no local reference", "n"] > 100
    assert champ["accuracy"].between(0.8, 1.0).all()
    assert table[table["model_id"] == "missing"]["n"].eq(0).all()
