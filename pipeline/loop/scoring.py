"""Batch scoring: write a probability per class for every review a model has not scored yet.

The store is walked in chunks: read a chunk of ids and texts over a short read-only
connection, compute with no connection open, write the chunk's predictions in one short
transaction. Because a chunk commits atomically and the predictions key is
(model_id, review_id), a re-run scores nothing new, a killed run resumes where it stopped
with no duplicates and no gaps, and ``shard=(i, N)`` lets N processes split the reviews by
a hash of their id with nothing scored twice or missed.

The three stages overlap (threads; DuckDB, the tokenizer and torch release the GIL): a
reader thread fetches and tokenizes chunk N+1 while the model computes chunk N, and a
writer thread stores chunk N-1 meanwhile. Predictions go to the store as Arrow tables in
bulk; when the model outpaces the store, the writer commits the chunks waiting for it in
one transaction, so the cost of opening and checkpointing the store is paid once for
them. Memory holds at most a few chunks at a time (bounded queues).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pyarrow as pa

from pipeline.jobs import JobReporter
from pipeline.models.predictors import Predictor, load_predictor
from store.constants import LABELS
from store.db import DbPath, connect, transaction
from store.errors import TastebudError
from store.models import get_champion, get_model
from store.predictions import count_pending, fetch_pending_chunk, write_predictions

# Reviews per read/compute/write cycle on a CPU (a GPU's comes from pipeline.device.device_defaults):
# large enough for good length-sorted batches and few commits, small enough that a kill loses
# little work and memory stays flat.
DEFAULT_CHUNK_SIZE = 2048
# Chunks waiting between stages at most (each queue): bounds memory, keeps every stage busy.
QUEUE_DEPTH = 2


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """Parse ``"i/N"`` into (i, N) with 0 <= i < N.

    Example:
        >>> parse_shard("1/4")
        (1, 4)
    """
    if text is None or text == "":
        return None
    try:
        index, count = (int(part) for part in str(text).split("/"))
    except ValueError:
        raise TastebudError(f"--shard must look like i/N (e.g. 0/4), got {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise TastebudError(f"--shard {text}: need N >= 1 and 0 <= i < N")
    return index, count


def _probability_table(review_ids: pa.Array, probs: np.ndarray) -> pa.Table:
    if probs.shape != (len(review_ids), len(LABELS)):
        raise TastebudError(f"the model returned probabilities of shape {probs.shape}, expected ({len(review_ids)}, 3)")
    if not np.isfinite(probs).all():
        raise TastebudError("the model returned non-finite probabilities; nothing from this chunk was written")
    probs = np.ascontiguousarray(probs, dtype=np.float32)
    return pa.table({"review_id": review_ids, "p_negative": probs[:, 0], "p_neutral": probs[:, 1],
                     "p_positive": probs[:, 2]})


@dataclass(frozen=True)
class ScoringSink:
    """Where a scoring run finds the reviews a model still lacks and stores what the model said.

    :data:`REVIEW_PREDICTIONS` (review sentiment, the default) and the aspect model's
    (:mod:`pipeline.aspects.scoring`) share the reader / model / writer stages of :func:`score_with`.
    """

    count_pending: Callable  # (con, model_id, *, shard, since) -> int
    fetch_chunk: Callable  # (con, model_id, *, after, limit, shard, since) -> pa.Table (review_id, text)
    to_table: Callable  # (review_ids: pa.Array, output) -> what ``write`` stores for these reviews
    write: Callable  # (con, model_id, table) -> rows written


REVIEW_PREDICTIONS = ScoringSink(
    count_pending=count_pending,
    fetch_chunk=lambda con, model_id, **kw: fetch_pending_chunk(con, model_id, as_arrow=True, **kw),
    to_table=_probability_table,
    write=write_predictions,
)


class _Stage(threading.Thread):
    """A daemon thread running ``work``; its exception is re-raised by :meth:`check` in the caller."""

    def __init__(self, name: str, work):
        super().__init__(name=name, daemon=True)
        self._work, self.error = work, None

    def run(self):
        try:
            self._work()
        except BaseException as exc:  # handed to the main thread
            self.error = exc

    def check(self):
        if self.error is not None:
            raise self.error


_DONE = object()


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    """Put unless the pipeline is stopping; False when it is."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _put_while_alive(q: queue.Queue, item, consumer: _Stage) -> None:
    """Put ``item`` for ``consumer``; raises the consumer's error if it died instead of blocking."""
    while True:
        consumer.check()
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            if not consumer.is_alive():
                consumer.check()
                raise TastebudError(f"scoring stage {consumer.name} ended unexpectedly")


