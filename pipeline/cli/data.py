"""Data commands: init, stats (import and demo-data live in their own modules)."""

from __future__ import annotations

import typer

from pipeline.cli.app import app, db_path, emit_json
from store.db import connect
from store.schema import init_store
from store.stats import store_stats


@app.command("init")
def init_cmd() -> None:
    """Create the store (or upgrade its schema) at --db."""
    db, applied = init_store(db_path())
    if applied:
        typer.echo(f"store {db}: applied migrations {', '.join(map(str, applied))}")
    else:
        typer.echo(f"store {db} is up to date")


@app.command("stats")
def stats_cmd(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Counts by label, label source and split."""
    with connect(db_path(), read_only=True) as con:
        stats = store_stats(con)
    if as_json:
        emit_json(stats)
        return
    typer.echo(f"reviews   {stats['reviews']:>10,}   labeled {stats['labeled']:,}   unlabeled {stats['unlabeled']:,}")
    typer.echo("labels    " + "   ".join(f"{k} {v:,}" for k, v in stats["labels"].items()))
    typer.echo("sources   " + "   ".join(f"{k} {v:,}" for k, v in stats["label_sources"].items()))
    typer.echo("splits    " + "   ".join(f"{k} {v:,}" for k, v in stats["splits"].items()))
    for split, counts in stats["labels_by_split"].items():
        typer.echo(f"  {split:<6}  " + "   ".join(f"{k} {v:,}" for k, v in counts.items()))


@app.command("check")
def check_cmd(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Verify the store: every table read in full, schema version, orphans, counts. Exit 0 healthy, 2 damaged."""
    from store.health import check_store

    result = check_store(db_path())
    if as_json:
        emit_json(result.to_dict())
    else:
        typer.echo(f"store {result.path}: {'healthy' if result.healthy else 'DAMAGED'}")
        typer.echo(f"  schema     version {result.schema_version} (latest {result.latest_version})")
        readable = {t: n for t, n in result.tables.items() if n >= 0}
        typer.echo(f"  tables     {len(readable)} of {len(result.tables)} read in full, "
                   f"{sum(readable.values()):,} rows")
        for table in ("reviews", "labels", "splits", "predictions", "flags", "imports"):
            if table in readable:
                typer.echo(f"    {table:<12}{readable[table]:>12,}")
        orphans = ", ".join(f"{t} {n:,}" for t, n in result.orphans.items() if n) or "none"
        typer.echo(f"  orphans    {orphans}")
        for line in result.problems:
            typer.echo(f"  problem: {line}")
        for line in result.warnings:
            typer.echo(f"  warning: {line}")
    if not result.healthy:
        raise typer.Exit(2)
