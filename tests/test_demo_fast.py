"""`tastebud demo`'s fast path: every page's data is there before any fine-tuning; the fine-tune is a job."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from pipeline.demo import build_demo_store, demo_is_ready, finetune_demo, finetune_pending
from store import model_health as health_store
from store.db import connect
from store.flags import count_open_flags_by_reason
from store.models import get_champion, list_models
from tiny_model import save_tiny_classifier


@pytest.fixture(scope="module")
def fast_store(tmp_path_factory):
    db = tmp_path_factory.mktemp("fastdemo") / "demo.duckdb"
    return db, build_demo_store(db, rows=800)


def test_fast_build_populates_every_page_without_training(fast_store):
    db, summary = fast_store
    assert summary["champion"] in summary["baselines"] and summary["scored"] == 800
    assert summary["baselines"] == ["baseline-vader", "baseline-tfidf-lr"]
    assert set(summary["seconds"]) == {"generating reviews", "registering the fast baselines",
                                       "scoring, flagging and monitoring"}
    with connect(db, read_only=True) as con:
        champion = get_champion(con)["model_id"]
        assert champion == summary["champion"]
        flags = count_open_flags_by_reason(con)
        assert flags["disagreement"] > 0 and sum(flags.values()) == sum(summary["flags"].values())
        assert len(health_store.fetch_model_health(con, champion)) > 50
        for model_id in summary["baselines"]:
            assert con.execute("SELECT count(*) FROM predictions WHERE model_id = ?", [model_id]).fetchone()[0] == 800
        assert len(health_store.list_term_scans(con)) == 1
        assert list_models(con)["kind"].tolist() == ["baseline", "baseline"]  # nothing fine-tuned yet
    assert demo_is_ready(db) and finetune_pending(db)


def test_background_finetune_adds_zero_shot_and_a_model_promoted_only_if_better(fast_store, tmp_path):
    db, _ = fast_store
    tiny = save_tiny_classifier(tmp_path / "tiny")
    outcome = finetune_demo(db, train={"base_model": str(tiny), "epochs": 1, "max_train_examples": 120,
                                       "max_length": 32, "batch_size": 16, "name": "demo-tiny"})
    with connect(db, read_only=True) as con:
        models = list_models(con)
        champion = get_champion(con)["model_id"]
        scored = con.execute("SELECT count(*) FROM predictions WHERE model_id = 'baseline-zeroshot-minilm'").fetchone()[0]
    # The default recipe: the fine-tune and its ensemble with TF-IDF + LR, which is the challenger.
    assert set(models["kind"]) == {"baseline", "finetuned", "ensemble"} and scored == 800
    assert outcome["model_id"].startswith("ens-") and outcome["promoted"] == (champion == outcome["model_id"])
    assert not finetune_pending(db)


def test_demo_command_without_launch_prints_the_logins(tmp_path, monkeypatch):
    from pipeline.cli import app

    monkeypatch.setenv("TASTEBUD_DB", str(tmp_path / "cli.duckdb"))
    result = CliRunner().invoke(app, ["demo", "--rows", "400", "--no-launch", "--no-finetune"])
    assert result.exit_code == 0, result.output
    assert "demo store ready: 400 reviews, champion baseline-" in result.output
    assert "user demo-viewer" in result.output and "fine-tuning" not in result.output
    again = CliRunner().invoke(app, ["demo", "--no-launch", "--no-finetune"])
    assert "is ready (use --rebuild" in again.output
