"""Import reviews from CSV, TSV, JSON Lines or Parquet into the store.

The whole file is parsed and validated before the store is touched: it is read into a
private in-memory DuckDB, every value as text, its columns mapped to review fields (by
flags or by common names), and each row checked once, set-based (see
:mod:`store.imports` for the checks and their order). Then the rows are written in chunks
sized to hold the store for about ``CHUNK_TARGET_S`` (at most ``CHUNK_ROWS`` rows), each its own
short transaction (reviews, labels, frozen splits), with a pause between chunks when another
process waits, so none waits longer than about one chunk. Each
chunk commits whole or not at all, and writing is idempotent, so an import killed halfway
is finished by running it again: nothing is duplicated.

A re-import that changes the text of a review a person labeled retracts that human label
(reason ``text_changed``; the history is kept) and flags the review for relabeling
(``text_changed``): a label must never silently move to a text nobody read. Its aspect
labels, human or imported, are retracted the same way (:func:`store.reviews.upsert_reviews`) and
the review flagged. The review keeps its frozen split.

Bad rows never stop good ones and are never dropped silently: each one lands in
``import_rejects`` with its row number and reason.

Labels:
    * with a label column, its values become labels of source ``import``. Accepted, case
      and surrounding whitespace ignored: ``negative``/``neg``, ``neutral``/``neu``,
      ``positive``/``pos``. Numbers are only accepted with ``numeric_labels``:
      ``binary`` (0 negative, 1 positive), ``ternary`` (0 negative, 1 neutral,
      2 positive) or ``signed`` (-1 negative, 0 neutral, 1 positive). Anything else
      (``mixed``, ``4``) is rejected as ``unknown_label``; an empty label leaves the
      review unlabeled.
    * without one, stars become labels of source ``stars``: 1-2 negative, 3 neutral,
      4-5 positive; a review without stars stays unlabeled.

Dates are ISO 8601 (``2012-06-16``, ``2012-06-16 21:07:00``, ``2012-06-16T21:07:00Z``,
with an optional UTC offset, stored as UTC). Parseable but implausible dates (``infinity``,
BC dates, ``9999-12-31``) are ``date_out_of_range``: by default a date must lie between
1990-01-01 and tomorrow (UTC); ``min_date``/``max_date`` move those bounds.

Texts lose their NUL characters; a text with nothing visible left is ``empty_text``, and a
text value that is not a string (a Parquet binary or float column, a JSON number or array)
is ``text_not_string``. A file whose bytes are a zip, gzip, PDF or other binary container is
refused as a whole. Everything quoted back from a file passes through
:func:`store.printable.printable`. A file without an id column gets ids
hashed from the restaurant id and the text, so re-importing it changes nothing.
"""

from __future__ import annotations

import csv
import os
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from store import imports as staging
from store.actors import Actor, audit, cli_actor, require
from pipeline.loop.thresholds import TEXT_CHANGED_PRIORITY
from store.db import hand_off, skip_row_group_merges, transaction
from store.errors import TastebudError
from store.flags import flag_for_relabel
from store.labels import append_labels, retract_human_labels
from store.printable import printable
from store.reviews import REVIEW_FIELDS, upsert_reviews
from store.schema import init_store
from store.splits import assign_splits, count_split_strata

