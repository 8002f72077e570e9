"""Rounds: the bootstrap promotion rule (pipeline.loop.promotion), human-label accounting per round and split, and retrain end to end."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.loop import relabel as rl
from pipeline.loop.promotion import decide_promotion, paired_bootstrap
from store.actors import Actor
from store.db import connect, transaction
from store.rounds import count_round_human_labels, finish_round, list_rounds, start_round
from store.relabeling import relabel_progress
from tests.conftest import seed_reviews
from pipeline.train.config import TrainConfig
from store import models as model_store
from store.actors import cli_actor
from pipeline.data.demo_data import load_demo_data
from pipeline.loop.rounds import retrain
from store.models import get_champion
from tests.tiny_model import save_tiny_classifier
import pipeline.train.run
from store.errors import PermissionDeniedError, TastebudError

ANA = Actor("ana", "labeler")


def _predictions(y: np.ndarray, accuracy: float, rng) -> np.ndarray:
    wrong = rng.random(len(y)) > accuracy
    return np.where(wrong, (y + rng.integers(1, 3, len(y))) % 3, y)


def test_clearly_better_challenger_is_promoted():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 600)
    comparison = paired_bootstrap(y, _predictions(y, 0.60, rng), _predictions(y, 0.80, rng))
    assert comparison["ci_low"] > 0 and comparison["delta"] > 0.1 and comparison["p_better"] == 1.0
    promoted, why = decide_promotion(comparison)
    assert promoted and why.startswith("promoted:")


def test_identical_or_worse_challenger_is_refused():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 300)
    same = _predictions(y, 0.7, rng)
    comparison = paired_bootstrap(y, same, same.copy())
    assert comparison["delta"] == 0 and comparison["ci_low"] == 0 == comparison["ci_high"]
    promoted, why = decide_promotion(comparison)
    assert not promoted and "not better" in why
    worse = paired_bootstrap(y, same, _predictions(y, 0.5, rng))
    assert not decide_promotion(worse)[0]


def test_small_gain_on_a_small_test_set_is_refused_as_unproven():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 60)
    champion = _predictions(y, 0.70, rng)
    challenger = champion.copy()
    fix = np.flatnonzero(challenger != y)[:2]  # the challenger fixes just two test reviews
    challenger[fix] = y[fix]
    comparison = paired_bootstrap(y, champion, challenger)
    assert comparison["delta"] > 0 and comparison["ci_low"] <= 0
    promoted, why = decide_promotion(comparison)
    assert not promoted and "not backed by the test set" in why
    with pytest.raises(ValueError):
        paired_bootstrap(y, champion, challenger[:-1])


def test_round_counts_human_labels_per_split_and_round(store_path):
    frame = pd.DataFrame({"review_id": [f"r{i:03d}" for i in range(60)], "text": ["fine"] * 60, "stars": [3] * 60})
    seed_reviews(store_path, frame.assign(label="neutral"))
    with connect(store_path, read_only=True) as con:
        split = dict(con.execute("SELECT review_id, split FROM splits").fetchall())
    train_ids = [r for r, s in split.items() if s == "train"]
    test_ids = [r for r, s in split.items() if s == "test"]

    rl.bulk_relabel(store_path, ANA, train_ids[:4], "positive")
    rl.relabel(store_path, ANA, test_ids[0], "negative")
    rl.relabel(store_path, ANA, train_ids[0], "negative")  # same review again: still one review
    with transaction(store_path) as con:
        round_1 = start_round(con, actor="ds")
    rl.relabel(store_path, ANA, train_ids[5], "positive")  # made while round 1 trains: belongs to round 2
    with connect(store_path, read_only=True) as con:
        assert count_round_human_labels(con, round_1) == {"train": 4, "val": 0, "test": 1, "other": 0}
        assert relabel_progress(con)["next_round"] == 2
        # Round 1 is running: its 5 labels are taken; only the one made meanwhile waits (for round 2).
        assert relabel_progress(con)["next_round_labels"] == 1
    with transaction(store_path) as con:
        finish_round(con, round_1, status="failed", decision="failed: boom")
        round_2 = start_round(con, actor="ds")
    with connect(store_path, read_only=True) as con:
        # round 1 failed, so round 2 still owes its labels: they count here, once
        assert count_round_human_labels(con, round_2) == {"train": 5, "val": 0, "test": 1, "other": 0}
    with transaction(store_path) as con:
        finish_round(con, round_2, model_id="m2", promoted=False, decision="not promoted", human_labels_train=5)
        round_3 = start_round(con, actor="ds")
        assert count_round_human_labels(con, round_3) == {"train": 0, "val": 0, "test": 0, "other": 0}
        rounds = list_rounds(con)
    assert rounds.round_id.tolist() == [3, 2, 1] and rounds.status.tolist() == ["running", "succeeded", "failed"]
    with pytest.raises(ValueError, match="unknown round fields"):
        with transaction(store_path) as con:
            finish_round(con, round_3, bogus=1)


# --- retrain end to end ----------------------------------------------------------------------


def _tiny_config(base: str, **overrides):
    values = dict(base_model=base, epochs=2, batch_size=8, max_length=32, learning_rate=1e-3,
                  early_stopping_patience=0, eval_batch_size=32, device="cpu", precision="fp32")
    return TrainConfig(**{**values, **overrides})


def _register_champion(db, model_id: str, path: str) -> None:
    with transaction(db) as con:
        model_store.register_model(con, model_id=model_id, kind="finetuned", name=model_id, path=path,
                                   params={"max_length": 32})
        model_store.promote_model(con, cli_actor(), model_id)


def _split_ids(db, split: str) -> list[str]:
    with connect(db, read_only=True) as con:
        return [r for (r,) in con.execute("SELECT review_id FROM splits WHERE split = ? ORDER BY 1", [split]).fetchall()]


@pytest.mark.slow
def test_retrain_promotes_on_evidence_then_refuses_an_identical_challenger(store_path, tmp_path):
    load_demo_data(store_path, rows=300, seed=3)
    _register_champion(store_path, "weak", str(save_tiny_classifier(tmp_path / "weak", seed=5)))
    base = str(save_tiny_classifier(tmp_path / "base", seed=0))
    train_ids, test_ids = _split_ids(store_path, "train"), _split_ids(store_path, "test")
    rl.bulk_relabel(store_path, ANA, train_ids[:2], "neutral")
    rl.relabel(store_path, ANA, test_ids[0], "neutral")

    first = retrain(store_path, _tiny_config(base), actor=cli_actor())
    assert first["promoted"] and first["champion_before"] == "weak"
    assert first["human_labels"] == {"train": 2, "val": 0, "test": 1, "other": 0}
    comparison = first["comparison"]
    assert comparison["ci_low"] > 0 and comparison["n"] == len(test_ids)
    assert first["label_efficiency"] == pytest.approx(comparison["delta"] / 2)

    second = retrain(store_path, _tiny_config(base), actor=cli_actor())  # same data, seed, config
    assert not second["promoted"] and second["decision"].startswith("not promoted")
    assert second["human_labels"]["train"] == 0 and second["label_efficiency"] is None
    with connect(store_path, read_only=True) as con:
        assert get_champion(con)["model_id"] == first["model_id"]
        rounds = list_rounds(con)
        actions = [a for (a,) in con.execute("SELECT action FROM audit_log ORDER BY audit_id").fetchall()]
    assert rounds.promoted.tolist() == [False, True] and (rounds.status == "succeeded").all()
    assert actions.count("round.finish") == 2 and "model.promote" in actions
    with connect(store_path, read_only=True) as con:
        from store.models import get_model

        models = [get_model(con, result["model_id"]) for result in (first, second)]
    # Names and rounds agree: the second round's model says r2 though no label was made for round 2.
    assert [(m["round"], m["name"].split("-")[1]) for m in models] == [(1, "r1"), (2, "r2")]


def test_retrain_first_model_becomes_champion_and_failures_are_recorded(store_path, tmp_path, monkeypatch):
    seed_reviews(store_path, pd.DataFrame({"review_id": [f"r{i}" for i in range(30)], "text": ["ok"] * 30,
                                           "stars": [3] * 30, "label": ["neutral"] * 30}))
    path = str(save_tiny_classifier(tmp_path / "m"))

    def fake_train(db, config, *, reporter=None, actor=None, **_):
        # stands in for fine-tuning, which the training tests cover; registers a ready model
        with transaction(db) as con:
            return model_store.register_model(con, model_id="m-new", kind="finetuned", name="m", path=path,
                                              params={"max_length": 32})

    monkeypatch.setattr(pipeline.train.run, "train", fake_train)
    result = retrain(store_path, _tiny_config(path), actor=cli_actor())
    assert result["promoted"] and result["decision"] == "promoted: first model, nothing to compare against"
    with connect(store_path, read_only=True) as con:
        assert model_store.get_champion(con)["model_id"] == "m-new"

    def broken_train(db, config, **_):
        raise TastebudError("the train split has no labeled reviews")

    monkeypatch.setattr(pipeline.train.run, "train", broken_train)
    with pytest.raises(TastebudError, match="no labeled reviews"):
        retrain(store_path, _tiny_config(path), actor=cli_actor())
    with connect(store_path, read_only=True) as con:
        rounds = list_rounds(con)
        assert model_store.get_champion(con)["model_id"] == "m-new"
    assert rounds.status.tolist() == ["failed", "succeeded"]
    assert rounds.decision.iloc[0] == "failed: TastebudError: the train split has no labeled reviews"

    with pytest.raises(PermissionDeniedError):
        retrain(store_path, _tiny_config(path), actor=ANA)
