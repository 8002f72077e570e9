"""Every dashboard screen on a seeded store (AppTest): no exception, the expected elements, and
that the write actions change the store."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from streamlit import config as st_config
from streamlit.testing.v1 import AppTest

from dashboard.views import md
from dashboard_seed import ACCOUNTS, BASELINE, CHAMPION, account_secrets, seed_dashboard_store
from pipeline.jobs import wait_for_job
from store import jobs as job_store
from store import models as model_store
from store.db import connect, transaction
from store.labels import current_label
from store.relabeling import fetch_label_history, fetch_recent_actions
from store.schema import init_store

APP = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> tuple[Path, dict]:
    db, _ = init_store(tmp_path_factory.mktemp("seeded") / "store.duckdb")
    return db, seed_dashboard_store(db)


@pytest.fixture
def store(seeded, tmp_path, monkeypatch) -> tuple[Path, dict]:
    """A private copy of the seeded store, so write tests do not disturb each other."""
    db, info = seeded
    copy = tmp_path / "store.duckdb"
    shutil.copy(db, copy)
    monkeypatch.setenv("TASTEBUD_DB", str(copy))
    return copy, info


@pytest.fixture(scope="module")
def secrets() -> dict:
    return account_secrets()


@pytest.fixture(autouse=True)
def magic_on():
    """Pages are tested with Streamlit "magic" on, as a bare `streamlit run` elsewhere might have it:
    a bare expression statement on any page then shows up as a help block, which `settled` refuses."""
    before = st_config.get_option("runner.magicEnabled")
    st_config.set_option("runner.magicEnabled", True)
    yield
    st_config.set_option("runner.magicEnabled", before)


def settled(at: AppTest) -> AppTest:
    """``at`` after a run: no exception and no help block (the DeltaGenerator docs magic renders)."""
    assert not at.exception, [e.value for e in at.exception]
    assert not at.get("help"), [h.name for h in at.get("help")]
    for table in at.dataframe:
        assert not raw_headings(table), raw_headings(table)
    return at


def raw_headings(table) -> list[str]:
    """Columns a table shows under their raw frame name (grp, is_new, p_negative...) rather than a heading."""
    config = json.loads(table.proto.columns or "{}")
    shown = [str(c) for c in table.value.columns]
    order = list(table.proto.column_order)
    if order:
        shown = [c for c in shown if c in order]
    return [c for c in shown
            if not config.get(c, {}).get("hidden") and not config.get(c, {}).get("label")
            and (c == c.lower() and ("_" in c or c in ("grp", "n", "z")))]


def open_screen(secrets: dict, username: str, screen: str) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.secrets["accounts"] = secrets
    at.run()
    at.text_input[0].input(username)
    at.text_input[1].input(ACCOUNTS[username][1])
    at.button[0].click().run()
    settled(at)
    at.switch_page(f"screens/{screen}.py").run()
    return settled(at)


def _texts(at: AppTest) -> str:
    return "\n".join(str(t.value) for t in at.text)


def test_overview(store, secrets):
    at = open_screen(secrets, "vera", "overview")
    assert [t.value for t in at.title] == ["Overview"]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Reviews"] == "1,500"
    assert metrics["Open flags"] == "12"
    assert metrics["Predictions"] == "3,000"
    assert CHAMPION in _texts(at)
    assert float(metrics["Test macro-F1"]) > 0.5
    assert {"Champion model", "Labels by source", "Open flags by reason", "Recent jobs"} <= {s.value for s in at.subheader}


def test_trends_default_view_and_drilldown(store, secrets):
    at = open_screen(secrets, "vera", "trends")
    assert any(md(CHAMPION) in c.value and "(champion)" in c.value for c in at.caption)
    assert len(at.get("plotly_chart")) >= 3
    assert [d.label for d in at.get("download_button")][:2] == [
        "Download the trend (CSV)", "Download the restaurant breakdown (CSV)"]
    assert {"By restaurant", "Reviews behind the numbers"} <= {s.value for s in at.subheader}
    assert "New since the store's first reviews: Krog District" in [c.value for c in at.caption]
    assert at.selectbox(key="trend-period").format_func(at.selectbox(key="trend-period").value).startswith("All periods")
    # Pick a period: its reviews appear.
    at.selectbox(key="trend-period").select_index(3).run()
    assert not at.exception
    assert any(c.value.startswith("Showing the newest 200 reviews for: week of") for c in at.caption)
    assert "Download these reviews (CSV)" in [d.label for d in at.get("download_button")]


def test_trends_fall_back_to_labels_and_say_so(store, secrets):
    at = open_screen(secrets, "vera", "trends")
    at.selectbox(key="trend-model").set_value("Current labels (no model)").run()
    assert not at.exception
    assert any("current labels" in c.value for c in at.caption)
    at.segmented_control(key="trend-grain").set_value("month").run()
    at.segmented_control(key="trend-by").set_value("neighborhood").run()
    assert not at.exception
    assert "By neighborhood" in [s.value for s in at.subheader]


def test_comparison(store, secrets):
    at = open_screen(secrets, "vera", "comparison")
    charts = at.get("plotly_chart")
    assert len(charts) >= 3  # two confusion matrices and the champion's training curve
    subheaders = [s.value for s in at.subheader]
    assert subheaders[:4] == ["Every model on the frozen test set", "Confusion matrices (test set)", "Training curves", "Slices"]
    assert any("agree on" in c.value for c in at.caption)
    at.radio(key="disagree-scope").set_value("every scored review").run()
    assert not at.exception
    assert any("of 1,500 reviews" in c.value for c in at.caption)


def test_relabel_skip_dismiss_and_undo_change_the_store(store, secrets):
    db, info = store
    first, second, third = info["flag_review_ids"][:3]
    at = open_screen(secrets, "lena", "hard_cases")
    assert at.text[0].value == _text(db, first)  # the highest-priority flag comes first
    at.button(key="label-negative").click().run()
    settled(at)
    assert not at.exception
    label = _current(db, first)
    assert (label["label"], label["source"], label["labeler"]) == ("negative", "human", "lena")
    assert [s.value for s in at.success] == ["Labeled negative."]

    at.button(key="skip").click().run()  # skipping writes nothing
    assert _current(db, second)["source"] == "stars"
    at.button(key="dismiss").click().run()
    settled(at)
    assert _flag_status(db, third) == "dismissed"
    at.button(key="undo").click().run()
    settled(at)
    assert _flag_status(db, third) == "open"
    at.button(key="undo").click().run()
    settled(at)
    assert _current(db, first)["source"] == "stars"


def test_bulk_relabel_of_a_filtered_set(store, secrets):
    db, _ = store
    at = open_screen(secrets, "lena", "hard_cases")
    at.multiselect(key="hard-cases-reasons").set_value(["rating_contradicts_text"]).run()
    with connect(db, read_only=True) as con:
        targets = [r for (r,) in con.execute(
            "SELECT review_id FROM flags WHERE reason = 'rating_contradicts_text' AND status = 'open'").fetchall()]
    assert targets
    assert at.button(key="bulk-go").disabled
    at.checkbox(key="bulk-confirm").check().run()
    at.radio(key="bulk-label").set_value("neutral").run()
    at.checkbox(key="bulk-confirm").check().run()
    at.button(key="bulk-go").click().run()
    settled(at)
    assert not at.exception
    for review_id in targets:
        assert _current(db, review_id)["label"] == "neutral"
        assert _current(db, review_id)["labeler"] == "lena"


def test_review_text_is_never_rendered_as_markdown(store, secrets):
    db, info = store
    with transaction(db) as con:
        con.execute("UPDATE reviews SET text = ? WHERE review_id = ?",
                    ["<script>alert(1)</script> **bold** [link](http://x)", info["flag_review_ids"][0]])
    at = open_screen(secrets, "lena", "hard_cases")
    assert "<script>alert(1)</script> **bold** [link](http://x)" in [t.value for t in at.text]
    assert not any("<script>" in m.value for m in at.markdown)


@pytest.fixture
def sleeper():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    yield proc
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_training_shows_a_running_job_live_and_cancels_it(store, secrets, sleeper):
    db, _ = store
    with transaction(db) as con:
        job_id = job_store.create_job(con, "train", {"epochs": 3}, "dario")
        job_store.mark_started(con, job_id, pid=sleeper.pid, log_path=None)
        job_store.update_progress(con, job_id, 0.4, "epoch 1 of 3")
        con.execute("UPDATE training_runs SET job_id = ? WHERE run_id = 'run-seed'", [job_id])
    at = open_screen(secrets, "dario", "training")
    assert any(job_id in s.value and "running" in s.value for s in at.subheader)
    assert any(p.value == 40 or p.value == 0.4 for p in at.get("progress"))
    assert at.get("plotly_chart")  # the run's per-epoch curve
    at.button(key=f"cancel-{job_id}").click().run()
    settled(at)
    assert sleeper.wait(timeout=10) is not None  # SIGTERM reached the job's process group
    with connect(db, read_only=True) as con:
        assert job_store.get_job(con, job_id)["cancel_requested"]


def test_training_offers_to_promote_a_finished_model(store, secrets):
    db, _ = store
    with transaction(db) as con:
        job_id = job_store.create_job(con, "train", {}, "dario")
        job_store.finish_job(con, job_id, "succeeded", result={"model_id": BASELINE})
    at = open_screen(secrets, "dario", "training")
    assert "New model against the champion" in [s.value for s in at.subheader]
    at.button(key="promote").click().run()
    settled(at)
    assert not at.exception
    with connect(db, read_only=True) as con:
        assert model_store.get_champion(con)["model_id"] == BASELINE
    at.button(key="rollback").click().run()
    settled(at)
    with connect(db, read_only=True) as con:
        assert model_store.get_champion(con)["model_id"] == CHAMPION


def test_training_form_rejects_bad_settings_and_starts_a_job(store, secrets):
    db, _ = store
    at = open_screen(secrets, "dario", "training")
    at.radio[0].set_value("Training run or sweep")
    at.text_input[1].input("2e-5, abc")  # the sweep grid
    at.button[0].click().run()  # the form's submit button comes first
    assert any("Bad training settings" in e.value for e in at.error)
    with connect(db, read_only=True) as con:
        assert job_store.list_jobs(con).empty

    at.text_input[1].input("2e-5, 5e-5")
    at.number_input[2].set_value(1)  # epochs
    at.button[0].click().run()
    settled(at)
    assert not at.exception
    with connect(db, read_only=True) as con:
        jobs = job_store.list_jobs(con)
        job = job_store.get_job(con, jobs["job_id"].iloc[0])
    assert (job["kind"], job["actor"], job["params"]["epochs"]) == ("train", "dario", 1)
    assert job["params"]["sweep"] == {"learning_rate": [2e-5, 5e-5]}
    assert any(job["job_id"] in s.value for s in at.subheader)  # the live panel follows the new job
    at.button(key=f"cancel-{job['job_id']}").click().run()
    settled(at)
    ended = wait_for_job(db, job["job_id"], timeout_s=60)
    assert ended["status"] in ("cancelled", "failed")

    # A second job started here takes over the panel (the job selectbox moves to it).
    at.button(key="start-flag").click().run()
    settled(at)
    with connect(db, read_only=True) as con:
        newest = job_store.list_jobs(con)["job_id"].iloc[0]
    assert newest != job["job_id"]
    assert at.selectbox(key="training-job-select").value == newest
    assert any(newest in s.value for s in at.subheader)
    if wait_for_job_quietly(db, newest) is None:  # still flagging: stop it rather than wait
        at.button(key=f"cancel-{newest}").click().run()
        wait_for_job(db, newest, timeout_s=60)
    # Picking another job by hand sticks across reruns.
    at.selectbox(key="training-job-select").set_value(job["job_id"]).run()
    at.run()
    assert at.selectbox(key="training-job-select").value == job["job_id"]
    assert any(job["job_id"] in s.value for s in settled(at).subheader)


def test_data_page_imports_an_upload_with_its_reject_report(store, secrets):
    db, _ = store
    at = open_screen(secrets, "dario", "data")
    csv = b"review_id,text,stars\nu1,Great grits,5\nu2,,3\nu3,Slow and cold,9\nu4,Fine,3\n"
    at.get("file_uploader")[0].upload("my reviews.csv", csv, "text/csv")
    at.run()
    at.button(key="import-go").click().run()
    settled(at)
    assert not at.exception
    assert any("2 new" in s.value and "2 rejected" in s.value for s in at.success)
    with connect(db, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM reviews WHERE review_id IN ('u1', 'u4')").fetchone()[0] == 2
    assert "Imports" in [s.value for s in at.subheader]


def wait_for_job_quietly(db: Path, job_id: str, timeout_s: float = 5.0):
    """The job once it ended within ``timeout_s``, else None (it is still running)."""
    try:
        return wait_for_job(db, job_id, timeout_s=timeout_s)
    except Exception:
        return None


def _text(db: Path, review_id: str) -> str:
    with connect(db, read_only=True) as con:
        return con.execute("SELECT text FROM reviews WHERE review_id = ?", [review_id]).fetchone()[0]


def _current(db: Path, review_id: str) -> dict:
    with connect(db, read_only=True) as con:
        return current_label(con, review_id)


def _flag_status(db: Path, review_id: str) -> str:
    with connect(db, read_only=True) as con:
        return con.execute("SELECT status FROM flags WHERE review_id = ?", [review_id]).fetchone()[0]


def test_comparison_tries_a_review_on_a_loaded_model(store, secrets):
    from pipeline.models.baselines import register_baselines
    from store.actors import Actor

    db, _ = store
    register_baselines(db, actor=Actor("dario", "data_scientist"), include=("vader",), evaluate=False)
    at = open_screen(secrets, "vera", "comparison")
    at.multiselect(key="compare-models").set_value(["baseline-vader", CHAMPION]).run()
    at.text_area(key="try-text").input("Absolutely wonderful, the best grits I have ever had!")
    at.button[[b.label for b in at.button].index("Predict")].click().run()
    settled(at)
    assert not at.exception
    results = [d.value for d in at.dataframe if "label" in d.value.columns and "model_id" in d.value.columns]
    assert results and results[0].set_index("model_id").loc["baseline-vader", "label"] == "positive"
    assert any(md(CHAMPION) in e.value for e in at.error)  # the seeded champion has no weights to load


def test_names_from_the_data_are_escaped_in_markdown_text(store, secrets):
    db, _ = store
    name = "**Krog** [win](http://evil.example) :red[x]"
    with transaction(db) as con:
        con.execute("UPDATE reviews SET restaurant_name = ? WHERE restaurant_name = 'Krog District'", [name])
    at = open_screen(secrets, "vera", "trends")
    captions = [c.value for c in at.caption if c.value.startswith("New since")]
    assert captions == ["New since the store's first reviews: \\*\\*Krog\\*\\* \\[win\\]\\(http\\:"
                        "//evil\\.example\\) \\:red\\[x\\]"]


def _markdowns(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown]


def test_hard_cases_explain_the_flag_and_search_narrows_the_queue(store, secrets):
    db, info = store
    at = open_screen(secrets, "lena", "hard_cases")
    why = [m for m in at.markdown if m.value.startswith("**Why flagged:**")]
    assert len(why) == 1 and why[0].help  # the numbers are on hover
    assert ("unsure between" in why[0].value) or ("contradict the text" in why[0].value)
    assert any(m.startswith("Suggested label: **") for m in _markdowns(at))
    assert any("Finding the words" in c.value or "No word highlights" in c.value for c in at.caption)
    third = _text(db, info["flag_review_ids"][2])
    at.text_input(key="hq-text").input(third).run()
    assert at.text[0].value == third
    assert at.progress[0].proto.text.endswith(" match the filters")
    at.text_input(key="hq-text").input("").run()
    with connect(db, read_only=True) as con:
        stars = con.execute("SELECT stars FROM reviews WHERE review_id = ?", [info["flag_review_ids"][1]]).fetchone()[0]
    label = _current(db, info["flag_review_ids"][1])["label"]
    at.multiselect(key="hq-stars").set_value([stars]).run()
    at.multiselect(key="hq-labels").set_value([label]).run()
    assert f"Stars: {stars} " in settled(at).text[1].value and f"current label: {label} " in at.text[1].value
    at.text_input(key="hq-text").input("zzqx-matches-nothing").run()
    assert any(i.value == "No open flags here." for i in settled(at).info)


def test_comment_recent_labels_and_undo_of_any_one(store, secrets):
    db, info = store
    first, second = info["flag_review_ids"][:2]
    at = open_screen(secrets, "lena", "hard_cases")
    at.text_input(key="relabel-comment").input("sarcastic")
    at.button(key="label-negative").click().run()
    assert [s.value for s in settled(at).success] == ["Labeled negative. Comment saved."]
    assert at.text_input(key="relabel-comment").value == ""  # cleared for the next review
    at.button(key="label-positive").click().run()
    with connect(db, read_only=True) as con:
        history = fetch_label_history(con, first)
        actions = fetch_recent_actions(con, "lena")
    assert history["comment"].dropna().tolist() == ["sarcastic"]
    older = int(actions["action_id"].iloc[-1])
    at.button(key=f"undo-action-{older}").click().run()
    settled(at)
    assert _current(db, first)["source"] == "stars"  # the older label is undone...
    assert _current(db, second)["label"] == "positive"  # ...the newer one stands
    assert at.button(key=f"undo-action-{older}").disabled


def test_ticked_rows_are_bulk_relabeled_after_confirmation_and_undone_as_one(store, secrets):
    db, info = store
    at = open_screen(secrets, "lena", "hard_cases")
    editor = at.data_editor[0]
    shown = editor.value
    assert shown.columns[:2].tolist() == ["pick", "text"]
    at.session_state[editor.key] = {"edited_rows": {0: {"pick": True}, 2: {"pick": True}}, "added_rows": [],
                                    "deleted_rows": []}
    at.run()
    ticked = [shown["review_id"].iloc[0], shown["review_id"].iloc[2]]
    assert at.button(key="tick-go").disabled  # not confirmed yet
    at.radio(key="tick-label").set_value("neutral").run()
    at.checkbox(key="tick-confirm").check().run()
    at.button(key="tick-go").click().run()
    assert [s.value for s in settled(at).success] == ["Labeled 2 reviews neutral."]
    assert [(_current(db, r)["label"], _current(db, r)["source"]) for r in ticked] == [("neutral", "human")] * 2
    assert _current(db, info["flag_review_ids"][0])["source"] == "stars"  # the current review was not ticked
    at.button(key="undo-batch").click().run()
    settled(at)
    assert [_current(db, r)["source"] for r in ticked] == ["stars", "stars"]


def test_guidelines_written_on_the_data_page_are_one_click_away_for_labelers(store, secrets):
    db, _ = store
    at = open_screen(secrets, "lena", "hard_cases")
    assert any("No guidelines written yet" in i.value for i in at.info)
    dario = open_screen(secrets, "dario", "data")
    dario.text_area(key="guidelines-text").input("# House rules\n\nSarcasm is **negative**.")
    dario.button(key="guidelines-save").click().run()
    assert [s.value for s in settled(dario).success][-1] == "Saved as version 1."
    dario.text_area(key="guidelines-text").input("   ")
    dario.button(key="guidelines-save").click().run()
    assert any("cannot be empty" in e.value for e in settled(dario).error)
    at = open_screen(secrets, "lena", "hard_cases")
    assert "# House rules\n\nSarcasm is **negative**." in _markdowns(at)


def test_word_highlights_come_from_the_flagging_model(store, secrets):
    import time

    from pipeline.models.baselines import register_baselines
    from store.actors import Actor
    from store.flags import insert_flags

    db, _ = store
    register_baselines(db, actor=Actor("dario", "data_scientist"), include=("vader",), evaluate=False)
    with transaction(db) as con:
        review_id, text = con.execute("SELECT review_id, text FROM reviews ORDER BY review_id LIMIT 1").fetchone()
        con.execute("UPDATE reviews SET text = ? WHERE review_id = ?", ["The soup was cold and the waiter rude <b>", review_id])
        insert_flags(con, pd.DataFrame({"review_id": [review_id], "reason": ["low_confidence"], "priority": [2.0],
                                        "model_id": ["baseline-vader"]}))
    at = open_screen(secrets, "lena", "hard_cases")
    deadline = time.monotonic() + 30
    while not at.get("html") or all("review-text" not in h.proto.body for h in at.get("html")):
        assert time.monotonic() < deadline, "no highlights within 30 s"
        time.sleep(0.2)
        at.run()
    body = next(h.proto.body for h in at.get("html") if "review-text" in h.proto.body)
    assert "&lt;b&gt;" in body and "<b>" not in body  # escaped
    assert 'rude</span>' in body or 'rude\n</span>' in body