FORMATS: tuple[str, ...] = ("csv", "tsv", "jsonl", "parquet")
# How each format is named in messages.
FORMAT_NAMES = {"csv": "CSV", "tsv": "TSV", "jsonl": "JSON Lines", "parquet": "Parquet"}
# Earliest plausible review date by default (online reviews do not predate it); the latest is tomorrow, UTC.
DEFAULT_MIN_DATE = date(1990, 1, 1)
# Leading bytes of binary files that are never review tables, with what to call them.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a zip archive"),
    (b"PK\x05\x06", "a zip archive"),
    (b"\x1f\x8b", "a gzip file"),
    (b"BZh", "a bzip2 file"),
    (b"\xfd7zXZ\x00", "an xz file"),
    (b"7z\xbc\xaf\x27\x1c", "a 7z archive"),
    (b"\x28\xb5\x2f\xfd", "a zstd file"),
    (b"Rar!\x1a\x07", "a rar archive"),
    (b"%PDF-", "a PDF document"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Office document"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"\x7fELF", "an executable"),
    (b"PAR1", "a Parquet file"),
)
_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",  # Yelp's review.json is JSON Lines despite its name
    ".parquet": "parquet",
    ".pq": "parquet",
}
# Longest review text accepted, in characters; longer rows are rejected as text_too_long.
MAX_TEXT_CHARS = 20_000
# Most reviews (or rejects) per write transaction. Chunks are sized by time, not only by rows:
# each chunk's size follows from how long the previous one held the store, aiming at
# CHUNK_TARGET_S, so other writers (a score job, a relabel on the dashboard) wait about that
# long at most, however loaded the machine or large the store.
CHUNK_ROWS = 50_000
# Rows of the first chunk (at most CHUNK_ROWS): small, since nothing is known yet about the pace.
FIRST_CHUNK_ROWS = 10_000
# Fewest rows per chunk: below this, per-transaction costs (open, checkpoint) dominate.
MIN_CHUNK_ROWS = 2_000
# Seconds one chunk's transaction (body, commit, checkpoint on close) should hold the store's lock.
CHUNK_TARGET_S = 1.0

# File column names recognised per field (compared lower-cased, spaces and dashes as underscores), first match wins.
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "text": ("text", "review", "review_text", "content", "body", "comment", "sentence"),
    "review_id": ("review_id", "id", "reviewid"),
    "created_at": ("date", "created_at", "review_date", "created", "timestamp", "time"),
    "stars": ("stars", "rating", "star_rating", "review_stars"),
    "label": ("label", "sentiment", "sentence_label"),
    "restaurant_id": ("business_id", "restaurant_id"),
    "restaurant_name": ("restaurant_name", "name", "business_name", "restaurant"),
    "neighborhood": ("neighborhood", "neighbourhood", "city", "area"),
}
# Label spellings accepted without any option (lower-cased).
LABEL_SPELLINGS: dict[str, str] = {
    "negative": "negative",
    "neg": "negative",
    "neutral": "neutral",
    "neu": "neutral",
    "positive": "positive",
    "pos": "positive",
}
# Numeric label schemes, chosen explicitly because 0/1 means different things in different datasets.
NUMERIC_LABEL_SCHEMES: dict[str, dict[str, str]] = {
    "binary": {"0": "negative", "1": "positive"},
    "ternary": {"0": "negative", "1": "neutral", "2": "positive"},
    "signed": {"-1": "negative", "0": "neutral", "1": "positive", "+1": "positive"},
}


@dataclass(frozen=True)
class ColumnMapping:
    """File column chosen for each review field; None means auto-detect by common names."""

    text: str | None = None
    review_id: str | None = None
    created_at: str | None = None
    stars: str | None = None
    label: str | None = None
    restaurant_id: str | None = None
    restaurant_name: str | None = None
    neighborhood: str | None = None


# The CLI flag that sets each field, for error messages.
_FLAGS = {
    "text": "--text",
    "review_id": "--id",
    "created_at": "--date",
    "stars": "--stars",
    "label": "--label",
    "restaurant_id": "--restaurant",
    "restaurant_name": "--restaurant-name",
    "neighborhood": "--neighborhood",
}


@dataclass
class ImportReport:
    """What one import did. ``accepted`` counts reviews new to the store."""

    import_id: int
    path: str
    format: str
    source: str
    columns: dict[str, str | None]
    rows: int
    accepted: int
    updated: int
    unchanged: int
    rejected: int
    rejected_by_reason: dict[str, int]
    labels_added: int
    label_source: str | None
    splits: dict[str, int]
    parse_seconds: float
    write_seconds: float
    first_rejects: list[dict] = field(default_factory=list)
    # Updated reviews whose text changed while a person's label stood on them: that label was
    # retracted and the review flagged (text_changed) for relabeling.
    relabel_needed: int = 0
    relabel_needed_ids: list[str] = field(default_factory=list)
    chunks: int = 0
    longest_chunk_seconds: float = 0.0

    @property
    def imported_anything(self) -> bool:
        """True when some row was accepted, updated or found unchanged (the CLI then exits 0)."""
        return self.accepted + self.updated + self.unchanged > 0

    def to_dict(self) -> dict:
        return asdict(self)


