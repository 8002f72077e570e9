"""Batch scoring: write a probability per class for every review a model has not scored yet.

The store is walked in chunks: read a chunk of ids and texts over a short read-only
connection, compute with no connection open, write the chunk's predictions in one short
transaction. Because a chunk commits atomically and the predictions key is
(model_id, review_id), a re-run scores nothing new, a killed run resumes where it stopped
with no duplicates and no gaps, and ``shard=(i, N)`` lets N processes split the reviews by
a hash of their id with nothing scored twice or missed. Memory holds one chunk at a time.
"""

from __future__ import annotations

import os
import time
from datetime import datetime
from typing import Protocol

import numpy as np
import pandas as pd

from pipeline.jobs import JobReporter
from store.constants import LABELS
from store.db import DbPath, connect, transaction
from store.errors import TastebudError
from store.models import get_champion, get_model
from store.predictions import count_pending, fetch_pending_chunk, write_predictions


# Reviews per read/compute/write cycle: large enough for good length-sorted batches and few
# commits, small enough that a kill loses little work and memory stays flat.
DEFAULT_CHUNK_SIZE = 2048


class Predictor(Protocol):
    """Anything that turns texts into (n, 3) class probabilities (negative, neutral, positive)."""

    def predict_proba(self, texts: list[str]) -> np.ndarray: ...


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


def _probability_frame(review_ids: pd.Series, probs: np.ndarray) -> pd.DataFrame:
    if probs.shape != (len(review_ids), len(LABELS)):
        raise TastebudError(f"the model returned probabilities of shape {probs.shape}, expected ({len(review_ids)}, 3)")
    if not np.isfinite(probs).all():
        raise TastebudError("the model returned non-finite probabilities; nothing from this chunk was written")
    return pd.DataFrame(
        {"review_id": review_ids.to_numpy(), "p_negative": probs[:, 0], "p_neutral": probs[:, 1],
         "p_positive": probs[:, 2]}
    )


def score_with(
    db: DbPath,
    predictor: Predictor,
    model_id: str,
    *,
    rescore_all: bool = False,
    shard: tuple[int, int] | None = None,
    reporter: JobReporter | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> dict:
    """Score every review ``model_id`` still lacks (or all, with ``rescore_all``) with ``predictor``.

    Args:
        db: the store.
        predictor: object with ``predict_proba(texts) -> (n, 3)``.
        model_id: the id its predictions are stored under.
        rescore_all: rescore reviews scored before this call started too.
        shard: (i, N): only reviews whose id hashes to shard i of N.
        reporter: progress and cancellation (default: print-only).
        chunk_size: reviews per read/compute/write cycle.

    Returns:
        {"model_id", "scored", "pending_at_start", "shard", "seconds", "reviews_per_s"}.

    Example:
        >>> score_with("t.duckdb", predictor, "m1", shard=(0, 2))["scored"]  # doctest: +SKIP
        1500
    """
    if chunk_size < 1:
        raise TastebudError("chunk size must be at least 1")
    reporter = reporter or JobReporter(db, None)
    since = datetime.now() if rescore_all else None
    started = time.perf_counter()
    with connect(db, read_only=True) as con:
        pending = count_pending(con, model_id, shard=shard, since=since)
    reporter.log(f"scoring {pending:,} reviews with {model_id}" + (f" (shard {shard[0]}/{shard[1]})" if shard else ""))
    reporter.progress(0.0, f"0/{pending:,} reviews scored", force=True)
    scored = 0
    with connect(db, read_only=True) as con:
        chunk = fetch_pending_chunk(con, model_id, limit=chunk_size, shard=shard, since=since)
    while not chunk.empty:
        frame = _probability_frame(chunk["review_id"], predictor.predict_proba(chunk["text"].tolist()))
        after = chunk["review_id"].iloc[-1]
        # One short connection per chunk: commit this chunk and read the next in the same transaction.
        with transaction(db) as con:
            write_predictions(con, model_id, frame)
            next_chunk = fetch_pending_chunk(con, model_id, after=after, limit=chunk_size, shard=shard, since=since)
        scored += len(chunk)
        chunk = next_chunk
        reporter.progress(min(1.0, scored / max(pending, 1)), f"{scored:,}/{pending:,} reviews scored")
    seconds = time.perf_counter() - started
    reporter.progress(1.0, f"{scored:,} reviews scored", force=True)
    return {
        "model_id": model_id,
        "scored": scored,
        "pending_at_start": pending,
        "shard": f"{shard[0]}/{shard[1]}" if shard else None,
        "seconds": round(seconds, 2),
        "reviews_per_s": round(scored / seconds, 1) if seconds > 0 else None,
    }


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


def scoring_predictor(db: DbPath, model_id: str) -> Predictor:
    """The fastest predictor for a stored model: a fine-tuned model gets its own copy with bf16
    weights where the device runs bf16 natively (:class:`ClassifierPredictor`); baselines and
    other kinds come from :func:`pipeline.models.predictors.load_predictor`.

    Example:
        >>> scoring_predictor("tastebud.duckdb", "ft-20261125-1").predict_proba(["Great tacos"]).shape  # doctest: +SKIP
        (1, 3)
    """
    # Imported here: they load torch, and `tastebud flag` imports this module for resolve_model_id alone.
    from pipeline.models.inference import ClassifierPredictor
    from pipeline.models.predictors import load_predictor

    with connect(db, read_only=True) as con:
        model = get_model(con, model_id)
    params = (model or {}).get("params") or {}
    if model and model["kind"] == "finetuned" and params.get("predictor", "finetuned") == "finetuned":
        if not model.get("path") or not os.path.isdir(model["path"]):
            raise TastebudError(f"the files of model {model_id} are missing at {model.get('path')}")
        max_length = params.get("max_length")
        # The registry row says how the model was trained to cut long texts ("head" before that existed).
        return ClassifierPredictor(model["path"], max_length=int(max_length) if max_length else None,
                                   truncation=params.get("truncation", "head"))
    return load_predictor(db, model_id)


def score(
    db: DbPath,
    *,
    model_id: str | None = None,
    rescore_all: bool = False,
    shard: tuple[int, int] | str | None = None,
    reporter: JobReporter | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> dict:
    """Score the reviews the champion (or ``model_id``) has not scored yet.

    Args:
        db: the store.
        model_id: a stored model (default: the champion).
        rescore_all: rescore everything, not just what is missing or stale.
        shard: (i, N) or "i/N" to take one of N disjoint parts of the reviews.
        reporter: progress and cancellation.
        chunk_size: reviews per read/compute/write cycle.

    Returns:
        See :func:`score_with`.

    Example:
        >>> score("tastebud.duckdb")["scored"]  # doctest: +SKIP
        3000
    """
    if isinstance(shard, str):
        shard = parse_shard(shard)
    resolved = resolve_model_id(db, model_id)
    predictor = scoring_predictor(db, resolved)
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
        chunk_size=int(params.get("chunk_size") or DEFAULT_CHUNK_SIZE),
    )
