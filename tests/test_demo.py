"""`tastebud demo`, the README's main command, end to end on a tiny store with a tiny model."""

from __future__ import annotations

import subprocess
import tomllib

import pytest

from conftest import cli_cmd
from store.db import connect
from pipeline.jobs import wait_for_job
from store import jobs as job_store
from store import models as model_store
from store.models import get_champion
from tests.tiny_model import save_tiny_classifier
from training_helpers import SUBPROCESS_ENV


@pytest.mark.slow
def test_demo_builds_the_whole_loop_then_finds_it_ready(tmp_path):
    db = tmp_path / "demo.duckdb"
    tiny = save_tiny_classifier(tmp_path / "tiny")
    demo = cli_cmd("--db", str(db), "demo", "--rows", "300", "--epochs", "1", "--base-model", str(tiny), "--no-launch")
    first = subprocess.run(demo, capture_output=True, text=True, timeout=300, env=SUBPROCESS_ENV)
    assert first.returncode == 0, first.stderr
    assert "demo store ready: 300 reviews, champion baseline-" in first.stdout
    for role in ("viewer", "labeler", "data scientist"):
        assert f"  {role:<15} user demo-" in first.stdout

    # The dashboard's store is ready before any fine-tuning; the fine-tune runs as a background job.
    with connect(db, read_only=True) as con:
        champion = get_champion(con)
        jobs = job_store.list_jobs(con)
    finetune = jobs[jobs["kind"] == "demo-finetune"]
    assert len(finetune) == 1 and champion["model_id"].startswith("baseline-")
    ended = wait_for_job(db, finetune["job_id"].iloc[0], timeout_s=240)
    assert ended["status"] == "succeeded", ended["error"]
    with connect(db, read_only=True) as con:
        models = model_store.list_models(con)
        scored = dict(con.execute("SELECT model_id, count(*) FROM predictions GROUP BY 1").fetchall())
        splits = dict(con.execute("SELECT split, count(*) FROM splits GROUP BY 1").fetchall())
        evaluated = {m for (m,) in con.execute("SELECT DISTINCT model_id FROM evaluations").fetchall()}
        tuned = [model_store.get_model(con, m) for m in models.loc[models["kind"] == "finetuned", "model_id"]]
    assert len(tuned) == 1 and tuned[0]["params"]["base_model"] == str(tiny)
    assert scored[champion["model_id"]] == 300 and scored["baseline-vader"] == 300
    assert sum(splits.values()) == 300 and splits["train"] == 240 and min(splits.values()) >= 25
    assert {champion["model_id"], "baseline-vader", tuned[0]["model_id"]} <= evaluated
    # Then the first aspect model trains in its own background job, becomes the aspect champion and scores
    # every review (waited for here too: no job outlives the test).
    aspects_job = jobs[jobs["kind"] == "demo-aspects"]
    assert len(aspects_job) == 1
    ended = wait_for_job(db, aspects_job["job_id"].iloc[0], timeout_s=300)
    assert ended["status"] == "succeeded", ended["error"]
    with connect(db, read_only=True) as con:
        aspect_champion = get_champion(con, "aspects")
        aspect_scored = con.execute("SELECT count(DISTINCT review_id) FROM aspect_predictions WHERE model_id = ?",
                                    [aspect_champion["model_id"]]).fetchone()[0]
    assert aspect_champion["params"]["base_model"] == str(tiny) and aspect_scored == 300
    accounts = tomllib.loads((tmp_path / "demo-secrets.toml").read_text())["accounts"]
    assert {a["role"] for a in accounts.values()} == {"viewer", "labeler", "data_scientist"}

    again = subprocess.run(demo, capture_output=True, text=True, timeout=120, env=SUBPROCESS_ENV)
    assert again.returncode == 0, again.stderr
    assert f"demo store at {db} is ready" in again.stdout and "building" not in again.stdout
    password = (tmp_path / "demo-logins.txt").read_text().split()[-1]
    assert password not in again.stdout  # passwords are printed once, when they are created