def _get(q: queue.Queue, stage: _Stage):
    """Next item from ``q``; raises the producing stage's error if it died."""
    while True:
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            stage.check()
            if not stage.is_alive():
                stage.check()
                raise TastebudError(f"scoring stage {stage.name} ended unexpectedly")


def score_with(
    db: DbPath,
    predictor: Predictor,
    model_id: str,
    *,
    rescore_all: bool = False,
    shard: tuple[int, int] | None = None,
    reporter: JobReporter | None = None,
    chunk_size: int | None = None,
    sink: ScoringSink = REVIEW_PREDICTIONS,
) -> dict:
    """Score every review ``model_id`` still lacks (or all, with ``rescore_all``) with ``predictor``.

    Reading and tokenizing the next chunk and writing the previous one overlap the model's
    work on the current one (see the module docstring). A predictor with ``encode`` and
    ``predict_encoded`` (:class:`pipeline.models.predictors.ClassifierPredictor`) is
    tokenized in the reader thread; any other only needs ``predict_proba``.

    Args:
        db: the store.
        predictor: object with ``predict_proba(texts) -> (n, 3)``.
        model_id: the id its predictions are stored under.
        rescore_all: rescore reviews scored before this call started too.
        shard: (i, N): only reviews whose id hashes to shard i of N.
        reporter: progress and cancellation (default: print-only).
        chunk_size: reviews per read/compute/write cycle (default: the device's, 2,048 on a CPU).
        sink: what is pending and where results go (default: review predictions).

    Returns:
        {"model_id", "scored", "pending_at_start", "shard", "seconds", "reviews_per_s", "chunk_size", "commits"}.

    Example:
        >>> score_with("t.duckdb", predictor, "m1", shard=(0, 2))["scored"]  # doctest: +SKIP
        1500
    """
    check_chunk_size(chunk_size)
    chunk_size = _default_chunk_size(predictor) if chunk_size is None else chunk_size
    reporter = reporter or JobReporter(db, None)
    since = datetime.now() if rescore_all else None
    started = time.perf_counter()
    with connect(db, read_only=True) as con:
        pending = sink.count_pending(con, model_id, shard=shard, since=since)
    reporter.log(f"scoring {pending:,} reviews with {model_id}" + (f" (shard {shard[0]}/{shard[1]})" if shard else ""))
    reporter.progress(0.0, f"0/{pending:,} reviews scored", force=True)
    tokenize = getattr(predictor, "encode", None) if hasattr(predictor, "predict_encoded") else None
    stop = threading.Event()
    to_compute: queue.Queue = queue.Queue(QUEUE_DEPTH)
    to_write: queue.Queue = queue.Queue(QUEUE_DEPTH)
    written = {"rows": 0, "commits": 0}

    def read_chunks():
        after = None
        while not stop.is_set():
            with connect(db, read_only=True) as con:
                chunk = sink.fetch_chunk(con, model_id, after=after, limit=chunk_size, shard=shard, since=since)
            if chunk.num_rows == 0:
                break
            after = chunk["review_id"][-1].as_py()
            texts = chunk["text"].to_pylist()
            payload = tokenize(texts) if tokenize else texts
            if not _put(to_compute, (chunk["review_id"].combine_chunks(), payload), stop):
                return
        _put(to_compute, _DONE, stop)

    def write_chunks():
        while True:
            item = to_write.get()
            if item is _DONE:
                return
            chunks, done = [item], False
            while True:  # the chunks already waiting go into the same transaction
                try:
                    more = to_write.get_nowait()
                except queue.Empty:
                    break
                if more is _DONE:
                    done = True
                    break
                chunks.append(more)
            with transaction(db) as con:
                for _, table in chunks:
                    sink.write(con, model_id, table)
            written["rows"] += sum(n_reviews for n_reviews, _ in chunks)  # reviews, whatever rows a sink writes per review
            written["commits"] += 1
            if done:
                return

    reader, writer = _Stage("reader", read_chunks), _Stage("writer", write_chunks)
    reader.start()
    writer.start()
    try:
        while True:
            item = _get(to_compute, reader)
            if item is _DONE:
                break
            review_ids, payload = item
            probs = predictor.predict_encoded(payload) if tokenize else predictor.predict_proba(payload)
            table = sink.to_table(review_ids, probs)
            _put_while_alive(to_write, (len(review_ids), table), writer)
            done = written["rows"]
            reporter.progress(min(1.0, done / max(pending, 1)), f"{done:,}/{pending:,} reviews scored")
    finally:
        # Whatever was computed is still written (each chunk whole), then the stages end.
        stop.set()
        if writer.is_alive():
            _put_while_alive(to_write, _DONE, writer)
        writer.join()
        reader.join()
    writer.check()
    scored = written["rows"]
    seconds = time.perf_counter() - started
    reporter.progress(1.0, f"{scored:,} reviews scored", force=True)
    return {
        "model_id": model_id,
        "scored": scored,
        "pending_at_start": pending,
        "shard": f"{shard[0]}/{shard[1]}" if shard else None,
        "seconds": round(seconds, 2),
        "reviews_per_s": round(scored / seconds, 1) if seconds > 0 else None,
        "chunk_size": chunk_size,
        "commits": written["commits"],
    }


