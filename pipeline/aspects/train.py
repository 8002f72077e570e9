"""Train an aspect model on the store's aspect labels, register it, evaluate it, maybe promote it.

The same loop as review sentiment: the store's frozen train / val / test splits (a review's split is its
split for both tasks), validation each epoch with early stopping, a training-run row with epoch metrics
(the Training page and `tastebud jobs` show it like any run), a model registered with ``task = 'aspects'``,
its test evaluation, and promotion by a paired bootstrap on the test split. The first aspect model of a
store is promoted at once (there is nothing to compare with, and scoring needs a champion); later ones only
with ``promote_if_better``, as review models.
"""

from __future__ import annotations

import itertools
import json
import shutil
import uuid
from datetime import datetime
from pathlib import Path

import pandas as pd

from pipeline.jobs import JobCancelled, JobReporter, SpanReporter, runs_dir
from pipeline.models.loading import METADATA_FILE, check_base_model, default_base_model, models_dir
from pipeline.train.config import TrainConfig
from store import aspects as aspect_store
from store import models as model_store
from store import training_runs as run_store
from store.actors import Actor, audit, cli_actor, require
from store.db import connect, transaction
from store.errors import TastebudError

# Where aspect training differs from review training (bench/RESULTS.md, "Aspects"): short sentences and
# several heads learn more slowly, so more epochs at a smaller batch; validation picks the epoch (on SemEval
# the tokens head's validation score still rose at epoch 10, after a first peak at epoch 4: a patience of 5
# lets a run go past that dip and still stops one that has stalled). The "tokens" head (an input token per
# aspect, read through the whole encoder) beat the mean and attention heads on SemEval at the same cost per
# sentence plus six tokens.
ASPECT_DEFAULTS: dict = {"epochs": 10, "learning_rate": 1e-4, "batch_size": 16, "max_length": 128,
                         "early_stopping_patience": 5, "head": "tokens"}
# Review-training options aspect training has no use for, at the values that say what it does (recorded with
# the run as they are); another value is refused rather than silently ignored.
NOT_FOR_ASPECTS: dict = {
    "ensemble": (False, "there is no TF-IDF + LR ensemble of aspect models"),
    "class_weighting": ("none", "aspect losses weigh every polarity alike"),
    "prior_adjust": (False, "aspect models fit a mention threshold on validation, not class offsets"),
    "calibrate": (False, "aspect models are not temperature-scaled"),
    "truncation": ("head_tail", "aspect models read every sentence of a review whole"),
    "grad_accum": (1, "aspect training takes one batch of reviews per optimizer step"),
    "checkpoint_steps": (0, "aspect runs keep the best epoch in memory and are not resumed"),
}
# Fewer annotated reviews than this in the train split is refused (nothing useful can be learned).
MIN_TRAIN_REVIEWS = 20


def aspect_train_config(**overrides) -> TrainConfig:
    """The default aspect training options with ``overrides`` on top.

    Raises:
        ValueError: an override gives an option of :data:`NOT_FOR_ASPECTS` another value than its own.
    """
    inert = {name: value for name, (value, _) in NOT_FOR_ASPECTS.items()}
    return _for_aspects(TrainConfig(**{**ASPECT_DEFAULTS, **inert, **overrides}))


def _for_aspects(config: TrainConfig) -> TrainConfig:
    for name, (value, why) in NOT_FOR_ASPECTS.items():
        if getattr(config, name) != value:
            raise ValueError(f"{name}={getattr(config, name)!r} does not apply to aspect models: {why}")
    return config


def min_max_length(head: str, n_aspects: int) -> int:
    """The smallest max_length an aspect model takes: [CLS], two tokens of text and [SEP], plus, for the tokens
    head, one token per aspect and a closing [SEP] (:func:`pipeline.aspects.model.segment_reviews`).

    Example:
        >>> min_max_length("tokens", 5), min_max_length("mean", 5)
        (10, 4)
    """
    return 4 + (n_aspects + 1 if head == "tokens" else 0)


def check_max_length(config: TrainConfig, aspects: list[str]) -> None:
    """Refuse a max_length too short for a sentence with the head's extra tokens."""
    least = min_max_length(config.head, len(aspects))
    if config.max_length < least:
        raise TastebudError(f"max_length must be at least {least} for the {config.head} head with {len(aspects)} "
                            f"aspects, got {config.max_length}")


