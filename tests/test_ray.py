"""Scoring on Ray: same results as local scoring, a killed worker retried, idempotent ingest, clear errors.

Runs on a local Ray instance with 2 CPUs (the `ray` extra); skipped where Ray is not installed.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from pipeline.loop.scoring import score  # noqa: E402
from pipeline.scale.ray_score import check_address, ingest_prediction_dir, score_on_ray  # noqa: E402
from store import models as model_store  # noqa: E402
from store.actors import cli_actor  # noqa: E402
from store.db import connect, transaction  # noqa: E402
from store.errors import TastebudError  # noqa: E402
from store.exchange import export_pending_reviews  # noqa: E402
from store.predictions import count_predictions, fetch_predictions  # noqa: E402
from tests.conftest import REPO_ROOT, cli_cmd, seed_reviews, sigkill_process_named  # noqa: E402
from tests.test_scoring import _reviews  # noqa: E402
from tests.tiny_model import save_tiny_classifier  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    return save_tiny_classifier(tmp_path_factory.mktemp("tiny") / "model")


def _store_with_champion(db, model_dir, n: int) -> None:
    seed_reviews(db, _reviews(n))
    with transaction(db) as con:
        model_store.register_model(con, model_id="tiny", kind="finetuned", name="tiny", path=str(model_dir),
                                   params={"max_length": 32})
        model_store.promote_model(con, cli_actor(), "tiny")


def _duplicates(db) -> int:
    with connect(db, read_only=True) as con:
        return con.execute("SELECT count(*) - count(DISTINCT (model_id, review_id)) FROM predictions").fetchone()[0]


def test_ray_scoring_matches_local_scoring_and_reruns_score_nothing(local_ray, tmp_path, tiny_model_dir):
    from store.schema import init_store

    ray_db, _ = init_store(tmp_path / "ray.duckdb")
    local_db, _ = init_store(tmp_path / "local.duckdb")
    for db in (ray_db, local_db):
        _store_with_champion(db, tiny_model_dir, 400)

    result = score_on_ray(ray_db, work_dir=tmp_path / "work")
    assert result["scored"] == result["pending_at_start"] == 400 and result["replicas"] == 2
    assert score(local_db)["scored"] == 400
    with connect(ray_db, read_only=True) as a, connect(local_db, read_only=True) as b:
        on_ray, local = fetch_predictions(a, "tiny"), fetch_predictions(b, "tiny")
    assert on_ray["review_id"].tolist() == local["review_id"].tolist()
    assert (on_ray["label"] == local["label"]).all()
    cols = ["p_negative", "p_neutral", "p_positive"]
    np.testing.assert_allclose(on_ray[cols].to_numpy(), local[cols].to_numpy(), atol=1e-2)

    assert score_on_ray(ray_db)["scored"] == 0  # nothing left: nothing exported, nothing ingested
    assert _duplicates(ray_db) == 0


def test_a_killed_worker_is_retried_and_the_store_ends_complete(local_ray, store_path, tiny_model_dir, tmp_path):

    _store_with_champion(store_path, tiny_model_dir, 1500)
    killed: list[int] = []

    def kill_first_actor():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not sigkill_process_named("ScoreActor", killed):
            time.sleep(0.05)

    killer = threading.Thread(target=kill_first_actor)
    killer.start()
    result = score_on_ray(store_path, work_dir=tmp_path / "work")
    killer.join()
    assert killed, "no Ray scoring actor was seen to kill"
    assert result["scored"] == 1500
    with connect(store_path, read_only=True) as con:
        assert count_predictions(con, "tiny") == 1500
    assert _duplicates(store_path) == 0


def _prediction_shards(store_path, tiny_model_dir, tmp_path, rows: int, per_file: int):
    """A store with ``rows`` reviews and a champion, and prediction shards for all of them as a cluster returns them."""
    import pandas as pd

    _store_with_champion(store_path, tiny_model_dir, rows)
    with connect(store_path, read_only=True) as con:
        exported = export_pending_reviews(con, "tiny", tmp_path / "in", rows_per_file=per_file)
    assert exported["rows"] == rows and len(exported["files"]) == -(-rows // per_file)
    out = tmp_path / "out"
    out.mkdir()
    for i, path in enumerate(exported["files"]):
        ids = pd.read_parquet(path)["review_id"]
        pd.DataFrame({"review_id": ids, "p_negative": 0.2, "p_neutral": 0.3, "p_positive": 0.5}).to_parquet(
            out / f"p{i}.parquet")
    return out


def test_ingesting_the_same_prediction_shards_twice_adds_nothing(store_path, tiny_model_dir, tmp_path):
    out = _prediction_shards(store_path, tiny_model_dir, tmp_path, 50, 20)
    assert ingest_prediction_dir(store_path, "tiny", out) == 50
    assert ingest_prediction_dir(store_path, "tiny", out) == 50  # rewritten in place, not added
    with connect(store_path, read_only=True) as con:
        assert count_predictions(con, "tiny") == 50
        assert export_pending_reviews(con, "tiny", tmp_path / "again")["rows"] == 0
    assert _duplicates(store_path) == 0


def test_ingest_keeps_one_connection_until_another_writer_waits(store_path, tmp_path, tiny_model_dir, monkeypatch):
    import pipeline.scale.ray_score as ray_score
    from store.db import waiting_marker

    out = _prediction_shards(store_path, tiny_model_dir, tmp_path, 30, 10)
    opened = []
    real_connect = ray_score.connect
    monkeypatch.setattr(ray_score, "connect", lambda *a, **k: (opened.append(1), real_connect(*a, **k))[1])
    assert ingest_prediction_dir(store_path, "tiny", out) == 30
    assert len(opened) == 1  # nobody waiting: the three shards share one connection
    opened.clear()
    waiting_marker(store_path).touch()  # another process says it waits for the store
    assert ingest_prediction_dir(store_path, "tiny", out) == 30
    assert len(opened) == 3  # the store is given up after every shard
    assert _duplicates(store_path) == 0


def test_an_address_that_does_not_answer_is_one_line_and_exit_code_2(store_path, tiny_model_dir):
    _store_with_champion(store_path, tiny_model_dir, 5)
    with pytest.raises(TastebudError, match="does not answer"):
        check_address("127.0.0.1:1", timeout=2)
    with pytest.raises(TastebudError, match="expected HOST:PORT"):
        check_address("nonsense")
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), HF_HUB_OFFLINE="1")
    done = subprocess.run(cli_cmd("--db", str(store_path), "score", "--ray", "127.0.0.1:1"), env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["error: the Ray cluster at 127.0.0.1:1 does not answer (Connection refused)"]
    mixed = subprocess.run(cli_cmd("--db", str(store_path), "score", "--ray", "--shard", "0/2", "--json"), env=env,
                           capture_output=True, text=True, timeout=120)
    assert mixed.returncode == 2 and "--ray and --shard do not mix" in mixed.stderr


def test_bare_ray_flag_means_a_local_instance():
    from pipeline.cli.app import normalize_argv

    assert normalize_argv(["score", "--ray"]) == ["score", "--ray", "local"]
    assert normalize_argv(["score", "--ray", "--json"]) == ["score", "--ray", "local", "--json"]
    assert normalize_argv(["score", "--ray", "head:6379"]) == ["score", "--ray", "head:6379"]
