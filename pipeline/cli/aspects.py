"""`tastebud aspects`: the store's aspect set (list, add, remove), importing and exporting aspect labels, a
review's aspect labels."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import typer

from pipeline.cli.app import app, db_path, emit_json
from pipeline.cli.imports import print_rejects
from pipeline.data.aspect_import import FORMATS, AspectImportReport, import_aspect_labels
from pipeline.data.export import ASPECT_EXPORT_FORMATS, export_aspect_labels
from store.actors import cli_actor
from store.aspects import (
    ASPECT_LABEL_VALUES,
    add_aspect,
    aspect_label_counts,
    count_annotated_reviews,
    current_review_aspects,
    fetch_aspect_label_history,
    list_aspects,
    normalize_aspect_name,
    remove_aspect,
)
from store.db import connect, transaction
from store.errors import TastebudError
from store.printable import printable
from store.reviews import fetch_reviews
from store.schema import init_store

aspects_app = typer.Typer(
    help="Aspects (food, service, price, ...): the store's set, aspect label import and export, a review's aspect labels.",
    no_args_is_help=True,
)
app.add_typer(aspects_app, name="aspects")


@aspects_app.command("list")
def list_cmd(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """The store's aspects with their current label counts (mentions, and per polarity)."""
    with connect(db_path(), read_only=True) as con:
        aspects = list_aspects(con)
        counts = aspect_label_counts(con)
        annotated = count_annotated_reviews(con)
    per = counts.groupby(["aspect", "polarity"])["n"].sum() if not counts.empty else None
    rows = []
    for a in aspects.itertuples():
        by_polarity = {p: int(per.get((a.aspect, p), 0)) if per is not None else 0 for p in ASPECT_LABEL_VALUES}
        # An aspect added without a description reads back as NaN: show it as none, not "nan".
        description = None if pd.isna(a.description) else a.description
        rows.append({"aspect": a.aspect, "builtin": bool(a.builtin), "description": description,
                     "mentions": sum(n for p, n in by_polarity.items() if p != "absent"), "labels": by_polarity})
    if as_json:
        emit_json({"annotated_reviews": annotated, "aspects": rows})
        return
    # Names are at most 40 characters: the column fits the longest, never cut.
    width = max([len("ASPECT"), *(len(printable(r["aspect"], max_chars=40)) + (0 if r["builtin"] else 2) for r in rows)]) + 1
    typer.echo(f"{'ASPECT':<{width}}{'MENTIONS':>9}" + "".join(f"{p.upper():>10}" for p in ASPECT_LABEL_VALUES)
               + "  DESCRIPTION")
    for r in rows:
        mark = "" if r["builtin"] else " *"
        typer.echo(f"{printable(r['aspect'], max_chars=40) + mark:<{width}}{r['mentions']:>9,}"
                   + "".join(f"{r['labels'][p]:>10,}" for p in ASPECT_LABEL_VALUES)
                   + f"  {printable(r['description'] or '', max_chars=90)}")
    typer.echo(f"{annotated:,} aspect-annotated reviews (* added to this store)")


@aspects_app.command("add")
def add_cmd(
    name: str = typer.Argument(..., help="The new aspect, e.g. wait (lower-cased, spaces collapsed)."),
    description: str = typer.Option(None, "--description", help="What the aspect covers, shown to labelers."),
) -> None:
    """Add an aspect to the store's set."""
    db, _ = init_store(db_path())
    with transaction(db) as con:
        added = add_aspect(con, cli_actor(), name, description=description)
    typer.echo(f"added aspect {printable(added)!r}")


@aspects_app.command("remove")
def remove_cmd(name: str = typer.Argument(..., help="An aspect this store added and never labeled.")) -> None:
    """Remove an aspect the store added that has no labels (built-in and labeled aspects stay)."""
    with transaction(db_path()) as con:  # a missing store is one line there, and no file is created
        remove_aspect(con, cli_actor(), name)
    typer.echo(f"removed aspect {printable(normalize_aspect_name(name))!r}")


