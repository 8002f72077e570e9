"""`tastebud demo-data`: fill the store with synthetic Atlanta restaurant reviews."""

from __future__ import annotations

import time

import typer

from pipeline.cli_app import app, db_path, emit_json
from pipeline.demo_data import DEFAULT_ROWS, DEFAULT_SEED, load_demo_data


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
        f"({result['labels_added']:,} star labels) into {db_path()} in {result['seconds']}s"
    )
    ev = result["events"]
    typer.echo(
        f"scripted events: {ev['collapse_restaurant']} service collapse {ev['collapse_start']}..{ev['collapse_end']}; "
        f"{ev['food_hall']} opens {ev['food_hall_open']}"
    )
