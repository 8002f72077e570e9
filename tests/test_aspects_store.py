"""The aspect tables: the configurable set, append-only labels, predictions, per-task champions, migration."""

from __future__ import annotations

import duckdb
import pandas as pd
import pytest

from store import aspects as aspect_store
from store import models as model_store
from store.actors import Actor
from store.db import connect, transaction
from store.errors import PermissionDeniedError, TastebudError
from store.migrations import latest_version, migrate
from store.schema import init_store
from tests.conftest import seed_reviews

ADMIN = Actor("ana", "admin")
LABELER = Actor("lee", "labeler")
VIEWER = Actor("vic", "viewer")


def _reviews(db, n=6):
    seed_reviews(db, pd.DataFrame({
        "review_id": [f"r{i}" for i in range(n)],
        "text": [f"The food was great. The service was slow {i}." for i in range(n)],
        "stars": [4] * n,
    }))


def test_default_aspects_and_adding_one(store_path):
    with transaction(store_path) as con:
        assert aspect_store.aspect_names(con) == list(aspect_store.DEFAULT_ASPECTS)
        assert aspect_store.add_aspect(con, ADMIN, "  Wait ", description="the wait for a table") == "wait"
        assert aspect_store.aspect_names(con)[-1] == "wait"
        with pytest.raises(TastebudError, match="exists already"):
            aspect_store.add_aspect(con, ADMIN, "WAIT")
        with pytest.raises(TastebudError, match="not allowed"):
            aspect_store.add_aspect(con, ADMIN, "<script>")
        with pytest.raises(PermissionDeniedError):
            aspect_store.add_aspect(con, LABELER, "crowds")
        with pytest.raises(TastebudError, match="built-in"):
            aspect_store.remove_aspect(con, ADMIN, "food")
        assert aspect_store.check_aspects(con, ["Food", "parking", "wait"]) == ["parking"]


def test_labels_are_append_only_and_human_wins(store_path):
    _reviews(store_path)
    batch = pd.DataFrame({
        "review_id": ["r0", "r0", "r1"], "aspect": ["food", "service", "food"],
        "polarity": ["positive", "negative", "conflict"], "source": ["import"] * 3,
    })
    with transaction(store_path) as con:
        assert aspect_store.append_aspect_labels(con, batch) == 3
        assert aspect_store.append_aspect_labels(con, batch) == 0  # a re-import adds no history
        assert len(aspect_store.set_review_aspects(con, LABELER, "r0", {"service": "neutral", "price": "negative"})) == 2
        assert aspect_store.set_review_aspects(con, LABELER, "r0", {"service": "neutral"}) == []
        current = aspect_store.current_review_aspects(con, "r0")
        assert current == {"food": ("positive", "import"), "service": ("neutral", "human"),
                           "price": ("negative", "human")}
        assert len(aspect_store.fetch_aspect_label_history(con, "r0")) == 4
        with pytest.raises(TastebudError, match="unknown aspects"):
            aspect_store.set_review_aspects(con, LABELER, "r0", {"parking": "negative"})
        with pytest.raises(TastebudError, match="no review"):
            aspect_store.set_review_aspects(con, LABELER, "nope", {"food": "negative"})
        with pytest.raises(PermissionDeniedError):
            aspect_store.set_review_aspects(con, VIEWER, "r0", {"food": "negative"})
        with pytest.raises(ValueError, match="unknown aspects"):
            aspect_store.append_aspect_labels(con, batch.assign(aspect="parking"))
        with pytest.raises(ValueError, match="polarities"):
            aspect_store.append_aspect_labels(con, batch.assign(polarity="great"))
        wide = aspect_store.fetch_aspect_split(con, None)
    assert list(wide.columns) == ["review_id", "text", *aspect_store.DEFAULT_ASPECTS]
    r0 = wide.set_index("review_id").loc["r0"]
    assert (r0["food"], r0["service"], r0["price"], r0["ambience"]) == ("positive", "neutral", "negative", "absent")
    assert set(wide["review_id"]) == {"r0", "r1"}  # only annotated reviews


