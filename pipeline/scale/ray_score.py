"""Batch scoring on a Ray cluster (Ray Data), the store staying the single source of truth.

What a run does:
1. The reviews the model still lacks leave the store as Parquet shards (:mod:`store.exchange`),
   chosen exactly as local scoring chooses them, written under ``--storage`` (a path or URI every
   node reaches: :mod:`pipeline.scale.storage`) or, on a one-node cluster or a local instance, to
   this machine's disk.
2. Ray Data streams the shards through the model in actor replicas: one per GPU when the cluster has
   GPUs, else one per CPU slot. Each actor builds the model once, through the same predictor factory
   as local scoring (same batching, truncation and precision), from model files shipped through
   Ray's object store (an ensemble's members too), so workers need no access to this machine's disk.
3. The predictions stream back to this process, which stores them batch by batch (one short
   transaction each) and reports progress after each, so the job's row shows progress and an ETA
   and a cancel takes effect between two batches. Neither direction holds the reviews in this
   process's memory: it grows with the batch size, not with the number of reviews.

A worker that dies is restarted by Ray and its batch retried. A run that stops (failure, cancel)
keeps what it stored, as local scoring does, and a rerun scores only what is still missing;
ingesting is idempotent (the predictions key), so nothing is ever duplicated.
"""

from __future__ import annotations

import copy
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

import pandas as pd

from pipeline.jobs import JobReporter
from pipeline.loop.scoring import resolve_model_id
from pipeline.scale.storage import RunStorage, check_client_storage, require_shared_storage
from store.aspects import write_aspect_predictions
from store.db import begin, connect, hand_off
from store.errors import TastebudError
from store.exchange import EXPORT_ROWS_PER_FILE, export_pending_reviews, ingest_predictions
from store.models import get_model

# Seconds to wait for a Ray head that was named by address before calling it unreachable.
CONNECT_TIMEOUT_S = 10
# Reviews per Ray Data batch handed to one actor call (the predictor batches further inside).
RAY_BATCH_ROWS = 2048
# Reviews per block an actor takes at a time (a few batches: small enough to share the work out evenly).
ACTOR_BLOCK_ROWS = 4 * RAY_BATCH_ROWS
# CPU share that Ray Data's file listing and read tasks ask for (they only move bytes).
IO_TASK_CPUS = 0.25


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
    if not ray.is_initialized():
        kwargs = {"address": address} if address else {"include_dashboard": False}
        in_main = threading.current_thread() is threading.main_thread()
        previous = signal.getsignal(signal.SIGTERM) if in_main else None
        try:
            ray.init(logging_level="ERROR", log_to_driver=False, **kwargs)
        except (ConnectionError, RuntimeError, TimeoutError) as exc:
            raise TastebudError(f"could not join the Ray cluster at {address or 'a new local instance'}: {exc}") from None
        finally:
            if callable(previous):
                # ray.init installs a SIGTERM handler that exits the process; a job's SIGTERM is its cancel
                # (pipeline.jobs), which must end the run as cancelled and let it release the cluster.
                signal.signal(signal.SIGTERM, previous)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # tastebud reports progress itself (job rows, console)
    context.print_on_execution_start = False
    return ray


def note_local_instance(ray, reporter: JobReporter, work: str) -> None:
    """Say plainly, when ``--ray`` names no cluster, that the local way is faster on this machine, and why."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    hardware = f"{int(resources.get('CPU', 0))} CPUs" + (f" and {gpus} GPU(s)" if gpus else "")
    reporter.log(f"note: --ray without an address runs a local Ray instance on this machine's {hardware}. "
                 f"Local {work} (without --ray) is faster here: it uses the same hardware without Ray's start-up, "
                 "worker processes and Parquet round trip. --ray pays off with the address of a cluster.")


# A path a shipped model row names, to be read as a folder of the worker's copy (see ship_model).
SHIPPED = "tastebud-shipped:"


def _model_files(path: str) -> dict[str, bytes]:
    """The model directory as {relative path: bytes}: shipped once through Ray's object store."""
    root = Path(path)
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _rows_of(row: dict):
    """``row`` and, for an ensemble, each member's row (nested ensembles too): every row that names a path."""
    yield row
    for member in (row.get("params") or {}).get("members") or []:
        yield from _rows_of(member["row"])


def ship_model(row: dict) -> tuple[dict, dict[str, dict[str, bytes]]]:
    """(row, files): the model's files for the workers, and its row naming them instead of this machine's paths.

    Every folder the row names is shipped: the model's own and, for an ensemble (the review champion by
    default), each member's, which live in their own folders beside it; a worker on another node reaches
    none of them. A path that is not a folder here (a hub id) stays as it is.
    """
    row = copy.deepcopy(row)
    files: dict[str, dict[str, bytes]] = {}
    roots: dict[Path, str] = {}
    for each in _rows_of(row):
        path = each.get("path")
        if not path or not os.path.isdir(path):
            continue
        folder = Path(path).resolve()
        # A member inside a folder already shipped (an ensemble keeps its TF-IDF member in its own) goes once.
        inside = next(((root, slot) for root, slot in roots.items() if folder.is_relative_to(root)), None)
        if inside is None:
            slot = str(len(files))
            files[slot], roots[folder] = _model_files(path), slot
            each["path"] = SHIPPED + slot
        else:
            each["path"] = SHIPPED + str(Path(inside[1]) / folder.relative_to(inside[0]))
    return row, files


