"""Model commands: train, evaluate, baselines, models, promote, rollback."""

from __future__ import annotations

import math
from pathlib import Path

import typer

from pipeline.cli.app import app, db_path, emit_json
from pipeline.cli.options import with_train_config
from pipeline.train.config import DEFAULT_RECIPE, TrainConfig, parse_sweep
from store.actors import cli_actor
from store.db import connect
from store.errors import TastebudError


@app.command("train")
@with_train_config
def train_cmd(
    config: TrainConfig,
    given_options: dict,
    task: str = typer.Option("sentiment", "--task",
                             help="sentiment (one label per review) or aspects (food, service, price, place...: "
                                  "which a review speaks of and how; trained on aspect labels)."),
    sweep: list[str] = typer.Option(None, "--sweep", help="name=v1,v2 (repeatable); trains every combination."),
    resume: bool = typer.Option(False, "--resume", help="Continue the newest interrupted run from its last checkpoint."),
    run_id: str = typer.Option(None, "--run", help="With --resume: the run to continue."),
    promote_if_better: bool = typer.Option(
        False, "--promote-if-better",
        help="Promote when a paired bootstrap on the current test split backs the gain over the champion (as retrain)."),
    ray: str = typer.Option(None, "--ray", metavar="[ADDRESS]",
                            help="Train data-parallel on a Ray cluster (HOST:PORT, ray://HOST:PORT or auto); "
                                 "without an address, on a local Ray instance. Only this process writes the store."),
    workers: int = typer.Option(None, "--workers", min=1, help="With --ray: data-parallel workers (default 2)."),
    gpus_per_worker: float = typer.Option(None, "--gpus-per-worker", min=0,
                                          help="With --ray: GPUs per worker (default 0: CPUs, gloo)."),
    storage: str = typer.Option(None, "--storage", metavar="PATH_OR_URI",
                                help="With --ray: where checkpoints and the data shards go, reachable from every node "
                                     "(an NFS path, s3://..., gs://...; default: the run's directory on this machine)."),
    background: bool = typer.Option(False, "--background", help="Run as a background job and print its id."),
    as_json: bool = typer.Option(False, "--json", help="Print the model id and metrics as JSON."),
) -> None:
    """Fine-tune a 3-label sentiment model (or, with --task aspects, an aspect model) on the train split,
    validate each epoch, register and evaluate it."""
    try:
        grid = parse_sweep(sweep or [])
    except ValueError as exc:
        raise TastebudError(str(exc)) from exc
    if task not in ("sentiment", "aspects"):
        raise TastebudError(f"--task must be sentiment or aspects, got {task!r}")
    if task == "aspects":
        _train_aspects(given_options, grid, resume, ray, promote_if_better, background, as_json)
        return
    if grid and resume:
        raise TastebudError("--sweep and --resume cannot be combined")
    if ray is None and (workers is not None or gpus_per_worker is not None or storage is not None):
        raise TastebudError("--workers, --gpus-per-worker and --storage need --ray [ADDRESS]")
    if ray is not None and grid:
        raise TastebudError("--ray trains one run: it does not combine with --sweep")
    actor = cli_actor()
    if ray is not None:
        _train_on_ray(config, ray, workers or 2, gpus_per_worker or 0, promote_if_better, background, as_json,
                      storage=storage, resume=run_id or resume)
        return
    if background:
        from pipeline.jobs import start_job

        params = {**config.to_dict(), "promote_if_better": promote_if_better}
        if grid:
            params["sweep"] = grid
        if resume:
            params["resume"] = run_id or True
        job_id = start_job(db_path(), "train", params, actor)
        emit_json({"job_id": job_id}) if as_json else typer.echo(job_id)
        return
    from pipeline.jobs import JobReporter, run_foreground
    from pipeline.train import run as training
    from pipeline.train.records import is_store_writer

    if not is_store_writer():  # torchrun / accelerate launch: rank 0 records the job; the other ranks only train
        training.train(db_path(), config, reporter=JobReporter(db_path(), None, echo=lambda line: None), actor=actor)
        return

    def body(reporter) -> dict:
        if grid:
            return training.sweep(db_path(), config, grid, reporter=reporter, actor=actor,
                                  promote_if_better=promote_if_better)
        return {"model_id": training.train(db_path(), config, reporter=reporter, resume=run_id or resume, actor=actor,
                                           promote_if_better=promote_if_better)}

    params = {**config.to_dict(), "promote_if_better": promote_if_better, **({"sweep": grid} if grid else {}),
              **({"resume": run_id or True} if resume else {})}
    # With --json, stdout carries only the JSON document; progress lines go to stderr.
    result = run_foreground(db_path(), "train", params, actor, body, echo=lambda line: typer.echo(line, err=as_json))
    _print_trained(result, as_json)


