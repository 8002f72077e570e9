"""Export reviews with their current labels and the champion's predictions as CSV or Parquet, and the
current aspect labels as CSV or JSON Lines.

Small exports are built in memory for a download; large ones are written to a file beside the
store (``exports/``), so a million rows never travel through a browser session's memory twice.
Aspect labels are written in the layout ``tastebud aspects import`` reads (one row per review and
aspect, with the review's text), so an export moves a store's aspect annotations into another store.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import stat
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from store import aspects as aspect_store
from store import models as model_store
from store.db import connect, resolve_db_path
from store.errors import TastebudError
from store.exports import count_export_rows, fetch_export
from store.printable import printable
from store.trends import ReviewFilter

EXPORT_FORMATS = ("csv", "parquet")
# Formats aspect labels are exported in: those aspect import reads back.
ASPECT_EXPORT_FORMATS = ("csv", "jsonl")
# Above this many rows the dashboard writes a file beside the store instead of offering a download.
MAX_DOWNLOAD_ROWS = 200_000


def export_rows(db, *, flt: ReviewFilter = ReviewFilter(), labels: tuple[str, ...] = ()) -> int:
    """How many reviews an export with this filter would hold (for the page to choose download or file)."""
    with connect(db, read_only=True) as con:
        return count_export_rows(con, flt=flt, labels=labels)


def export_table(db, *, flt: ReviewFilter = ReviewFilter(), labels: tuple[str, ...] = ()) -> tuple[pa.Table, str | None]:
    """(the export as Arrow, the champion's model id or None) in one read-only connection."""
    with connect(db, read_only=True) as con:
        champion = model_store.get_champion(con)
        model_id = champion["model_id"] if champion else None
        return fetch_export(con, model_id=model_id, flt=flt, labels=labels), model_id


def export_bytes(table: pa.Table, fmt: str) -> bytes:
    """The table as CSV (UTF-8, header, ISO dates) or Parquet bytes.

    Example:
        >>> export_bytes(pa.table({"a": [1]}), "csv")
        b'"a"\\n1\\n'
    """
    sink = io.BytesIO()
    _write(table, sink, fmt)
    return sink.getvalue()


def export_to_file(
    db, fmt: str, *, flt: ReviewFilter = ReviewFilter(), labels: tuple[str, ...] = (), path: str | os.PathLike | None = None
) -> tuple[Path, int]:
    """Write an export beside the store (``exports/reviews-YYYYmmdd-HHMMSS.FMT``) or to ``path``.

    Returns:
        (the file written, rows written).

    Example:
        >>> export_to_file("store.duckdb", "parquet")  # doctest: +SKIP
        (PosixPath('/data/exports/reviews-20261126-151500.parquet'), 1000000)
    """
    target = Path(path) if path else resolve_db_path(db).resolve().parent / "exports" / f"reviews-{datetime.now():%Y%m%d-%H%M%S}.{fmt}"
    # Only the default folder beside the store is made: a given path's missing folder is more likely a typo.
    _check_target(target, make_folder=not path)
    table, _ = export_table(db, flt=flt, labels=labels)
    _write_whole(target, lambda f: _write(table, f, fmt), make_folder=not path)
    return target, table.num_rows


# What a path that is neither a regular file nor a symbolic link is, for the refusal.
_FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _check_target(target: Path, *, make_folder: bool = False) -> None:
    """Refuse, in one line, a target an export must not replace, before any work is done.

    An export is moved over its target (:func:`_write_whole`), and that move replaces whatever is there:
    a symbolic link would become a regular file with its own target left unchanged, a FIFO or a device
    (``/dev/full``) a regular file. So only a regular file or nothing is accepted. A missing folder is
    refused unless ``make_folder``: creating ``/nonexistent_dir`` for a mistyped path hides the typo.

    Raises:
        TastebudError: a missing folder, a parent that is not a folder, or a target that is not a regular file.
    """
    shown = printable(str(target), max_chars=300)
    folder = target.parent
    if not make_folder and not folder.is_dir():
        problem = "{} is not a folder" if folder.exists() else "folder {} does not exist"
        raise TastebudError(f"cannot write {shown}: " + problem.format(printable(str(folder), max_chars=300)))
    try:
        mode = os.lstat(target).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise TastebudError(f"cannot write {shown}: {exc.strerror or exc}") from None
    if stat.S_ISLNK(mode):
        raise TastebudError(f"{shown} is a symbolic link: replacing it would replace the link, not the file it "
                            "points to; give the file's own path")
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")
        raise TastebudError(f"{shown} is {kind}, not a regular file: an export only replaces a regular file")


def _write_whole(target: Path, write, *, make_folder: bool = False) -> None:
    """Call ``write(binary file)`` on a partial file beside ``target``, then move it there: a reader never
    sees half a file, and a failed write leaves the old file (if any) as it was and no partial file.

    The partial file gets a fresh name, created exclusively, so an existing file is never truncated;
    the target is checked (:func:`_check_target`) again just before the move. Any error of the operating
    system (no such folder, no space, permission) becomes one line naming the path.

    Raises:
        TastebudError: the target is refused or cannot be written.
    """
    _check_target(target, make_folder=make_folder)
    shown = printable(str(target), max_chars=300)
    partial = target.with_name(f"{target.name}.{secrets.token_hex(4)}.partial")
    try:
        if make_folder:
            target.parent.mkdir(parents=True, exist_ok=True)
        with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as f:
            write(f)
        _check_target(target)
        os.replace(partial, target)
    except OSError as exc:
        raise TastebudError(f"cannot write {shown}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)


def _write(table: pa.Table, sink, fmt: str) -> None:
    if fmt not in EXPORT_FORMATS:
        raise TastebudError(f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    if fmt == "parquet":
        pq.write_table(table, sink)
    else:
        pa_csv.write_csv(table, sink)


def aspect_labels_table(db, *, split: str | None = None) -> pd.DataFrame:
    """The store's current aspect labels (``absent`` corrections included), one row per review and aspect:
    review_id, aspect, polarity, text, labeler, source, labeled_at, split (see
    :func:`store.aspects.fetch_current_aspect_labels`)."""
    if split is not None and split not in ("train", "val", "test"):
        raise TastebudError(f"unknown split {split!r}; choose train, val or test")
    with connect(db, read_only=True) as con:
        return aspect_store.fetch_current_aspect_labels(con, split=split)


def aspect_labels_bytes(frame: pd.DataFrame, fmt: str) -> bytes:
    """Aspect labels as CSV (UTF-8, header) or JSON Lines (one object per row, ISO times, null for none)."""
    if fmt not in ASPECT_EXPORT_FORMATS:
        raise TastebudError(f"unknown aspect label export format {fmt!r}; choose one of {', '.join(ASPECT_EXPORT_FORMATS)}")
    if fmt == "csv":
        return frame.to_csv(index=False).encode("utf-8")
    if frame.empty:
        return b""
    text = frame.to_json(orient="records", lines=True, date_format="iso", force_ascii=False)
    # JSON allows U+2028 / U+2029 raw inside strings, but readers that split lines on them would cut a record.
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return (text if text.endswith("\n") else text + "\n").encode("utf-8")


def export_aspect_labels(db, path: str | os.PathLike, *, fmt: str | None = None, split: str | None = None,
                         overwrite: bool = False) -> tuple[Path, int, int]:
    """Write the current aspect labels to ``path`` (format from ``fmt`` or the extension: .csv, .jsonl).

    An existing file is kept unless ``overwrite``; the file appears whole or not at all.

    Returns:
        (the file written, label rows, reviews).

    Raises:
        TastebudError: an unknown format, an existing file (not ``overwrite``), a target that is not a regular
            file or whose folder is missing (see :func:`_check_target`), a path that cannot be written, or no
            aspect labels to export.
    """
    target = Path(path)
    if fmt is not None and fmt not in ASPECT_EXPORT_FORMATS:
        raise TastebudError(f"unknown aspect label export format {fmt!r}; choose one of {', '.join(ASPECT_EXPORT_FORMATS)}")
    fmt = fmt or {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}.get(target.suffix.lower())
    if fmt is None:
        raise TastebudError(f"cannot tell the format of {target.name}: name it .csv or .jsonl, or pass "
                            f"--format ({', '.join(ASPECT_EXPORT_FORMATS)})")
    _check_target(target)
    if target.exists() and not overwrite:
        raise TastebudError(f"{printable(str(target), max_chars=300)} exists; choose another name or pass "
                            "--force to replace it")
    frame = aspect_labels_table(db, split=split)
    if frame.empty:
        raise TastebudError("the store has no aspect labels" + (f" in the {split} split" if split else "")
                            + ": nothing to export")
    payload = aspect_labels_bytes(frame, fmt)
    _write_whole(target, lambda f: f.write(payload))
    return target, len(frame), frame["review_id"].nunique()
