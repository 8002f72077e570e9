"""Import SQL: staging a file on a private in-memory DuckDB, set-based validation, and the import records.

An import parses and validates a whole file with no store connection open: the file is
read into a private in-memory DuckDB (:func:`open_staging`), every column as text, with
the reader's own rejects table keeping the row numbers of malformed rows. Validation is
one set-based pass that gives each row its first failing reason. Only the accepted rows
and the rejects, as Arrow tables, travel to the store, in one short write transaction
(:func:`start_import`, :func:`append_rejects`, :func:`finish_import`).

Row numbers: for CSV/TSV the header is row 1 and a record that spans several lines
(quoted newlines) counts once, as a spreadsheet shows it; blank lines count as rows. For
JSON Lines a row is a line; for Parquet, the data row (1 = first).

Staging tables name file columns ``c0, c1, ...`` by position, so no name read from a file
is ever written into SQL; names and JSON keys travel as bound parameters.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime

import duckdb
import pandas as pd
import pyarrow as pa

from store.constants import STARS_LABEL_SQL

# Why a row was rejected; the first failing check, in this order, is recorded.
REJECT_REASONS: tuple[str, ...] = (
    "invalid_utf8",  # the row's bytes are not valid UTF-8
    "malformed_row",  # CSV/TSV record the reader could not split (column count, stray or unterminated quote)
    "malformed_json",  # JSON Lines line that is not a JSON object
    "text_not_string",  # the text value is a number, binary, list or object, not a string
    "empty_text",  # text missing, or nothing left after removing NUL characters and whitespace
    "text_too_long",  # text longer than the importer's character limit
    "missing_id",  # the file has an id column but this row's id is empty
    "invalid_date",  # date present but not ISO 8601
    "date_out_of_range",  # date before the earliest or after the latest plausible date (infinite, BC, year 9999)
    "stars_not_numeric",  # stars present but not a number
    "stars_out_of_range",  # stars not a whole number from 1 to 5
    "unknown_label",  # label present but not one the importer accepts
    "duplicate_id",  # the id already appeared on an earlier accepted row of the same file
)
# Canonical review fields a file column can be mapped to.
FIELDS: tuple[str, ...] = (
    "review_id",
    "text",
    "created_at",
    "stars",
    "label",
    "restaurant_id",
    "restaurant_name",
    "neighborhood",
)
# A rejected row's raw content is cut to this many characters (the file itself still holds all of it).
REJECT_RAW_MAX_CHARS = 2_000
# Rows per Arrow record batch handed to the store: several batches let DuckDB scan them in parallel.
ARROW_BATCH_ROWS = 122_880
# A CSV record longer than this many bytes is reported as malformed instead of being read.
MAX_RECORD_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Staged:
    """What a staging call left in the ``_staged`` view of an in-memory connection."""

    columns: list[str]  # the file's column names (or JSON keys), by position c0, c1, ...
    rows: int  # data rows read, including malformed ones
    kind: str  # "table" (CSV/TSV/Parquet: one column per field) or "json" (one line per row)
    # Per column, the kind of value a typed file (Parquet) holds when it is not a string ("float",
    # "binary", "list"...); None for string columns and for CSV/TSV/JSON Lines (typed per value).
    non_string: tuple[str | None, ...] = ()


# --------------------------------------------------------------------------- staging


def open_staging() -> duckdb.DuckDBPyConnection:
    """A private in-memory DuckDB for parsing and validating one file (UTC, all cores)."""
    mem = duckdb.connect(":memory:", config={"threads": os.cpu_count() or 1})
    mem.execute("SET TimeZone = 'UTC'")
    mem.execute("SET preserve_insertion_order = true")
    mem.execute("SET enable_progress_bar = false")
    return mem


def _number_rows(mem: duckdb.DuckDBPyConnection, first_row: int, skipped: list[int]) -> None:
    """Create the view ``_staged``: ``_read`` (in file order) plus ``_row``, skipping the numbers in ``skipped``.

    The reader keeps file order but drops rejected and blank rows; the k-th kept row is the
    k-th row number from ``first_row`` that is not in ``skipped``. A view, not a copy: the
    rows are materialised once, when the accepted ones are fetched.
    """
    skipped = sorted({n for n in skipped if n >= first_row})
    if not skipped:
        mem.execute(f"CREATE OR REPLACE VIEW _staged AS SELECT {int(first_row)} + rowid AS _row, * FROM _read")
        return
    # g = kept rows before skipped row n; a kept row k lies after every skipped row with g < k.
    mem.execute(
        """
        CREATE OR REPLACE TABLE _gaps AS
        SELECT g, max(cnt) AS cnt FROM (
            SELECT n - ? - (row_number() OVER (ORDER BY n) - 1) AS g, row_number() OVER (ORDER BY n) AS cnt
            FROM (SELECT unnest(?::BIGINT[]) AS n)
        ) GROUP BY g
        """,
        [first_row, skipped],
    )
    mem.execute(
        f"""
        CREATE OR REPLACE VIEW _staged AS
        SELECT {int(first_row)} + p.rowid + coalesce(g.cnt, 0) AS _row, p.*
        FROM _read p ASOF LEFT JOIN _gaps g ON p.rowid + 1 > g.g
        """
    )


def _collect_reader_rejects(mem: duckdb.DuckDBPyConnection, malformed_reason: str) -> list[int]:
    """Move the CSV reader's errors (one per row) into ``_parse_rejects``; returns their row numbers."""
    mem.execute(
        """
        CREATE OR REPLACE TABLE _parse_rejects AS
        SELECT line AS _row,
               CASE WHEN bool_or(error_type = 'INVALID ENCODING') THEN 'invalid_utf8' ELSE ? END AS reason,
               first(error_message ORDER BY coalesce(column_idx, -1)) AS detail,
               left(first(csv_line ORDER BY coalesce(column_idx, -1)), ?) AS raw
        FROM _reader_errors GROUP BY line
        """,
        [malformed_reason, REJECT_RAW_MAX_CHARS],
    )
    return [n for (n,) in mem.execute("SELECT _row FROM _parse_rejects").fetchall()]


