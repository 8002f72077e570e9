"""Fill the store's aspect predictions: every review the aspect champion (or a given aspect model) lacks.

The same reader / model / writer stages as review scoring (:func:`pipeline.loop.scoring.score_with`), so a
run is resumable and idempotent (a chunk commits whole; the key is (model, review, aspect)), shards with
``--shard i/N`` and reports progress and cancellation through its job. The model is prepared for the device
exactly as a review model (:func:`pipeline.models.inference.prepare_for_inference`: bf16 on AMX or a GPU,
int8 Linear layers where :mod:`pipeline.device` picks them), and a review is read whole, sentence by sentence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline.jobs import JobReporter
from pipeline.loop.scoring import ScoringSink, parse_shard, score_with
from store import aspects as aspect_store
from store.db import DbPath
from store.errors import TastebudError


@dataclass
class AspectScorer:
    """A loaded aspect model ready to score: ``predict(texts)`` -> (p_mentioned, p_polarity, evidence spans)."""

    model: object
    tokenizer: object
    aspects: list[str]
    max_length: int
    device: object

    @classmethod
    def from_model(cls, model: dict, *, device=None) -> AspectScorer:
        """Load a registered aspect model (a row of the models table) for scoring on ``device``."""
        from pipeline.aspects.evaluation import model_aspects
        from pipeline.aspects.fit import load_aspect_model
        from pipeline.device import resolve_device
        from pipeline.models.inference import prepare_for_inference

        if not model.get("path"):
            raise TastebudError(f"aspect model {model['model_id']} has no saved weights")
        info = device or resolve_device()
        net, tokenizer = load_aspect_model(model["path"])
        aspects = model_aspects(model)
        if net.config.num_labels != 4 * len(aspects):
            raise TastebudError(f"aspect model {model['model_id']} has {net.config.num_labels} outputs for "
                                f"{len(aspects)} aspects; its directory does not match its registry row")
        max_length = int((model.get("params") or {}).get("max_length") or 128)
        return cls(prepare_for_inference(net, info), tokenizer, aspects, max_length, info)

    def predict(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.predict_encoded(self.encode(texts))

    # score_with tokenizes in its reader thread when a predictor has these two: cutting reviews into sentences
    # and tokenizing them then overlaps the model's work on the previous chunk.
    def encode(self, texts: Sequence[str]):
        from pipeline.aspects.model import aspect_suffix, segment_reviews

        return segment_reviews(self.tokenizer, list(texts), max_length=self.max_length,
                               suffix=aspect_suffix(self.model, self.tokenizer))

    def predict_encoded(self, segments) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from pipeline.aspects.fit import predict_aspects

        return predict_aspects(self.model, self.tokenizer, (), max_length=self.max_length, device=self.device,
                               segments=segments)

    # score_with's predictor protocol: the output of predict_proba goes to the sink's to_table.
    def predict_proba(self, texts: Sequence[str]):
        return self.predict(texts)


def aspect_rows(review_ids: Sequence[str], output, aspects: Sequence[str]) -> pd.DataFrame:
    """The store's rows (one per review and aspect, as :func:`store.aspects.write_aspect_predictions` takes
    them) of an aspect scorer's output for ``review_ids``; malformed output is refused whole."""
    p_m, p_pol, spans = output
    if p_m.shape != (len(review_ids), len(aspects)) or not np.isfinite(p_m).all() or not np.isfinite(p_pol).all():
        raise TastebudError("the aspect model returned malformed probabilities; nothing from this chunk was written")
    n, a = p_m.shape
    return pd.DataFrame({
        "review_id": np.repeat(np.asarray(list(review_ids), dtype=object), a),
        "aspect": np.tile(np.asarray(aspects, dtype=object), n),
        "p_present": p_m.reshape(-1).astype(np.float32),
        "p_negative": p_pol[..., 0].reshape(-1).astype(np.float32),
        "p_neutral": p_pol[..., 1].reshape(-1).astype(np.float32),
        "p_positive": p_pol[..., 2].reshape(-1).astype(np.float32),
        "evidence_start": spans[..., 0].reshape(-1).astype(np.int32),
        "evidence_end": spans[..., 1].reshape(-1).astype(np.int32),
    })


def _sink(aspects: list[str]) -> ScoringSink:
    return ScoringSink(
        count_pending=aspect_store.count_aspect_pending,
        fetch_chunk=aspect_store.fetch_aspect_pending_chunk,
        to_table=lambda review_ids, output: aspect_rows(review_ids.to_pylist(), output, aspects),
        write=lambda con, model_id, rows: aspect_store.write_aspect_predictions(con, model_id, rows),
    )


def score_aspects(
    db: DbPath,
    *,
    model_id: str | None = None,
    rescore_all: bool = False,
    shard: tuple[int, int] | str | None = None,
    reporter: JobReporter | None = None,
    chunk_size: int | None = None,
) -> dict:
    """Score the reviews the aspect champion (or ``model_id``) has not scored yet.

    Returns:
        As :func:`pipeline.loop.scoring.score_with` ("scored" counts reviews), plus "aspects".

    Example:
        >>> score_aspects("tastebud.duckdb")["scored"]  # doctest: +SKIP
        3000
    """
    from pipeline.aspects.evaluation import aspect_model_row

    if isinstance(shard, str):
        shard = parse_shard(shard)
    model = aspect_model_row(db, model_id)
    scorer = AspectScorer.from_model(model)
    result = score_with(db, scorer, model["model_id"], rescore_all=rescore_all, shard=shard, reporter=reporter,
                        chunk_size=chunk_size, sink=_sink(scorer.aspects))
    return {**result, "aspects": scorer.aspects}


def run_job(db: DbPath, params: dict, reporter: JobReporter) -> dict:
    """Job kind "score_aspects": params model_id, rescore_all, shard ("i/N"), chunk_size (all optional)."""
    return score_aspects(
        db, model_id=params.get("model_id"), rescore_all=bool(params.get("rescore_all", False)),
        shard=params.get("shard"), reporter=reporter,
        chunk_size=None if params.get("chunk_size") is None else int(params["chunk_size"]),
    )