def _train_aspects(given: dict, grid: dict, resume: bool, ray: str | None, promote_if_better: bool, background: bool,
                   as_json: bool) -> None:
    """``train --task aspects``: the aspect defaults with the options given on top."""
    from pipeline.aspects.train import aspect_train_config, check_aspect_runs, sweep_configs

    if given.get("recipe"):
        raise TastebudError("--recipe names review-sentiment recipes; aspect training takes the options directly")
    if resume:
        raise TastebudError("--resume continues review-sentiment runs; an aspect run is short: start a new one")
    if ray is not None:
        raise TastebudError("--ray trains review-sentiment models; aspect models train locally (or on a GPU machine)")
    try:
        config = aspect_train_config(**given)
    except ValueError as exc:
        raise TastebudError(str(exc)) from exc
    # One line and exit code 2 now, not after the run started.
    check_aspect_runs(db_path(), sweep_configs(config, grid)[1] if grid else [config])
    params = {**config.to_dict(), "promote_if_better": promote_if_better, **({"sweep": grid} if grid else {})}
    if background:
        from pipeline.jobs import start_job

        job_id = start_job(db_path(), "train_aspects", params, cli_actor())
        emit_json({"job_id": job_id}) if as_json else typer.echo(job_id)
        return
    from pipeline.aspects import train as aspect_training
    from pipeline.jobs import run_foreground

    def body(reporter) -> dict:
        if grid:
            return aspect_training.sweep_aspects(db_path(), config, grid, reporter=reporter, actor=cli_actor(),
                                                 promote_if_better=promote_if_better)
        return {"model_id": aspect_training.train_aspects(db_path(), config, reporter=reporter, actor=cli_actor(),
                                                          promote_if_better=promote_if_better)}

    result = run_foreground(db_path(), "train_aspects", params, cli_actor(), body,
                            echo=lambda line: typer.echo(line, err=as_json))
    _print_trained_aspects(result, as_json)


def _print_trained_aspects(result: dict, as_json: bool) -> None:
    from pipeline.aspects.metrics import headline
    from store.evaluations import fetch_latest_evaluation
    from store.models import get_champion, get_model

    model_id = result.pop("model_id")
    with connect(db_path(), read_only=True) as con:
        model = get_model(con, model_id)
        metrics = fetch_latest_evaluation(con, model_id)
        champion = get_champion(con, "aspects")
    is_champion = champion is not None and champion["model_id"] == model_id
    if as_json:
        emit_json({"model_id": model_id, "task": "aspects", "val_metrics": model["val_metrics"], "metrics": metrics,
                   "champion": is_champion, "duration_s": model["duration_s"], **result})
        return
    typer.echo(f"registered aspect model {model_id} ({model['name']}) in {model['duration_s'] or 0:.0f}s on "
               f"{model['device']}" + ("; it is the aspect champion" if is_champion else ""))
    if metrics:
        typer.echo(f"test ({metrics['n']} annotated reviews): {headline(metrics)}")


