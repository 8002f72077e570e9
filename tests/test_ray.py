"""Scoring on Ray: same results as local scoring, a killed worker retried, idempotent ingest, clear errors.

Runs on a local Ray instance with 2 CPUs (the `ray` extra); skipped where Ray is not installed.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time

import numpy as np
import pandas as pd
import pytest

ray = pytest.importorskip("ray")

from pipeline.jobs import JobCancelled, JobReporter  # noqa: E402
from pipeline.loop.scoring import score  # noqa: E402
from pipeline.scale.ray_score import RAY_BATCH_ROWS, check_address, ingest_rows, ingest_stream, score_on_ray  # noqa: E402
from store import models as model_store  # noqa: E402
from store.actors import cli_actor  # noqa: E402
from store.db import connect, transaction  # noqa: E402
from store.errors import TastebudError  # noqa: E402
from store.exchange import EXPORT_ROWS_PER_FILE, export_pending_reviews  # noqa: E402
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

    shared = tmp_path / "shared"  # a local directory standing in for shared storage (NFS)
    lines: list[str] = []
    result = score_on_ray(ray_db, storage=str(shared), reporter=JobReporter(ray_db, None, echo=lines.append))
    # No address: a local instance, which says plainly that local scoring is faster on this machine, and why.
    assert any("note: --ray without an address runs a local Ray instance on this machine's 2 CPUs. Local scoring "
               "(without --ray) is faster here" in line for line in lines), lines
    assert result["scored"] == result["pending_at_start"] == 400 and result["replicas"] == 2
    assert list(shared.iterdir()) == []  # the run's shards are removed from the storage afterwards
    assert score(local_db)["scored"] == 400
    with connect(ray_db, read_only=True) as a, connect(local_db, read_only=True) as b:
        on_ray, local = fetch_predictions(a, "tiny"), fetch_predictions(b, "tiny")
    assert on_ray["review_id"].tolist() == local["review_id"].tolist()
    assert (on_ray["label"] == local["label"]).all()
    cols = ["p_negative", "p_neutral", "p_positive"]
    np.testing.assert_allclose(on_ray[cols].to_numpy(), local[cols].to_numpy(), atol=1e-2)

    assert score_on_ray(ray_db)["scored"] == 0  # nothing left: nothing exported, nothing ingested
    assert _duplicates(ray_db) == 0


def test_aspect_scoring_on_ray_matches_local_aspect_scoring(local_ray, tmp_path, tiny_model_dir):
    """`score --ray` covers the aspect champion too: the same rows as local aspect scoring (every review read
    whole, one row per aspect), stored batch by batch, and a rerun scores nothing."""
    from pipeline.aspects.fit import load_aspect_model
    from pipeline.aspects.scoring import score_aspects
    from pipeline.scale.ray_score import run_job
    from store import aspects as aspect_store
    from store.schema import init_store

    aspects = list(aspect_store.DEFAULT_ASPECTS)
    net, tokenizer = load_aspect_model(str(tiny_model_dir), aspects, head="tokens")
    net.save_pretrained(tmp_path / "aspect-model")
    tokenizer.save_pretrained(tmp_path / "aspect-model")
    reviews = _reviews(300)
    reviews["text"] = reviews["text"] + " The waiter was slow. Prices were fair."  # several sentences each
    dbs = [init_store(tmp_path / f"{name}.duckdb")[0] for name in ("ray", "local")]
    for db in dbs:
        seed_reviews(db, reviews)
        with transaction(db) as con:
            model_store.register_model(con, model_id="asp", kind="finetuned", name="asp", task="aspects",
                                       path=str(tmp_path / "aspect-model"), params={"aspects": aspects, "max_length": 32})
            model_store.promote_model(con, cli_actor(), "asp")
    ray_db, local_db = dbs
    reporter = JobReporter(ray_db, None, echo=lambda line: None)
    result = run_job(ray_db, {"task": "aspects", "address": "local"}, reporter)
    assert result["model_id"] == "asp" and result["scored"] == result["pending_at_start"] == 300
    assert result["aspects"] == aspects
    assert score_aspects(local_db)["scored"] == 300
    with connect(ray_db, read_only=True) as a, connect(local_db, read_only=True) as b:
        on_ray, local = aspect_store.fetch_aspect_predictions(a, "asp"), aspect_store.fetch_aspect_predictions(b, "asp")
        assert count_predictions(a, "asp") == 0  # nothing in the review predictions table
    key = ["review_id", "aspect"]
    on_ray, local = on_ray.sort_values(key).reset_index(drop=True), local.sort_values(key).reset_index(drop=True)
    assert len(on_ray) == 300 * len(aspects) and on_ray[key].equals(local[key])
    cols = ["p_present", "p_negative", "p_neutral", "p_positive"]
    np.testing.assert_allclose(on_ray[cols].to_numpy(), local[cols].to_numpy(), atol=1e-2)
    assert (on_ray["evidence"] == local["evidence"]).mean() > 0.95  # the same sentence carries each aspect
    assert score_on_ray(ray_db, task="aspects")["scored"] == 0
    with pytest.raises(TastebudError, match="task must be sentiment or aspects"):
        score_on_ray(ray_db, task="topics")


def test_a_killed_worker_is_retried_and_the_store_ends_complete(local_ray, store_path, tiny_model_dir):

    _store_with_champion(store_path, tiny_model_dir, 1500)
    killed: list[int] = []

    def kill_first_actor():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not sigkill_process_named("ScoreActor", killed):
            time.sleep(0.05)

    killer = threading.Thread(target=kill_first_actor)
    killer.start()
    result = score_on_ray(store_path)
    killer.join()
    assert killed, "no Ray scoring actor was seen to kill"
    assert result["scored"] == 1500
    with connect(store_path, read_only=True) as con:
        assert count_predictions(con, "tiny") == 1500
    assert _duplicates(store_path) == 0


def _prediction_batches(store_path, tiny_model_dir, rows: int, per_batch: int) -> list:
    """A store with ``rows`` reviews and a champion, and prediction batches for all of them as the cluster streams them."""
    import pyarrow as pa

    _store_with_champion(store_path, tiny_model_dir, rows)
    ids = [f"rev{i:05d}" for i in range(rows)]
    return [pa.table({"review_id": ids[i:i + per_batch], "p_negative": [0.2] * len(ids[i:i + per_batch]),
                      "p_neutral": [0.3] * len(ids[i:i + per_batch]), "p_positive": [0.5] * len(ids[i:i + per_batch])})
            for i in range(0, rows, per_batch)]


def test_storing_the_same_prediction_batches_twice_adds_nothing(store_path, tiny_model_dir, tmp_path):
    batches = _prediction_batches(store_path, tiny_model_dir, 50, 20)
    reporter = JobReporter(store_path, None, echo=lambda line: None)
    assert ingest_stream(store_path, "tiny", iter(batches), reporter=reporter, pending=50) == 50
    assert ingest_stream(store_path, "tiny", iter(batches), reporter=reporter, pending=50) == 50  # rewritten, not added
    with connect(store_path, read_only=True) as con:
        assert count_predictions(con, "tiny") == 50
        assert export_pending_reviews(con, "tiny", tmp_path / "again")["rows"] == 0
    assert _duplicates(store_path) == 0


class _CancelAfter(JobReporter):
    """A reporter whose job is cancelled once ``n`` progress reports were made."""

    def __init__(self, db, n: int):
        super().__init__(db, None, echo=lambda line: None)
        self.n, self.reports = n, []

    def progress(self, fraction, message=None, *, force=False):
        self.reports.append(fraction)
        if len(self.reports) >= self.n:
            raise JobCancelled("cancelled by the test")


def test_a_cancel_between_batches_keeps_what_was_stored_and_closes_the_stream(store_path, tiny_model_dir):
    batches = _prediction_batches(store_path, tiny_model_dir, 60, 20)
    closed = []

    def stream():
        try:
            yield from batches
        finally:
            closed.append(True)  # what stops Ray Data's execution and releases its actors

    reporter = _CancelAfter(store_path, 2)
    with pytest.raises(JobCancelled):
        ingest_stream(store_path, "tiny", stream(), reporter=reporter, pending=60)
    assert closed == [True]
    assert reporter.reports == [pytest.approx(20 / 60), pytest.approx(40 / 60)]
    with connect(store_path, read_only=True) as con:
        assert count_predictions(con, "tiny") == 40  # two whole batches, nothing of the third
    assert _duplicates(store_path) == 0


def test_ingest_batches_grow_with_the_run_up_to_one_exported_shard():
    assert ingest_rows(1_000) == RAY_BATCH_ROWS
    assert ingest_rows(400_000) == 20_000
    assert ingest_rows(10_000_000) == EXPORT_ROWS_PER_FILE


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
    alone = subprocess.run(cli_cmd("--db", str(store_path), "score", "--storage", "/mnt/shared"), env=env,
                           capture_output=True, text=True, timeout=120)
    assert alone.returncode == 2 and alone.stderr.strip().splitlines() == ["error: --storage needs --ray [ADDRESS]"]


def test_bare_ray_flag_means_a_local_instance():
    from pipeline.cli.app import normalize_argv

    assert normalize_argv(["score", "--ray"]) == ["score", "--ray", "local"]
    assert normalize_argv(["score", "--ray", "--json"]) == ["score", "--ray", "local", "--json"]
    assert normalize_argv(["score", "--ray", "head:6379"]) == ["score", "--ray", "head:6379"]


def test_a_shipped_ensemble_scores_where_this_machines_model_folders_are_not(tmp_path, monkeypatch):
    """A worker on another node sees none of the driver's folders: the ensemble (the default review champion)
    ships its own folder and each member's, a member inside the ensemble's folder once, and the worker keeps
    no copy on its disk once the model is loaded."""
    import shutil
    import tempfile

    from pipeline.models.predictors import predictor_from_row
    from pipeline.scale.ray_score import SHIPPED, ScoreActor, ship_model

    here = tmp_path / "driver"
    ensemble_dir = here / "ens"
    members = [save_tiny_classifier(here / "ft", seed=1), save_tiny_classifier(ensemble_dir / "inner", seed=2)]
    member_rows = [{"model_id": f"m{i}", "weight": w, "row": {"model_id": f"m{i}", "kind": "finetuned", "path": str(path),
                                                              "params": {"max_length": 32}, "status": "ready"}}
                   for i, (path, w) in enumerate(zip(members, (0.7, 0.3)))]
    row = {"model_id": "ens", "kind": "ensemble", "path": str(ensemble_dir),
           "params": {"predictor": "ensemble", "members": member_rows, "calibration": {"temperature": 1.0}}}
    texts = ["Great tacos, slow service.", "Cold fries.", "Fine."]
    expected = predictor_from_row(row).predict_proba(texts)

    shipped, files = ship_model(row)
    assert sorted(files) == ["0", "1"]  # the ensemble's folder (with the inner member) and the other member's
    paths = [shipped["path"]] + [m["row"]["path"] for m in shipped["params"]["members"]]
    assert all(p.startswith(SHIPPED) for p in paths) and str(tmp_path) not in str(shipped)
    shutil.rmtree(here)  # the worker's node has none of it
    node_tmp = tmp_path / "node-tmp"
    node_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(node_tmp))
    actor = ScoreActor(shipped, files)
    out = actor(pd.DataFrame({"review_id": ["a", "b", "c"], "text": texts}))
    np.testing.assert_allclose(out[["p_negative", "p_neutral", "p_positive"]].to_numpy(), expected, atol=1e-5)
    assert list(node_tmp.iterdir()) == []  # loaded, then the copy was removed
