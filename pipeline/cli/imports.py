"""``tastebud import PATH``: load reviews from CSV, TSV, JSON Lines or Parquet."""

from __future__ import annotations

from datetime import date

import typer

from pipeline.cli.app import app, db_path, emit_json
from pipeline.data.importer import FORMATS, NUMERIC_LABEL_SCHEMES, ColumnMapping, ImportReport, import_reviews
from store.errors import TastebudError
from store.printable import printable


@app.command("import")
def import_cmd(
    path: str = typer.Argument(..., help="CSV, TSV, JSON Lines (.jsonl/.json) or Parquet file."),
    text: str = typer.Option(None, "--text", help="Text column (default: text/review/content...)."),
    review_id: str = typer.Option(None, "--id", help="Review id column (default: review_id/id; none: hashed)."),
    date: str = typer.Option(None, "--date", help="Date column, ISO 8601 (default: date/created_at)."),
    stars: str = typer.Option(None, "--stars", help="Stars column, 1-5 (default: stars/rating)."),
    label: str = typer.Option(None, "--label", help="Label column (default: label/sentiment); overrides stars."),
    restaurant: str = typer.Option(None, "--restaurant", help="Restaurant id column (default: business_id)."),
    restaurant_name: str = typer.Option(None, "--restaurant-name", help="Restaurant name column (default: name)."),
    neighborhood: str = typer.Option(None, "--neighborhood", help="Neighborhood column (default: neighborhood/city)."),
    fmt: str = typer.Option(None, "--format", help=f"One of {', '.join(FORMATS)} (default: from the extension)."),
    source: str = typer.Option(None, "--source", help="Source name stored on the reviews (default: file name)."),
    numeric_labels: str = typer.Option(
        None, "--numeric-labels", help=f"Accept numeric labels: {', '.join(NUMERIC_LABEL_SCHEMES)}."
    ),
    min_date: str = typer.Option(
        None, "--min-date", help="Earliest plausible review date, YYYY-MM-DD (default 1990-01-01)."
    ),
    max_date: str = typer.Option(None, "--max-date", help="Latest plausible review date, YYYY-MM-DD (default tomorrow, UTC)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Import reviews; bad rows are kept in import_rejects. Exit 1 when no row was imported."""
    mapping = ColumnMapping(
        text=text,
        review_id=review_id,
        created_at=date,
        stars=stars,
        label=label,
        restaurant_id=restaurant,
        restaurant_name=restaurant_name,
        neighborhood=neighborhood,
    )
    report = import_reviews(
        db_path(), path, fmt=fmt, columns=mapping, source=source, numeric_labels=numeric_labels,
        min_date=_parse_date(min_date, "--min-date"), max_date=_parse_date(max_date, "--max-date"),
    )
    if as_json:
        emit_json(report.to_dict())
    else:
        _print_report(report)
    if not report.imported_anything:
        raise typer.Exit(1)


def _parse_date(value: str | None, flag: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise TastebudError(f"{flag} {printable(value)!r} is not a date (YYYY-MM-DD)") from None


def _print_report(r: ImportReport) -> None:
    typer.echo(
        f"import {r.import_id}: {printable(r.path, max_chars=300)} ({r.format}, {r.rows:,} rows) "
        f"parsed in {r.parse_seconds:.2f} s, written in {r.write_seconds:.2f} s"
    )
    mapped = ", ".join(f"{k}={printable(v, max_chars=40)}" for k, v in r.columns.items() if v is not None)
    typer.echo(f"  columns    {mapped}")
    typer.echo(f"  accepted   {r.accepted:>10,}  (new reviews)")
    typer.echo(f"  updated    {r.updated:>10,}")
    typer.echo(f"  unchanged  {r.unchanged:>10,}")
    print_rejects(r)
    source = f" (source {r.label_source})" if r.label_source else " (no stars or label column)"
    typer.echo(f"  labels     {r.labels_added:>10,}  added{source}")
    typer.echo("  splits     " + "  ".join(f"{k} {v:,}" for k, v in r.splits.items()) + "  (new assignments)")
    if r.relabel_needed:
        typer.echo(f"  {r.relabel_needed:,} updated text{'s' if r.relabel_needed != 1 else ''} had human or aspect labels: "
                   "retracted and flagged for relabeling (reason text_changed)")
    if not r.imported_anything:
        typer.echo("nothing imported: every row was rejected" if r.rows else "nothing imported: the file has no rows")


def print_rejects(report, *, width: int = 20, detail_chars: int = 120) -> None:
    """The rejects part of an import report: the count, counts by reason, the first few with their rows, and
    where the rest are (a review import's or an aspect label import's report)."""
    typer.echo(f"  rejected   {report.rejected:>10,}")
    for reason, n in report.rejected_by_reason.items():
        typer.echo(f"    {reason:<{width}}{n:>8,}")
    for rej in report.first_rejects[:5]:
        typer.echo(f"    row {rej['row_number']}: {rej['reason']}: {printable(rej['detail'], max_chars=detail_chars)}")
    if report.rejected:
        typer.echo(f"  all rejects: import_rejects where import_id = {report.import_id}")
