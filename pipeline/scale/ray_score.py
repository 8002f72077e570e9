"""Batch scoring on a Ray cluster (Ray Data), the store staying the single source of truth.

What a run does:
1. The reviews the model still lacks leave the store as Parquet shards (:mod:`store.exchange`),
   chosen exactly as local scoring chooses them.
2. Ray Data reads the shards and runs the model in actor replicas: one per GPU when the cluster has
   GPUs, else one per CPU slot. Each actor builds the model once, through the same predictor factory
   as local scoring (same batching, truncation and precision), from model files shipped through
   Ray's object store, so workers need no access to this machine's disk.
3. The prediction shards come back and are ingested in bulk, one short transaction per shard.

A worker that dies is restarted by Ray and its batch retried; a run that fails as a whole leaves the
store as it was (nothing is ingested before the cluster finishes), and a rerun scores only what is
still missing. Ingesting is idempotent, so nothing is ever duplicated.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from datetime import datetime
from pathlib import Path

import pandas as pd

from pipeline.jobs import JobReporter
from pipeline.loop.scoring import resolve_model_id
from store.db import begin, connect, hand_off, writer_waiting
from store.errors import TastebudError
from store.exchange import export_pending_reviews, ingest_predictions, read_prediction_file
from store.models import get_model

# Seconds to wait for a Ray head that was named by address before calling it unreachable.
CONNECT_TIMEOUT_S = 10
# Reviews per Ray Data batch handed to one actor call (the predictor batches further inside).
RAY_BATCH_ROWS = 2048
# CPU share that Ray Data's file listing, read and write tasks ask for (they only move bytes).
IO_TASK_CPUS = 0.25
# Seconds one connection ingests prediction shards before it lets other writers in (see ingest_prediction_dir).
INGEST_HOLD_S = 1.0


def check_address(address: str, *, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail fast, with one line, when a Ray address does not answer (``ray.init`` can hang for minutes).

    Accepts ``host:port`` (the GCS port of a head node) and ``ray://host:port`` (Ray Client); ``auto``
    and ``local`` are left to Ray.
    """
    if address in ("auto", "local"):
        return
    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise TastebudError(f"--ray {address!r}: expected HOST:PORT or ray://HOST:PORT")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise TastebudError(f"the Ray cluster at {address} does not answer ({exc.strerror or exc})") from None


def connect_ray(address: str | None):
    """Join the cluster at ``address``, or start a local Ray instance sized to this machine."""
    import ray

    if address:
        check_address(address)
    if ray.is_initialized():
        return ray
    kwargs = {"address": address} if address else {"include_dashboard": False}
    try:
        ray.init(logging_level="ERROR", log_to_driver=False, **kwargs)
    except (ConnectionError, RuntimeError, TimeoutError) as exc:
        raise TastebudError(f"could not join the Ray cluster at {address or 'a new local instance'}: {exc}") from None
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # tastebud reports progress itself (job rows, console)
    context.print_on_execution_start = False
    return ray


def _model_files(path: str) -> dict[str, bytes]:
    """The model directory as {relative path: bytes}: shipped once through Ray's object store."""
    root = Path(path)
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


class ScoreActor:
    """One model replica: built once per actor, then called with batches of (review_id, text)."""

    def __init__(self, model_row: dict, files: dict[str, bytes] | None, cpu_threads: int | None = None):
        import torch

        from pipeline.models.predictors import predictor_from_row

        if cpu_threads:
            # A CPU slot each: intra-op threads beyond it only fight the sibling actors.
            torch.set_num_threads(cpu_threads)

        row = dict(model_row)
        if files:
            # Materialise the shipped model next to this worker (a cluster node has no access to ours).
            self._dir = tempfile.mkdtemp(prefix="tastebud-model-")
            for rel, data in files.items():
                target = Path(self._dir) / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            row["path"] = self._dir
        self.predictor = predictor_from_row(row)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        probs = self.predictor.predict_proba(batch["text"].tolist())
        return pd.DataFrame({"review_id": batch["review_id"].to_numpy(), "p_negative": probs[:, 0],
                             "p_neutral": probs[:, 1], "p_positive": probs[:, 2]})


