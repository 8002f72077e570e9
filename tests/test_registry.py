"""Champion and challengers: promote, rollback, promote-if-better, history, role checks, the CLI."""

from __future__ import annotations

import json
import subprocess

import pandas as pd
import pytest

from conftest import cli_cmd
from pipeline.evaluation.evaluator import load_test_frame
from pipeline.evaluation.snapshot import snapshot_hash
from pipeline.loop.promotion import promote_if_better
from pipeline.loop.registry import promote, rollback
from pipeline.models.predictors import VaderPredictor
from store import models as model_store
from store.actors import Actor, cli_actor, fetch_audit_log
from store.db import connect, transaction
from store.errors import PermissionDeniedError, TastebudError
from store.constants import LABELS
from store.evaluations import fetch_latest_evaluation, insert_evaluation
from store.reviews import add_reviews
from tests.tiny_model import save_tiny_classifier
from training_helpers import SUBPROCESS_ENV


def _register(db, *model_ids, status="ready"):
    with transaction(db) as con:
        for model_id in model_ids:
            model_store.register_model(con, model_id=model_id, kind="baseline", name=model_id, status=status)


def _champion(db):
    with connect(db, read_only=True) as con:
        champion = model_store.get_champion(con)
    return champion["model_id"] if champion else None


def test_promote_and_rollback_keep_a_history(store_path):
    _register(store_path, "a", "b", "c")
    admin = cli_actor()
    scientist = Actor("dana", "data_scientist")
    assert _champion(store_path) is None
    promote(store_path, "a", admin)
    promote(store_path, "b", scientist, reason="better on neutral")
    row = promote(store_path, "c", admin)
    assert row["previous_model_id"] == "b" and _champion(store_path) == "c"

    assert rollback(store_path, admin)["model_id"] == "b"
    assert rollback(store_path, admin, reason="c misreads sarcasm")["model_id"] == "a"
    with pytest.raises(TastebudError, match="no previous champion to roll back to"):
        rollback(store_path, admin)
    assert _champion(store_path) == "a"

    promote(store_path, "c", admin)  # a rollback never blocks promoting again
    assert rollback(store_path, admin)["model_id"] == "a"

    with connect(store_path, read_only=True) as con:
        history = model_store.promotion_history(con)
        audit = fetch_audit_log(con)
        listed = model_store.list_models(con).set_index("model_id")
    assert list(history["action"]) == ["rollback", "promote", "rollback", "rollback", "promote", "promote", "promote"]
    assert list(history["model_id"]) == ["a", "c", "a", "b", "c", "b", "a"]
    assert history.iloc[-2]["reason"] == "better on neutral" and history.iloc[-2]["actor"] == "dana"
    assert (audit["action"] == "model.promote").sum() == 4 and (audit["action"] == "model.rollback").sum() == 3
    assert listed["is_champion"].to_dict() == {"a": True, "b": False, "c": False}


def test_labeler_may_not_promote_or_roll_back(store_path):
    _register(store_path, "a", "b")
    promote(store_path, "a", cli_actor())
    promote(store_path, "b", cli_actor())
    labeler = Actor("lee", "labeler")
    with pytest.raises(PermissionDeniedError, match=r"lee \(labeler\) may not promote"):
        promote(store_path, "a", labeler)
    with pytest.raises(PermissionDeniedError, match="may not promote"):
        rollback(store_path, labeler)
    with pytest.raises(PermissionDeniedError):
        promote_if_better(store_path, "a", labeler)
    with connect(store_path, read_only=True) as con:
        assert len(model_store.promotion_history(con)) == 2
        assert not fetch_audit_log(con)["actor"].eq("lee").any()
    assert _champion(store_path) == "b"


def test_promote_refuses_unknown_unready_and_current(store_path):
    _register(store_path, "a")
    _register(store_path, "half", status="training")
    with pytest.raises(TastebudError, match="no model 'zzz'"):
        promote(store_path, "zzz", cli_actor())
    with pytest.raises(TastebudError, match="only a ready model can be promoted"):
        promote(store_path, "half", cli_actor())
    promote(store_path, "a", cli_actor())
    with pytest.raises(TastebudError, match="a is already the champion"):
        promote(store_path, "a", cli_actor())


# Reviews whose test labels are what VADER predicts, so a VADER model is perfect on the current test split.
_TEXTS = (
    "The tacos were amazing and the staff was wonderful.", "Terrible food, rude waiter, never again.",
    "We ordered two burritos and a soda.", "I loved the salsa, great value!",
    "The soup was cold and bland, awful.", "The restaurant is on Main Street.",
)


