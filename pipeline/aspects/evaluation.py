"""Evaluate an aspect model on the store's frozen test split or on a labeled file kept outside the store."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.aspects.metrics import aspect_metrics
from pipeline.aspects.model import targets_from_frame
from store import aspects as aspect_store
from store import evaluations as evaluation_store
from store import models as model_store
from store.db import connect, transaction
from store.errors import TastebudError
from store.printable import printable


def aspect_model_row(db, model_id: str | None) -> dict:
    """The registered aspect model ``model_id`` (default: the aspect champion).

    Raises:
        TastebudError: no such model, a review-sentiment model, or no aspect champion yet.
    """
    with connect(db, read_only=True) as con:
        model = model_store.get_model(con, model_id) if model_id else model_store.get_champion(con, "aspects")
    if model is None:
        raise TastebudError(
            f"no model {model_id!r}; see `tastebud models --task aspects`" if model_id
            else "there is no aspect model yet: train one with `tastebud train --task aspects`"
        )
    if (model.get("task") or "sentiment") != "aspects":
        raise TastebudError(f"{model['model_id']} is a review-sentiment model, not an aspect model")
    if model["status"] != "ready":
        raise TastebudError(f"aspect model {model['model_id']} is {model['status']}")
    return model


def model_aspects(model: dict) -> list[str]:
    """The aspects a registered aspect model answers for, in head order."""
    aspects = (model.get("params") or {}).get("aspects")
    if not aspects:
        raise TastebudError(f"aspect model {model['model_id']} does not record its aspects")
    return list(aspects)


def evaluate_frame(model: dict, frame: pd.DataFrame, *, predictor=None) -> dict:
    """Metrics of ``model`` on a wide label frame (review_id, text, one column per aspect).

    Aspects of the model that the frame has no column for are left out (not counted as absent).
    """
    from pipeline.aspects.scoring import AspectScorer

    aspects = model_aspects(model)
    scorer = predictor or AspectScorer.from_model(model)
    p_m, p_pol, _ = scorer.predict(frame["text"].tolist())
    targets = targets_from_frame(frame, aspects)
    metrics = aspect_metrics(targets, p_m, p_pol, aspects)
    pairs = frame.reindex(columns=["review_id", *[a for a in aspects if a in frame.columns]]).astype(str)
    digest = hashlib.sha1(pd.util.hash_pandas_object(pairs.sort_values("review_id"), index=False).values.tobytes())
    return {
        "task": "aspects", **metrics,
        # The columns list_models reads for every model: accuracy = polarity accuracy, macro_f1 = the
        # detection micro-F1 (see the comparison page's aspect section for both named as they are).
        "accuracy": metrics["polarity"]["accuracy"], "macro_f1": metrics["detection"]["micro_f1"],
        "n": int(len(frame)), "test_snapshot": digest.hexdigest()[:12], "aspects": aspects,
    }


def evaluate_aspects(db, model_id: str | None = None, *, data: str | Path | None = None, store_result: bool = True) -> dict:
    """Evaluate an aspect model on the store's test split (stored as its test evaluation), or on ``data``:
    an aspect label file (CSV/TSV/JSONL with text, or SemEval XML) read without touching the store.

    Returns:
        The metrics dict (see :func:`pipeline.aspects.metrics.aspect_metrics`) with ``model_id`` and
        ``dataset``.
    """
    model = aspect_model_row(db, model_id)
    left_out: dict[str, int] = {}
    if data is not None:
        frame, left_out = read_labeled_file(data, model_aspects(model))
        dataset = f"file:{Path(data).name}"
    else:
        with connect(db, read_only=True) as con:
            frame = aspect_store.fetch_aspect_split(con, "test", aspects=model_aspects(model))
        dataset = "test"
    if frame.empty:
        if data is None:
            raise TastebudError("the test split has no aspect-annotated reviews: import aspect labels first "
                                "(tastebud aspects import FILE)")
        if set(left_out) == {"unknown_review"}:
            raise TastebudError(f"{printable(Path(data).name)} gives no review text: evaluating on a file needs a "
                                "text column (text, review, sentence, ...) beside review_id, aspect and polarity")
        reasons = ", ".join(f"{n:,} {reason}" for reason, n in left_out.items())
        raise TastebudError(f"{printable(Path(data).name)} has no aspect-labeled rows to evaluate on"
                            + (f" (left out: {reasons}; `tastebud aspects import` on a copy of the store shows each "
                               "row's reason)" if reasons else ""))
    metrics = evaluate_frame(model, frame)
    if store_result and data is None:
        with transaction(db) as con:
            evaluation_store.insert_evaluation(con, model["model_id"], "test", metrics)
    return {**metrics, "model_id": model["model_id"], "dataset": dataset, "left_out": left_out}


def read_labeled_file(path: str | Path, aspects: list[str]) -> tuple[pd.DataFrame, dict[str, int]]:
    """A wide label frame (review_id, text, one column per aspect) from an aspect label file, and the rows
    left out per reason.

    The file is read and checked by the aspect importer (:func:`pipeline.data.aspect_import.read_aspect_file`:
    the same formats and rules as ``tastebud aspects import``); rows it would reject are left out (and
    counted), and a review's aspects that the file does not name are absent (its annotation is complete, as
    in the store). An aspect the model does not know is ``unknown_aspect``.
    """
    from pipeline.data.aspect_import import read_aspect_file

    rows, left_out = read_aspect_file(path, aspects)
    return aspect_store.wide_labels(rows, aspects), left_out


def bootstrap_gain(targets: np.ndarray, new: tuple, old: tuple, aspects: list[str], *, n_boot: int = 1000,
                   seed: int = 0) -> tuple[float, float, float]:
    """Paired bootstrap over reviews of the gain in validation-style score (mean of detection micro-F1 and
    polarity accuracy) of ``new`` over ``old`` predictions: (gain, 2.5% bound, 97.5% bound)."""
    rng = np.random.default_rng(seed)
    n = len(targets)
    gain = aspect_metrics(targets, *new, aspects)["score"] - aspect_metrics(targets, *old, aspects)["score"]
    draws = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        draws.append(aspect_metrics(targets[idx], new[0][idx], new[1][idx], aspects)["score"]
                     - aspect_metrics(targets[idx], old[0][idx], old[1][idx], aspects)["score"])
    low, high = np.percentile(draws, [2.5, 97.5])
    return float(gain), float(low), float(high)