def map_columns(names: list[str], mapping: ColumnMapping | None = None) -> dict[str, int | None]:
    """Choose the file column (by position) for each review field.

    Args:
        names: the file's column names (or JSON keys).
        mapping: explicit choices; fields left None are auto-detected from ``COLUMN_ALIASES``.

    Returns:
        field -> position in ``names``, or None when the file has no such column.

    Raises:
        TastebudError: an explicit column is not in the file, or no text column was found.

    Example:
        >>> map_columns(["business_id", "date", "review_id", "stars", "text"])["text"]
        4
    """
    mapping = mapping or ColumnMapping()
    normalised = [_normalise(n) for n in names]
    chosen: dict[str, int | None] = {}
    for f in fields(ColumnMapping):
        explicit = getattr(mapping, f.name)
        if explicit is not None:
            chosen[f.name] = _find_explicit(names, normalised, explicit, f.name)
        else:
            chosen[f.name] = next(
                (normalised.index(a) for a in COLUMN_ALIASES[f.name] if a in normalised), None
            )
    if chosen["text"] is None:
        shown = _shown_columns(names)
        raise TastebudError(f"no text column found (columns: {shown or 'none'}); name it with --text COLUMN")
    return chosen


def _normalise(name: str) -> str:
    return name.strip().lower().replace(" ", "_").replace("-", "_")


def _find_explicit(names: list[str], normalised: list[str], wanted: str, field_name: str) -> int:
    if wanted in names:
        return names.index(wanted)
    if _normalise(wanted) in normalised:
        return normalised.index(_normalise(wanted))
    raise TastebudError(
        f"column {printable(wanted)!r} ({_FLAGS[field_name]}) is not in the file (columns: {_shown_columns(names)})"
    )


def _shown_columns(names: list[str]) -> str:
    """The first 20 column names, escaped and cut, for messages."""
    return ", ".join(printable(n, max_chars=40) for n in names[:20]) + (" ..." if len(names) > 20 else "")


def label_spellings(numeric_labels: str | None = None) -> dict[str, str]:
    """Accepted label values (lower-case) -> label, optionally with a numeric scheme.

    Example:
        >>> label_spellings("binary")["1"]
        'positive'
    """
    if numeric_labels is None:
        return dict(LABEL_SPELLINGS)
    if numeric_labels not in NUMERIC_LABEL_SCHEMES:
        raise TastebudError(
            f"unknown --numeric-labels {numeric_labels!r}; choose one of {', '.join(NUMERIC_LABEL_SCHEMES)}"
        )
    return {**LABEL_SPELLINGS, **NUMERIC_LABEL_SCHEMES[numeric_labels]}


def import_reviews(
    db: str | os.PathLike | None,
    path: str | os.PathLike,
    *,
    fmt: str | None = None,
    columns: ColumnMapping | None = None,
    source: str | None = None,
    numeric_labels: str | None = None,
    actor: Actor | None = None,
    min_date: date | None = None,
    max_date: date | None = None,
) -> ImportReport:
    """Import one file of reviews into the store (created if missing); see the module doc for the rules.

    Args:
        db: the store file.
        path: a CSV, TSV, JSON Lines or Parquet file.
        fmt: one of ``FORMATS``; default from the file extension.
        columns: explicit column choices; others are auto-detected.
        source: ``reviews.source`` for these rows; default the file name.
        numeric_labels: accept numeric labels by this scheme (see ``NUMERIC_LABEL_SCHEMES``).
        actor: who imports (needs the ``import`` permission); default the CLI operator.
        min_date, max_date: the plausible date window, both days included (default
            1990-01-01 .. tomorrow, UTC); other dates are ``date_out_of_range``.

    Returns:
        The counts: accepted (new), updated, unchanged, rejected by reason, labels, splits.

    Raises:
        TastebudError: missing/unreadable file, unknown format, no text column, bad option.

    Example:
        >>> report = import_reviews("t.duckdb", "yelp_dev.csv")  # doctest: +SKIP
        >>> report.accepted, report.rejected
        (8001, 0)
    """
    actor = actor or cli_actor()
    require(actor, "import")
    file = _check_file(Path(path))
    fmt = _resolve_format(file, fmt)
    spellings = label_spellings(numeric_labels)
    window = date_window(min_date, max_date)
    source = source or file.name
    started = datetime.now()
    t0 = time.perf_counter()
    mapping, staged, valid, rejects, by_reason = _parse_and_validate(file, fmt, columns, source, spellings, window)
    t1 = time.perf_counter()
    label_source = "import" if mapping["label"] is not None else "stars" if mapping["stars"] is not None else None
    report = _write(db, file, fmt, started, valid, rejects, label_source, actor)
    report.update(
        path=str(file),
        format=fmt,
        source=source,
        columns={k: (staged.columns[v] if v is not None else None) for k, v in mapping.items()},
        rows=staged.rows,
        rejected=rejects.num_rows,
        rejected_by_reason=by_reason,
        label_source=label_source,
        parse_seconds=round(t1 - t0, 3),
        write_seconds=round(time.perf_counter() - t1, 3),
        first_rejects=rejects.slice(0, 10).select(["row_number", "reason", "detail"]).to_pylist(),
    )
    return ImportReport(**report)


