"""Champion and challengers: promote, rollback, history, role checks, the CLI, and the schema they rely on."""

from __future__ import annotations

import json
import subprocess

import pytest

from conftest import cli_cmd
from pipeline.loop.registry import promote, promote_if_better, rollback
from store import models as model_store
from store.actors import Actor, cli_actor, fetch_audit_log
from store.db import connect, transaction
from store.errors import PermissionDeniedError, TastebudError
from store.evaluations import insert_evaluation
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


def test_promote_if_better_compares_stored_test_metrics(store_path):
    _register(store_path, "old", "worse", "better")
    with transaction(store_path) as con:
        for model_id, f1 in (("old", 0.70), ("worse", 0.65), ("better", 0.75)):
            insert_evaluation(con, model_id, "test", {"n": 100, "macro_f1": f1, "accuracy": f1})
    assert promote_if_better(store_path, "old", cli_actor())["promoted"]  # no champion yet
    outcome = promote_if_better(store_path, "worse", cli_actor())
    assert not outcome["promoted"] and "does not beat" in outcome["message"]
    assert promote_if_better(store_path, "better", cli_actor())["promoted"]
    assert _champion(store_path) == "better"


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
