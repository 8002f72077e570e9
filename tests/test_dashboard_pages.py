"""Every dashboard screen on a seeded store (AppTest): no exception, the expected elements, and
that the write actions change the store."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from streamlit import config as st_config
from streamlit.testing.v1 import AppTest

from dashboard.views import md
from dashboard_seed import ACCOUNTS, BASELINE, CHAMPION, account_secrets, seed_dashboard_store
from pipeline import jobs as jobs_module
from pipeline.jobs import wait_for_job
from store.actors import Actor
from store import training_runs as run_store
from store import jobs as job_store
from store import models as model_store
from store.errors import TastebudError
from store.db import connect, transaction
from store.labels import current_label
from store.labels import fetch_label_history
from store.relabeling import fetch_recent_actions
from store.schema import init_store
from tests.tiny_model import save_tiny_classifier
from pipeline.models.baselines import register_baselines

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


def test_overview_shows_a_job_waiting_for_the_store(store, secrets):
    db, _ = store
    with transaction(db) as con:  # a running job whose process is this one, alive
        job_id = job_store.create_job(con, "score", {}, "tester")
        job_store.mark_started(con, job_id, pid=os.getpid(), log_path=None,
                               proc_start=jobs_module.process_start_token(os.getpid()))
    reporter = jobs_module.JobReporter(db, job_id, echo=lambda line: None)
    reporter.waiting_for_store()  # what the job's process does when its connection finds the store locked
    try:
        at = open_screen(secrets, "vera", "overview")
        recent = next(d.value for d in at.dataframe if "job_id" in d.value.columns).set_index("job_id")
        assert recent.loc[job_id, "message"].startswith("waiting for the store since ")
    finally:
        reporter.store_wait_over()
        with transaction(db) as con:
            job_store.finish_job(con, job_id, "succeeded", result={})

def test_overview_shows_a_sigkilled_job_as_failed(store, secrets):
    from pipeline.jobs import start_job
    from store.actors import cli_actor

    db, _ = store
    job_id = start_job(db, "demo-data", {"rows": 2_000_000, "chunk_rows": 50_000, "seed": 9}, cli_actor())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with connect(db, read_only=True) as con:
            job = job_store.get_job(con, job_id)
        if job["status"] == "running":
            break
        time.sleep(0.2)
    os.killpg(job["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 20
    while os.path.exists(f"/proc/{job['pid']}") and time.monotonic() < deadline:
        time.sleep(0.1)
    at = open_screen(secrets, "vera", "overview")  # a viewer: nobody opened Training or `tastebud jobs`
    recent = next(d.value for d in at.dataframe if "job_id" in d.value.columns)
    assert recent.set_index("job_id").loc[job_id, "status"] == "failed"


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
    subheaders = [s.value for s in at.subheader]
    assert subheaders[:6] == ["Every model on the frozen test set", "Per-class precision, recall and F1 (test set)",
                              "Confusion matrices (test set)", "Calibration and precision-recall (stored test predictions)",
                              "Training curves", "Slices"]
    specs = [c.proto.spec for c in at.get("plotly_chart")]
    assert any("Reliability (calibration)" in s for s in specs)
    assert sum("precision-recall by class" in s for s in specs) == 2
    assert sum(f'"text":"{CHAMPION}"' in s for s in specs) >= 1  # confusion matrix titled by model name
    assert not at.warning  # both models were evaluated on the current test set
    summary = next(d.value for d in at.dataframe if "Macro-F1" in d.value.columns)
    assert len(summary.columns) <= 10 and "Calibration error (ECE)" in summary.columns  # fits without scrolling
    assert any("agree on" in c.value for c in at.caption)
    at.radio(key="disagree-scope").set_value("every scored review").run()
    assert not at.exception
    assert any("of 1,500 reviews" in c.value for c in at.caption)


def test_comparison_says_when_the_test_set_grew_and_offers_to_re_evaluate(store, secrets):
    import pandas as pd

    from conftest import seed_reviews

    db, _ = store
    at = open_screen(secrets, "dario", "comparison")
    assert not at.warning
    with connect(db, read_only=True) as con:
        before = con.execute("SELECT count(*) FROM splits WHERE split = 'test'").fetchone()[0]
    new = pd.DataFrame({"review_id": [f"late-{i}" for i in range(60)], "text": ["Late review, fine food."] * 60,
                        "stars": [4] * 60, "label": ["positive"] * 60})
    seed_reviews(db, new)  # a new import: some of it lands in the frozen test split
    with connect(db, read_only=True) as con:
        after = con.execute("SELECT count(*) FROM splits s JOIN current_labels USING (review_id) "
                            "WHERE s.split = 'test'").fetchone()[0]
    assert after > before
    at.run()
    [warning] = [w.value for w in at.warning]
    assert "The test set has changed" in warning and f"now holds {after:,} labeled reviews" in warning
    at.button(key="reevaluate").click().run()
    assert not at.exception
    with connect(db, read_only=True) as con:
        job = job_store.get_job(con, job_store.list_jobs(con)["job_id"].iloc[0])
    assert (job["kind"], job["actor"]) == ("evaluate", "dario")
    assert sorted(job["params"]["model_ids"]) == sorted([BASELINE, CHAMPION])
    wait_for_job(db, job["job_id"], timeout_s=120)  # the seeded models have no weights: it ends failed


def test_comparison_slices_show_n_and_an_interval_and_hide_small_ones(store, secrets):
    import pandas as pd

    from store import evaluations as evaluation_store

    db, _ = store
    with connect(db, read_only=True) as con:
        metrics = evaluation_store.fetch_latest_evaluation(con, CHAMPION)
    slices = pd.DataFrame({"slice_kind": ["length", "term"], "slice_value": ["short (<50 words)", "grits"],
                           "n": [120, 7], "accuracy": [0.8, 0.5], "macro_f1": [0.71, 0.4],
                           "f1_ci_low": [0.63, None], "f1_ci_high": [0.79, None]})
    with transaction(db) as con:
        evaluation_store.insert_evaluation(con, CHAMPION, "test", {k: v for k, v in metrics.items()
                                                                   if k not in ("evaluation_id", "evaluated_at")}, slices)
    at = open_screen(secrets, "vera", "comparison")
    table = next(d.value for d in at.dataframe if "Slice" in d.value.columns)
    assert table["Value"].tolist() == ["short (<50 words)", "krog district"]  # the 7-review slice is hidden
    row = table.set_index("Value").loc["short (<50 words)"]
    assert row[CHAMPION] == "0.710 [0.630, 0.790]" and row["Test reviews (n)"] == 120
    at.toggle(key="compare-small-slices").set_value(True).run()
    table = next(d.value for d in at.dataframe if "Slice" in d.value.columns)
    assert table.set_index("Value").loc["grits", "Enough data"] == "no (n < 30)"


def test_comparison_rounds_charts_read_well_with_a_single_round(store, secrets):
    from store.rounds import finish_round, start_round

    db, _ = store
    with transaction(db) as con:
        round_id = start_round(con, actor="dario")
        finish_round(con, round_id, model_id=CHAMPION, promoted=True, decision="promoted", human_labels_train=12,
                     champion_macro_f1=0.61, challenger_macro_f1=0.66, delta_macro_f1=0.05, label_efficiency=0.05 / 12)
    at = open_screen(secrets, "vera", "comparison")
    specs = {c.key: c.proto.spec for c in at.get("plotly_chart") if c.key}
    import json as _json

    f1 = _json.loads(specs["rounds-f1"])
    assert f1["layout"]["xaxis"]["range"] == [0.25, 1.75] and f1["layout"]["xaxis"]["title"]["text"] == "retraining round"
    bars = _json.loads(specs["rounds-efficiency"])
    assert bars["data"][0]["width"] == [0.4]


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
    settled(at)
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
        run_store.create_run(con, run_id="run-cut", config={"epochs": 3}, checkpoint_dir=str(run_dir / "checkpoints"),
                               pid=1, host="test", proc_start=None, job_id=job_id)
        run_store.finish_run(con, "run-cut", "cancelled", error="JobCancelled")
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
    try:  # clean up; the resumed job may already have failed on the fake checkpoint
        jobs_module.cancel_job(db, newest, Actor("dario", "data_scientist"))
    except TastebudError as exc:
        assert "already" in str(exc)
    wait_for_job(db, newest, timeout_s=60)


def test_sweep_shows_every_trial_with_the_winner_marked(store, secrets):
    db, _ = store
    with transaction(db) as con:
        job_id = job_store.create_job(con, "train", {"sweep": {"learning_rate": [1e-5, 1e-4]}}, "dario")
        for run_id, lr, f1, model_id in (("run-a", 1e-5, 0.61, None), ("run-b", 1e-4, 0.72, BASELINE)):
            run_store.create_run(con, run_id=run_id, config={"learning_rate": lr}, checkpoint_dir="/nonexistent/c",
                                   pid=1, host="test", proc_start=None, job_id=job_id, sweep_id="sweep-x")
            run_store.finish_run(con, run_id, "succeeded", model_id=model_id,
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
    settled(at)
    assert not at.exception
    with connect(db, read_only=True) as con:
        assert model_store.get_champion(con)["model_id"] == BASELINE
        detail = con.execute("SELECT detail FROM audit_log WHERE action = 'model.promote' ORDER BY audit_id DESC").fetchone()[0]
    assert '"reason": "weekend test"' in detail
    assert not at.button(key="rollback").disabled
    at.button(key="rollback").click().run()
    settled(at)
    with connect(db, read_only=True) as con:
        assert model_store.get_champion(con)["model_id"] == CHAMPION


@pytest.mark.slow
def test_training_form_rejects_bad_settings_and_its_job_trains_a_model(store, secrets, tmp_path, monkeypatch):
    db, _ = store
    monkeypatch.setenv("TASTEBUD_CPU_THREADS", "1")  # the job process inherits this environment
    at = open_screen(secrets, "dario", "training")
    at.radio[0].set_value("Training run or sweep")
    at.text_input(key="train-config-base_model").input(str(save_tiny_classifier(tmp_path / "tiny")))
    sweep = lambda: next(t for t in at.text_input if t.label.startswith("Sweep learning rates"))  # noqa: E731
    sweep().input("2e-3, abc")
    at.button[0].click().run()  # the form's submit button comes first
    assert any("Bad training settings" in e.value for e in at.error)
    at.number_input(key="train-config-max_train_examples").set_value(2)  # TrainConfig wants at least 3
    sweep().input("2e-3")
    at.button[0].click().run()
    assert any(md("max_train_examples must be None or an integer >= 3") in e.value for e in at.error)
    with connect(db, read_only=True) as con:
        assert job_store.list_jobs(con).empty

    at.number_input(key="train-config-epochs").set_value(1)
    at.number_input(key="train-config-max_length").set_value(32)
    at.number_input(key="train-config-max_train_examples").set_value(60)
    at.button[0].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    with connect(db, read_only=True) as con:
        job_id = job_store.list_jobs(con)["job_id"].iloc[0]
    assert any(job_id in s.value for s in at.subheader)  # the live panel follows the new job
    ended = wait_for_job(db, job_id, timeout_s=240)
    assert ended["status"] == "succeeded", ended["error"]
    assert (ended["kind"], ended["actor"]) == ("train", "dario")
    assert ended["params"]["sweep"] == {"learning_rate": [2e-3]}
    assert (ended["params"]["epochs"], ended["params"]["max_train_examples"]) == (1, 60)
    with connect(db, read_only=True) as con:
        product = model_store.get_model(con, ended["result"]["model_id"])
        # The default recipe hands on the ensemble; its fine-tuned member carries the form's settings.
        model = model_store.get_model(con, product["params"]["members"][0]["model_id"])
    assert product["kind"] == "ensemble" and product["status"] == "ready"
    assert model["status"] == "ready" and model["params"]["learning_rate"] == 2e-3

    # A second job started here takes over the panel (the job selectbox moves to it).
    at.button(key="start-flag").click().run()
    settled(at)
    with connect(db, read_only=True) as con:
        newest = job_store.list_jobs(con)["job_id"].iloc[0]
    assert newest != job_id
    assert at.selectbox(key="training-job-select").value == newest
    assert any(newest in s.value for s in at.subheader)
    if wait_for_job_quietly(db, newest) is None:  # still flagging: stop it rather than wait
        at.button(key=f"cancel-{newest}").click().run()
        wait_for_job(db, newest, timeout_s=60)
    # Picking another job by hand sticks across reruns.
    at.selectbox(key="training-job-select").set_value(job_id).run()
    at.run()
    assert at.selectbox(key="training-job-select").value == job_id
    assert any(job_id in s.value for s in settled(at).subheader)


def _wait_for_import(at: AppTest, db: Path) -> dict:
    with connect(db, read_only=True) as con:
        job_id = job_store.list_jobs(con, kind="import")["job_id"].iloc[0]
    job = wait_for_job(db, job_id, timeout_s=120)
    at.run()
    assert not at.exception
    return job


def test_data_page_previews_maps_dry_runs_and_imports_in_the_background(store, secrets):
    db, _ = store
    at = open_screen(secrets, "dario", "data")
    csv = b"id,body,rating,score\nu1,Great grits,5,1\nu2,,3,2\nu3,Slow and cold,9,3\nu4,Fine,3,4\n"
    at.get("file_uploader")[0].upload("my reviews.csv", csv, "text/csv")
    at.run()
    assert not at.exception
    assert at.selectbox(key="map-text").value == "body" and at.selectbox(key="map-stars").value == "rating"
    sample = next(d.value for d in at.dataframe if "review_id" in d.value.columns)
    assert sample["text"].tolist() == ["Great grits", "Fine"] and sample["label"].tolist() == ["positive", "neutral"]
    at.selectbox(key="map-stars").set_value("score").run()  # edit the mapping: stars from another column
    sample = next(d.value for d in at.dataframe if "review_id" in d.value.columns)
    assert sample["stars"].tolist() == [1, 3, 4] and sample["label"].tolist() == ["negative", "neutral", "positive"]
    at.button(key="import-dry-run-go").click().run()
    assert any("Dry run: 3 of 4 rows would be accepted, 1 rejected" in i.value for i in at.info)
    assert not at.exception
    with connect(db, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM reviews WHERE review_id LIKE 'u%'").fetchone()[0] == 0  # nothing written
    at.selectbox(key="map-stars").set_value("rating").run()
    at.checkbox(key="import-score-after").uncheck().run()
    at.button(key="import-go").click().run()
    job = _wait_for_import(at, db)
    assert (job["kind"], job["actor"], job["status"]) == ("import", "dario", "succeeded"), job["error"]
    assert any("2 new" in s.value and "2 rejected" in s.value and "not scored (not asked)" in s.value for s in at.success)
    with connect(db, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM reviews WHERE review_id IN ('u1', 'u4')").fetchone()[0] == 2
    assert "Imports" in [s.value for s in at.subheader]


def wait_for_job_quietly(db: Path, job_id: str, timeout_s: float = 5.0):
    """The job once it ended within ``timeout_s``, else None (it is still running)."""
    try:
        return wait_for_job(db, job_id, timeout_s=timeout_s)
    except Exception:
        return None


def test_data_page_import_scores_and_flags_afterwards_by_default(store, secrets):
    from pipeline.loop.registry import promote
    from pipeline.models.baselines import register_baselines

    db, _ = store
    dario = Actor("dario", "data_scientist")
    register_baselines(db, actor=dario, include=("vader",), evaluate=False)
    promote(db, "baseline-vader", dario)
    tiny_champion = "baseline-vader"
    at = open_screen(secrets, "dario", "data")
    at.get("file_uploader")[0].upload("more.csv", b"review_id,text,stars\nn1,Lovely staff,5\nn2,Cold food,1\n", "text/csv")
    at.run()
    assert at.checkbox(key="import-score-after").value  # on by default
    at.button(key="import-go").click().run()
    job = _wait_for_import(at, db)
    assert job["status"] == "succeeded", job["error"]
    assert job["result"]["scored"] >= 2 and job["result"]["after"].startswith("scored")
    with connect(db, read_only=True) as con:
        scored = con.execute("SELECT count(*) FROM predictions WHERE review_id IN ('n1', 'n2') AND model_id = ?",
                             [tiny_champion]).fetchone()[0]
    assert scored == 2


def test_data_page_exports_a_filtered_selection_with_labels_and_champion_predictions(store, secrets):
    import io

    import pandas as pd
    import pyarrow.parquet as pq

    db, _ = store
    at = open_screen(secrets, "dario", "data")
    at.multiselect(key="export-labels").set_value(["negative"]).run()
    with connect(db, read_only=True) as con:
        expected = con.execute("SELECT count(*) FROM current_labels WHERE label = 'negative'").fetchone()[0]
    assert any(c.value == f"{expected:,} reviews match." for c in at.caption)
    at.button(key="export-prepare").click().run()
    assert not at.exception
    payload = at.session_state["export-ready"][1]
    frame = pd.read_csv(io.BytesIO(payload))
    assert len(frame) == expected and set(frame["label"]) == {"negative"}
    assert (frame["predicted_by"] == CHAMPION).all() and frame["p_negative"].between(0, 1).all()
    at.radio(key="export-format").set_value("parquet").run()
    assert "export-download" not in [b.key for b in at.get("download_button")]  # CSV bytes are not offered as Parquet
    at.button(key="export-prepare").click().run()
    table = pq.read_table(io.BytesIO(at.session_state["export-ready"][1]))
    assert table.num_rows == expected and "text" in table.column_names


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
    at.multiselect(key="compare-models").set_value(["baseline-vader"]).run()
    at.button[[b.label for b in at.button].index("Predict")].click().run()  # the model is loaded once per process
    [answered] = [c.value for c in at.caption if c.value.startswith("Answered in")]
    assert float(answered.split()[2]) < 1.0


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


def test_a_label_that_cannot_be_written_says_why_and_gives_the_comment_back(store, secrets):
    """A key press draws the next review first and writes after it: a write that fails must still be seen."""
    db, info = store
    first, second = info["flag_review_ids"][:2]
    at = open_screen(secrets, "lena", "hard_cases")
    at.text_input(key="relabel-comment").input("looks sarcastic")
    with transaction(db) as con:  # the review goes away while the labeler reads it
        con.execute("DELETE FROM reviews WHERE review_id = ?", [first])
    at.button(key="label-negative").click().run()
    assert not at.exception
    assert [e.value.replace("\\", "") for e in at.error] == [f"no such review: {first}"]  # shown markdown-escaped
    assert at.text_input(key="relabel-comment").value == "looks sarcastic"
    assert at.text[0].value == _text(db, second)
    at.button(key="label-positive").click().run()
    assert [s.value for s in settled(at).success] == ["Labeled positive. Comment saved."]
    assert _current(db, second)["label"] == "positive"


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