@aspects_app.command("import")
def import_cmd(
    path: str = typer.Argument(..., help="CSV/TSV/JSON Lines (review_id, aspect, polarity[, text, labeler]) "
                                         "or SemEval-2014 XML."),
    fmt: str = typer.Option(None, "--format", help=f"One of {', '.join(FORMATS)} (default: from the extension "
                                                   "or the content)."),
    create_aspects: bool = typer.Option(False, "--create-aspects",
                                        help="Add aspect names the store does not know instead of rejecting them."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Import aspect labels; bad rows are kept in import_rejects. Exit 1 when no row was imported."""
    report = import_aspect_labels(db_path(), path, fmt=fmt, create_aspects=create_aspects, actor=cli_actor())
    if as_json:
        emit_json(report.to_dict())
    else:
        _print_report(report)
    if not report.imported_anything:
        raise typer.Exit(1)


@aspects_app.command("export")
def export_cmd(
    path: Path = typer.Argument(..., help="File to write: .csv or .jsonl (what `tastebud aspects import` reads)."),
    fmt: str = typer.Option(None, "--format", help=f"One of {', '.join(ASPECT_EXPORT_FORMATS)} (default: from the extension)."),
    split: str = typer.Option(None, "--split", help="Only the reviews of this split: train, val or test."),
    force: bool = typer.Option(False, "--force", help="Replace the file if it exists."),
) -> None:
    """Export the current aspect labels, one row per review and aspect (review_id, aspect, polarity, text,
    labeler, source, labeled_at, split): `aspects import` reads the file back into another store."""
    target, rows, reviews = export_aspect_labels(db_path(), path, fmt=fmt, split=split, overwrite=force)
    typer.echo(f"exported {rows:,} aspect labels of {reviews:,} reviews to {printable(str(target), max_chars=300)}")


@aspects_app.command("labels")
def labels_cmd(
    review_id: str = typer.Argument(..., help="The review."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """A review's current aspect labels and their history (oldest first)."""
    with connect(db_path(), read_only=True) as con:
        review = fetch_reviews(con, [review_id])
        if review.empty:
            raise TastebudError(f"no review {printable(review_id)!r}")
        current = current_review_aspects(con, review_id)
        history = fetch_aspect_label_history(con, review_id)
    if as_json:
        emit_json({"review_id": review_id, "text": review["text"].iloc[0],
                   "current": {a: {"polarity": p, "source": s} for a, (p, s) in current.items()},
                   "history": history.to_dict("records")})
        return
    typer.echo(f"review {printable(review_id)}: {printable(review['text'].iloc[0], max_chars=200)}")
    if not current:
        typer.echo("  no aspect labels (not aspect-annotated)")
    else:
        typer.echo("  current (aspects not listed are absent)")
        for aspect, (polarity, source) in current.items():
            typer.echo(f"    {printable(aspect, max_chars=40):<26}{polarity:<10}({source})")
    if history.empty:
        return
    typer.echo("  history")
    for h in history.itertuples():
        who = f" by {printable(h.labeler, max_chars=40)}" if isinstance(h.labeler, str) else ""
        gone = ""
        if not pd.isna(h.retracted_at):
            why = "undone" if h.retraction_reason == "undo" else printable(str(h.retraction_reason), max_chars=40)
            gone = f"  [retracted: {why}, {h.retracted_at:%Y-%m-%d %H:%M:%S}]"
        typer.echo(f"    {h.created_at:%Y-%m-%d %H:%M:%S}  {printable(h.aspect, max_chars=40):<26}"
                   f"{h.polarity:<10}{h.source}{who}{gone}")


@aspects_app.command("set")
def set_cmd(
    review_id: str = typer.Argument(..., help="The review."),
    assignments: list[str] = typer.Argument(
        ..., help="ASPECT=POLARITY pairs, e.g. food=positive service=negative; polarity is absent, negative, "
                  "neutral, positive or conflict."),
    person: str = typer.Option(None, "--as", help="Record the labels under this labeler's name."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Correct a review's aspects: those given get these polarities, the others keep theirs (absent when the
    review had no aspect labels). The labels are human ones for the next aspect training; history is kept."""
    from pipeline.loop.relabel import relabel_aspects
    from store.actors import Actor

    polarities: dict[str, str] = {}
    for item in assignments:
        aspect, sep, polarity = item.rpartition("=")
        if not sep or not aspect.strip() or not polarity.strip():
            raise TastebudError(f"give ASPECT=POLARITY (e.g. service=negative), got {printable(item, max_chars=60)!r}")
        if aspect.strip().lower() in polarities:
            raise TastebudError(f"aspect {printable(aspect.strip(), max_chars=40)!r} is given twice")
        polarities[aspect.strip().lower()] = polarity.strip().lower()
    actor = Actor(name=person, role="labeler") if person else cli_actor()
    result = relabel_aspects(db_path(), actor, review_id, polarities)
    if as_json:
        emit_json(result)
        return
    changes = [f"{printable(a, max_chars=40)} {result['previous'].get(a, 'absent')} -> {result['aspects'][a]}"
               for a in result["changed"]]
    # A label written without a change confirms an imported one (or an implied "absent") as a person's.
    confirmed = result["written"] - len(changes)
    said = ", ".join(changes) if changes else "no change"
    if confirmed:
        said += f"{'; ' if changes else ', '}{confirmed} confirmed as yours"
    typer.echo(f"{printable(review_id)}: {said}; {result['written']} aspect label(s) written"
               + ("; `tastebud undo` reverts it" if result["action_id"] else ""))


def _print_report(r: AspectImportReport) -> None:
    typer.echo(
        f"import {r.import_id}: {printable(r.path, max_chars=300)} ({r.format}, {r.rows:,} rows) "
        f"read in {r.parse_seconds:.2f} s, written in {r.write_seconds:.2f} s"
    )
    mapped = ", ".join(f"{k}={printable(v, max_chars=40)}" for k, v in r.columns.items() if v is not None)
    typer.echo(f"  columns    {mapped}")
    typer.echo(f"  labels     {r.labels_added:>10,}  added")
    typer.echo(f"  unchanged  {r.labels_unchanged:>10,}  (already stored)")
    if r.repeated:
        typer.echo(f"  repeated   {r.repeated:>10,}  (same review, aspect and polarity as an earlier row: imported once)")
    if r.absent_added:
        typer.echo(f"  absent     {r.absent_added:>10,}  (aspects re-imported reviews no longer list)")
    typer.echo(f"  reviews    {r.reviews_annotated:>10,}  annotated, {r.reviews_created:,} created (source "
               f"{printable(r.source, max_chars=60)})")
    if r.aspects_created:
        typer.echo(f"  aspects    added {', '.join(printable(a, max_chars=40) for a in r.aspects_created)}")
    print_rejects(r, width=22, detail_chars=160)
    if r.reviews_created:
        typer.echo("  splits     " + "  ".join(f"{k} {v:,}" for k, v in r.splits.items()) + "  (new assignments)")
    if not r.imported_anything:
        typer.echo("nothing imported: every row was rejected" if r.rows else "nothing imported: the file has no rows")