def unpack_model(row: dict, files: dict[str, dict[str, bytes]], folder: str | Path) -> dict:
    """Write shipped ``files`` under ``folder`` and return ``row`` naming them there."""
    row = copy.deepcopy(row)
    for slot, members in files.items():
        for rel, data in members.items():
            target = Path(folder) / slot / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    for each in _rows_of(row):
        path = each.get("path")
        if isinstance(path, str) and path.startswith(SHIPPED):
            each["path"] = str(Path(folder) / path[len(SHIPPED):])
    return row


class ScoreActor:
    """One model replica: built once per actor, then called with batches of (review_id, text).

    A review model returns one row per review (p_negative, p_neutral, p_positive); an aspect model
    (``task`` "aspects" in its row) one row per review and aspect, as :mod:`pipeline.aspects.scoring`
    stores them locally.
    """

    def __init__(self, model_row: dict, files: dict[str, dict[str, bytes]] | None, cpu_threads: int | None = None):
        if cpu_threads:  # a CPU slot each: threads beyond it only fight the sibling actors
            from pipeline.device import cap_cpu_threads

            cap_cpu_threads(cpu_threads)

        row = dict(model_row)
        if not files:
            self._build(row)
            return
        # Materialise the shipped model next to this worker (a cluster node has no access to ours), load it
        # whole, and remove the copy: Ray ends a finished pool's actors without running their clean-up, so
        # a copy kept for the actor's life stayed on the node's disk after every run (one per actor).
        with tempfile.TemporaryDirectory(prefix="tastebud-model-") as folder:
            self._build(unpack_model(row, files, folder))
            self._warm_up()  # predictors that read their files lazily read them now, while they exist

    def _build(self, row: dict) -> None:
        from pipeline.models.predictors import predictor_from_row

        if (row.get("task") or "sentiment") == "aspects":
            from pipeline.aspects.scoring import AspectScorer

            self.aspects = AspectScorer.from_model(row)
        else:
            self.aspects = None
            self.predictor = predictor_from_row(row)

    def _warm_up(self) -> None:
        self(pd.DataFrame({"review_id": ["warm-up"], "text": ["The food was good."]}))

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        if self.aspects is not None:
            from pipeline.aspects.scoring import aspect_rows

            output = self.aspects.predict(batch["text"].tolist())
            return aspect_rows(batch["review_id"].tolist(), output, self.aspects.aspects)
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
    storage: str | None = None,
    replicas: int | None = None,
    task: str = "sentiment",
) -> dict:
    """Score what ``model_id`` (default: the ``task``'s champion) still lacks on a Ray cluster, storing results as
    they come.

    The reviews leave the store as Parquet shards under ``storage``; Ray Data reads them, the actors score
    them, and the predictions stream back to this process, which stores them in batches (each its own
    transaction) and reports progress after each. A cancel (the job's row, SIGTERM, Ctrl+C) stops the
    stream: what was stored stays (complete predictions, as local scoring leaves them), Ray Data's
    actors are released, and a rerun scores only the rest.

    Args:
        db: the store.
        model_id: a stored, ready model (default: the champion).
        address: a Ray address (``HOST:PORT``, ``ray://HOST:PORT``, ``auto``); None starts a local instance.
        rescore_all: rescore every review, as ``tastebud score --all``.
        reporter: progress and cancellation.
        storage: a path or URI every node reaches (NFS, ``s3://``, ``gs://``) for the review shards;
            default: a temporary directory on this machine, which a cluster of several nodes refuses.
        replicas: number of model replicas (default: one per GPU, else one per CPU slot).
        task: "sentiment" (review predictions) or "aspects" (the aspect champion's or ``model_id``'s aspect
            predictions, every review read whole, as ``tastebud score --task aspects`` stores them).

    Returns:
        {"model_id", "scored" (reviews), "pending_at_start", "replicas", "seconds", "reviews_per_s", "export_s",
        "stream_s"} (``stream_s``: scoring and storing, which overlap); for aspects also "aspects".

    Example:
        >>> score_on_ray("tastebud.duckdb")["scored"]  # doctest: +SKIP
        120000
    """
    reporter = reporter or JobReporter(db, None)
    if task == "aspects":
        from pipeline.aspects.evaluation import aspect_model_row, model_aspects

        row = aspect_model_row(db, model_id)
        resolved, aspects = row["model_id"], model_aspects(row)
    elif task == "sentiment":
        resolved, aspects = resolve_model_id(db, model_id), None
        with connect(db, read_only=True) as con:
            row = get_model(con, resolved)
    else:
        raise TastebudError(f"task must be sentiment or aspects, got {task!r}")
    check_client_storage(address, storage)
    started = time.perf_counter()
    since = datetime.now() if rescore_all else None
    ray = connect_ray(address)
    require_shared_storage(ray, bool(storage), "scoring")
    name = f"score-{datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
    scratch = Path(tempfile.mkdtemp(prefix="tastebud-ray-"))
    area = RunStorage.at(storage, name) if storage else RunStorage.at(str(scratch), name, shared=False)
    if address is None:
        note_local_instance(ray, reporter, "scoring")
    count, per_actor = _replicas(ray)
    count = replicas or count
    try:
        with connect(db, read_only=True) as con:
            exported = _export(con, resolved, area, scratch / "reviews", since, task)
        export_s = time.perf_counter() - started
        pending = exported["rows"]
        what = "aspects of " if task == "aspects" else ""
        reporter.log(f"scoring {what}{pending:,} reviews with {resolved} on Ray ({count} replicas"
                     + (f", shards in {area.uri()})" if storage else ")"))
        reporter.progress(0.0, f"0/{pending:,} reviews scored", force=True)
        stream_started = time.perf_counter()
        scored = 0
        if pending:
            shipped, files = ship_model(row)
            ds = ray.data.read_parquet(area.uri("reviews"), num_cpus=IO_TASK_CPUS)
            # The reader hands out blocks of up to ~128 MiB (two for a million short reviews), and an actor
            # takes a block whole: small blocks keep every replica busy until the end (streaming, no shuffle).
            ds = ds.repartition(target_num_rows_per_block=ACTOR_BLOCK_ROWS)
            ds = ds.map_batches(
                ScoreActor, fn_constructor_kwargs={"model_row": shipped, "files": files,
                                                   "cpu_threads": None if "num_gpus" in per_actor else 1}, batch_format="pandas",
                batch_size=RAY_BATCH_ROWS, compute=ray.data.ActorPoolStrategy(size=count), **per_actor,
            )
            per_review = len(aspects) if aspects else 1  # rows a review yields
            batches = ds.iter_batches(batch_size=ingest_rows(pending) * per_review, batch_format="pyarrow",
                                      prefetch_batches=1)
            scored = ingest_stream(db, resolved, batches, reporter=reporter, pending=pending, per_review=per_review,
                                   write=write_aspect_predictions if aspects else ingest_predictions)
        stream_s = time.perf_counter() - stream_started
    finally:
        area.remove()
        shutil.rmtree(scratch, ignore_errors=True)
    seconds = time.perf_counter() - started
    reporter.progress(1.0, f"{scored:,} reviews scored", force=True)
    result = {"model_id": resolved, "scored": scored, "pending_at_start": pending, "replicas": count,
              "seconds": round(seconds, 2), "reviews_per_s": round(scored / seconds, 1) if seconds > 0 else None,
              "export_s": round(export_s, 2), "stream_s": round(stream_s, 2)}
    if aspects:
        result["aspects"] = aspects
    return result