def parse_reviews_file(
    path: str | os.PathLike,
    *,
    fmt: str | None = None,
    columns: ColumnMapping | None = None,
    numeric_labels: str | None = None,
    min_date: date | None = None,
    max_date: date | None = None,
) -> tuple[pa.Table, pa.Table, str | None]:
    """Parse and validate a file exactly as :func:`import_reviews` does, without touching any store.

    For evaluating a model on labeled data kept outside the store (``tastebud evaluate --data``).

    Returns:
        (rows, rejects, label_source): the accepted rows (review fields plus ``label``, taken from
        the label column when the file has one, else from stars, None where neither gives one),
        the rejected rows (row_number, reason, detail, raw), and "import", "stars" or None.

    Example:
        >>> rows, rejects, source = parse_reviews_file("held_out.csv")  # doctest: +SKIP
    """
    file = _check_file(Path(path))
    fmt = _resolve_format(file, fmt)
    mapping, _, valid, rejects, _ = _parse_and_validate(
        file, fmt, columns, file.name, label_spellings(numeric_labels), date_window(min_date, max_date)
    )
    label_source = "import" if mapping["label"] is not None else "stars" if mapping["stars"] is not None else None
    label = valid["label" if label_source == "import" else "stars_label"] if label_source else pa.nulls(valid.num_rows, pa.string())
    rows = valid.select(list(REVIEW_FIELDS)).append_column("label", label)
    return rows, rejects, label_source


def date_window(min_date: date | None = None, max_date: date | None = None) -> tuple[datetime, datetime]:
    """The plausible review dates as [start, end) datetimes: ``min_date`` .. ``max_date``, both days included.

    Defaults: 1990-01-01 and tomorrow (UTC).

    Raises:
        TastebudError: the window is empty.

    Example:
        >>> date_window(date(2000, 1, 1), date(2000, 12, 31))
        (datetime.datetime(2000, 1, 1, 0, 0), datetime.datetime(2001, 1, 1, 0, 0))
    """
    low = min_date or DEFAULT_MIN_DATE
    high = max_date or (datetime.now(timezone.utc).date() + timedelta(days=1))
    if low > high:
        raise TastebudError(f"--min-date {low.isoformat()} is after --max-date {high.isoformat()}")
    start = datetime(low.year, low.month, low.day)
    end = datetime(high.year, high.month, high.day) + timedelta(days=1) if high < date.max else datetime.max
    return start, end


def _check_file(path: Path) -> Path:
    shown = printable(path, max_chars=300)
    if not path.exists():
        raise TastebudError(f"no such file: {shown}")
    if not path.is_file():
        raise TastebudError(f"not a file: {shown}")
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as exc:
        raise TastebudError(f"cannot read {shown}: {exc.strerror or exc}") from None
    if path.stat().st_size == 0:
        raise TastebudError(f"{shown} is empty")
    return path.resolve()