def _count_rows(mem: duckdb.DuckDBPyConnection) -> int:
    return mem.execute("SELECT (SELECT count(*) FROM _staged) + (SELECT count(*) FROM _parse_rejects)").fetchone()[0]


def stage_delimited(
    mem: duckdb.DuckDBPyConnection,
    path: str,
    *,
    columns: list[str],
    delimiter: str,
    newline: str,
    blank_rows: list[int],
) -> Staged:
    """Read a CSV/TSV file with a header into ``_staged`` (all text) and its unreadable rows into ``_parse_rejects``.

    Args:
        mem: a connection from :func:`open_staging`.
        path: the file.
        columns: the header's column names (read by the caller), in order.
        delimiter: ``","`` or ``"\\t"``.
        newline: ``"\\n"``, ``"\\r\\n"`` or ``"\\r"`` (the characters).
        blank_rows: row numbers of blank lines, which the reader skips silently.

    Returns:
        The staged columns and row count.

    Example:
        >>> stage_delimited(mem, "r.csv", columns=["id", "text"], delimiter=",",  # doctest: +SKIP
        ...                 newline="\\n", blank_rows=[])
        Staged(columns=['id', 'text'], rows=2, kind='table')
    """
    spec = {f"c{i}": "VARCHAR" for i in range(len(columns))}
    escaped_newline = newline.replace("\r", "\\r").replace("\n", "\\n")
    mem.execute(
        """
        CREATE OR REPLACE TABLE _read AS
        SELECT * FROM read_csv(?, auto_detect = false, header = true, columns = ?, delim = ?,
                               quote = '"', escape = '"', new_line = ?, max_line_size = ?,
                               store_rejects = true, rejects_table = '_reader_errors', rejects_scan = '_reader_scans')
        """,
        [path, spec, delimiter, escaped_newline, MAX_RECORD_BYTES],
    )
    rejected = _collect_reader_rejects(mem, "malformed_row")
    _number_rows(mem, 2, rejected + list(blank_rows))
    return Staged(columns=list(columns), rows=_count_rows(mem), kind="table")


