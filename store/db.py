"""One way to connect to the store.

DuckDB lets one process hold a file read-write, or many hold it read-only, never both.
tastebud has a long-running dashboard, CLI commands and background jobs touching the
same file, so no process keeps a connection open: every read or write opens a
short-lived connection, retries DuckDB's lock error with jittered backoff up to a
deadline, and always closes. Heavy compute (training, scoring) happens with no
connection open; only its reads and result writes do.

Long writers (an import) commit in bounded chunks; between two chunks they pause briefly
when another process is waiting (:func:`hand_off`), so it gets in within a chunk's time.
A waiting process says so by touching ``<store>.waiting`` while it retries, and polls at
most every ``MAX_POLL_S``. A store that cannot be opened or read as a database (damaged,
not a DuckDB file whatever its extension, a directory, no permission) is reported as one sentence
(:class:`StoreDamagedError`, :class:`StoreAccessError`), never as DuckDB's traceback.

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

from store.errors import StoreAccessError, StoreBusyError, StoreDamagedError, StoreMissingError
from store.printable import printable
from store.settings import current_settings

# A store path as every function taking one accepts it (None: ``$TASTEBUD_DB`` or the default).
DbPath = str | os.PathLike | None
# This process's lock wait when it overrides the setting (jobs wait long: :func:`set_lock_timeout`).
_lock_timeout_override: float | None = None
# Longest sleep between two tries for a locked store: a waiter notices a released lock this fast.
MAX_POLL_S = 0.1
# A long writer pauses this long between chunks when someone waits: over twice the longest poll.
HANDOFF_S = 0.25
# A waiting marker touched this recently means a process is still waiting.
WAITING_FRESH_S = 2.0
# DuckDB's messages when a file is not a readable database, lower-cased (the open or a read fails).
_DAMAGE_MARKERS = (
    "not a valid duckdb database file",
    "corrupt database file",
    "could not read enough bytes",
    "checksum",
    "is a directory",
    "failed to read database header",
    "serialization error",
    "invalid block",
)


_process_lock = threading.RLock()
# Called once per connection attempt that finds the store locked (e.g. a job logging "waiting for the store").
_wait_handlers: list = []
# Called when such a wait ends, with the store opened or given up on.
_wait_over_handlers: list = []


def on_lock_wait(handler) -> None:
    """Call ``handler(path)`` whenever a connection has to wait for another process's lock.

    Example:
        >>> on_lock_wait(lambda path: print("waiting for the store"))  # doctest: +SKIP
    """
    _wait_handlers.append(handler)


def on_lock_wait_over(handler) -> None:
    """Call ``handler(path)`` when a connection that had to wait (see :func:`on_lock_wait`) got the store
    or gave up on it."""
    _wait_over_handlers.append(handler)


def set_lock_timeout(seconds: float | None) -> None:
    """Change how long this process's connections wait for another process's lock (jobs wait long);
    None returns to the setting (``TASTEBUD_LOCK_TIMEOUT``)."""
    global _lock_timeout_override
    _lock_timeout_override = None if seconds is None else float(seconds)


def lock_timeout_s() -> float:
    """Seconds a connection waits for another process's lock: this process's override, else the setting."""
    return _lock_timeout_override if _lock_timeout_override is not None else current_settings().lock_timeout_s


def waiting_marker(path: str | os.PathLike | None = None) -> Path:
    """The file a process touches while it waits for the store's lock."""
    return Path(f"{resolve_db_path(path)}.waiting")


def _announce_wait(db: Path) -> None:
    try:
        marker = waiting_marker(db)
        marker.touch()
    except OSError:
        pass  # a read-only folder: the writer then simply does not pause for this waiter


def _wait_over(db: Path) -> None:
    for handler in list(_wait_over_handlers):
        handler(db)


def writer_waiting(path: str | os.PathLike | None = None) -> bool:
    """Whether another process is waiting for the store right now (its marker is fresh)."""
    try:
        age = time.time() - waiting_marker(path).stat().st_mtime
    except OSError:
        return False
    return age <= WAITING_FRESH_S