def _resolve_format(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        fmt = fmt.lower()
        if fmt not in FORMATS:
            raise TastebudError(f"unknown format {printable(fmt)!r}; choose one of {', '.join(FORMATS)}")
    else:
        fmt = _EXTENSIONS.get(path.suffix.lower())
        if fmt is None:
            raise TastebudError(
                f"cannot tell the format of {printable(path.name)} from its extension; "
                f"pass --format {'|'.join(FORMATS)}"
            )
    _refuse_binary(path, fmt)
    return fmt


def _refuse_binary(path: Path, fmt: str) -> None:
    """Refuse a file whose leading bytes say it is a binary container (or, for text formats, any binary)."""
    with open(path, "rb") as f:
        head = f.read(8192)
    what = next((name for magic, name in _MAGIC if head.startswith(magic)), None)
    name = printable(path.name)
    if fmt == "parquet":
        if what != "a Parquet file":
            raise TastebudError(f"{name} is {what + ', not Parquet' if what else 'not a Parquet file (no PAR1 header)'}")
        return
    if what is None and head.startswith((b"\xff\xfe", b"\xfe\xff")):
        what = "UTF-16 text (save it as UTF-8)"
    elif what is None and _looks_binary(head):
        what = "a binary file"
    if what is not None:
        hint = "; pass --format parquet" if what == "a Parquet file" else ""
        raise TastebudError(f"{name} is {what}, not {FORMAT_NAMES[fmt]}{hint}")


def _looks_binary(head: bytes) -> bool:
    """More than 10% control bytes (other than tab, newlines, form feed and ESC) in the first 8 KiB."""
    if not head:
        return False
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13, 27))
    return controls > len(head) // 10


def _parse_and_validate(
    file: Path,
    fmt: str,
    columns: ColumnMapping | None,
    source: str,
    spellings: dict[str, str],
    window: tuple[datetime, datetime],
) -> tuple[dict[str, int | None], staging.Staged, pa.Table, pa.Table, dict[str, int]]:
    """Stage, map and check the file on a private in-memory DuckDB; no store connection is open."""
    mem = staging.open_staging()
    try:
        staged = _stage(mem, file, fmt)
        mapping = map_columns(staged.columns, columns)
        by_reason = staging.validate_staged(
            mem, staged, mapping, label_map=spellings, max_text_chars=MAX_TEXT_CHARS,
            min_date=window[0], max_date=window[1],
        )
        return mapping, staged, staging.fetch_valid(mem, source=source), staging.fetch_staged_rejects(mem), by_reason
    finally:
        mem.close()


def _stage(mem: duckdb.DuckDBPyConnection, file: Path, fmt: str) -> staging.Staged:
    try:
        if fmt in ("csv", "tsv"):
            delimiter = "," if fmt == "csv" else "\t"
            newline = _sniff_newline(file)
            header = _read_header(file, delimiter)
            blank = _blank_rows(file, newline)
            return staging.stage_delimited(
                mem, str(file), columns=header, delimiter=delimiter, newline=newline, blank_rows=blank
            )
        if fmt == "jsonl":
            if _first_byte(file) == b"[":
                raise TastebudError(f"{printable(file.name)} is a JSON array; import JSON Lines (one object per line)")
            return staging.stage_json_lines(mem, str(file), newline=_sniff_newline(file))
        return staging.stage_arrow(mem, _read_parquet(file))
    except duckdb.Error as exc:
        raise TastebudError(f"cannot read {printable(file.name)} as {FORMAT_NAMES[fmt]}: {_reader_detail(exc, fmt)}") from None


def _first_line(exc: Exception) -> str:
    return printable((str(exc).strip().splitlines() or [type(exc).__name__])[0], max_chars=200)


def _reader_detail(exc: Exception, fmt: str) -> str:
    """The reader's complaint, without naming the CSV reader that JSON Lines files also go through."""
    detail = _first_line(exc)
    if fmt == "jsonl":
        detail = detail.replace("CSV file", "file").replace("CSV", "line reader").replace("csv", "line reader")
    return detail


def _first_byte(file: Path) -> bytes:
    with open(file, "rb") as f:
        return f.read(4096).lstrip()[:1]


def _sniff_newline(file: Path) -> str:
    """The file's line ending, from its first line."""
    with open(file, "rb") as f:
        head = f.read(1 << 20)
    lf = head.find(b"\n")
    if lf > 0 and head[lf - 1 : lf] == b"\r":
        return "\r\n"
    if lf < 0 and b"\r" in head:
        return "\r"
    return "\n"