def _vader_labeled_test_split(db, n=90):
    texts = [f"{_TEXTS[i % len(_TEXTS)]} Visit {i}." for i in range(n)]
    labels = [LABELS[i] for i in VaderPredictor().predict_proba(texts).argmax(axis=1)]
    ids = [f"r{i:03d}" for i in range(n)]
    with transaction(db) as con:
        add_reviews(con, pd.DataFrame({"review_id": ids, "text": texts, "source": "test"}),
                    pd.DataFrame({"review_id": ids, "label": labels, "source": "import"}), split_fractions=(0, 0, 1))
    return load_test_frame(db)


def _register_vader(db, *model_ids):
    with transaction(db) as con:
        for model_id in model_ids:
            model_store.register_model(con, model_id=model_id, kind="baseline", name=model_id,
                                       params={"predictor": "vader"}, status="ready")


def _stale_evaluation(db, model_id, macro_f1):
    with transaction(db) as con:  # taken on an answer key that no longer exists
        insert_evaluation(con, model_id, "test", {"n": 50, "macro_f1": macro_f1, "test_snapshot": "an-older-key"})


def test_promote_if_better_refuses_an_equal_challenger_whatever_stale_scores_say(store_path):
    frame = _vader_labeled_test_split(store_path)
    _register_vader(store_path, "vader-a", "vader-b")
    promote(store_path, "vader-a", cli_actor())
    _stale_evaluation(store_path, "vader-a", 0.70)
    _stale_evaluation(store_path, "vader-b", 0.80)  # stored scores say b is better; on the same reviews it is not

    outcome = promote_if_better(store_path, "vader-b", cli_actor())
    assert not outcome["promoted"] and "not promoted: the challenger is not better" in outcome["message"]
    assert outcome["comparison"]["n"] == 90 and outcome["comparison"]["delta"] == 0
    assert _champion(store_path) == "vader-a"
    with connect(store_path, read_only=True) as con:  # both stale evaluations were replaced by current ones
        fresh = [fetch_latest_evaluation(con, m) for m in ("vader-a", "vader-b")]
    assert [(e["macro_f1"], e["n"]) for e in fresh] == [(1.0, 90), (1.0, 90)]
    assert {e["test_snapshot"] for e in fresh} == {snapshot_hash(frame)}


def test_promote_if_better_rescores_a_stale_champion_on_the_current_test_split(store_path, tmp_path):
    _vader_labeled_test_split(store_path)
    with transaction(store_path) as con:
        model_store.register_model(con, model_id="tiny", kind="finetuned", name="tiny", params={"max_length": 32},
                                   path=str(save_tiny_classifier(tmp_path / "tiny")), status="ready")
    promote(store_path, "tiny", cli_actor())
    _stale_evaluation(store_path, "tiny", 1.0)  # perfect on an old answer key, random on the current one
    _register_vader(store_path, "vader")

    outcome = promote_if_better(store_path, "vader", cli_actor())
    assert outcome["promoted"] and outcome["message"].startswith("vader: promoted: macro-F1 change +")
    assert outcome["score"] == 1.0 and outcome["champion_score"] < 0.6 and outcome["comparison"]["ci_low"] > 0
    assert _champion(store_path) == "vader"
    assert promote_if_better(store_path, "vader", cli_actor())["message"] == "vader is already the champion"


def test_promote_if_better_makes_the_first_model_champion(store_path):
    _register_vader(store_path, "vader")
    outcome = promote_if_better(store_path, "vader", cli_actor())
    assert outcome["promoted"] and outcome["message"] == "vader: promoted: first model, nothing to compare against"
    assert _champion(store_path) == "vader"


def test_training_run_columns_exist(store_path):
    with connect(store_path, read_only=True) as con:
        columns = [r[0] for r in con.execute("DESCRIBE training_runs").fetchall()]
    assert columns[-4:] == ["pid", "host", "proc_start", "result"]


def test_cli_models_promote_rollback(store_path):
    _register(store_path, "a", "b")
    run = lambda *args: subprocess.run(cli_cmd("--db", str(store_path), *args), capture_output=True, text=True, timeout=60, env=SUBPROCESS_ENV)
    assert run("promote", "a").returncode == 0
    out = run("promote", "b", "--reason", "newer", "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["previous_model_id"] == "a"
    listed = json.loads(run("models", "--json").stdout)
    assert {m["model_id"]: m["is_champion"] for m in listed} == {"a": False, "b": True}
    out = run("rollback")
    assert out.returncode == 0 and "champion: a" in out.stdout
    history = json.loads(run("models", "--history", "--json").stdout)
    assert [h["action"] for h in history] == ["rollback", "promote", "promote"]
    bad = run("promote", "nope")
    assert bad.returncode == 2 and bad.stderr.strip() == "error: no model 'nope'; see `tastebud models`"