def _train_on_ray(config: TrainConfig, address: str, workers: int, gpus_per_worker: float, promote_if_better: bool,
                  background: bool, as_json: bool, *, storage: str | None, resume: bool | str) -> None:
    """``train --ray``: a foreground or background "train-ray" job (``--resume``: a run whose driver was killed)."""
    from pipeline.cli.app import LOCAL_RAY
    from pipeline.jobs import run_foreground, start_job
    from pipeline.scale.ray_score import check_address

    if address != LOCAL_RAY:
        check_address(address)  # one line and exit code 2 now, not after the data is read
    params = {**config.to_dict(), "workers": workers, "address": address, "gpus_per_worker": gpus_per_worker,
              "promote_if_better": promote_if_better, "storage": storage, **({"resume": resume} if resume else {})}
    if background:
        job_id = start_job(db_path(), "train-ray", params, cli_actor())
        emit_json({"job_id": job_id}) if as_json else typer.echo(job_id)
        return
    from pipeline.scale.ray_train import train_on_ray

    def body(reporter) -> dict:
        return {"model_id": train_on_ray(db_path(), config, workers=workers, address=None if address == LOCAL_RAY else address,
                                         gpus_per_worker=gpus_per_worker, reporter=reporter, actor=cli_actor(),
                                         promote_if_better=promote_if_better, storage=storage, resume=resume)}

    result = run_foreground(db_path(), "train-ray", params, cli_actor(), body, echo=lambda line: typer.echo(line, err=as_json))
    _print_trained(result, as_json)


def _print_trained(result: dict, as_json: bool) -> None:
    from pipeline.models.ensemble import finetuned_member

    model_id = result.pop("model_id")
    with connect(db_path(), read_only=True) as con:
        from store.evaluations import fetch_latest_evaluation
        from store.models import get_model

        model = get_model(con, model_id)
        metrics = fetch_latest_evaluation(con, model_id)
        # An ensemble (the default recipe's product) carries its fine-tuned member's training figures.
        member_id = finetuned_member(model)
        finetuned = get_model(con, member_id) if member_id else model
    if as_json:
        extra = {"finetuned_id": member_id} if member_id else {}
        emit_json({"model_id": model_id, **extra, "val_metrics": model["val_metrics"], "metrics": metrics,
                   "throughput": (finetuned["params"] or {}).get("throughput"), "duration_s": model["duration_s"], **result})
        return
    typer.echo(f"registered {model_id} ({model['name']}) in {model['duration_s'] or 0:.0f}s on {model['device']}")
    if member_id:
        typer.echo("  " + " + ".join(f"{m['weight']:g} x {m['model_id']}" for m in model["params"]["members"]))
    if metrics:
        typer.echo(f"test accuracy {metrics['accuracy']:.4f}   macro-F1 {metrics['macro_f1']:.4f}   n={metrics['n']}")