def _read_header(file: Path, delimiter: str) -> list[str]:
    with open(file, encoding="utf-8-sig", errors="replace", newline="") as f:
        try:
            header = next(csv.reader(f, delimiter=delimiter))
        except StopIteration:
            raise TastebudError(f"{printable(file.name)} is empty") from None
        except csv.Error as exc:
            raise TastebudError(f"cannot read the header of {printable(file.name)}: {printable(exc)}") from None
    if not any(h.strip() for h in header):
        raise TastebudError(f"{printable(file.name)} has no header row")
    return [h.strip() for h in header]


def _blank_rows(file: Path, newline: str) -> list[int]:
    """Row numbers (header = 1) of blank lines outside quotes, which the CSV reader skips without a trace.

    Knowing them keeps the row numbers of later rows exact. A newline is outside quotes when
    an even number of quote characters precede it (RFC 4180 doubles quotes inside fields).
    """
    with open(file, "rb") as f:
        raw = f.read()
    if not _has_blank_line(raw, newline.encode()):
        return []
    data = np.frombuffer(raw, dtype=np.uint8)
    ends = np.flatnonzero(data == (13 if newline == "\r" else 10))
    step = len(newline)
    quotes = np.flatnonzero(data == 34)
    record_ends = ends[(np.searchsorted(quotes, ends) & 1) == 0]
    # record_ends[j] closes record j + 1; record j + 2 is blank when nothing lies between two ends.
    return (np.flatnonzero(np.diff(record_ends) == step) + 2).tolist()


def _has_blank_line(raw: bytes, newline: bytes) -> bool:
    """Whether two newlines meet outside quotes; fast because quoted paragraph breaks are the only candidates."""
    pair = newline + newline
    at, counted, quotes = raw.find(pair), 0, 0
    while at >= 0:
        quotes += raw.count(b'"', counted, at)
        counted = at
        if quotes % 2 == 0:
            return True
        at = raw.find(pair, at + len(newline))
    return False


def _read_parquet(file: Path) -> pa.Table:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(file)
    except (pa.ArrowException, OSError) as exc:
        raise TastebudError(f"cannot read {printable(file.name)} as Parquet: {_first_line(exc)}") from None


def _write(
    db: str | os.PathLike | None,
    file: Path,
    fmt: str,
    started: datetime,
    valid: pa.Table,
    rejects: pa.Table,
    label_source: str | None,
    actor: Actor,
) -> dict:
    """Write in chunks, each one transaction: rejects, then reviews with their labels, retractions, flags
    and splits. The import row goes with the first chunk, its counts and the audit row with the last,
    so an import of one chunk is all-or-nothing as a whole. Chunk sizes follow :class:`_ChunkSizer`."""
    init_store(db)
    totals = {"accepted": 0, "updated": 0, "unchanged": 0, "labels_added": 0}
    splits = {"train": 0, "val": 0, "test": 0}
    relabel: list[str] = []
    sizer, import_id = _ChunkSizer(), None
    # Several chunks: the split counts per stratum are read once and kept up to date here, so each
    # chunk reads only its own reviews' labels instead of every label in the store.
    strata = None
    # Chunk k writes the next `rows` rejects and the next `rows` reviews (either may be used up).
    review_offset = reject_offset = 0
    while True:
        rows = sizer.rows
        last = review_offset + rows >= valid.num_rows and reject_offset + rows >= rejects.num_rows
        if import_id is not None:
            hand_off(db)  # let a process waiting for the store in between two chunks
        chunk_relabel: list[str] = []
        with transaction(db) as con:
            sizer.start()
            skip_row_group_merges(con)  # a merge rewrites up to ~123k earlier rows inside this chunk's hold
            if import_id is None:
                import_id = staging.start_import(con, path=str(file), fmt=fmt, started_at=started)
                if not last:
                    strata = count_split_strata(con)
            if reject_offset < rejects.num_rows:
                staging.append_rejects(con, import_id, str(file), rejects.slice(reject_offset, rows))
            if review_offset < valid.num_rows or review_offset == 0:
                chunk_relabel = _write_reviews(con, import_id, file, valid.slice(review_offset, rows),
                                               label_source, actor, totals, splits, strata, review_offset == 0)
            if last:
                _finish(con, import_id, file, actor, totals, rejects.num_rows, len(relabel) + len(chunk_relabel))
        sizer.stop(rows)
        relabel.extend(chunk_relabel)
        review_offset, reject_offset = review_offset + rows, reject_offset + rows
        if last:
            break
    return {
        "import_id": import_id,
        **totals,
        "splits": splits,
        "relabel_needed": len(relabel),
        "relabel_needed_ids": sorted(relabel)[:100],
        "chunks": sizer.count,
        "longest_chunk_seconds": round(sizer.longest, 3),
    }


