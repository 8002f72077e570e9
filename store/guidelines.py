"""The labeling guidelines: one markdown text, versioned (each save appends a row).

Labelers read the newest version from the hard-cases page; data scientists edit it on the
Data page. Older versions are kept so a label can be read against the rules of its day.
"""

from __future__ import annotations

from datetime import datetime

import duckdb

from store.actors import Actor, audit, require
from store.errors import TastebudError

# Longest guidelines text accepted (characters): a page of rules, not a data dump.
MAX_GUIDELINES_CHARS = 50_000


def get_guidelines(con: duckdb.DuckDBPyConnection) -> dict | None:
    """The current guidelines: {"version", "body", "author", "created_at"}, or None if never written.

    Example:
        >>> get_guidelines(con)["body"][:12]  # doctest: +SKIP
        '# Labeling g'
    """
    cur = con.execute("SELECT version, body, author, created_at FROM labeling_guidelines ORDER BY version DESC LIMIT 1")
    row = cur.fetchone()
    return None if row is None else dict(zip([d[0] for d in cur.description], row))


def save_guidelines(con: duckdb.DuckDBPyConnection, actor: Actor, body: str) -> int:
    """Store ``body`` as the new current guidelines (needs the ``import`` right: data scientists).

    Args:
        con: connection inside a transaction.
        actor: who edits.
        body: markdown text, not empty, at most :data:`MAX_GUIDELINES_CHARS` characters.

    Returns:
        The new version number.

    Example:
        >>> save_guidelines(con, Actor("dario", "data_scientist"), "# Rules")  # doctest: +SKIP
        1
    """
    require(actor, "import")
    if not isinstance(body, str) or not body.strip():
        raise TastebudError("the guidelines cannot be empty")
    if len(body) > MAX_GUIDELINES_CHARS:
        raise TastebudError(f"the guidelines are limited to {MAX_GUIDELINES_CHARS:,} characters, got {len(body):,}")
    version = con.execute(
        "INSERT INTO labeling_guidelines (body, author, created_at) VALUES (?, ?, ?) RETURNING version",
        [body, actor.name, datetime.now()],
    ).fetchone()[0]
    audit(con, actor, "guidelines.save", target=str(version), detail={"chars": len(body)})
    return version
