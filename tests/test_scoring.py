"""Batch scoring: inference order and batching, idempotence, staleness, shards, kill and resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from pipeline.models.inference import predict_proba, token_budget_batches
from pipeline.models.predictors import ClassifierPredictor, load_predictor
from pipeline.loop.scoring import parse_shard, score_with
from store.db import connect, transaction
from store.errors import TastebudError
from store.predictions import count_predictions, fetch_predictions, shard_of
from store.reviews import upsert_reviews
from tests.conftest import REPO_ROOT, cli_cmd, seed_reviews
from tests.tiny_model import save_tiny_classifier
from pipeline.jobs import start_job, wait_for_job
from store import models as model_store
from store.actors import cli_actor

WORDS = "great awful tacos service cold warm slow friendly noodles pricey cozy loud fresh stale".split()


def _reviews(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    texts = [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 40)))) for _ in range(n)]
    return pd.DataFrame({"review_id": [f"rev{i:05d}" for i in range(n)], "text": texts,
                         "stars": rng.integers(1, 6, size=n)})


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    return save_tiny_classifier(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def predictor(tiny_model_dir):
    return ClassifierPredictor("m1", str(tiny_model_dir))


def test_batches_respect_row_and_token_limits():
    lengths = np.array([5, 200, 17, 3, 64, 64, 31, 120, 2, 9])
    seen = []
    for idx in token_budget_batches(lengths, batch_size=4, max_batch_tokens=256):
        padded = -(-int(lengths[idx].max()) // 16) * 16
        assert len(idx) <= 4 and (len(idx) == 1 or len(idx) * padded <= 256)
        assert list(lengths[idx]) == sorted(lengths[idx])
        seen.extend(idx.tolist())
    assert sorted(seen) == list(range(len(lengths)))


def test_predict_proba_keeps_input_order_and_matches_one_by_one(predictor):
    texts = _reviews(40)["text"].tolist()
    batched = predict_proba(predictor.model, predictor.tokenizer, texts, batch_size=8, max_batch_tokens=128)
    single = np.vstack([predict_proba(predictor.model, predictor.tokenizer, [t]) for t in texts])
    assert batched.shape == (40, 3) and batched.dtype == np.float32
    np.testing.assert_allclose(batched.sum(axis=1), 1.0, atol=1e-5)
    # padding must not change a text's prediction (bf16 rounding allows a small difference)
    np.testing.assert_allclose(batched, single, atol=2e-2)
    assert predict_proba(predictor.model, predictor.tokenizer, []).shape == (0, 3)


def test_score_is_idempotent_and_rescores_changed_text(store_path, predictor):
    seed_reviews(store_path, _reviews(150))
    first = score_with(store_path, predictor, "m1", chunk_size=64)
    assert first["scored"] == 150 and first["pending_at_start"] == 150
    assert score_with(store_path, predictor, "m1")["scored"] == 0
    with connect(store_path, read_only=True) as con:
        stored = fetch_predictions(con, "m1")
    assert len(stored) == 150 and stored.review_id.is_unique
    probs = stored[["p_negative", "p_neutral", "p_positive"]].to_numpy()
    assert (stored.label == np.array(["negative", "neutral", "positive"])[probs.argmax(axis=1)]).all()

    changed = _reviews(150).iloc[[3]].assign(text="a completely different text now", source="test")
    with transaction(store_path) as con:
        upsert_reviews(con, changed)
    assert score_with(store_path, predictor, "m1")["scored"] == 1
    assert score_with(store_path, predictor, "m1", rescore_all=True)["scored"] == 150
    assert score_with(store_path, predictor, "m2", chunk_size=1000)["scored"] == 150  # another model: its own rows


def test_shards_cover_every_review_exactly_once(store_path, predictor):
    seed_reviews(store_path, _reviews(300))
    counts = [score_with(store_path, predictor, "m1", shard=(i, 3), chunk_size=50)["scored"] for i in range(3)]
    assert sum(counts) == 300 and all(c > 50 for c in counts)
    with connect(store_path, read_only=True) as con:
        assert count_predictions(con, "m1") == 300
    expected = {i: sum(shard_of(f"rev{k:05d}", 3) == i for k in range(300)) for i in range(3)}
    assert counts == [expected[0], expected[1], expected[2]]
    assert parse_shard("2/3") == (2, 3) and parse_shard(None) is None
    for bad in ("3/3", "x", "1/0", "-1/2"):
        with pytest.raises(TastebudError, match="shard"):
            parse_shard(bad)


def test_bad_predictor_output_writes_nothing(store_path):
    seed_reviews(store_path, _reviews(10))

    class Broken:
        def predict_proba(self, texts):
            return np.full((len(texts), 3), np.nan)

    with pytest.raises(TastebudError, match="non-finite probabilities"):
        score_with(store_path, Broken(), "bad")
    with connect(store_path, read_only=True) as con:
        assert count_predictions(con, "bad") == 0


_SCORER = """
import sys
from pipeline.models.predictors import ClassifierPredictor, load_predictor
from pipeline.loop.scoring import parse_shard, score_with
db, model_dir, shard, chunk = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
print(score_with(db, ClassifierPredictor("m1", model_dir), "m1", shard=parse_shard(shard or None), chunk_size=chunk))
"""


def _spawn(db, model_dir, shard="", chunk=10):
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), HF_HUB_OFFLINE="1")
    return subprocess.Popen([sys.executable, "-c", _SCORER, str(db), str(model_dir), shard, str(chunk)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _count(db) -> int:
    with connect(db, read_only=True) as con:
        return con.execute("SELECT count(*), count(DISTINCT review_id) FROM predictions WHERE model_id = 'm1'").fetchone()


@pytest.mark.slow
def test_killed_scoring_process_resumes_without_duplicates_or_gaps(store_path, tiny_model_dir):
    n = 600
    seed_reviews(store_path, _reviews(n))
    proc = _spawn(store_path, tiny_model_dir, chunk=10)
    deadline = time.monotonic() + 120
    while _count(store_path)[0] < 60:
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "the scorer wrote nothing in time"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial, distinct = _count(store_path)
    assert partial == distinct and 60 <= partial < n and partial % 10 == 0  # whole chunks only

    resumed = _spawn(store_path, tiny_model_dir, chunk=500)
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    assert f"'scored': {n - partial}" in out
    assert _count(store_path) == (n, n)


@pytest.mark.slow
def test_concurrent_shard_processes_split_the_work(store_path, tiny_model_dir):
    seed_reviews(store_path, _reviews(300))
    procs = [_spawn(store_path, tiny_model_dir, shard=f"{i}/2", chunk=25) for i in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e for _, e in outputs]
    scored = [int(out.split("'scored': ")[1].split(",")[0]) for out, _ in outputs]
    assert sum(scored) == 300 and min(scored) > 100
    assert _count(store_path) == (300, 300)


# --- the CLI and the job with a champion from the model registry ------------------------------------


def _run_cli(db, *args):
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), HF_HUB_OFFLINE="1")
    return subprocess.run([*cli_cmd("--db", str(db), *args)], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_cli_and_job_score_with_the_champion(store_path, tiny_model_dir):
    import json

    seed_reviews(store_path, _reviews(120))
    missing = _run_cli(store_path, "score")
    assert missing.returncode == 2 and "there is no champion model yet" in missing.stderr
    with transaction(store_path) as con:
        model_store.register_model(con, model_id="tiny", kind="finetuned", name="tiny", path=str(tiny_model_dir),
                                   params={"max_length": 32})
        model_store.promote_model(con, cli_actor(), "tiny")

    first = _run_cli(store_path, "score", "--json", "--chunk-size", "50")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["scored"] == 120 and json.loads(first.stdout)["model_id"] == "tiny"
    assert json.loads(_run_cli(store_path, "score", "--json").stdout)["scored"] == 0
    bad = _run_cli(store_path, "score", "--shard", "5/2")
    assert bad.returncode == 2 and bad.stderr.strip() == "error: --shard 5/2: need N >= 1 and 0 <= i < N"
    unknown = _run_cli(store_path, "score", "--model", "nope")
    assert unknown.returncode == 2 and "no model 'nope'" in unknown.stderr

    job_id = start_job(store_path, "score", {"model_id": "tiny", "rescore_all": True}, cli_actor())
    job = wait_for_job(store_path, job_id, timeout_s=240)
    assert job["status"] == "succeeded" and job["result"]["scored"] == 120
    with connect(store_path, read_only=True) as con:
        assert count_predictions(con, "tiny") == 120


def test_scoring_cuts_long_texts_the_way_the_model_was_trained(store_path, tiny_model_dir):
    opening = "the tacos were fine and the room was warm " * 10
    texts = [opening + "but the service was awful", opening + "and the dessert was superb"]
    with transaction(store_path) as con:
        for truncation in ("head", "head_tail"):
            model_store.register_model(con, model_id=truncation, kind="finetuned", name=truncation,
                                       path=str(tiny_model_dir), params={"max_length": 32, "truncation": truncation})
    head, head_tail = (load_predictor(store_path, m) for m in ("head", "head_tail"))
    assert head_tail.truncation == "head_tail" and head.max_length == 32
    same_opening = head.predict_proba(texts)
    np.testing.assert_array_equal(same_opening[0], same_opening[1])  # the endings were cut off
    endings_seen = head_tail.predict_proba(texts)
    assert not np.allclose(endings_seen[0], endings_seen[1])


# --- device-aware batching and the overlapped scoring pipeline ----------------------------------------


def test_padding_in_arrays_matches_the_token_lists():
    from pipeline.models.inference import EncodedTexts

    rows = [[101, 7, 8, 102], [101, 102], [101, 5, 6, 7, 8, 9, 102]]
    encoded = EncodedTexts.from_lists(rows, pad_id=0)
    ids, mask = encoded.padded(np.array([2, 0, 1]), pad_multiple=8)
    assert ids.shape == mask.shape == (3, 8)
    for row, i in enumerate([2, 0, 1]):
        assert ids[row, : len(rows[i])].tolist() == rows[i] and not ids[row, len(rows[i]):].any()
        assert mask[row].tolist() == [1] * len(rows[i]) + [0] * (8 - len(rows[i]))


def test_token_budget_batches_put_the_longest_first_and_cover_every_text():
    lengths = np.array([5, 200, 17, 3, 64, 64, 31, 120, 2, 9, 300])
    batches = list(token_budget_batches(lengths, 64, 512, pad_multiple=8))
    firsts = [int(lengths[b].max()) for b in batches]
    assert firsts == sorted(firsts, reverse=True) and batches[0].tolist() == [10]  # 300 alone: over the budget
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(lengths)))
    with pytest.raises(ValueError, match="batch_size"):
        list(token_budget_batches(lengths, 0, 512))


def test_gpu_sized_token_budgets_give_the_same_predictions_in_order(predictor, monkeypatch):
    from dataclasses import replace

    import pipeline.models.inference as inference
    from pipeline.device import device_defaults

    texts = _reviews(90, seed=4)["text"].tolist()
    small = predict_proba(predictor.model, predictor.tokenizer, texts, batch_size=1)
    # GPU-like sizes (big token budget, pad to 8) and texts split into pieces tokenized in a thread
    gpu_like = replace(device_defaults(predictor.device), score_batch_size=2048, score_batch_tokens=65536,
                       pad_multiple=8, tokenize_ahead=16)
    monkeypatch.setattr(inference, "device_defaults", lambda info=None: gpu_like)
    big = predict_proba(predictor.model, predictor.tokenizer, texts)
    assert big.shape == (90, 3)
    np.testing.assert_allclose(big, small, atol=2e-2)
    assert (big.argmax(1) == small.argmax(1)).mean() > 0.95


def test_write_predictions_takes_arrow_tables_and_refuses_duplicates(store_path):
    import pyarrow as pa

    from store.predictions import write_predictions

    seed_reviews(store_path, _reviews(3))
    table = pa.table({"review_id": ["rev00000", "rev00001"], "p_negative": pa.array([0.7, 0.1], pa.float32()),
                      "p_neutral": pa.array([0.2, 0.1], pa.float32()), "p_positive": pa.array([0.1, 0.8], pa.float32())})
    with transaction(store_path) as con:
        assert write_predictions(con, "m1", table) == 2
    with connect(store_path, read_only=True) as con:
        assert fetch_predictions(con, "m1").label.tolist() == ["negative", "positive"]
    doubled = pa.concat_tables([table, table])
    with pytest.raises(ValueError, match="duplicate review ids"), transaction(store_path) as con:
        write_predictions(con, "m1", doubled)


class _FailsOnChunk:
    """predict_proba only (no encode): fails on the n-th call."""

    def __init__(self, fail_on: int | None):
        self.calls, self.fail_on = 0, fail_on

    def predict_proba(self, texts):
        self.calls += 1
        if self.calls == self.fail_on:
            raise RuntimeError("the device fell over")
        return np.tile(np.array([0.2, 0.3, 0.5], dtype=np.float32), (len(texts), 1))


def test_overlapped_scoring_keeps_finished_chunks_when_a_chunk_fails_and_resumes(store_path):
    seed_reviews(store_path, _reviews(100))
    with pytest.raises(RuntimeError, match="fell over"):
        score_with(store_path, _FailsOnChunk(fail_on=4), "m1", chunk_size=10)
    with connect(store_path, read_only=True) as con:
        kept = count_predictions(con, "m1")
    assert kept == 30  # the three chunks computed before the failure, each whole
    resumed = score_with(store_path, _FailsOnChunk(None), "m1", chunk_size=10)
    assert resumed["scored"] == 70 and resumed["pending_at_start"] == 70
    assert _count(store_path) == (100, 100)


def test_overlapped_scoring_reports_the_writers_error(store_path):
    import dataclasses

    import pipeline.loop.scoring as scoring

    seed_reviews(store_path, _reviews(60))

    def broken_write(con, model_id, table):
        raise OSError("disk full")

    sink = dataclasses.replace(scoring.REVIEW_PREDICTIONS, write=broken_write)
    with pytest.raises(OSError, match="disk full"):
        score_with(store_path, _FailsOnChunk(None), "m1", chunk_size=10, sink=sink)
    with connect(store_path, read_only=True) as con:
        assert count_predictions(con, "m1") == 0


def test_classifier_predictor_reads_how_it_was_trained_from_its_metadata(tiny_model_dir, store_path):
    import json

    from pipeline.models.predictors import load_predictor
    from store import models as model_store

    meta_path = tiny_model_dir / "tastebud.json"
    meta = json.loads(meta_path.read_text())
    assert ClassifierPredictor("m", str(tiny_model_dir)).max_length == meta["max_length"] == 64
    with transaction(store_path) as con:  # a registry row without truncation / max_length: tastebud.json decides
        model_store.register_model(con, model_id="bare", kind="finetuned", name="bare", path=str(tiny_model_dir),
                                   params={})
    bare = load_predictor(store_path, "bare")
    assert isinstance(bare, ClassifierPredictor) and bare.max_length == 64 and bare.truncation == "head"
    with pytest.raises(TastebudError, match="missing"):
        ClassifierPredictor("gone", str(tiny_model_dir / "nope"))
