"""Fine-tune a 3-label sentiment classifier on the store's train split and register it.

A run reads its data in one short read-only connection, then trains with no connection
open (the dashboard reads concurrently from another process), writing progress, epoch
metrics and its outcome in short transactions. Everything a run needs to continue lives
in its run directory (``runs/training/RUN_ID``): a data snapshot, Trainer checkpoints and
the best weights so far; ``--resume`` picks it up. A run whose process was killed stays
``running`` in the store until :func:`reap_dead_runs` (called at the start of every
training and listing) notices the process is gone and marks it failed. The champion is
never touched by training unless ``promote_if_better`` is asked for.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import socket
import uuid
from datetime import datetime
from pathlib import Path

import pandas as pd

from pipeline.jobs import JobCancelled, JobReporter, pid_alive, process_start_token, runs_dir
from pipeline.models.loading import METADATA_FILE, check_base_model, default_base_model, models_dir
from pipeline.train.config import TrainConfig
from pipeline.train.records import is_store_writer
from pipeline.train.state import BEST_DIR, CHECKPOINT_DIR, DATA_FILE, Trial, TrainingData
from store import evaluations as evaluation_store
from store import labels as label_store
from store import models as model_store
from store import training_runs as run_store
from store.actors import Actor, audit, cli_actor, require
from store.constants import LABEL_TO_ID, LABELS
from store.db import connect, transaction
from store.errors import TastebudError
from store.jobs import get_job
from store.reviews import fetch_labeled_split


# ---------------------------------------------------------------- public API


def train(
    db,
    config: TrainConfig,
    *,
    reporter: JobReporter | None = None,
    resume: bool | str = False,
    actor: Actor | None = None,
    promote_if_better: bool = False,
    round_id: int | None = None,
) -> str | None:
    """Fine-tune, register and evaluate one model; returns its model id.

    Args:
        db: store path.
        config: hyperparameters (ignored when resuming: the interrupted run's own config is used).
        reporter: progress sink (default: console only).
        resume: True continues the newest interrupted run from its last checkpoint, a run id
            continues that run; False starts a new run.
        actor: who trains (default: the CLI operator); needs the "train" permission.
        promote_if_better: promote the new model by the rule retrain uses
            (:func:`pipeline.loop.promotion.promote_if_better`: a paired bootstrap on the current test split).
        round_id: the retraining round this model belongs to (its name says ``-r{round_id}``);
            None names it by the newest label round it was trained on.

    Returns:
        The registered model id (the ensemble's when ``config.ensemble`` builds one, the default recipe's
        case: see :func:`finish_run`); None on a rank other than 0 of a ``torchrun`` / ``accelerate launch``
        run (rank 0 alone records the run and registers the model; the others only train).

    Example:
        >>> train("store.duckdb", TrainConfig(epochs=1))  # doctest: +SKIP
        'ft-20261125-101500-1a2b'
    """
    actor = actor or cli_actor()
    require(actor, "train")
    reporter = reporter or JobReporter(db, None)
    writer = is_store_writer()
    trial = data = None
    if writer:
        trial, data = prepare_run(db, config, reporter=reporter, resume=resume, round_id=round_id)
    if _world_size() > 1:  # torchrun / accelerate launch: every rank trains the run rank 0 created
        trial, data = _share_from_rank0((trial, data))
    fit_trial(db, trial, data, reporter=reporter, span=(0.0, 0.9))
    if not writer:
        return None
    return finish_run(db, trial, data, actor=actor, reporter=reporter, promote_if_better=promote_if_better)


def prepare_run(db, config: TrainConfig, *, reporter: JobReporter, resume: bool | str = False,
                round_id: int | None = None) -> tuple[Trial, TrainingData]:
    """Record a new run (or restart an interrupted one) and read its data: what every way of training starts with.

    Returns:
        (trial, data); the run row is in the store, its data snapshot in its run directory.
    """
    reap_dead_runs(db)
    if resume:
        trial = _resume_trial(db, None if resume is True else str(resume), reporter)
        data = _read_snapshot(Path(trial.run_dir))
    else:
        data = load_training_data(db, config)
        _warn_readiness(data, reporter)
        trial = new_trial(db, config, data, reporter=reporter)
    if round_id is not None:
        data.round = int(round_id)
    return trial, data


def finish_run(db, trial: Trial, data: TrainingData, *, actor: Actor, reporter: JobReporter,
               promote_if_better: bool = False) -> str:
    """Register the run's best weights (``trial.run_dir / "best"``) as one model and evaluate it; with
    ``config.ensemble`` also register its ensemble with TF-IDF + LR.

    Returns:
        The run's product: the ensemble's id when the config builds one (the model that is promoted,
        compared and reported), else the fine-tuned model's.
    """
    model_id = _register(db, trial, data, actor)
    return _after_registration(db, model_id, actor, reporter, promote_if_better,
                               data=data if trial.config.ensemble else None)


def sweep(
    db,
    base_config: TrainConfig,
    grid: dict[str, list],
    *,
    reporter: JobReporter | None = None,
    actor: Actor | None = None,
    promote_if_better: bool = False,
) -> dict:
    """Train one run per combination of ``grid`` values; register the best by validation macro-F1.

    Every trial is recorded as a training run (same sweep id) with its epoch metrics; only the
    best trial's weights are kept and registered (and evaluated on the test split).

    Args:
        db: store path.
        base_config: the values not swept.
        grid: option name -> values, e.g. ``{"learning_rate": [1e-5, 3e-5], "epochs": [2, 3]}``.
        reporter: progress sink.
        actor: needs "train".
        promote_if_better: as in :func:`train`.

    Returns:
        {"sweep_id", "model_id" (best), "trials": [{run_id, params, val_macro_f1, val_accuracy, best}]}.

    Example:
        >>> sweep("store.duckdb", TrainConfig(), {"learning_rate": [3e-5, 1e-4]})["model_id"]  # doctest: +SKIP
    """
    actor = actor or cli_actor()
    require(actor, "train")
    if not grid:
        raise TastebudError("a sweep needs at least one option with values, e.g. --sweep lr=3e-5,1e-4")
    reporter = reporter or JobReporter(db, None)
    reap_dead_runs(db)
    names = list(grid)
    combos = [dict(zip(names, values)) for values in itertools.product(*(grid[n] for n in names))]
    configs = [base_config.replace(**combo) for combo in combos]
    data = load_training_data(db, base_config)
    _warn_readiness(data, reporter)
    sweep_id = f"sweep-{datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:4]}"
    trials, summary = [], []
    for i, (combo, cfg) in enumerate(zip(combos, configs)):
        reporter.log(f"sweep {sweep_id}: trial {i + 1}/{len(configs)} {combo}")
        trial = new_trial(db, cfg, data, reporter=reporter, sweep_id=sweep_id)
        fit_trial(db, trial, data, reporter=reporter, span=(0.9 * i / len(configs), 0.9 * (i + 1) / len(configs)))
        with transaction(db) as con:
            run_store.finish_run(con, trial.run_id, "succeeded", result=trial.result())
        trials.append(trial)
        summary.append({"run_id": trial.run_id, "params": combo, **_short(trial.val_metrics)})
    best = max(trials, key=lambda t: t.val_metrics.get("macro_f1", -1.0))
    model_id = _register(db, best, data, actor)
    for trial in trials:
        if trial is not best:
            shutil.rmtree(trial.run_dir, ignore_errors=True)
    reporter.log(f"sweep {sweep_id}: best trial {best.run_id} (val macro-F1 {best.val_metrics['macro_f1']:.4f})")
    model_id = _after_registration(db, model_id, actor, reporter, promote_if_better,
                                   data=data if best.config.ensemble else None)
    for row in summary:
        row["best"] = row["run_id"] == best.run_id
    return {"sweep_id": sweep_id, "model_id": model_id, "trials": summary}


def run_job(db, params: dict, reporter: JobReporter) -> dict:
    """Job kind "train": ``params`` is ``TrainConfig.to_dict()`` plus optional "sweep" (grid),
    "resume" (bool or run id) and "promote_if_better".

    Returns:
        {"model_id", "metrics"} (plus "sweep_id" and "trials" for a sweep).
    """
    params = dict(params or {})
    grid = params.pop("sweep", None)
    resume = params.pop("resume", False)
    promote = bool(params.pop("promote_if_better", False))
    try:
        config = TrainConfig.from_dict(params)
    except ValueError as exc:
        raise TastebudError(f"bad training parameters: {exc}") from exc
    actor = job_actor(db, reporter.job_id)
    if grid:
        result = sweep(db, config, grid, reporter=reporter, actor=actor, promote_if_better=promote)
    else:
        result = {"model_id": train(db, config, reporter=reporter, resume=resume, actor=actor, promote_if_better=promote)}
    with connect(db, read_only=True) as con:
        result["metrics"] = evaluation_store.fetch_latest_evaluation(con, result["model_id"])
    return result


def load_training_data(db, config: TrainConfig) -> TrainingData:
    """Read the train and val splits with their current labels (one short read-only connection).

    Raises:
        TastebudError: a split is empty or the train split has fewer than two classes.
    """
    with connect(db, read_only=True) as con:
        train_df = fetch_labeled_split(con, "train")
        val_df = fetch_labeled_split(con, "val")
        label_round = label_store.current_label_round(con)
    if train_df.empty:
        raise TastebudError("the train split has no labeled reviews: import or label reviews first")
    if val_df.empty:
        raise TastebudError("the val split has no labeled reviews: import more reviews (10% go to val)")
    if train_df["label"].nunique() < 2:
        raise TastebudError("the train split has only one class; a classifier needs at least two")
    if config.max_train_examples and len(train_df) > config.max_train_examples:
        # Human relabels are the point of a round: a sample always keeps them, and fills the rest by class.
        human = train_df[train_df["label_source"] == "human"]
        others = train_df[train_df["label_source"] != "human"]
        room = max(0, config.max_train_examples - len(human))
        sampled = _stratified_sample(others, room, config.seed) if 0 < room < len(others) else others.iloc[:room]
        train_df = pd.concat([human, sampled]).sort_values("review_id").reset_index(drop=True)
    return TrainingData(train=train_df[["review_id", "text", "label"]], val=val_df[["review_id", "text", "label"]], round=label_round)


def reap_dead_runs(db) -> list[str]:
    """Mark runs recorded as running whose process is gone as failed; returns their run ids.

    A run on another host is left alone (its process cannot be checked from here).
    """
    with connect(db, read_only=True) as con:
        running = run_store.running_runs(con)
    dead = [r["run_id"] for r in running if not _run_process_alive(r)]
    if dead:
        with transaction(db) as con:
            for run_id in dead:
                run_store.finish_run(con, run_id, "failed", error="the training process exited without reporting")
    return dead


# ---------------------------------------------------------------- data


def _stratified_sample(frame: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """Exactly ``n`` rows keeping class proportions (largest-remainder rounding)."""
    counts = frame["label"].value_counts().sort_index()
    raw = counts * n / len(frame)
    quota = raw.astype(int)
    for label in (raw - quota).sort_values(ascending=False).index[: n - int(quota.sum())]:
        quota[label] += 1
    parts = [frame[frame["label"] == label].sample(n=int(k), random_state=seed) for label, k in quota.items() if k]
    return pd.concat(parts).sort_values("review_id").reset_index(drop=True)


def _write_snapshot(run_dir: Path, data: TrainingData) -> None:
    frame = pd.concat([data.train.assign(split="train"), data.val.assign(split="val")])
    frame.attrs = {}
    frame.to_parquet(run_dir / DATA_FILE, index=False)
    (run_dir / "round.json").write_text(json.dumps({"round": data.round}))


def _read_snapshot(run_dir: Path) -> TrainingData:
    path = run_dir / DATA_FILE
    if not path.exists():
        raise TastebudError(f"cannot resume: the run's data snapshot {path} is gone")
    frame = pd.read_parquet(path)
    round_file = run_dir / "round.json"
    label_round = json.loads(round_file.read_text())["round"] if round_file.exists() else 0
    cols = ["review_id", "text", "label"]
    return TrainingData(
        train=frame.loc[frame["split"] == "train", cols].reset_index(drop=True),
        val=frame.loc[frame["split"] == "val", cols].reset_index(drop=True),
        round=label_round,
    )


# ---------------------------------------------------------------- runs


def process_identity() -> dict:
    """Who runs a training run (pid, host, process start): stored on the run so :func:`reap_dead_runs` can tell a
    dead run from a live one, for review and aspect runs alike."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "proc_start": process_start_token(os.getpid())}


def _run_process_alive(run: dict) -> bool:
    if run.get("host") and run["host"] != socket.gethostname():
        return True
    return pid_alive(run.get("pid"), run.get("proc_start"))


def new_trial(db, config: TrainConfig, data: TrainingData, *, reporter: JobReporter, sweep_id: str | None = None) -> Trial:
    check_base_model(config.base_model)  # a bad --base-model fails here: no run directory, no run row
    run_id = f"run-{datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
    run_dir = runs_dir(db) / "training" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_snapshot(run_dir, data)
    with transaction(db) as con:
        run_store.create_run(
            con, run_id=run_id, config=config.to_dict(), checkpoint_dir=str(run_dir / CHECKPOINT_DIR),
            job_id=reporter.job_id, sweep_id=sweep_id, **process_identity(),
        )
    reporter.log(f"training run {run_id}: {len(data.train)} train / {len(data.val)} val reviews")
    return Trial(run_id=run_id, config=config, run_dir=run_dir, sweep_id=sweep_id)


def _resume_trial(db, run_id: str | None, reporter: JobReporter) -> Trial:
    with connect(db, read_only=True) as con:
        run = run_store.get_run(con, run_id) if run_id else run_store.latest_interrupted_run(con)
    if run is None:
        raise TastebudError(f"no training run {run_id}" if run_id else "there is no interrupted training run to resume")
    if run["status"] not in ("failed", "cancelled") or run["model_id"]:
        raise TastebudError(f"run {run['run_id']} is {run['status']}; only a failed or cancelled run can be resumed")
    run_dir = Path(run["checkpoint_dir"]).parent
    if not run_dir.exists():
        raise TastebudError(f"cannot resume run {run['run_id']}: its directory {run_dir} is gone")
    with transaction(db) as con:
        run_store.restart_run(con, run["run_id"], job_id=reporter.job_id, **process_identity())
    reporter.log(f"resuming training run {run['run_id']}")
    return Trial(
        run_id=run["run_id"], config=TrainConfig.from_dict(run["config"]), run_dir=run_dir,
        sweep_id=run["sweep_id"], resuming=True,
    )


def fit_trial(db, trial: Trial, data: TrainingData, *, reporter: JobReporter, span: tuple[float, float], fit=None) -> None:
    """Train one run (with ``fit``, default the local loop), recording its outcome; interrupted runs are
    marked cancelled or failed (by the store writer only)."""
    if fit is None:
        from pipeline.train.loop import fit_classifier as fit  # loads torch and transformers: `tastebud models` never needs them

    try:
        fit(db, trial, data, reporter=reporter, span=span)
    except (JobCancelled, KeyboardInterrupt) as exc:
        _mark_ended(db, trial.run_id, "cancelled", f"{type(exc).__name__}: {exc}")
        raise
    except BaseException as exc:
        _mark_ended(db, trial.run_id, "failed", f"{type(exc).__name__}: {exc}")
        raise


def _mark_ended(db, run_id: str, status: str, error: str) -> None:
    if not is_store_writer():
        return
    try:
        with transaction(db, timeout_s=30) as con:
            run_store.finish_run(con, run_id, status, error=error)
    except Exception:  # the store is busy or gone; the reaper marks the run failed later
        pass


def _register(db, trial: Trial, data: TrainingData, actor: Actor) -> str:
    """Move the best weights into the models directory and record the model in one transaction."""
    model_id = f"ft-{datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:4]}"
    cfg = trial.config
    base = cfg.base_model or default_base_model()
    target = models_dir(db) / model_id
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(trial.run_dir / BEST_DIR, target)
    snapshot = data.snapshot()
    metadata = {
        "model_id": model_id, "run_id": trial.run_id, "config": cfg.to_dict(), "base_model": base,
        "label2id": LABEL_TO_ID, "data_snapshot": snapshot, "label_counts": data.label_counts(),
        "val_metrics": trial.val_metrics, "max_length": cfg.max_length, "truncation": cfg.truncation,
        # Read by pipeline.models.loading.load_classifier to rebuild the right head offline.
        "head": cfg.head,
        # Temperature and class offsets fitted on validation, already baked into the output layer.
        "calibration": trial.adjustment,
    }
    (target / METADATA_FILE).write_text(json.dumps({"labels": list(LABELS), **metadata}, indent=2, default=str))
    stem = "minilm" if cfg.base_model is None else Path(base).name
    name = cfg.name or f"{stem}-r{data.round}-lr{cfg.learning_rate:g}"
    with transaction(db) as con:
        model_store.register_model(
            con, model_id=model_id, kind="finetuned", name=name, base_model=base, path=str(target),
            params={**cfg.to_dict(), "precision": trial.precision, "run_id": trial.run_id,
                    "throughput": trial.throughput, "calibration": trial.adjustment},
            data_snapshot=snapshot, round=data.round, label_counts=data.label_counts(),
            device=trial.device, duration_s=trial.duration_s, val_metrics=trial.val_metrics,
        )
        run_store.finish_run(con, trial.run_id, "succeeded", model_id=model_id, result=trial.result())
        run_store.set_run_model(con, trial.run_id, model_id)  # a sweep trial was already marked succeeded
        audit(con, actor, "model.register", target=model_id, detail={"run_id": trial.run_id, "kind": "finetuned"})
    shutil.rmtree(trial.run_dir, ignore_errors=True)
    return model_id


def _warn_readiness(data: TrainingData, reporter: JobReporter) -> None:
    from pipeline.train.readiness import readiness_warnings

    counts = data.label_counts()["train"]
    for warning in readiness_warnings(counts):
        reporter.log(f"warning: {warning}")


def _after_registration(db, model_id: str, actor: Actor, reporter: JobReporter, promote_if_better: bool,
                        *, data: TrainingData | None = None) -> str:
    """Evaluate the new model; build its ensemble when the config asks (``data`` given); promote the
    run's product by the retrain rule when asked; compare with the best baseline. Returns the product's id
    (the ensemble's when built: bench/RESULTS.md, issue 13, measured it above the fine-tuned model alone)."""
    # Imported here: evaluation loads torch and `evaluate`, which `tastebud models` (reap_dead_runs) never needs.
    from pipeline.evaluation.comparison import compare_with_best_baseline
    from pipeline.evaluation.evaluator import current_test_evaluation
    from pipeline.loop.promotion import promote_if_better as promote_when_better

    reporter.progress(0.92, f"evaluating {model_id} on the test split", force=True)
    try:
        result = current_test_evaluation(db, model_id)
    except TastebudError as exc:  # e.g. an empty test split: the model stays registered, unevaluated
        reporter.log(f"{model_id} was not evaluated: {exc}")
        result = None
    else:
        reporter.log(f"{model_id}: test accuracy {result['accuracy']:.4f}, macro-F1 {result['macro_f1']:.4f} (n={result['n']})")
    compared = [model_id]
    if data is not None:
        from pipeline.models.ensemble import register_ensemble

        reporter.progress(0.95, "fitting the ensemble with TF-IDF + LR on validation", force=True)
        compared.append(register_ensemble(db, model_id, data.train, data.val, actor=actor, reporter=reporter,
                                          evaluate=result is not None))
    product = compared[-1]
    if promote_if_better:
        # Scores the product (and a champion whose stored evaluation is stale) on the current test split.
        try:
            reporter.log(promote_when_better(db, product, actor)["message"])
        except TastebudError as exc:  # e.g. a champion but no labeled test review: the models stay registered
            reporter.log(f"{product} was not promoted: {exc}")
    if result is not None:
        for mid in compared:
            reporter.log(compare_with_best_baseline(db, mid)["line"])
    reporter.progress(1.0, f"registered {product}", force=True)
    return product


def _world_size() -> int:
    """Processes in this launch: ``torchrun`` / ``accelerate launch`` set ``WORLD_SIZE``."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def _share_from_rank0(value):
    """Rank 0's ``value`` on every rank (joins the launch's process group; the Trainer reuses it)."""
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _short(metrics: dict) -> dict:
    return {"val_macro_f1": metrics.get("macro_f1"), "val_accuracy": metrics.get("accuracy")}


def job_actor(db, job_id: str | None) -> Actor:
    """The person who started the job (start_job already checked their permission)."""
    name = "job"
    if job_id:
        with connect(db, read_only=True) as con:
            job = get_job(con, job_id)
        name = (job or {}).get("actor") or name
    return Actor(name=name, role="data_scientist")