def hand_off(path: str | os.PathLike | None = None) -> bool:
    """Between the chunks of a long write: pause if another process is waiting for the store.

    Returns:
        Whether it paused.
    """
    if not writer_waiting(path):
        return False
    time.sleep(HANDOFF_S)
    return True


def skip_row_group_merges(con: duckdb.DuckDBPyConnection) -> None:
    """Keep this connection's checkpoints from merging small row groups (DuckDB's vacuum).

    A long writer committing in chunks leaves one small row group per chunk; by default a
    checkpoint now and then rewrites a run of them into one full group (up to ~123k rows),
    and that rewrite, not the chunk, made the longest holds of the lock (a 10k-row chunk's
    checkpoint: 0.04-0.09 s without merges, up to 1 s with). The price: the table keeps
    smaller row groups (one per chunk). Lasts until the connection closes.
    """
    con.execute("SET max_vacuum_tasks = 0")


def resolve_db_path(path: DbPath = None) -> Path:
    """Return the store path: ``path`` if given, else ``$TASTEBUD_DB``, else ``./tastebud.duckdb``."""
    return Path(path) if path else current_settings().db


def _is_lock_error(exc: Exception) -> bool:
    text = str(exc)
    return "Could not set lock" in text or "Conflicting lock" in text


def store_error(db: Path, exc: BaseException, *, opening: bool) -> Exception | None:
    """The one-line error for a store DuckDB could not open (``opening``) or read, or None for other errors.

    Example:
        >>> store_error(Path("x.duckdb"), duckdb.IOException("... not a valid DuckDB database file!"), opening=True)
        StoreDamagedError('x.duckdb is not a tastebud store: it is not a DuckDB database file')
    """
    shown = printable(db, max_chars=300)
    text = str(exc)
    lowered = text.lower()
    if opening and (isinstance(exc, PermissionError) or "permission denied" in lowered):
        return StoreAccessError(f"permission denied: cannot open the store {shown}")
    if opening and (db.is_dir() or "is a directory" in lowered):
        return StoreDamagedError(f"{shown} is not a tastebud store: it is a directory")
    if "not a valid duckdb database file" in lowered:
        if db.exists() and db.stat().st_size == 0:
            return StoreDamagedError(f"{shown} is not a tastebud store: the file is empty (0 bytes)")
        return StoreDamagedError(f"{shown} is not a tastebud store: it is not a DuckDB database file")
    # An internal error while opening means DuckDB could not make sense of the file; during a query
    # it may be a DuckDB bug, so only the known damage messages count then.
    if (opening and isinstance(exc, duckdb.InternalException)) or (
        isinstance(exc, (duckdb.IOException, duckdb.SerializationException)) and any(m in lowered for m in _DAMAGE_MARKERS)
    ):
        return StoreDamagedError(f"the store {shown} is damaged: {_damage_detail(db, text)}")
    return None


def _damage_detail(db: Path, text: str) -> str:
    lowered = text.lower()
    if "could not read enough bytes" in lowered:
        return "the file is shorter than its contents need (truncated)"
    if "checksum" in lowered:
        return "a block's checksum does not match its contents (corrupted)"
    first = (text.strip().splitlines() or ["unknown error"])[0].replace(str(db), "the file")
    for prefix in ("IO Error: ", "Serialization Error: ", "INTERNAL Error: "):
        first = first.removeprefix(prefix)
    return printable(first, max_chars=160)


def _foreign_file(db: Path) -> StoreDamagedError:
    """The error for an existing file that DuckDB did not open as a database (a ``.csv``, ``.parquet`` or
    ``.json``, which it opens as an empty in-memory database with the file as a view).

    Told from how DuckDB opened it (:func:`_opened_in_memory`, or its "Cannot launch in-memory database"
    refusal when read-only), never by reading the file ourselves: DuckDB locks the store with POSIX
    ``fcntl`` locks, which a process loses on closing *any* descriptor of the file, so opening the store
    file beside a live DuckDB handle would let another process write at the same time.
    """
    return StoreDamagedError(f"{printable(db, max_chars=300)} is not a tastebud store: it is not a DuckDB database file")