def sweep_configs(base_config: TrainConfig, grid: dict[str, list]) -> tuple[list[dict], list[TrainConfig]]:
    """(combinations, their configs) of an aspect sweep, every one checked for aspect training."""
    names = list(grid)
    combos = [dict(zip(names, values)) for values in itertools.product(*(grid[n] for n in names))]
    try:
        return combos, [_for_aspects(base_config.replace(**combo)) for combo in combos]
    except ValueError as exc:
        raise TastebudError(f"bad aspect sweep: {exc}") from exc


def check_aspect_runs(db, configs: list[TrainConfig]) -> None:
    """Refuse, before anything starts, runs (a sweep's trials) whose options cannot train on the store's aspects."""
    with connect(db, read_only=True) as con:
        aspects = aspect_store.aspect_names(con)
    for config in configs:
        check_max_length(config, aspects)


# Below this many train mentions an aspect's detection is a guess (it keeps its head, and is reported).
MIN_TRAIN_MENTIONS = 20


def sparse_aspect_warnings(train: pd.DataFrame, val: pd.DataFrame, aspects: list[str], *,
                           minimum: int = MIN_TRAIN_MENTIONS) -> list[str]:
    """Warnings for aspects with too few mentioned labels to learn (train) or to judge (val).

    Example:
        >>> sparse_aspect_warnings(train, val, ["food", "parking"])  # doctest: +SKIP
        ['parking: 0 train mentions: the model cannot learn it yet; label some first']
    """
    out = []
    for aspect in aspects:
        n_train = int((train[aspect] != "absent").sum()) if aspect in train else 0
        n_val = int((val[aspect] != "absent").sum()) if aspect in val else 0
        if n_train == 0:
            out.append(f"{aspect}: 0 train mentions: the model cannot learn it yet; label some first")
        elif n_train < minimum:
            out.append(f"{aspect}: {n_train} train mentions (under {minimum}): its detection will be unreliable")
        if n_train and n_val == 0:
            out.append(f"{aspect}: no val mention: validation cannot judge it")
    return out


def load_aspect_data(db, config: TrainConfig) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """(train, val, aspects): the aspect-annotated reviews of each split, wide (one column per aspect)."""
    with connect(db, read_only=True) as con:
        aspects = aspect_store.aspect_names(con)
        train = aspect_store.fetch_aspect_split(con, "train", aspects=aspects)
        val = aspect_store.fetch_aspect_split(con, "val", aspects=aspects)
    if len(train) < MIN_TRAIN_REVIEWS or val.empty:
        raise TastebudError(
            f"aspect training needs at least {MIN_TRAIN_REVIEWS} aspect-annotated reviews in the train split and "
            f"some in the val split (have {len(train)} and {len(val)}): import aspect labels with "
            "`tastebud aspects import FILE` or label aspects on the Hard cases page"
        )
    if config.max_train_examples and len(train) > config.max_train_examples:
        train = train.sample(n=config.max_train_examples, random_state=config.seed).sort_values("review_id")
    # An aspect nobody has labeled mentioned yet cannot be learned: it keeps its head but is reported.
    return train.reset_index(drop=True), val.reset_index(drop=True), aspects


