"""`tastebud demo-data`: fill the store with synthetic Atlanta restaurant reviews."""

from __future__ import annotations

import time

import typer

from pipeline.cli.app import app, db_path, emit_json
from pipeline.data.demo_data import DEFAULT_ROWS, DEFAULT_SEED, load_demo_data
from pipeline.train.config import QUICK_TRAIN


@app.command("demo-data")
def demo_data_cmd(
    rows: int = typer.Option(DEFAULT_ROWS, "--rows", min=1, help="How many reviews to generate."),
    seed: int = typer.Option(DEFAULT_SEED, "--seed", help="Random seed; the same seed gives the same reviews."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Generate a deterministic synthetic review stream (labels from stars, frozen splits)."""
    started = time.perf_counter()
    result = load_demo_data(db_path(), rows=rows, seed=seed)
    result["seconds"] = round(time.perf_counter() - started, 2)
    if as_json:
        emit_json(result)
        return
    typer.echo(
        f"demo reviews: {result['inserted']:,} new, {result['updated']:,} updated, {result['unchanged']:,} unchanged "
        f"({result['labels_added']:,} star labels, {result['aspect_labels_added']:,} aspect labels) into {db_path()} "
        f"in {result['seconds']}s"
    )
    ev = result["events"]
    typer.echo(
        f"scripted events: {ev['collapse_restaurant']} service collapse {ev['collapse_start']}..{ev['collapse_end']}; "
        f"{ev['food_hall']} opens {ev['food_hall_open']}"
    )


@app.command("demo")
def demo_cmd(
    rows: int = typer.Option(DEFAULT_ROWS, "--rows", min=200, help="Demo reviews to generate on first run."),
    seed: int = typer.Option(DEFAULT_SEED, "--seed", help="Generator seed."),
    port: int = typer.Option(8501, "--port", min=1, max=65535, help="Dashboard port."),
    host: str = typer.Option("localhost", "--host", help="Dashboard address (localhost keeps it private)."),
    rebuild: bool = typer.Option(False, "--rebuild", help="Run the build steps even if the store is ready."),
    launch: bool = typer.Option(True, "--launch/--no-launch", help="Serve the dashboard when the store is ready."),
    epochs: int = typer.Option(QUICK_TRAIN["epochs"], "--epochs", min=1, help="Epochs of the first fine-tuning."),
    base_model: str = typer.Option(
        None, "--base-model", help="HF id or local path to fine-tune first (default: the packaged MiniLM encoder)."),
    finetune: bool = typer.Option(True, "--finetune/--no-finetune",
                                  help="Fine-tune a first model, then a first aspect model, in the background once "
                                       "the dashboard answers."),
) -> None:
    """First run: demo data, baselines, scores, flags, alerts, then the dashboard; the fine-tune follows in the background."""
    from pipeline.cli.dashboard import start_dashboard, wait_dashboard, wait_until_answering
    from pipeline.demo import (aspects_pending, build_demo_store, demo_files, demo_is_ready, ensure_demo_accounts,
                               finetune_pending, start_aspects, start_finetune)

    started = time.perf_counter()
    db = db_path().resolve()
    if rebuild or not demo_is_ready(db):
        typer.echo(f"building the demo store at {db} (about a minute on CPU)...")
        summary = build_demo_store(db, rows=rows, seed=seed)
        f1 = summary["champion_macro_f1"]
        typer.echo(
            f"demo store ready: {summary['reviews']:,} reviews, champion {summary['champion']}"
            + (f" (test macro-F1 {f1:.3f})" if f1 is not None else "")
            + f", {summary['scored']:,} reviews scored, {sum(summary['flags'].values())} flags, "
            f"{summary['alerts']} alerts; steps took {summary['seconds']}"
        )
    else:
        typer.echo(f"demo store at {db} is ready (use --rebuild to run the steps again)")
    logins = ensure_demo_accounts(db)
    secrets_file, logins_file = demo_files(db)
    url = f"http://{host}:{port}"
    proc = None
    if launch:
        proc = start_dashboard(db, host=host, port=port, secrets=secrets_file)
        try:
            wait_until_answering(url, proc)
        except BaseException:
            proc.terminate()
            raise
        typer.echo(f"\ndashboard: {url} (answering {time.perf_counter() - started:.0f}s after the demo started)")
    else:
        typer.echo(f"\ndashboard (start it with `tastebud demo` or `tastebud dashboard`): {url}")
    if logins:
        for (username, password), role in zip(logins.items(), ("viewer", "labeler", "data scientist")):
            typer.echo(f"  {role:<15} user {username:<20} password {password}")
        typer.echo(f"(shown once; the logins are kept in {logins_file}, readable by you only)")
    else:
        typer.echo(f"sign in with a demo account from {logins_file} (passwords are not printed again)")
    finetune_job = None
    if finetune and finetune_pending(db):
        job_id = finetune_job = start_finetune(db, train={"epochs": epochs, "base_model": base_model})
        typer.echo(f"fine-tuning a first model in the background: job {job_id} (progress on Overview and Training); "
                   "it is promoted, scored and flagged when it beats the baseline")
    if finetune and aspects_pending(db):
        job_id = start_aspects(db, after=finetune_job, train={"base_model": base_model})
        typer.echo(f"then a first aspect model (food, service, price, ambience): job {job_id}; it scores every review "
                   "and flags reviews whose aspects disagree with their label")
    if proc is not None:
        raise typer.Exit(wait_dashboard(proc))
