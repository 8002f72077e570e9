"""Create or upgrade a store file."""

from __future__ import annotations

import os
from pathlib import Path

from store.db import connect, resolve_db_path
from store.migrations import migrate


def init_store(path: str | os.PathLike | None = None) -> tuple[Path, list[int]]:
    """Create the store if needed and apply missing migrations.

    Returns:
        The store path and the migration versions this call applied.

    Example:
        >>> init_store("demo.duckdb")  # doctest: +SKIP
        (PosixPath('demo.duckdb'), [1, 2, 3, 4])
    """
    db = resolve_db_path(path)
    if db.parent and not db.parent.exists():
        db.parent.mkdir(parents=True, exist_ok=True)
    with connect(db) as con:
        applied = migrate(con)
    return db, applied