def stage_json_lines(mem: duckdb.DuckDBPyConnection, path: str, *, newline: str) -> Staged:
    """Read a JSON Lines file into ``_staged`` (``_row``, ``line``), with bad lines in ``_parse_rejects``.

    Blank lines are skipped. Lines that are not a JSON object are rejected as ``malformed_json``.

    Returns:
        The JSON keys seen (in order of first appearance) as ``columns``, and the row count.

    Example:
        >>> stage_json_lines(mem, "review.json", newline="\\n").columns[:3]  # doctest: +SKIP
        ['review_id', 'user_id', 'business_id']
    """
    escaped_newline = newline.replace("\r", "\\r").replace("\n", "\\n")
    # One column per line: no quoting, and a delimiter byte that valid JSON never contains raw.
    mem.execute(
        """
        CREATE OR REPLACE TABLE _read AS
        SELECT * FROM read_csv(?, auto_detect = false, header = false, columns = {'line': 'VARCHAR'},
                               delim = chr(1), quote = '', escape = '', new_line = ?, max_line_size = ?,
                               store_rejects = true, rejects_table = '_reader_errors', rejects_scan = '_reader_scans')
        """,
        [path, escaped_newline, MAX_RECORD_BYTES],
    )
    rejected = _collect_reader_rejects(mem, "malformed_json")
    _number_rows(mem, 1, rejected)
    mem.execute(
        """
        CREATE OR REPLACE TABLE _json AS
        SELECT _row, line, CASE WHEN json_valid(line) THEN json_type(line) = 'OBJECT' ELSE false END AS is_object
        FROM _staged WHERE line IS NOT NULL AND regexp_matches(line, '\\S')
        """
    )
    mem.execute(
        """
        INSERT INTO _parse_rejects
        SELECT _row, 'malformed_json',
               CASE WHEN json_valid(line) THEN 'a JSON ' || lower(json_type(line)) || ', not an object'
                    ELSE 'not valid JSON' END,
               left(line, ?)
        FROM _json WHERE NOT is_object
        """,
        [REJECT_RAW_MAX_CHARS],
    )
    mem.execute("CREATE OR REPLACE VIEW _staged AS SELECT _row, line FROM _json WHERE is_object")
    keys = [
        k
        for (k,) in mem.execute(
            """
            SELECT k FROM (SELECT _row, unnest(json_keys(line)) AS k FROM _staged)
            GROUP BY k ORDER BY min(_row), k
            """
        ).fetchall()
    ]
    return Staged(columns=keys, rows=_count_rows(mem), kind="json")


def stage_arrow(mem: duckdb.DuckDBPyConnection, table: pa.Table) -> Staged:
    """Stage an Arrow table (a Parquet file's rows, in order) into ``_staged``; row 1 is the first data row."""
    columns = list(table.column_names)
    renamed = table.rename_columns([f"c{i}" for i in range(len(columns))])
    mem.register("_arrow_in", renamed)
    try:
        casts = ", ".join(f"CAST(c{i} AS VARCHAR) AS c{i}" for i in range(len(columns)))
        mem.execute(f"CREATE OR REPLACE TABLE _read AS SELECT {casts} FROM _arrow_in")
    finally:
        mem.unregister("_arrow_in")
    mem.execute("CREATE OR REPLACE TABLE _parse_rejects (_row BIGINT, reason VARCHAR, detail VARCHAR, raw VARCHAR)")
    _number_rows(mem, 1, [])
    kinds = tuple(_arrow_value_kind(f.type) for f in table.schema)
    return Staged(columns=columns, rows=table.num_rows, kind="table", non_string=kinds)