def train_aspects(
    db,
    config: TrainConfig | None = None,
    *,
    reporter: JobReporter | None = None,
    actor: Actor | None = None,
    promote_if_better: bool = False,
    sweep_id: str | None = None,
    register: bool = True,
) -> str | dict:
    """Fine-tune, register and evaluate one aspect model; returns its model id.

    Args:
        db: the store.
        config: options (default :func:`aspect_train_config`); ``base_model`` any HF id or local path.
        reporter: progress, log and cancellation (default: console only).
        actor: who trains (default: the CLI operator); needs "train".
        promote_if_better: promote when the paired bootstrap on the test split says the new model is better
            than the aspect champion (the first aspect model is promoted regardless).
        sweep_id / register: used by :func:`sweep_aspects` (a trial that is not registered returns its
            fitted result instead of a model id).

    Example:
        >>> train_aspects("store.duckdb")  # doctest: +SKIP
        'asp-20261206-211500-1a2b'
    """
    from pipeline.aspects.fit import fit_aspects
    from pipeline.aspects.model import targets_from_frame
    from pipeline.train.run import process_identity  # the same process identity as review runs (reaping)

    actor = actor or cli_actor()
    require(actor, "train")
    config = config or aspect_train_config()
    reporter = reporter or JobReporter(db, None)
    base = check_base_model(config.base_model) if config.base_model else default_base_model()
    train, val, aspects = load_aspect_data(db, config)
    check_max_length(config, aspects)
    for warning in sparse_aspect_warnings(train, val, aspects):
        reporter.log(f"warning: {warning}")
    run_id = f"run-{datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
    run_dir = runs_dir(db) / "training" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    with transaction(db) as con:
        run_store.create_run(con, run_id=run_id, config={**config.to_dict(), "task": "aspects", "aspects": aspects},
                             checkpoint_dir=str(run_dir), job_id=reporter.job_id, sweep_id=sweep_id, **process_identity())
    reporter.log(f"aspect training run {run_id}: {len(train)} train / {len(val)} val annotated reviews")

    def on_epoch(entry: dict) -> None:
        metrics = entry["val_metrics"]
        with transaction(db) as con:
            run_store.record_epoch(con, run_id, epoch=float(entry["epoch"]), step=int(entry["step"]),
                                   train_loss=entry["train_loss"], val_loss=None,
                                   val_accuracy=metrics["polarity"]["accuracy"], val_macro_f1=metrics["score"])

    span = SpanReporter(reporter, 0.0, 0.85)
    try:
        fitted = fit_aspects(
            train["text"].tolist(), targets_from_frame(train, aspects), val["text"].tolist(),
            targets_from_frame(val, aspects), aspects, config, base_model=base, log=reporter.log,
            progress=lambda fraction, message: span.progress(fraction, message), on_epoch=on_epoch,
        )
    except (JobCancelled, KeyboardInterrupt) as exc:
        _end_run(db, run_id, "cancelled", f"{type(exc).__name__}: {exc}")
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    except BaseException as exc:
        _end_run(db, run_id, "failed", f"{type(exc).__name__}: {exc}")
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    if not register:
        with transaction(db) as con:
            run_store.finish_run(con, run_id, "succeeded", result=_run_result(fitted))
        shutil.rmtree(run_dir, ignore_errors=True)
        return {"run_id": run_id, "fitted": fitted, "config": config}
    model_id = _register(db, run_id, fitted, config, base, aspects, train, val, actor)
    shutil.rmtree(run_dir, ignore_errors=True)
    _after_registration(db, model_id, actor, reporter, promote_if_better)
    return model_id


def sweep_aspects(db, base_config: TrainConfig, grid: dict[str, list], *, reporter: JobReporter | None = None,
                  actor: Actor | None = None, promote_if_better: bool = False) -> dict:
    """One aspect run per combination of ``grid``; the best by validation score is registered.

    Returns:
        {"sweep_id", "model_id", "trials": [{run_id, params, val_score, best}]}.
    """
    actor = actor or cli_actor()
    require(actor, "train")
    if not grid:
        raise TastebudError("a sweep needs at least one option with values, e.g. --sweep lr=3e-5,1e-4")
    reporter = reporter or JobReporter(db, None)
    combos, configs = sweep_configs(base_config, grid)
    check_aspect_runs(db, configs)  # every trial's options are checked before the first one trains
    sweep_id = f"sweep-{datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:4]}"
    trials = []
    for i, (combo, config) in enumerate(zip(combos, configs)):
        reporter.log(f"aspect sweep {sweep_id}: trial {i + 1}/{len(combos)} {combo}")
        span = SpanReporter(reporter, 0.85 * i / len(combos), 0.85 * (i + 1) / len(combos))
        trials.append((combo, train_aspects(db, config, reporter=span, actor=actor, sweep_id=sweep_id,
                                            register=False)))
    best_combo, best = max(trials, key=lambda t: t[1]["fitted"].val_metrics["score"])
    config = best["config"]
    base = check_base_model(config.base_model) if config.base_model else default_base_model()
    train, val, aspects = load_aspect_data(db, config)
    model_id = _register(db, best["run_id"], best["fitted"], config, base, aspects, train, val, actor)
    _after_registration(db, model_id, actor, reporter, promote_if_better)
    summary = [{"run_id": t["run_id"], "params": combo, "val_score": round(t["fitted"].val_metrics["score"], 4),
                "best": t is best} for combo, t in trials]
    reporter.log(f"aspect sweep {sweep_id}: best {best_combo} (val score {best['fitted'].val_metrics['score']:.4f})")
    return {"sweep_id": sweep_id, "model_id": model_id, "trials": summary}