def _write_reviews(
    con: duckdb.DuckDBPyConnection,
    import_id: int,
    file: Path,
    chunk: pa.Table,
    label_source: str | None,
    actor: Actor,
    totals: dict[str, int],
    splits: dict[str, int],
    strata: dict[str, dict[str, int]] | None,
    first: bool,
) -> list[str]:
    """One chunk of accepted rows; returns the reviews whose human label or aspect labels were retracted
    (text changed)."""
    counts = upsert_reviews(con, chunk.select(list(REVIEW_FIELDS)))
    retracted = retract_human_labels(con, list(counts.text_changed), reason="text_changed", by=actor.name)
    retracted = sorted(set(retracted) | set(counts.aspects_retracted))  # upsert_reviews retracted those
    flag_for_relabel(con, retracted, reason="text_changed", priority=TEXT_CHANGED_PRIORITY,
                     detail={"import_id": import_id, "file": str(file)})
    labels = _label_rows(chunk, label_source)
    added = append_labels(con, labels) if labels.num_rows else 0
    # The first chunk also assigns reviews an earlier, interrupted import left without a split.
    ids = chunk["review_id"] if strata is not None and not first else None
    for split, n in assign_splits(con, strata=strata, review_ids=ids).items():
        splits[split] += n
    for key, n in (("accepted", counts.inserted), ("updated", counts.updated),
                   ("unchanged", counts.unchanged), ("labels_added", added)):
        totals[key] += n
    return retracted


def _finish(
    con: duckdb.DuckDBPyConnection, import_id: int, file: Path, actor: Actor, totals: dict[str, int],
    rejected: int, relabel_needed: int,
) -> None:
    staging.finish_import(con, import_id, accepted=totals["accepted"], updated=totals["updated"],
                          unchanged=totals["unchanged"], rejected=rejected)
    audit(con, actor, "import", target=str(file),
          detail={"import_id": import_id, "accepted": totals["accepted"], "updated": totals["updated"],
                  "unchanged": totals["unchanged"], "rejected": rejected, "relabel_needed": relabel_needed})


class _ChunkSizer:
    """Times each chunk's hold of the store (from the open connection to after commit and close) and
    sizes the next chunk to take about ``CHUNK_TARGET_S`` at the pace of the last one, between
    ``MIN_CHUNK_ROWS`` and ``CHUNK_ROWS``. A lock wait before the open is not counted: it says
    nothing about this import's pace."""

    def __init__(self) -> None:
        self.rows = min(FIRST_CHUNK_ROWS, CHUNK_ROWS)
        self.count, self.longest, self._t0 = 0, 0.0, 0.0

    def start(self) -> None:
        self._t0 = time.perf_counter()

    def stop(self, rows: int) -> None:
        held = time.perf_counter() - self._t0
        self.count += 1
        self.longest = max(self.longest, held)
        paced = int(rows * CHUNK_TARGET_S / max(held, 1e-3))
        self.rows = max(min(MIN_CHUNK_ROWS, CHUNK_ROWS), min(CHUNK_ROWS, paced))


def _label_rows(valid: pa.Table, label_source: str | None) -> pa.Table:
    """review_id, label, source for every accepted row that carries a label."""
    empty = pa.table({"review_id": pa.array([], pa.string()), "label": pa.array([], pa.string()),
                      "source": pa.array([], pa.string())})
    if label_source is None:
        return empty
    column = valid["label" if label_source == "import" else "stars_label"]
    keep = pc.is_valid(column)
    ids = pc.filter(valid["review_id"], keep)
    return pa.table({
        "review_id": ids,
        "label": pc.filter(column, keep),
        "source": pa.array([label_source] * len(ids), pa.string()),
    })