def test_predictions_are_idempotent_and_resumable(store_path):
    _reviews(store_path, 4)
    with transaction(store_path) as con:
        assert aspect_store.count_aspect_pending(con, "am1") == 4
        first = aspect_store.fetch_aspect_pending_chunk(con, "am1", limit=2)
        ids = first.column("review_id").to_pylist()
        rows = pd.DataFrame([
            {"review_id": rid, "aspect": a, "p_present": p, "p_negative": 0.7, "p_neutral": 0.2, "p_positive": 0.1,
             "evidence_start": 0, "evidence_end": 19}
            for rid in ids for a, p in (("food", 0.9), ("service", 0.2))
        ])
        assert aspect_store.write_aspect_predictions(con, "am1", rows) == 4
        assert aspect_store.write_aspect_predictions(con, "am1", rows) == 4  # replaces, no duplicates
        assert aspect_store.count_aspect_pending(con, "am1") == 2
        assert aspect_store.count_aspect_predictions(con, "am1") == 2
        rest = aspect_store.fetch_aspect_pending_chunk(con, "am1", limit=10, after=ids[-1])
        assert set(rest.column("review_id").to_pylist()).isdisjoint(ids)
        stored = aspect_store.fetch_aspect_predictions(con, "am1", [ids[0]]).set_index("aspect")
    assert stored.loc["food", "polarity"] == "negative"
    assert stored.loc["service", "polarity"] == "absent"
    assert stored.loc["food", "evidence"] == "The food was great."
    with pytest.raises(ValueError, match="repeats"):
        with transaction(store_path) as con:
            aspect_store.write_aspect_predictions(con, "am1", pd.concat([rows, rows]))


def test_each_task_has_its_own_champion(store_path):
    with transaction(store_path) as con:
        model_store.register_model(con, model_id="s1", kind="finetuned", name="s1")
        model_store.register_model(con, model_id="a1", kind="finetuned", name="a1", task="aspects")
        model_store.register_model(con, model_id="a2", kind="finetuned", name="a2", task="aspects")
        model_store.promote_model(con, ADMIN, "s1")
        model_store.promote_model(con, ADMIN, "a1")
        model_store.promote_model(con, ADMIN, "a2")
        assert model_store.get_champion(con)["model_id"] == "s1"
        assert model_store.get_champion(con, "aspects")["model_id"] == "a2"
        assert list(model_store.list_models(con)["model_id"]) == ["s1"]
        assert set(model_store.list_models(con, task="aspects")["model_id"]) == {"a1", "a2"}
        both = model_store.list_models(con, task=None).set_index("model_id")["is_champion"].to_dict()
        assert both == {"s1": True, "a1": False, "a2": True}
        model_store.rollback_champion(con, ADMIN, task="aspects")
        assert model_store.get_champion(con, "aspects")["model_id"] == "a1"
        assert model_store.get_champion(con)["model_id"] == "s1"
        with pytest.raises(TastebudError, match="no previous champion"):
            model_store.rollback_champion(con, ADMIN)
        with pytest.raises(ValueError, match="task"):
            model_store.register_model(con, model_id="x", kind="finetuned", name="x", task="topics")


def test_migration_upgrades_an_older_store(tmp_path):
    db = tmp_path / "old.duckdb"
    con = duckdb.connect(str(db))
    migrate(con, target=123)
    con.execute(
        "INSERT INTO models (model_id, kind, name, status, created_at) VALUES ('old', 'finetuned', 'old', 'ready', now())"
    )
    con.execute("INSERT INTO promotions (model_id, action, actor, created_at) VALUES ('old', 'promote', 'x', now())")
    con.close()
    init_store(db)  # what `tastebud init`, import and the dashboard's start do
    with connect(db) as con:
        assert con.execute("SELECT max(version) FROM schema_migrations").fetchone()[0] == latest_version()
        assert model_store.get_model(con, "old")["task"] == "sentiment"
        assert model_store.get_champion(con)["model_id"] == "old"
        assert model_store.get_champion(con, "aspects") is None
        assert aspect_store.aspect_names(con) == list(aspect_store.DEFAULT_ASPECTS)


def test_migration_131_keeps_relabel_actions_and_makes_aspect_corrections_undoable(tmp_path):
    from pipeline.loop import relabel as rl

    db = tmp_path / "old.duckdb"
    con = duckdb.connect(str(db))
    migrate(con, target=130)
    con.execute("INSERT INTO reviews (review_id, text, source, content_hash, ingested_at) "
                "VALUES ('r1', 'Slow service.', 'x', 'h', now())")
    con.execute("INSERT INTO relabel_actions (actor, kind, created_at) VALUES ('ana', 'relabel', now()), "
                "('ana', 'dismiss', now())")
    con.execute("INSERT INTO aspect_labels (review_id, aspect, polarity, source, created_at) "
                "VALUES ('r1', 'service', 'neutral', 'import', now())")
    con.close()
    init_store(db)
    with connect(db) as con:
        assert con.execute("SELECT action_id, actor, kind FROM relabel_actions ORDER BY 1").fetchall() == [
            (1, "ana", "relabel"), (2, "ana", "dismiss")]
    result = rl.relabel_aspects(db, Actor("ana", "labeler"), "r1", {"service": "negative"})
    assert result["action_id"] == 3  # the ids go on from the same sequence
    assert rl.undo_last(db, Actor("ana", "labeler"))["undid_action_id"] == 3
    with connect(db, read_only=True) as con:
        assert aspect_store.current_review_aspects(con, "r1") == {"service": ("neutral", "import")}