def _run_result(fitted) -> dict:
    return {"val_metrics": _short(fitted.val_metrics), "device": fitted.device, "precision": fitted.precision,
            "duration_s": fitted.duration_s, "threshold": fitted.threshold,
            "throughput": {"train_reviews_per_s": fitted.examples_per_s}}


def _short(metrics: dict) -> dict:
    return {"score": metrics["score"], "detection_micro_f1": metrics["detection"]["micro_f1"],
            "polarity_accuracy": metrics["polarity"]["accuracy"], "polarity_macro_f1": metrics["polarity"]["macro_f1"],
            # What every model row carries (the registry's columns): polarity accuracy and the score.
            "accuracy": metrics["polarity"]["accuracy"], "macro_f1": metrics["score"]}


def _label_counts(frame: pd.DataFrame, aspects: list[str]) -> dict:
    return {a: {k: int(v) for k, v in frame[a].value_counts().items()} for a in aspects}


def _register(db, run_id: str, fitted, config: TrainConfig, base: str, aspects: list[str], train: pd.DataFrame,
              val: pd.DataFrame, actor: Actor) -> str:
    """Save the fitted model into the models directory and record it, in one transaction."""
    model_id = f"asp-{datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:4]}"
    target = models_dir(db) / model_id
    target.parent.mkdir(parents=True, exist_ok=True)
    fitted.model.save_pretrained(target)
    fitted.tokenizer.save_pretrained(target)
    snapshot = {"n_train": len(train), "n_val": len(val),
                "labels_hash": f"{pd.util.hash_pandas_object(train, index=False).sum() & 0xFFFFFFFFFFFF:012x}"}
    params = {**config.to_dict(), "task": "aspects", "aspects": aspects, "threshold": fitted.threshold,
              "precision": fitted.precision, "run_id": run_id, "history": fitted.history,
              "throughput": {"train_reviews_per_s": fitted.examples_per_s}}
    counts = {"train": _label_counts(train, aspects), "val": _label_counts(val, aspects)}
    (target / METADATA_FILE).write_text(json.dumps(
        {"task": "aspects", "model_id": model_id, "aspects": aspects, "base_model": base, "config": config.to_dict(),
         "max_length": config.max_length, "threshold": fitted.threshold, "head_layout": "mentioned,negative,neutral,positive",
         "val_metrics": fitted.val_metrics, "data_snapshot": snapshot}, indent=2, default=str))
    stem = "minilm" if config.base_model is None else Path(base).name
    name = config.name or f"aspects-{stem}-lr{config.learning_rate:g}"
    with transaction(db) as con:
        model_store.register_model(
            con, model_id=model_id, kind="finetuned", name=name, base_model=base, path=str(target), params=params,
            data_snapshot=snapshot, label_counts=counts, device=fitted.device, duration_s=fitted.duration_s,
            val_metrics=_short(fitted.val_metrics), task="aspects",
        )
        run_store.finish_run(con, run_id, "succeeded", model_id=model_id, result=_run_result(fitted))
        run_store.set_run_model(con, run_id, model_id)
        audit(con, actor, "model.register", target=model_id, detail={"run_id": run_id, "task": "aspects"})
    return model_id


def _end_run(db, run_id: str, status: str, error: str) -> None:
    try:
        with transaction(db, timeout_s=30) as con:
            run_store.finish_run(con, run_id, status, error=error)
    except Exception:  # the store is busy or gone; the reaper marks the run failed later
        pass


