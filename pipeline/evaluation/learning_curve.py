"""Learning curve: test macro-F1 against training-set size, stored for the Model comparison page.

Each point trains on a stratified sample of the train split (human relabels always kept,
as in any sampled run), chooses what it chooses on the validation split, and is scored on
the frozen test split. Nothing is registered: a point is a measurement, not a model.
``kind="tfidf"`` takes seconds; ``kind="finetuned"`` runs a real fine-tune per point (a
recorded training run) and takes as long as that.
"""

from __future__ import annotations

import shutil
import uuid
from datetime import datetime

import numpy as np

from pipeline.evaluation.snapshot import snapshot_hash
from pipeline.evaluation.metrics import compute_classification_metrics
from pipeline.jobs import JobReporter
from pipeline.models.predictors import ClassifierPredictor
from pipeline.models.tfidf import fit_tfidf
from pipeline.train.config import TrainConfig
from pipeline.train.run import fit_trial, new_trial, load_training_data
from pipeline.train.state import BEST_DIR
from store import training_runs as run_store
from store.actors import Actor, require
from store.constants import LABEL_TO_ID
from store.db import connect, transaction
from store.errors import TastebudError
from store.evaluations import fetch_test_frame
from store.quality import insert_learning_curve

CURVE_KINDS = ("tfidf", "finetuned")
# Default sizes: doubling from this many examples up to the whole train split.
SMALLEST_SIZE = 250


def default_sizes(n_train: int) -> list[int]:
    """Doubling sizes from ``SMALLEST_SIZE`` to ``n_train`` (which is always the last point).

    Example:
        >>> default_sizes(1800)
        [250, 500, 1000, 1800]
    """
    sizes, n = [], SMALLEST_SIZE
    while n < n_train:
        sizes.append(n)
        n *= 2
    return sizes + [n_train]


def learning_curve(db, *, kind: str = "tfidf", sizes: list[int] | None = None, repeats: int = 1, config=None,
                   actor: Actor, reporter=None) -> dict:
    """Measure and store test macro-F1 at several training-set sizes.

    Args:
        db: store path.
        kind: "tfidf" (TF-IDF + LR, seconds) or "finetuned" (a real fine-tune per point with ``config``).
        sizes: training-set sizes (default :func:`default_sizes`); sizes above the train split are dropped.
        repeats: samples per size (different seeds); the page shows their mean and spread.
        config: the :class:`pipeline.train.config.TrainConfig` for "finetuned" (default: the default recipe).
        actor: needs "train".
        reporter: progress sink with ``log`` and ``progress``.

    Returns:
        {"curve_id", "kind", "points": [{n_train, repeat, macro_f1, accuracy, test_n, test_snapshot}]}.

    Raises:
        TastebudError: unknown kind, bad sizes or repeats, or empty splits.

    Example:
        >>> learning_curve("store.duckdb", kind="tfidf", actor=cli_actor())["points"][-1]["macro_f1"]  # doctest: +SKIP
    """

    require(actor, "train")
    if kind not in CURVE_KINDS:
        raise TastebudError(f"learning-curve kind must be one of {', '.join(CURVE_KINDS)}, got {kind!r}")
    if not isinstance(repeats, int) or repeats < 1:
        raise TastebudError("repeats must be an integer >= 1")
    if sizes is not None and (not sizes or any(not isinstance(n, int) or n < 3 for n in sizes)):
        raise TastebudError("sizes must be integers >= 3, e.g. --sizes 250,500,1000")
    config = config or TrainConfig()
    full = load_training_data(db, config.replace(max_train_examples=None))
    with connect(db, read_only=True) as con:
        test = fetch_test_frame(con)
    if test.empty:
        raise TastebudError("the test split has no labeled reviews; import more reviews first")
    n_full = len(full.train)
    wanted = sorted(set(default_sizes(n_full) if sizes is None else [n for n in sizes if n <= n_full]))
    if not wanted:
        raise TastebudError(f"every size is larger than the train split ({n_full} reviews)")
    log = reporter.log if reporter else (lambda message: None)
    references = test["label"].map(LABEL_TO_ID).to_numpy(dtype=np.int64)
    snapshot = snapshot_hash(test)
    curve_id = f"curve-{datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:4]}"
    points = []
    steps = [(n, r) for n in wanted for r in range(repeats)]
    for i, (n, repeat) in enumerate(steps):
        cfg = config.replace(max_train_examples=n if n < n_full else None, seed=config.seed + repeat)
        data = load_training_data(db, cfg)
        probs = _fit_and_predict(db, kind, cfg, data, test["text"].tolist(), reporter)
        m = compute_classification_metrics(probs, references)
        points.append({"n_train": len(data.train), "repeat": repeat, "macro_f1": m["macro_f1"], "accuracy": m["accuracy"],
                       "test_n": m["n"], "test_snapshot": snapshot})
        log(f"learning curve {kind}: {len(data.train)} train reviews (repeat {repeat}): test macro-F1 {m['macro_f1']:.4f}, "
            f"accuracy {m['accuracy']:.4f}")
        if reporter:
            reporter.progress((i + 1) / len(steps), f"learning curve point {i + 1}/{len(steps)}")
    params = {"repeats": repeats, "sizes": wanted, **({"config": config.to_dict()} if kind == "finetuned" else {})}
    with transaction(db) as con:
        insert_learning_curve(con, curve_id, kind, points, params=params)
    return {"curve_id": curve_id, "kind": kind, "points": points}


def _fit_and_predict(db, kind: str, cfg, data, test_texts: list[str], reporter) -> np.ndarray:
    if kind == "tfidf":
        ids = {k: f["label"].map(LABEL_TO_ID).to_numpy(dtype=np.int64) for k, f in (("train", data.train), ("val", data.val))}
        model = fit_tfidf(data.train["text"].tolist(), ids["train"], data.val["text"].tolist(), ids["val"])
        return model.predict_proba(test_texts)

    reporter = reporter or JobReporter(db, None)
    trial = new_trial(db, cfg, data, reporter=reporter)
    try:
        fit_trial(db, trial, data, reporter=reporter, span=(0.0, 0.0))
        predictor = ClassifierPredictor(trial.run_id, str(trial.run_dir / BEST_DIR), max_length=cfg.max_length,
                                       truncation=cfg.truncation)
        probs = predictor.predict_proba(test_texts)
        with transaction(db) as con:
            run_store.finish_run(con, trial.run_id, "succeeded", result=trial.result())
    finally:
        shutil.rmtree(trial.run_dir, ignore_errors=True)
    return probs