def check_chunk_size(chunk_size: int | None) -> None:
    """Refuse a chunk size below 1 (None means the device's default).

    Example:
        >>> check_chunk_size(0)
        Traceback (most recent call last):
        store.errors.TastebudError: chunk size must be at least 1, got 0
    """
    if chunk_size is not None and chunk_size < 1:
        raise TastebudError(f"chunk size must be at least 1, got {chunk_size}")


def _default_chunk_size(predictor) -> int:
    from pipeline.device import device_defaults  # loads torch; `tastebud flag` imports this module without it

    device = getattr(predictor, "device", None)
    return device_defaults(device).score_chunk_size if device is not None else DEFAULT_CHUNK_SIZE


def resolve_model_id(db: DbPath, model_id: str | None) -> str:
    """``model_id`` if the store knows it and it is ready, else the champion's id; a clear error otherwise."""
    with connect(db, read_only=True) as con:
        if model_id is None:
            champion = get_champion(con)
            if champion is None:
                raise TastebudError("there is no champion model yet: train one (`tastebud train`) or pass --model")
            return champion["model_id"]
        model = get_model(con, model_id)
    if model is None:
        raise TastebudError(f"no model {model_id!r} in the store (see `tastebud models`)")
    if model.get("status") not in (None, "ready"):
        raise TastebudError(f"model {model_id} is {model['status']}, not ready")
    return model_id


def score(
    db: DbPath,
    *,
    model_id: str | None = None,
    rescore_all: bool = False,
    shard: tuple[int, int] | str | None = None,
    reporter: JobReporter | None = None,
    chunk_size: int | None = None,
) -> dict:
    """Score the reviews the champion (or ``model_id``) has not scored yet.

    Args:
        db: the store.
        model_id: a stored model (default: the champion).
        rescore_all: rescore everything, not just what is missing or stale.
        shard: (i, N) or "i/N" to take one of N disjoint parts of the reviews.
        reporter: progress and cancellation.
        chunk_size: reviews per read/compute/write cycle (default: the device's).

    Returns:
        See :func:`score_with`.

    Example:
        >>> score("tastebud.duckdb")["scored"]  # doctest: +SKIP
        3000
    """
    if isinstance(shard, str):
        shard = parse_shard(shard)
    resolved = resolve_model_id(db, model_id)
    predictor = load_predictor(db, resolved)
    return score_with(db, predictor, resolved, rescore_all=rescore_all, shard=shard, reporter=reporter,
                      chunk_size=chunk_size)


def run_job(db: DbPath, params: dict, reporter: JobReporter) -> dict:
    """Job kind "score": params model_id, rescore_all, shard ("i/N"), chunk_size (all optional)."""
    return score(
        db,
        model_id=params.get("model_id"),
        rescore_all=bool(params.get("rescore_all", False)),
        shard=params.get("shard"),
        reporter=reporter,
        chunk_size=None if params.get("chunk_size") is None else int(params["chunk_size"]),
    )