def _arrow_value_kind(kind: pa.DataType) -> str | None:
    """None for a string column, else a short name of what it holds, for reject details."""
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind) or (
        hasattr(pa.types, "is_string_view") and pa.types.is_string_view(kind)
    ):
        return None
    checks = (
        (pa.types.is_floating, "float"),
        (pa.types.is_integer, "integer"),
        (pa.types.is_boolean, "boolean"),
        (pa.types.is_decimal, "decimal"),
        (lambda t: pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t),
         "binary"),
        (lambda t: pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t), "list"),
        (pa.types.is_struct, "struct"),
        (pa.types.is_map, "map"),
        (lambda t: pa.types.is_temporal(t), "date/time"),
    )
    return next((name for check, name in checks if check(kind)), str(kind))


# --------------------------------------------------------------------------- validation


def _field_sql(staged: Staged, mapping: dict[str, int | None]) -> tuple[str, dict]:
    """SELECT giving ``_row`` and the canonical fields; file columns by position, JSON keys bound."""
    parts, pointers = [], []
    for field in FIELDS:
        index = mapping.get(field)
        if index is None:
            parts.append(f"NULL::VARCHAR AS {field}")
        elif staged.kind == "json":
            # JSON Pointer escaping (RFC 6901) so any key works.
            pointers.append("/" + staged.columns[index].replace("~", "~0").replace("/", "~1"))
            parts.append(f"_v[{len(pointers)}] AS {field}")
        else:
            parts.append(f"c{index} AS {field}")
    if staged.kind == "json":
        # The JSON type of the text value (a number or an array is not a review text).
        text_pointer = "/" + staged.columns[mapping["text"]].replace("~", "~0").replace("/", "~1")
        extract = (
            "SELECT _row, json_extract_string(line, $pointers::VARCHAR[]) AS _v, "
            "json_type(line, $text_pointer::VARCHAR) AS _text_type FROM _staged"
        )
        return (
            f"SELECT _row, {', '.join(parts)}, {_JSON_KIND_SQL} AS text_kind FROM ({extract})",
            {"pointers": pointers, "text_pointer": text_pointer},
        )
    kind = staged.non_string[mapping["text"]] if staged.non_string else None
    return f"SELECT _row, {', '.join(parts)}, $text_kind::VARCHAR AS text_kind FROM _staged", {"text_kind": kind}


# JSON value types that are not a string, named as in reject details (NULL: a string or no value).
_JSON_KIND_SQL = """CASE _text_type WHEN 'DOUBLE' THEN 'float' WHEN 'BIGINT' THEN 'integer'
    WHEN 'UBIGINT' THEN 'integer' WHEN 'BOOLEAN' THEN 'boolean' WHEN 'ARRAY' THEN 'list'
    WHEN 'OBJECT' THEN 'object' END"""


def _raw_sql(staged: Staged) -> tuple[str, list]:
    """Expression over ``_staged s`` rendering a row as text for the rejects table, and its parameters."""
    if staged.kind == "json":
        return "s.line", []
    # The file's column names (bound) and values as a JSON object.
    pairs = ", ".join(f"?::VARCHAR, s.c{i}" for i in range(len(staged.columns)))
    return f"json_object({pairs})::VARCHAR", list(staged.columns)


# A text must hold at least one character that is not whitespace, a control or a format character.
_VISIBLE_RE = r"[^\s\p{Z}\p{Cc}\p{Cf}]"
# An explicit UTC offset ("Z", "+02:00") after a time: such dates go through TIMESTAMPTZ, because a
# plain TIMESTAMP cast would silently drop the offset; the rest take the much cheaper plain cast.
_OFFSET_RE = r":\d\d(\.\d+)?\s*([zZ]|[+-]\d\d(:?\d\d)?)$"


def _blank_to_null(column: str) -> str:
    """SQL: the value with surrounding spaces trimmed, NULL when empty.

    Trimming copies every string; testing the ends first makes the usual clean value cost
    a comparison instead.
    """
    return (
        f"CASE WHEN starts_with({column}, ' ') OR ends_with({column}, ' ') "
        f"THEN nullif(trim({column}), '') ELSE nullif({column}, '') END"
    )