def _export(con, model_id: str, area: RunStorage, scratch: Path, since: datetime | None, task: str) -> dict:
    """The pending reviews as Parquet shards in ``area``/reviews (written locally first when the storage is remote)."""
    local = area.local_dir("reviews")
    exported = export_pending_reviews(con, model_id, local or scratch, since=since, task=task)
    if local is None and exported["rows"]:
        area.upload(scratch, "reviews")
    return exported


def ingest_rows(pending: int) -> int:
    """Predictions per stored batch: about 20 progress steps a run, from one actor batch up to one exported shard."""
    return min(EXPORT_ROWS_PER_FILE, max(RAY_BATCH_ROWS, -(-pending // 20)))


def ingest_stream(db, model_id: str, batches, *, reporter: JobReporter, pending: int, per_review: int = 1,
                  write=ingest_predictions) -> int:
    """Store prediction batches (Arrow tables) as they arrive, one short transaction each, reporting progress.

    ``write(con, model_id, table)`` stores one batch and returns its rows, ``per_review`` of them per review
    (an aspect model writes one per aspect). A cancel raises out of ``reporter.progress`` between two
    batches; closing the stream then stops Ray Data's execution and releases its actors. Returns how many
    reviews' predictions were stored.
    """
    rows = 0
    try:
        for table in batches:
            with connect(db) as con, begin(con):
                rows += write(con, model_id, table)
            hand_off(db)
            stored = rows // per_review
            reporter.progress(min(stored / max(pending, 1), 0.99), f"{stored:,}/{pending:,} reviews scored")
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()
    return rows // per_review


def run_job(db, params: dict, reporter: JobReporter) -> dict:
    """Job kind "score-ray": params model_id, rescore_all, address (None or "local": a local instance), storage,
    task ("sentiment", the default, or "aspects")."""
    address = params.get("address")
    return score_on_ray(db, model_id=params.get("model_id"), address=None if address in (None, "local") else address,
                        rescore_all=bool(params.get("rescore_all", False)), reporter=reporter,
                        storage=params.get("storage"), task=params.get("task") or "sentiment")
