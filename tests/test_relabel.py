"""Relabeling: history, human labels winning, flags resolved, dismiss, undo, roles, audit."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from pipeline.loop import relabel as rl
from store.actors import Actor, fetch_audit_log
from store.db import connect, transaction
from store.errors import PermissionDeniedError, TastebudError
from store.flags import count_open_flags_by_reason, fetch_flag_queue, insert_flags
from store.labels import current_label, fetch_label_history
from store.relabeling import relabel_progress
from tests.conftest import seed_reviews
from store.labels import append_labels
from tests.conftest import REPO_ROOT, cli_cmd

ANA = Actor("ana", "labeler")
BO = Actor("bo", "labeler")
VIEWER = Actor("vic", "viewer")


@pytest.fixture
def db(store_path):
    frame = pd.DataFrame(
        {
            "review_id": [f"r{i}" for i in range(6)],
            "text": ["Great tacos", "Cold fries", "It was fine", "Loved it", "Never again", "Okay I guess"],
            "stars": [5, 1, 3, 5, 1, 3],
        }
    )
    frame["label"] = frame["stars"].map({1: "negative", 3: "neutral", 5: "positive"})
    seed_reviews(store_path, frame)
    with transaction(store_path) as con:
        insert_flags(
            con,
            pd.DataFrame(
                {
                    "review_id": ["r0", "r0", "r1", "r2"],
                    "reason": ["low_confidence", "rating_contradicts_text", "low_confidence", "label_issue"],
                    "priority": [0.9, 0.8, 0.5, 0.7],
                }
            ),
        )
    return store_path


def _label(db, review_id):
    with connect(db, read_only=True) as con:
        return current_label(con, review_id)


def _open_flags(db, review_id=None):
    with connect(db, read_only=True) as con:
        queue = fetch_flag_queue(con, limit=100)
    return queue if review_id is None else queue[queue.review_id == review_id]


def test_relabel_appends_history_wins_over_stars_and_resolves_flags(db):
    result = rl.relabel(db, ANA, "r0", "negative")
    assert result["previous_label"] == "positive" and result["previous_source"] == "stars"
    assert len(result["resolved_flags"]) == 2
    assert _label(db, "r0")["label"] == "negative" and _label(db, "r0")["source"] == "human"
    assert _open_flags(db, "r0").empty
    with connect(db, read_only=True) as con:
        history = fetch_label_history(con, "r0")
        audit = fetch_audit_log(con, action="relabel")
    assert history["source"].tolist() == ["stars", "human"]
    assert history["labeler"].tolist()[-1] == "ana"
    assert audit.iloc[0]["actor"] == "ana" and audit.iloc[0]["target"] == "r0"
    assert json.loads(audit.iloc[0]["detail"])["label"] == "negative"


def test_human_label_wins_even_over_a_newer_star_label(db):
    rl.relabel(db, ANA, "r1", "neutral")

    with transaction(db) as con:  # a re-import later says "positive" from stars
        append_labels(con, pd.DataFrame({"review_id": ["r1"], "label": ["positive"], "source": ["stars"]}))
    assert _label(db, "r1")["label"] == "neutral"


def test_undo_relabel_keeps_history_restores_label_and_reopens_flags(db):
    rl.relabel(db, ANA, "r0", "neutral")
    rl.relabel(db, ANA, "r0", "negative")
    assert _label(db, "r0")["label"] == "negative"

    first = rl.undo_last(db, ANA)
    assert first["kind"] == "relabel" and first["retracted_labels"] == 1 and first["reopened_flags"] == 0
    assert _label(db, "r0")["label"] == "neutral"  # back to ana's first human label
    assert _open_flags(db, "r0").empty

    second = rl.undo_last(db, ANA)
    assert second["retracted_labels"] == 1 and second["reopened_flags"] == 2
    assert _label(db, "r0") == {**_label(db, "r0"), "label": "positive", "source": "stars"}
    assert len(_open_flags(db, "r0")) == 2
    assert rl.undo_last(db, ANA) is None

    with connect(db, read_only=True) as con:
        history = fetch_label_history(con, "r0")
        undo_audit = fetch_audit_log(con, action="relabel.undo")
    assert history["source"].tolist() == ["stars", "human", "human"]  # nothing deleted
    assert history["retracted_by"].tolist()[1:] == ["ana", "ana"]
    assert len(undo_audit) == 2


def test_undo_is_per_actor_and_does_not_reopen_flags_someone_else_settled(db):
    rl.relabel(db, ANA, "r1", "neutral")
    rl.relabel(db, BO, "r1", "negative")
    rl.relabel(db, BO, "r2", "positive")

    undone = rl.undo_last(db, ANA)  # ana's r1 relabel, not bo's newer actions
    assert undone["review_ids"] == ["r1"]
    assert _label(db, "r1")["label"] == "negative" and _label(db, "r1")["labeler"] == "bo"
    assert _open_flags(db, "r1").empty  # bo's human label still settles it
    assert _label(db, "r2")["labeler"] == "bo"


def test_dismiss_and_undo_dismiss(db):
    flag_id = int(_open_flags(db, "r2").flag_id.iloc[0])
    rl.dismiss_flag(db, ANA, flag_id)
    assert _open_flags(db, "r2").empty
    assert _label(db, "r2")["source"] == "stars"  # dismissing does not touch labels
    with pytest.raises(TastebudError, match=f"flag {flag_id} is already dismissed"):
        rl.dismiss_flag(db, ANA, flag_id)
    assert rl.undo_last(db, ANA)["kind"] == "dismiss"
    assert int(_open_flags(db, "r2").flag_id.iloc[0]) == flag_id


def test_bulk_relabel_is_one_undoable_action(db):
    result = rl.bulk_relabel(db, ANA, ["r3", "r4", "r5", "r4"], "neutral")
    assert result["relabeled"] == 3
    assert {_label(db, r)["label"] for r in ("r3", "r4", "r5")} == {"neutral"}
    undone = rl.undo_last(db, ANA)
    assert undone["retracted_labels"] == 3 and undone["review_ids"] == ["r3", "r4", "r5"]
    assert [_label(db, r)["label"] for r in ("r3", "r4", "r5")] == ["positive", "negative", "neutral"]
    assert all(_label(db, r)["source"] == "stars" for r in ("r3", "r4", "r5"))


def test_bad_input_and_roles_are_refused_without_writing(db):
    with pytest.raises(TastebudError, match="unknown label 'great'"):
        rl.relabel(db, ANA, "r0", "great")
    with pytest.raises(TastebudError, match="no such review: nope"):
        rl.relabel(db, ANA, "nope", "neutral")
    with pytest.raises(TastebudError, match="no such review: nope"):
        rl.bulk_relabel(db, ANA, ["r1", "nope"], "neutral")
    with pytest.raises(PermissionDeniedError, match="vic \\(viewer\\) may not relabel"):
        rl.relabel(db, VIEWER, "r0", "neutral")
    with pytest.raises(PermissionDeniedError):
        rl.dismiss_flag(db, VIEWER, 1)
    with pytest.raises(TastebudError, match="no flag 999"):
        rl.dismiss_flag(db, ANA, 999)
    with pytest.raises(TastebudError, match="is not a flag of review r3"):
        rl.relabel(db, ANA, "r3", "neutral", flag_id=int(_open_flags(db, "r0").flag_id.iloc[0]))
    assert _label(db, "r1")["source"] == "stars"  # the failed bulk relabel wrote nothing
    with connect(db, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM labels WHERE source = 'human'").fetchone()[0] == 0
        assert con.execute("SELECT count(*) FROM relabel_actions").fetchone()[0] == 0


def test_progress_counts(db):
    rl.relabel(db, ANA, "r0", "neutral")
    rl.dismiss_flag(db, BO, int(_open_flags(db, "r2").flag_id.iloc[0]))
    with connect(db, read_only=True) as con:
        progress = relabel_progress(con)
        by_reason = count_open_flags_by_reason(con)
    assert progress["open"] == 1 and progress["resolved"] == 2 and progress["dismissed"] == 1
    assert progress["human_labels"] == 1 and progress["next_round"] == 1 and progress["next_round_labels"] == 1
    assert progress["by_labeler"] == {"ana": 1}
    assert by_reason["low_confidence"] == 1 and by_reason["label_issue"] == 0


@pytest.mark.slow
def test_cli_relabel_dismiss_undo_and_flags(db):
    import os
    import subprocess

    def run(*args):
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
        return subprocess.run(cli_cmd("--db", str(db), *args), env=env, capture_output=True, text=True, timeout=120)

    listed = json.loads(run("flags", "--json", "--reason", "low_confidence").stdout)
    assert [f["review_id"] for f in listed] == ["r0", "r1"]
    out = run("relabel", "r0", "--label", "negative", "--as", "ana")
    assert out.returncode == 0 and out.stdout.strip() == "r0: positive (stars) -> negative; 2 flag(s) resolved"
    bulk = json.loads(run("relabel", "r3", "r4", "--label", "neutral", "--as", "ana", "--json").stdout)
    assert bulk["relabeled"] == 2
    assert run("dismiss", str(listed[1]["flag_id"]), "--as", "bo").returncode == 0
    undo = json.loads(run("undo", "--as", "ana", "--json").stdout)
    assert undo["review_ids"] == ["r3", "r4"]
    assert _label(db, "r3")["source"] == "stars" and _label(db, "r0")["label"] == "negative"
    bad = run("relabel", "r0", "--label", "meh")
    assert bad.returncode == 2 and bad.stderr.strip() == "error: unknown label 'meh'; expected one of negative, neutral, positive"
    assert run("undo", "--as", "zed").stdout.strip() == "nothing to undo"
    assert run("flags", "--status", "all").stdout.count("#") == 4
