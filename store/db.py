"""One way to connect to the store.

DuckDB lets one process hold a file read-write, or many hold it read-only, never both.
tastebud has a long-running dashboard, CLI commands and background jobs touching the
same file, so no process keeps a connection open: every read or write opens a
short-lived connection, retries DuckDB's lock error with jittered backoff up to a
deadline, and always closes. Heavy compute (training, scoring) happens with no
connection open; only its reads and result writes do.

Inside one process DuckDB refuses a second connection to the same file with a
different ``read_only`` setting, and Streamlit serves sessions from threads, so a
process-wide lock serialises this process's connections.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from store.errors import StoreBusyError, StoreMissingError
from store.settings import current_settings

# A store path as every function taking one accepts it (None: ``$TASTEBUD_DB`` or the default).
DbPath = str | os.PathLike | None

_process_lock = threading.RLock()


def resolve_db_path(path: DbPath = None) -> Path:
    """Return the store path: ``path`` if given, else ``$TASTEBUD_DB``, else ``./tastebud.duckdb``."""
    return Path(path) if path else current_settings().db


def _is_lock_error(exc: Exception) -> bool:
    text = str(exc)
    return "Could not set lock" in text or "Conflicting lock" in text


@contextmanager
def connect(
    path: DbPath = None,
    *,
    read_only: bool = False,
    timeout_s: float | None = None,
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open a short-lived connection, waiting out other processes' locks.

    Args:
        path: the store file (see :func:`resolve_db_path`).
        read_only: open read-only; the file must already exist.
        timeout_s: give up after this many seconds of lock conflicts.

    Example:
        >>> with connect("t.duckdb") as con:  # doctest: +SKIP
        ...     con.execute("SELECT count(*) FROM reviews").fetchone()
    """
    db = resolve_db_path(path)
    if read_only and not db.exists():
        raise StoreMissingError(f"no store at {db}: run `tastebud init` or `tastebud demo-data` first")
    deadline = time.monotonic() + (current_settings().lock_timeout_s if timeout_s is None else timeout_s)
    delay = 0.02
    with _process_lock:
        while True:
            try:
                con = duckdb.connect(str(db), read_only=read_only)
                break
            except duckdb.IOException as exc:
                if not _is_lock_error(exc):
                    raise
                if time.monotonic() >= deadline:
                    raise StoreBusyError(
                        f"the store {db} stayed locked by another process; try again when it finishes"
                    ) from exc
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 0.5)
        try:
            # No progress bar: it would draw into CLI output and job logs.
            con.execute("SET enable_progress_bar = false")
            yield con
        finally:
            con.close()


@contextmanager
def transaction(
    path: DbPath = None, *, timeout_s: float | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-write connection inside BEGIN/COMMIT; rolled back on any exception."""
    with connect(path, timeout_s=timeout_s) as con:
        con.execute("BEGIN TRANSACTION")
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
