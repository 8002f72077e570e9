"""Verify a store: it opens, every table reads back in full, the schema is current, nothing is orphaned.

``tastebud check`` prints this; the dashboard runs the cheap part (:func:`ensure_store`) before
every page so a damaged file shows one sentence instead of a traceback or stale numbers.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import duckdb

from store.db import connect, resolve_db_path
from store.errors import StoreDamagedError
from store.migrations import applied_versions, latest_version
from store.printable import printable

# Tables whose rows belong to a review; a row whose review is gone is an orphan.
_REVIEW_CHILDREN: tuple[str, ...] = ("labels", "splits", "predictions", "flags", "aspect_labels", "aspect_predictions")


@dataclass
class StoreCheck:
    """What :func:`check_store` found; ``problems`` empty means healthy."""

    path: str
    schema_version: int | None = None
    latest_version: int = field(default_factory=latest_version)
    tables: dict[str, int] = field(default_factory=dict)
    orphans: dict[str, int] = field(default_factory=dict)
    duplicate_review_ids: int = 0
    reviews_without_split: int = 0
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {**asdict(self), "healthy": self.healthy}


def ensure_store(path: str | os.PathLike | None = None) -> None:
    """Raise the one-line error when the store cannot be opened as a tastebud store; cheap (one open).

    Raises:
        StoreMissingError, StoreDamagedError, StoreAccessError, StoreBusyError.

    Example:
        >>> ensure_store("tastebud.duckdb")  # doctest: +SKIP
    """
    db = resolve_db_path(path)
    with connect(db, read_only=True) as con:
        if not applied_versions(con):
            raise StoreDamagedError(
                f"{printable(db, max_chars=300)} is not a tastebud store: it is a DuckDB file without tastebud's tables"
            )


def check_store(path: str | os.PathLike | None = None) -> StoreCheck:
    """Read every table in full (DuckDB verifies each block's checksum), compare the schema with the
    newest migration, and count orphans and duplicate review ids.

    Raises:
        TastebudError: the store cannot be opened at all (missing, damaged, not a store, no permission).

    Returns:
        The findings; ``healthy`` is False when anything is damaged or inconsistent.

    Example:
        >>> check_store("tastebud.duckdb").healthy  # doctest: +SKIP
        True
    """
    db = resolve_db_path(path)
    ensure_store(db)
    result = StoreCheck(path=str(Path(db).resolve()))
    with connect(db, read_only=True) as con:
        versions = applied_versions(con)
        result.schema_version = max(versions)
        if result.schema_version > result.latest_version:
            result.problems.append(
                f"schema version {result.schema_version} is newer than this tastebud knows ({result.latest_version})"
            )
        elif result.schema_version < result.latest_version:
            result.warnings.append(
                f"schema version {result.schema_version} is behind {result.latest_version}: run `tastebud init`"
            )
        tables = [t for (t,) in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() ORDER BY 1"
        ).fetchall()]
        for table in tables:
            result.tables[table] = _read_in_full(con, table, result)
        if "reviews" in result.tables:
            _check_reviews(con, result)
    return result


def _read_in_full(con: duckdb.DuckDBPyConnection, table: str, result: StoreCheck) -> int:
    """Row count of ``table`` after hashing every value of it (forces every block to be read and verified)."""
    quoted = '"' + table.replace('"', '""') + '"'
    try:
        return con.execute(f"SELECT count(*), sum(hash(t)) FROM {quoted} t").fetchone()[0]
    except duckdb.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        result.problems.append(f"table {printable(table)} cannot be read: {printable(first, max_chars=160)}")
        return -1


def _check_reviews(con: duckdb.DuckDBPyConnection, result: StoreCheck) -> None:
    for table in _REVIEW_CHILDREN:
        if result.tables.get(table, -1) < 0:
            continue
        n = con.execute(
            f"SELECT count(*) FROM {table} c WHERE NOT EXISTS (SELECT 1 FROM reviews r WHERE r.review_id = c.review_id)"
        ).fetchone()[0]
        result.orphans[table] = n
        if n:
            result.problems.append(f"{n:,} {table} row(s) belong to reviews that are not in the store")
    result.duplicate_review_ids = con.execute(
        "SELECT count(*) FROM (SELECT review_id FROM reviews GROUP BY 1 HAVING count(*) > 1)"
    ).fetchone()[0]
    if result.duplicate_review_ids:
        result.problems.append(f"{result.duplicate_review_ids:,} review id(s) are stored more than once")
    if result.tables.get("splits", -1) >= 0:
        result.reviews_without_split = con.execute(
            "SELECT count(*) FROM reviews r WHERE NOT EXISTS (SELECT 1 FROM splits s WHERE s.review_id = r.review_id)"
        ).fetchone()[0]
        if result.reviews_without_split:
            # An import killed between two chunks leaves these; the next import assigns them.
            result.warnings.append(
                f"{result.reviews_without_split:,} review(s) have no split yet (re-run the interrupted import)"
            )