def validate_staged(
    mem: duckdb.DuckDBPyConnection,
    staged: Staged,
    mapping: dict[str, int | None],
    *,
    label_map: dict[str, str],
    max_text_chars: int,
    min_date: datetime,
    max_date: datetime,
) -> dict[str, int]:
    """Check every staged row in one pass; failures join ``_parse_rejects``, the rest are fetched as valid.

    Args:
        mem: the staging connection holding ``_staged``.
        staged: what the staging call returned.
        mapping: canonical field -> position in ``staged.columns`` (None: not in the file).
        label_map: lower-cased accepted label spellings -> canonical label.
        max_text_chars: longest text accepted.
        min_date, max_date: dates before ``min_date`` or at/after ``max_date`` (UTC) are
            ``date_out_of_range``, as are infinite ones.

    Returns:
        Rejected rows per reason (parse rejects included), only reasons that occurred.

    Example:
        >>> mapping = {"text": 1, "review_id": 0}
        >>> validate_staged(mem, staged, mapping, label_map={}, max_text_chars=20000,  # doctest: +SKIP
        ...                 min_date=datetime(1990, 1, 1), max_date=datetime(2030, 1, 1))
        {'empty_text': 2}
    """
    fields_sql, field_params = _field_sql(staged, mapping)
    has_label = mapping.get("label") is not None
    mem.execute(
        "CREATE OR REPLACE TABLE _label_map AS SELECT unnest(?::VARCHAR[]) AS spelling, unnest(?::VARCHAR[]) AS label",
        [list(label_map), list(label_map.values())],
    )
    review_id, date, stars, restaurant, name, hood = (
        _blank_to_null(f"f.{c}")
        for c in ("review_id", "created_at", "stars", "restaurant_id", "restaurant_name", "neighborhood")
    )
    # Generated ids hash the restaurant and the text, so re-importing an id-less file is idempotent.
    if mapping.get("review_id") is None:
        review_id = "'h-' || left(md5(coalesce(f.restaurant_id, '') || chr(31) || f.text), 24)"
    label_join = "LEFT JOIN _label_map m ON m.spelling = p.label_raw" if has_label else ""
    label_sql = "m.label" if has_label else "NULL::VARCHAR"
    # strlen (bytes) bounds length (characters) from above and is far cheaper, so it goes first.
    mem.execute(
        f"""
        CREATE OR REPLACE TABLE _verdicts AS
        WITH f AS ({fields_sql}),
        p AS (
            SELECT f._row, {review_id} AS review_id, f.text_kind,
                   CASE WHEN contains(f.text, chr(0)) THEN replace(f.text, chr(0), '') ELSE f.text END AS text,
                   {date} AS date_raw, {stars} AS stars_raw,
                   nullif(lower(trim(f.label)), '') AS label_raw,
                   {restaurant} AS restaurant_id, {name} AS restaurant_name, {hood} AS neighborhood
            FROM f
        ),
        q AS (
            SELECT p.*, {label_sql} AS label,
                   CASE WHEN regexp_matches(p.date_raw, '{_OFFSET_RE}')
                        THEN TRY_CAST(p.date_raw AS TIMESTAMPTZ) AT TIME ZONE 'UTC'
                        ELSE TRY_CAST(p.date_raw AS TIMESTAMP) END AS created_at,
                   TRY_CAST(p.stars_raw AS DOUBLE) AS stars_num
            FROM p {label_join}
        ),
        r AS (
            SELECT q.*,
                CASE
                    WHEN q.text_kind IS NOT NULL AND q.text IS NOT NULL THEN 'text_not_string'
                    WHEN q.text IS NULL OR NOT regexp_matches(q.text, '{_VISIBLE_RE}') THEN 'empty_text'
                    WHEN strlen(q.text) > $max::BIGINT AND length(q.text) > $max::BIGINT THEN 'text_too_long'
                    WHEN q.review_id IS NULL THEN 'missing_id'
                    WHEN q.date_raw IS NOT NULL AND q.created_at IS NULL THEN 'invalid_date'
                    WHEN q.created_at < $min_date::TIMESTAMP OR q.created_at >= $max_date::TIMESTAMP
                        OR isinf(q.created_at) THEN 'date_out_of_range'
                    WHEN q.stars_raw IS NOT NULL AND (q.stars_num IS NULL OR isnan(q.stars_num))
                        THEN 'stars_not_numeric'
                    WHEN q.stars_num IS NOT NULL AND q.stars_num NOT IN (1, 2, 3, 4, 5) THEN 'stars_out_of_range'
                    WHEN q.label_raw IS NOT NULL AND q.label IS NULL THEN 'unknown_label'
                END AS reason
            FROM q
        )
        SELECT _row, reason, review_id, restaurant_id, restaurant_name, neighborhood, created_at,
               CASE WHEN reason IS NULL THEN stars_num::TINYINT END AS stars, text, label,
               CASE reason
                   WHEN 'text_not_string' THEN 'text is a ' || text_kind || ' value, not a string'
                   WHEN 'empty_text' THEN 'text is empty (nothing left after removing NUL characters and whitespace)'
                   WHEN 'text_too_long' THEN 'text has ' || length(text) || ' characters; the limit is ' || $max
                   WHEN 'missing_id' THEN 'the id column is empty on this row'
                   WHEN 'invalid_date' THEN 'date ' || '"' || left(date_raw, 60) || '"' || ' is not an ISO 8601 date or date-time'
                   WHEN 'date_out_of_range' THEN 'date ' || '"' || left(date_raw, 60) || '"' || ' is outside '
                        || strftime($min_date::TIMESTAMP, '%Y-%m-%d') || ' .. '
                        || strftime($max_date::TIMESTAMP - INTERVAL 1 DAY, '%Y-%m-%d')
                        || ' (widen with --min-date/--max-date)'
                   WHEN 'stars_not_numeric' THEN 'stars ' || '"' || left(stars_raw, 60) || '"' || ' is not a number'
                   WHEN 'stars_out_of_range' THEN 'stars ' || '"' || left(stars_raw, 60) || '"' || ' is not a whole number from 1 to 5'
                   WHEN 'unknown_label' THEN 'label ' || '"' || left(label_raw, 60) || '"' || ' is not an accepted label'
               END AS detail
        FROM r
        """,
        {**field_params, "max": max_text_chars, "min_date": min_date, "max_date": max_date},
    )
    # Later rows repeating an accepted id are rejected; the first occurrence wins. Values are quoted raw
    # (cut to 60 characters): whoever shows a detail escapes it with store.printable.printable.
    mem.execute(
        """
        UPDATE _verdicts AS v SET reason = 'duplicate_id',
               detail = 'id "' || left(v.review_id, 60) || '" already accepted at row ' || r.first_row
        FROM (
            SELECT review_id, min(_row) AS first_row FROM _verdicts WHERE reason IS NULL
            GROUP BY review_id HAVING count(*) > 1
        ) r
        WHERE v.review_id = r.review_id AND v.reason IS NULL AND v._row <> r.first_row
        """
    )
    raw_sql, raw_params = _raw_sql(staged)
    mem.execute(
        f"""
        INSERT INTO _parse_rejects
        SELECT v._row, v.reason, v.detail, left({raw_sql}, ?)
        FROM (SELECT _row, reason, detail FROM _verdicts WHERE reason IS NOT NULL) v JOIN _staged s USING (_row)
        """,
        [*raw_params, REJECT_RAW_MAX_CHARS],
    )
    mem.execute("DELETE FROM _verdicts WHERE reason IS NOT NULL")
    return dict(mem.execute("SELECT reason, count(*) FROM _parse_rejects GROUP BY 1 ORDER BY 2 DESC, 1").fetchall())


