"""Every dashboard screen on a seeded store (AppTest): no exception, the expected elements, and
that the write actions change the store."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard.views import md
from dashboard_seed import ACCOUNTS, BASELINE, CHAMPION, account_secrets, seed_dashboard_store
from pipeline import jobs as jobs_module
from pipeline.jobs import tail_log, wait_for_job
from store.actors import Actor
from store import jobs as job_store
from store import models as model_store
from store.db import connect, transaction
from store.labels import current_label
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


def open_screen(secrets: dict, username: str, screen: str) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.secrets["accounts"] = secrets
    at.run()
    at.text_input[0].input(username)
    at.text_input[1].input(ACCOUNTS[username][1])
    at.button[0].click().run()
    at.switch_page(f"screens/{screen}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


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
    assert not at.exception
    label = _current(db, first)
    assert (label["label"], label["source"], label["labeler"]) == ("negative", "human", "lena")
    assert [s.value for s in at.success] == ["Labeled negative."]

    at.button(key="skip").click().run()  # skipping writes nothing
    assert _current(db, second)["source"] == "stars"
    at.button(key="dismiss").click().run()
    assert _flag_status(db, third) == "dismissed"
    at.button(key="undo").click().run()
    assert _flag_status(db, third) == "open"
    at.button(key="undo").click().run()
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
    from store import training_runs as run_store

    db, _ = store
    with transaction(db) as con:
        job_id = job_store.create_job(con, "train", {"epochs": 3}, "dario")
        job_store.mark_started(con, job_id, pid=sleeper.pid, log_path=None)
        job_store.update_progress(con, job_id, 0.4, "epoch 1 of 3")
        con.execute("UPDATE training_runs SET job_id = ? WHERE run_id = 'run-seed'", [job_id])
        for step, loss in ((5, 1.1), (10, 0.9), (15, 0.7)):
            run_store.record_step_loss(con, "run-seed", step=step, epoch=step / 10, loss=loss)
    at = open_screen(secrets, "dario", "training")
    assert any(job_id in s.value and "running" in s.value for s in at.subheader)
    assert any(p.value == 40 or p.value == 0.4 for p in at.get("progress"))
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Progress"] == "40%" and metrics["Elapsed"] != "—"  # and the ETA from the pace so far
    assert metrics["Time left (estimate)"] != "—"
    recent = next(d.value for d in at.dataframe if "Job" in d.value.columns)
    assert recent.set_index("Job").loc[job_id, "Progress"] == "40%"  # bar and table agree
    titles = [c.proto.spec for c in at.get("plotly_chart")]
    assert any("Training loss per logged step" in t for t in titles) and any("Per-epoch metrics" in t for t in titles)
    at.button(key=f"cancel-{job_id}").click().run()
    assert sleeper.wait(timeout=10) is not None  # SIGTERM reached the job's process group
    with connect(db, read_only=True) as con:
        job = job_store.get_job(con, job_id)
    assert job["cancel_requested"] and job["cancelled_by"] == "dario"


def test_cancelled_job_reads_cancelled_by_and_offers_resume_from_a_checkpoint(store, secrets, tmp_path):
    db, _ = store
    run_dir = tmp_path / "runs" / "training" / "run-cut"
    (run_dir / "checkpoints" / "checkpoint-8").mkdir(parents=True)
    (run_dir / "checkpoints" / "checkpoint-8" / "trainer_state.json").write_text("{}")
    (run_dir / "data.parquet").write_bytes(b"x")
    with transaction(db) as con:
        job_id = job_store.create_job(con, "train", {"epochs": 3}, "dario")
        job_store.mark_started(con, job_id, pid=1, log_path=None)
        job_store.request_cancel(con, job_id, "ana")
        job_store.finish_job(con, job_id, "cancelled", error=f"job {job_id} received signal 15")
        model_store.create_run(con, run_id="run-cut", config={"epochs": 3}, checkpoint_dir=str(run_dir / "checkpoints"),
                               pid=1, host="test", proc_start=None, job_id=job_id)
        model_store.finish_run(con, "run-cut", "cancelled", error="JobCancelled")
    at = open_screen(secrets, "dario", "training")
    assert "Cancelled by ana." in [i.value for i in at.info]
    assert not [e.value for e in at.error]  # a cancel is not an error
    at.button(key=f"resume-{job_id}").click().run()
    assert not at.exception
    with connect(db, read_only=True) as con:
        newest = job_store.list_jobs(con)["job_id"].iloc[0]
        resumed = job_store.get_job(con, newest)
    assert newest != job_id and resumed["params"] == {"resume": "run-cut"}
    assert at.selectbox(key="training-job-select").value == newest  # the panel follows the new job
    jobs_module.cancel_job(db, newest, Actor("dario", "data_scientist"))
    wait_for_job(db, newest, timeout_s=60)


def test_sweep_shows_every_trial_with_the_winner_marked(store, secrets):
    db, _ = store
    with transaction(db) as con:
        job_id = job_store.create_job(con, "train", {"sweep": {"learning_rate": [1e-5, 1e-4]}}, "dario")
        for run_id, lr, f1, model_id in (("run-a", 1e-5, 0.61, None), ("run-b", 1e-4, 0.72, BASELINE)):
            model_store.create_run(con, run_id=run_id, config={"learning_rate": lr}, checkpoint_dir="/nonexistent/c",
                                   pid=1, host="test", proc_start=None, job_id=job_id, sweep_id="sweep-x")
            model_store.finish_run(con, run_id, "succeeded", model_id=model_id,
                                   result={"val_metrics": {"macro_f1": f1}, "duration_s": 42.0})
        job_store.finish_job(con, job_id, "succeeded", result={"model_id": BASELINE})
    at = open_screen(secrets, "dario", "training")
    trials = next(d.value for d in at.dataframe if "Trial" in d.value.columns)
    assert trials["Learning rate"].tolist() == [1e-5, 1e-4]
    assert trials["Validation macro-F1"].tolist() == [0.61, 0.72]
    assert trials["Winner"].tolist() == ["", "★ registered"] and trials["Time"].tolist() == ["42 s", "42 s"]


def test_training_promotes_with_a_reason_and_confirmation_and_warns_when_the_challenger_lost(store, secrets):
    db, _ = store
    with transaction(db) as con:
        job_id = job_store.create_job(con, "train", {}, "dario")
        job_store.finish_job(con, job_id, "succeeded", result={"model_id": BASELINE})
    at = open_screen(secrets, "dario", "training")
    assert "New model against the champion" in [s.value for s in at.subheader]
    assert any("lost to the champion on the same test snapshot" in e.value for e in at.error)
    assert at.button(key="rollback").disabled  # one champion so far: nothing to roll back to
    assert at.button(key="promote").disabled
    at.text_input(key="promote-reason").input("weekend test").run()
    assert at.button(key="promote").disabled  # not confirmed yet
    at.checkbox(key="promote-confirm").check().run()
    at.button(key="promote").click().run()
    assert not at.exception
    with connect(db, read_only=True) as con:
        assert model_store.get_champion(con)["model_id"] == BASELINE
        detail = con.execute("SELECT detail FROM audit_log WHERE action = 'model.promote' ORDER BY audit_id DESC").fetchone()[0]
    assert '"reason": "weekend test"' in detail
    assert not at.button(key="rollback").disabled
    at.button(key="rollback").click().run()
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
    at.number_input[4].set_value(200)  # at most 200 training examples
    at.button[0].click().run()
    assert not at.exception
    with connect(db, read_only=True) as con:
        jobs = job_store.list_jobs(con)
        job = job_store.get_job(con, jobs["job_id"].iloc[0])
    assert (job["kind"], job["actor"], job["params"]["epochs"]) == ("train", "dario", 1)
    assert job["params"]["sweep"] == {"learning_rate": [2e-5, 5e-5]}
    assert any(job["job_id"] in s.value for s in at.subheader)  # the live panel follows the new job
    # The job must really start training (read its data, create a run) before we stop it: a job that
    # fails on start fails this test.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with connect(db, read_only=True) as con:
            current = job_store.get_job(con, job["job_id"])
            runs = con.execute("SELECT count(*) FROM training_runs WHERE job_id = ?", [job["job_id"]]).fetchone()[0]
        assert current["status"] in ("queued", "running"), (current["error"], tail_log(current["log_path"]))
        if runs:
            break
        time.sleep(0.3)
    assert runs, "the training job never created a run"
    at.button(key=f"cancel-{job['job_id']}").click().run()
    ended = wait_for_job(db, job["job_id"], timeout_s=120)
    assert ended["status"] == "cancelled", (ended["error"], tail_log(ended["log_path"]))
    at.run()
    assert "Cancelled by dario." in [i.value for i in at.info]


def test_data_page_imports_an_upload_with_its_reject_report(store, secrets):
    db, _ = store
    at = open_screen(secrets, "dario", "data")
    csv = b"review_id,text,stars\nu1,Great grits,5\nu2,,3\nu3,Slow and cold,9\nu4,Fine,3\n"
    at.get("file_uploader")[0].upload("my reviews.csv", csv, "text/csv")
    at.run()
    at.button(key="import-go").click().run()
    assert not at.exception
    assert any("2 new" in s.value and "2 rejected" in s.value for s in at.success)
    with connect(db, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM reviews WHERE review_id IN ('u1', 'u4')").fetchone()[0] == 2
    assert "Imports" in [s.value for s in at.subheader]


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