@app.command("evaluate")
def evaluate_cmd(
    model_id: str = typer.Argument(..., help="Registered model id (see `tastebud models`)."),
    terms: list[str] = typer.Option(None, "--term", help="Also slice by this term (repeatable)."),
    data: Path = typer.Option(None, "--data", help="Evaluate on this labeled file instead; nothing is stored."),
    text: str = typer.Option(None, "--text", help="--data: text column (default: text/review/content...)."),
    label: str = typer.Option(None, "--label", help="--data: label column (default: label/sentiment); overrides stars."),
    stars: str = typer.Option(None, "--stars", help="--data: stars column, labels from stars when there is no label column."),
    restaurant: str = typer.Option(None, "--restaurant", help="--data: restaurant id column (default: business_id)."),
    restaurant_name: str = typer.Option(None, "--restaurant-name", help="--data: restaurant name column."),
    fmt: str = typer.Option(None, "--format", help="--data: csv, tsv, jsonl or parquet (default: from the extension)."),
    numeric_labels: str = typer.Option(None, "--numeric-labels", help="--data: accept numeric labels: binary, ternary, signed."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Evaluate a model on the frozen test split (stored) or on an external labeled file (--data, same columns as import)."""
    if data is None and any(v is not None for v in (text, label, stars, restaurant, restaurant_name, fmt, numeric_labels)):
        raise TastebudError("column options (--text, --label, ...) only apply with --data FILE")
    if _task_of(model_id) == "aspects":
        if terms or any(v is not None for v in (text, label, stars, restaurant, restaurant_name, fmt, numeric_labels)):
            raise TastebudError("an aspect model is evaluated on the test split or on --data FILE "
                                "(an aspect label file: CSV/TSV/JSONL with text, or SemEval XML); no column or --term options")
        from pipeline.aspects.evaluation import evaluate_aspects

        result = evaluate_aspects(db_path(), model_id, data=data)
        emit_json(result) if as_json else _print_aspect_evaluation(result)
        return
    from pipeline.evaluation.evaluator import evaluate_file, evaluate_model

    if data is not None:
        from pipeline.data.importer import ColumnMapping

        mapping = ColumnMapping(text=text, label=label, stars=stars, restaurant_id=restaurant, restaurant_name=restaurant_name)
        result = evaluate_file(db_path(), model_id, data, mapping, fmt=fmt, numeric_labels=numeric_labels, terms=terms or ())
    else:
        result = evaluate_model(db_path(), model_id, terms=terms or ())
    if as_json:
        emit_json(result)
        return
    _print_evaluation(result)


def _task_of(model_id: str) -> str:
    from store.models import get_model

    with connect(db_path(), read_only=True) as con:
        model = get_model(con, model_id)
    if model is None:
        raise TastebudError(f"no model {model_id!r}; see `tastebud models` (aspect models: `tastebud models --task aspects`)")
    return model.get("task") or "sentiment"


def _print_aspect_evaluation(result: dict) -> None:
    det, pol = result["detection"], result["polarity"]
    typer.echo(f"{result['model_id']} on {result['dataset']} ({result['n']} annotated reviews)")
    left_out = result.get("left_out") or {}
    if left_out:
        typer.echo(f"left out: {', '.join(f'{n:,} {reason}' for reason, n in left_out.items())} row(s) of the file "
                   "(the rules of `tastebud aspects import`: unknown aspect or polarity, no text, conflicting duplicates)")
    typer.echo(f"detection  micro P {det['micro_precision']:.4f}   R {det['micro_recall']:.4f}   F1 {det['micro_f1']:.4f}")
    typer.echo(f"polarity   accuracy {_num(pol['accuracy'])}   macro-F1 {_num(pol['macro_f1'])}   "
               f"({pol['n']} mentions with a polarity; conflict set aside)")
    typer.echo(f"{'aspect':<26}{'det P':>8}{'det R':>8}{'det F1':>8}{'mentions':>9}{'pol acc':>9}{'pol F1':>8}{'n':>6}")
    for aspect, d in det["per_aspect"].items():
        p = pol["per_aspect"][aspect]
        # Recall and F1 of an aspect no review mentions are undefined: shown as "-", not 0.
        recall, f1 = (d["recall"], d["f1"]) if d["support"] else (None, None)
        typer.echo(f"{aspect[:25]:<26}{d['precision']:>8.3f}{_short(recall):>8}{_short(f1):>8}{d['support']:>9}"
                   f"{_short(p['accuracy']):>9}{_short(p['macro_f1']):>8}{p['n']:>6}")
    if pol.get("confusion"):
        labels = pol["confusion"]["labels"]
        typer.echo("polarity confusion (rows true, columns predicted): " + "  ".join(labels))
        for label, row in zip(labels, pol["confusion"]["matrix"]):
            typer.echo(f"  {label:<10}" + "".join(f"{v:>9}" for v in row))


def _print_evaluation(result: dict) -> None:
    typer.echo(f"{result['model_id']} on {result['dataset']} (n={result['n']}"
               + (f", {result['skipped']} unlabeled rows skipped" if result.get("skipped") else "")
               + (f", {result['rejected']} rows rejected" if result.get("rejected") else "") + ")")
    typer.echo(f"accuracy {result['accuracy']:.4f}   macro P {result['macro_precision']:.4f}   "
               f"R {result['macro_recall']:.4f}   F1 {result['macro_f1']:.4f}   ECE {_num(result['ece'])}")
    typer.echo(f"{'class':<10}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>9}")
    for label, m in result["per_class"].items():
        typer.echo(f"{label:<10}{m['precision']:>10.4f}{m['recall']:>10.4f}{m['f1']:>10.4f}{m['support']:>9}")
    labels = list(result["per_class"])
    typer.echo("confusion (rows true, columns predicted): " + "  ".join(labels))
    for label, row in zip(labels, result["confusion_matrix"]):
        typer.echo(f"  {label:<10}" + "".join(f"{v:>9}" for v in row))
    if result["slices"]:
        typer.echo(f"{'slice':<18}{'value':<34}{'n':>6}{'accuracy':>10}{'macro-F1':>10}")
        for s in result["slices"]:
            typer.echo(f"{s['slice_kind']:<18}{str(s['slice_value'])[:33]:<34}{s['n']:>6}{_num(s['accuracy']):>10}{_num(s['macro_f1']):>10}")


def _num(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


@app.command("baselines")
def baselines_cmd(
    hf_model: str = typer.Option(None, "--hf-model", help="Also add this HF sentiment classifier (id or local path)."),
    label_map: str = typer.Option(None, "--label-map", help="Its labels, e.g. LABEL_0=negative,LABEL_1=neutral,LABEL_2=positive."),
    only_hf: bool = typer.Option(False, "--only-hf", help="Register only --hf-model, not VADER, zero-shot and TF-IDF + LR."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Register and evaluate the baselines: VADER, zero-shot embeddings, TF-IDF + LR (trained here), optional HF model."""
    from pipeline.models.baselines import DEFAULT_BASELINES, parse_label_map, register_baselines
    from pipeline.jobs import JobReporter

    ids = register_baselines(
        db_path(), actor=cli_actor(), hf_model=hf_model, label_map=parse_label_map(label_map),
        include=() if only_hf else DEFAULT_BASELINES, reporter=None if as_json else JobReporter(db_path(), None, echo=typer.echo),
    )
    if as_json:
        from store.evaluations import fetch_latest_evaluation

        with connect(db_path(), read_only=True) as con:
            emit_json([{"model_id": i, "metrics": fetch_latest_evaluation(con, i)} for i in ids])


@app.command("models")
def models_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print JSON with metrics."),
    history: bool = typer.Option(False, "--history", help="Show the promotion history instead."),
    runs: bool = typer.Option(False, "--runs", help="Show recent training runs instead."),
    task: str = typer.Option("sentiment", "--task", help="sentiment (review models) or aspects (aspect models)."),
) -> None:
    """The champion and challengers with their test metrics."""
    if task not in ("sentiment", "aspects"):
        raise TastebudError(f"--task must be sentiment or aspects, got {task!r}")
    from pipeline.train.run import reap_dead_runs
    from store.models import list_models, promotion_history
    from store.training_runs import list_runs

    reap_dead_runs(db_path())
    with connect(db_path(), read_only=True) as con:
        frame = promotion_history(con) if history else list_runs(con) if runs else list_models(con, task=task)
    if as_json:
        emit_json(frame.to_dict("records"))
        return
    if frame.empty:
        typer.echo("no promotions yet" if history else "no training runs yet" if runs else "no models yet: run `tastebud train` or `tastebud baselines`")
        return
    if task == "aspects" and not (history or runs):
        _print_aspect_models(frame)
        return
    if history or runs:
        cols = (["promotion_id", "action", "model_id", "previous_model_id", "actor", "reason", "created_at"] if history
                else ["run_id", "status", "model_id", "sweep_id", "started_at", "finished_at", "error"])
        typer.echo(frame[cols].to_string(index=False))
        return
    typer.echo(f"  {'model_id':<30}{'kind':<10}{'name':<30}{'status':<8}{'acc':>8}{'macro-F1':>9}{'F1 neg':>8}{'F1 neu':>8}{'F1 pos':>8}{'ECE':>8}")
    for row in frame.to_dict("records"):
        mark = "*" if row["is_champion"] else " "
        typer.echo(
            f"{mark} {row['model_id']:<30}{row['kind']:<10}{str(row['name'])[:29]:<30}{row['status']:<8}"
            f"{_short(row['accuracy']):>8}{_short(row['macro_f1']):>9}{_short(row['f1_negative']):>8}"
            f"{_short(row['f1_neutral']):>8}{_short(row['f1_positive']):>8}{_short(row['ece']):>8}"
        )
    has_champion = bool(frame["is_champion"].any())
    typer.echo("* champion; metrics are on the test split" if has_champion else
               "no champion yet (`tastebud promote MODEL`); metrics are on the test split")


def _print_aspect_models(frame) -> None:
    typer.echo(f"  {'model_id':<30}{'name':<30}{'status':<8}{'val score':>10}{'det F1':>8}{'pol acc':>9}{'test n':>8}")
    for row in frame.to_dict("records"):
        mark = "*" if row["is_champion"] else " "
        # For aspect models the registry's macro_f1 column is the detection micro-F1, accuracy the polarity accuracy.
        typer.echo(f"{mark} {row['model_id']:<30}{str(row['name'])[:29]:<30}{row['status']:<8}"
                   f"{_short(row['val_macro_f1']):>10}{_short(row['macro_f1']):>8}{_short(row['accuracy']):>9}"
                   f"{'-' if row['test_n'] is None or row['test_n'] != row['test_n'] else int(row['test_n']):>8}")
    typer.echo("* aspect champion; det F1 = detection micro-F1 and pol acc = polarity accuracy on the test split")


def _short(value) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


@app.command("promote")
def promote_cmd(
    model_id: str = typer.Argument(..., help="Model to make champion."),
    reason: str = typer.Option(None, "--reason", help="Why (kept in the history)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Make a model the champion."""
    from pipeline.loop.registry import promote

    row = promote(db_path(), model_id, cli_actor(), reason=reason)
    emit_json(row) if as_json else typer.echo(f"champion: {row['model_id']} (was {row['previous_model_id'] or 'none'})")


@app.command("rollback")
def rollback_cmd(
    reason: str = typer.Option(None, "--reason", help="Why (kept in the history)."),
    task: str = typer.Option("sentiment", "--task", help="sentiment (review models) or aspects (the aspect champion)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Return the champion (of review sentiment, or of aspects with --task aspects) to the previous one."""
    from pipeline.loop.registry import rollback

    if task not in ("sentiment", "aspects"):
        raise TastebudError(f"--task must be sentiment or aspects, got {task!r}")
    row = rollback(db_path(), cli_actor(), reason=reason, task=task)
    emit_json(row) if as_json else typer.echo(f"champion: {row['model_id']} (rolled back from {row['previous_model_id']})")


@app.command("learning-curve")
def learning_curve_cmd(
    kind: str = typer.Option("tfidf", "--kind", help="tfidf (seconds) or finetuned (one real fine-tune per point)."),
    sizes: str = typer.Option(None, "--sizes", help="Training-set sizes, e.g. 250,500,1000 (default: doubling up to all)."),
    repeats: int = typer.Option(1, "--repeats", help="Samples per size (different seeds)."),
    recipe: str = typer.Option(None, "--recipe", help="--kind finetuned: the training recipe (default: the default recipe)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Test macro-F1 against training-set size (stored; the Model comparison page plots the newest curve)."""
    from pipeline.evaluation.learning_curve import learning_curve
    from pipeline.jobs import JobReporter

    try:
        size_list = [int(v) for v in sizes.split(",") if v.strip()] if sizes else None
        config = TrainConfig.from_recipe(recipe or DEFAULT_RECIPE)
    except ValueError as exc:
        raise TastebudError(f"--sizes takes integers like 250,500,1000 ({exc})" if "invalid literal" in str(exc) else str(exc)) from exc
    reporter = JobReporter(db_path(), None, echo=lambda line: typer.echo(line, err=as_json))
    result = learning_curve(db_path(), kind=kind, sizes=size_list, repeats=repeats, config=config, actor=cli_actor(),
                            reporter=reporter)
    if as_json:
        emit_json(result)
        return
    typer.echo(f"stored {result['curve_id']} ({result['kind']}):")
    for p in result["points"]:
        typer.echo(f"  {p['n_train']:>7} train reviews  macro-F1 {p['macro_f1']:.4f}  accuracy {p['accuracy']:.4f}")
