"""Export reviews with their current labels and the champion's predictions as CSV or Parquet.

Small exports are built in memory for a download; large ones are written to a file beside the
store (``exports/``), so a million rows never travel through a browser session's memory twice.
"""

from __future__ import annotations

import io
import os
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from store import models as model_store
from store.db import connect, resolve_db_path
from store.errors import TastebudError
from store.exports import count_export_rows, fetch_export
from store.trends import ReviewFilter

EXPORT_FORMATS = ("csv", "parquet")
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
    table, _ = export_table(db, flt=flt, labels=labels)
    target = Path(path) if path else resolve_db_path(db).resolve().parent / "exports" / f"reviews-{datetime.now():%Y%m%d-%H%M%S}.{fmt}"
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    with open(partial, "wb") as f:
        _write(table, f, fmt)
    partial.replace(target)  # a reader never sees half a file
    return target, table.num_rows


def _write(table: pa.Table, sink, fmt: str) -> None:
    if fmt not in EXPORT_FORMATS:
        raise TastebudError(f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    if fmt == "parquet":
        pq.write_table(table, sink)
    else:
        pa_csv.write_csv(table, sink)