def _after_registration(db, model_id: str, actor: Actor, reporter: JobReporter, promote_if_better: bool) -> None:
    """Evaluate on the test split; promote the first aspect model, or a better one when asked."""
    from pipeline.aspects.evaluation import evaluate_aspects
    from pipeline.aspects.metrics import headline

    reporter.progress(0.9, f"evaluating {model_id} on the test split", force=True)
    try:
        metrics = evaluate_aspects(db, model_id)
        reporter.log(f"{model_id} on the test split ({metrics['n']} annotated reviews): {headline(metrics)}")
    except TastebudError as exc:
        metrics = None
        reporter.log(f"{model_id} was not evaluated: {exc}")
    with connect(db, read_only=True) as con:
        champion = model_store.get_champion(con, "aspects")
    if champion is None:
        with transaction(db) as con:
            model_store.promote_model(con, actor, model_id, reason="the store's first aspect model")
        reporter.log(f"{model_id} is the aspect champion (the store had none)")
    elif promote_if_better:
        decision = compare_with_champion(db, model_id, champion)
        reporter.log(decision["message"])
        if decision["promote"]:
            with transaction(db) as con:
                model_store.promote_model(con, actor, model_id, reason=decision["message"])
    reporter.progress(1.0, f"aspect model {model_id} registered", force=True)


def compare_with_champion(db, model_id: str, champion: dict) -> dict:
    """Paired bootstrap of the test-split score (mean of detection micro-F1 and polarity accuracy) of a new
    aspect model against the aspect champion, on today's test labels.

    Returns:
        {"promote": bool, "gain", "ci_low", "ci_high", "message"}.
    """
    from pipeline.aspects.evaluation import aspect_model_row, bootstrap_gain, model_aspects
    from pipeline.aspects.model import targets_from_frame
    from pipeline.aspects.scoring import AspectScorer

    challenger = aspect_model_row(db, model_id)
    aspects = model_aspects(challenger)
    if model_aspects(champion) != aspects:
        return {"promote": True, "gain": None, "ci_low": None, "ci_high": None,
                "message": f"{model_id} answers for a different aspect set than {champion['model_id']}: promoted"}
    with connect(db, read_only=True) as con:
        test = aspect_store.fetch_aspect_split(con, "test", aspects=aspects)
    if test.empty:
        return {"promote": False, "gain": None, "ci_low": None, "ci_high": None,
                "message": "no aspect-annotated test reviews to compare on: the champion stays"}
    texts = test["text"].tolist()
    new = AspectScorer.from_model(challenger).predict(texts)[:2]
    old = AspectScorer.from_model(champion).predict(texts)[:2]
    gain, low, high = bootstrap_gain(targets_from_frame(test, aspects), new, old, aspects, n_boot=300)
    promote = low > 0
    verdict = "promoted" if promote else "the champion stays"
    return {"promote": promote, "gain": gain, "ci_low": low, "ci_high": high,
            "message": f"{model_id} vs aspect champion {champion['model_id']}: test score {gain:+.4f} "
                       f"(95% CI {low:+.4f} to {high:+.4f}): {verdict}"}


def run_job(db, params: dict, reporter: JobReporter) -> dict:
    """Job kind "train_aspects": params are TrainConfig options (aspect defaults for the rest) plus optional
    "sweep" (grid) and "promote_if_better".

    Returns:
        {"model_id", "metrics"} (plus "sweep_id" and "trials" for a sweep).
    """
    from pipeline.train.run import job_actor

    params = dict(params or {})
    grid = params.pop("sweep", None)
    promote = bool(params.pop("promote_if_better", False))
    params.pop("task", None)
    try:
        config = aspect_train_config(**params)
    except (TypeError, ValueError) as exc:
        raise TastebudError(f"bad aspect training parameters: {exc}") from exc
    actor = job_actor(db, reporter.job_id)
    if grid:
        result = sweep_aspects(db, config, grid, reporter=reporter, actor=actor, promote_if_better=promote)
    else:
        result = {"model_id": train_aspects(db, config, reporter=reporter, actor=actor, promote_if_better=promote)}
    from store.evaluations import fetch_latest_evaluation

    with connect(db, read_only=True) as con:
        result["metrics"] = fetch_latest_evaluation(con, result["model_id"])
    return result