def fetch_valid(mem: duckdb.DuckDBPyConnection, *, source: str) -> pa.Table:
    """Accepted rows as Arrow: the review fields (``source`` on every row), ``label`` and ``stars_label``.

    ``label`` comes from a label column (canonical), ``stars_label`` from the stars.
    """
    return mem.execute(
        f"""
        SELECT review_id, restaurant_id, restaurant_name, neighborhood, created_at, stars, text,
               ?::VARCHAR AS source, label,
               CASE WHEN stars IS NULL THEN NULL ELSE {STARS_LABEL_SQL.format(col='stars')} END AS stars_label
        FROM _verdicts
        """,
        [source],
    ).to_arrow_table(ARROW_BATCH_ROWS)


def fetch_staged_rejects(mem: duckdb.DuckDBPyConnection) -> pa.Table:
    """Rejected rows as Arrow (row_number, reason, detail, raw), in file order."""
    return mem.execute(
        "SELECT _row AS row_number, reason, detail, raw FROM _parse_rejects ORDER BY _row"
    ).to_arrow_table()


# --------------------------------------------------------------------------- store records


def start_import(con: duckdb.DuckDBPyConnection, *, path: str, fmt: str, started_at: datetime) -> int:
    """Insert the row of an import in progress and return its id. Call inside the import's transaction."""
    # A million-row import has statements long enough for DuckDB to draw a progress bar on the terminal.
    con.execute("SET enable_progress_bar = false")
    return con.execute(
        "INSERT INTO imports (path, format, started_at) VALUES (?, ?, ?) RETURNING import_id",
        [path, fmt, started_at],
    ).fetchone()[0]