def _opened_in_memory(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether DuckDB attached no database file (it read the path as a data file instead)."""
    try:
        row = con.execute("SELECT path FROM duckdb_databases() WHERE NOT internal LIMIT 1").fetchone()
    except duckdb.Error:
        return False
    return row is not None and row[0] is None


def _not_a_store(con: duckdb.DuckDBPyConnection, db: Path) -> StoreDamagedError | None:
    """The error for an existing DuckDB file without tastebud's tables, or None."""
    try:
        tables = dict(con.execute(
            "SELECT table_name, 1 FROM information_schema.tables WHERE table_name IN ('schema_migrations', 'reviews')"
        ).fetchall())
    except duckdb.Error:
        return None
    if "schema_migrations" in tables:
        return None
    return StoreDamagedError(
        f"{printable(db, max_chars=300)} is not a tastebud store: it is a DuckDB file without tastebud's tables"
    )


def require_store(path: DbPath = None) -> Path:
    """The store file's path, which must exist: work that needs a store (a job, a read) says so in one line
    instead of creating an empty DuckDB file where a path was mistyped.

    Raises:
        StoreMissingError: no file at the path.
    """
    db = resolve_db_path(path)
    if not db.exists():
        raise StoreMissingError(f"no store at {printable(db, max_chars=300)}: run `tastebud init` or `tastebud demo-data` first")
    return db


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
    db = require_store(path) if read_only else resolve_db_path(path)
    deadline = time.monotonic() + (lock_timeout_s() if timeout_s is None else timeout_s)
    delay, waited = 0.01, False
    with _process_lock:
        while True:
            try:
                con = duckdb.connect(str(db), read_only=read_only)
                if waited:
                    _wait_over(db)
                if _opened_in_memory(con):
                    con.close()
                    raise _foreign_file(db)
                break
            except (duckdb.Error, OSError) as exc:
                if isinstance(exc, duckdb.CatalogException) and "in-memory database" in str(exc):
                    raise _foreign_file(db) from None
                if not (isinstance(exc, duckdb.IOException) and _is_lock_error(exc)):
                    error = store_error(db, exc, opening=True)
                    if error is None:
                        raise
                    raise error from None
                if time.monotonic() >= deadline:
                    if waited:
                        _wait_over(db)
                    # No path or PID of the other process: this sentence reaches dashboard users.
                    raise StoreBusyError(
                        f"the store {printable(db, max_chars=300)} is busy: another process kept it locked; "
                        "try again when it finishes"
                    ) from None
                _announce_wait(db)
                if not waited:
                    waited = True
                    for handler in list(_wait_handlers):
                        handler(db)
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, MAX_POLL_S / 1.5)
        try:
            # No progress bar: it would draw into CLI output and job logs.
            con.execute("SET enable_progress_bar = false")
            yield con
        except duckdb.Error as exc:
            damaged = store_error(db, exc, opening=False)
            if damaged is None and isinstance(exc, duckdb.CatalogException):
                damaged = _not_a_store(con, db)
            if damaged is not None:
                raise damaged from None
            raise
        finally:
            con.close()


@contextmanager
def transaction(
    path: DbPath = None, *, timeout_s: float | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-write connection inside BEGIN/COMMIT; rolled back on any exception.

    The store must exist (:func:`require_store`): only :func:`store.schema.init_store` creates one, so a
    mistyped ``--db`` is one line, not an empty DuckDB file left behind.
    """
    with connect(require_store(path), timeout_s=timeout_s) as con, begin(con):
        yield con


@contextmanager
def begin(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """One transaction on an open read-write connection: BEGIN ... COMMIT, rolled back on any exception.

    For a writer that commits several transactions on one connection (see :func:`writer_waiting`).
    """
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        try:
            con.execute("ROLLBACK")
        except duckdb.Error:
            pass  # the original error says more (a damaged store may fail the rollback too)
        raise
    con.execute("COMMIT")