def _replicas(ray) -> tuple[int, dict]:
    """How many actors and what each asks for: one per GPU if there are GPUs, else one per CPU slot."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    if gpus:
        return gpus, {"num_gpus": 1, "num_cpus": 1}
    # One actor per CPU slot, but together they leave one CPU free: Ray Data's file listing, read
    # and write tasks need it, and actors that hold every CPU starve them (the run never starts).
    cpus = max(1, int(resources.get("CPU", 1)))
    return cpus, {"num_cpus": max(cpus - 1, IO_TASK_CPUS) / cpus}


def score_on_ray(
    db,
    *,
    model_id: str | None = None,
    address: str | None = None,
    rescore_all: bool = False,
    reporter: JobReporter | None = None,
    work_dir: str | Path | None = None,
    replicas: int | None = None,
) -> dict:
    """Score what ``model_id`` (default: the champion) still lacks on a Ray cluster and ingest the results.

    Args:
        db: the store.
        model_id: a stored, ready model (default: the champion).
        address: a Ray address (``HOST:PORT``, ``ray://HOST:PORT``, ``auto``); None starts a local instance.
        rescore_all: rescore every review, as ``tastebud score --all``.
        reporter: progress and cancellation.
        work_dir: where the Parquet shards go (default: a temporary directory, removed afterwards).
        replicas: number of model replicas (default: one per GPU, else one per CPU slot).

    Returns:
        {"model_id", "scored", "pending_at_start", "replicas", "seconds", "reviews_per_s", "export_s", "ingest_s"}.

    Example:
        >>> score_on_ray("tastebud.duckdb")["scored"]  # doctest: +SKIP
        120000
    """
    reporter = reporter or JobReporter(db, None)
    resolved = resolve_model_id(db, model_id)
    with connect(db, read_only=True) as con:
        row = get_model(con, resolved)
    started = time.perf_counter()
    since = datetime.now() if rescore_all else None
    ray = connect_ray(address)
    owned = work_dir is None
    root = Path(work_dir or tempfile.mkdtemp(prefix="tastebud-ray-"))
    try:
        in_dir, out_dir = root / "reviews", root / "predictions"
        for d in (in_dir, out_dir):
            shutil.rmtree(d, ignore_errors=True)
        with connect(db, read_only=True) as con:
            exported = export_pending_reviews(con, resolved, in_dir, since=since)
        export_s = time.perf_counter() - started
        pending = exported["rows"]
        reporter.log(f"scoring {pending:,} reviews with {resolved} on Ray")
        reporter.progress(0.0, f"0/{pending:,} reviews scored", force=True)
        count, per_actor = _replicas(ray)
        count = replicas or count
        if pending:
            files = _model_files(row["path"]) if row.get("path") and os.path.isdir(row["path"]) else None
            ds = ray.data.read_parquet(str(in_dir), num_cpus=IO_TASK_CPUS,
                                       override_num_blocks=max(count, len(exported["files"])))
            ds = ds.map_batches(
                ScoreActor, fn_constructor_kwargs={"model_row": row, "files": files,
                                                   "cpu_threads": None if "num_gpus" in per_actor else 1}, batch_format="pandas",
                batch_size=RAY_BATCH_ROWS, compute=ray.data.ActorPoolStrategy(size=count), **per_actor,
            )
            ds.write_parquet(str(out_dir), ray_remote_args={"num_cpus": IO_TASK_CPUS})
        reporter.progress(0.9, f"{pending:,} reviews scored on Ray; storing them", force=True)
        ingest_started = time.perf_counter()
        scored = ingest_prediction_dir(db, resolved, out_dir) if pending else 0
        ingest_s = time.perf_counter() - ingest_started
    finally:
        if owned:
            shutil.rmtree(root, ignore_errors=True)
    seconds = time.perf_counter() - started
    reporter.progress(1.0, f"{scored:,} reviews scored", force=True)
    return {"model_id": resolved, "scored": scored, "pending_at_start": pending, "replicas": count,
            "seconds": round(seconds, 2), "reviews_per_s": round(scored / seconds, 1) if seconds > 0 else None,
            "export_s": round(export_s, 2), "ingest_s": round(ingest_s, 2)}


def run_job(db, params: dict, reporter: JobReporter) -> dict:
    """Job kind "score-ray": params model_id, rescore_all, address (None or "local": a local instance)."""
    address = params.get("address")
    return score_on_ray(db, model_id=params.get("model_id"), address=None if address in (None, "local") else address,
                        rescore_all=bool(params.get("rescore_all", False)), reporter=reporter)


def ingest_prediction_dir(db, model_id: str, directory: str | Path) -> int:
    """Ingest every ``*.parquet`` prediction shard under ``directory``, each shard its own transaction.

    Consecutive shards share one connection for up to ``INGEST_HOLD_S`` (reopening the store for each
    shard cost a third of the ingest: 187k rows/s against 287k at 1M rows), and give the store up at
    once when another process waits for it, so no writer waits longer than that. Idempotent: ingesting
    the same shards again rewrites the same rows and adds none; a kill loses at most the open shard.
    """
    paths = sorted(Path(directory).rglob("*.parquet"))
    written = done = 0
    while done < len(paths):
        with connect(db) as con:
            opened = time.perf_counter()
            while done < len(paths):
                table = read_prediction_file(paths[done])
                with begin(con):
                    written += ingest_predictions(con, model_id, table)
                done += 1
                if time.perf_counter() - opened > INGEST_HOLD_S or writer_waiting(db):
                    break
        hand_off(db)
    return written