def append_rejects(con: duckdb.DuckDBPyConnection, import_id: int, file: str, rejects: pa.Table) -> int:
    """Store an import's rejected rows (Arrow: row_number, reason, detail, raw); returns how many."""
    if rejects.num_rows == 0:
        return 0
    con.register("_rejects_in", rejects)
    try:
        con.execute(
            """
            INSERT INTO import_rejects (import_id, file, row_number, reason, detail, raw)
            SELECT ?, ?, row_number, reason, detail, raw FROM _rejects_in
            """,
            [import_id, file],
        )
    finally:
        con.unregister("_rejects_in")
    return rejects.num_rows


def finish_import(
    con: duckdb.DuckDBPyConnection, import_id: int, *, accepted: int, updated: int, unchanged: int, rejected: int
) -> None:
    """Record an import's outcome counts and end time."""
    con.execute(
        """
        UPDATE imports SET finished_at = ?, accepted = ?, updated = ?, unchanged = ?, rejected = ?
        WHERE import_id = ?
        """,
        [datetime.now(), accepted, updated, unchanged, rejected, import_id],
    )


def list_imports(con: duckdb.DuckDBPyConnection, *, limit: int = 20) -> pd.DataFrame:
    """Newest imports first, with their counts.

    Example:
        >>> list_imports(con, limit=1)[["path", "accepted", "rejected"]]  # doctest: +SKIP
    """
    return con.execute(
        """
        SELECT import_id, path, format, started_at, finished_at, accepted, updated, unchanged, rejected
        FROM imports ORDER BY import_id DESC LIMIT ?
        """,
        [limit],
    ).df()


def count_rejects_by_reason(con: duckdb.DuckDBPyConnection, import_id: int) -> dict[str, int]:
    """Rejected rows per reason for one import, most frequent first."""
    return dict(
        con.execute(
            "SELECT reason, count(*) FROM import_rejects WHERE import_id = ? GROUP BY 1 ORDER BY 2 DESC, 1",
            [import_id],
        ).fetchall()
    )


def fetch_rejects(
    con: duckdb.DuckDBPyConnection, import_id: int, *, reason: str | None = None, limit: int = 100
) -> pd.DataFrame:
    """One import's rejected rows in file order (optionally one reason only).

    Example:
        >>> fetch_rejects(con, 3, reason="invalid_date")[["row_number", "detail"]]  # doctest: +SKIP
    """
    return con.execute(
        """
        SELECT file, row_number, reason, detail, raw FROM import_rejects
        WHERE import_id = ? AND (? IS NULL OR reason = ?)
        ORDER BY row_number LIMIT ?
        """,
        [import_id, reason, reason, limit],
    ).df()
