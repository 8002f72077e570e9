"""Who is acting, and what their role lets them write.

Every store function that writes on behalf of a person takes an :class:`Actor` and calls
:func:`require` first, so a role check cannot be skipped by reaching the function
another way (a URL, a page switch, session-state tricks in the dashboard).
"""

from __future__ import annotations

import getpass
import json
from dataclasses import dataclass
from datetime import datetime

import duckdb

from store.errors import PermissionDeniedError

ROLES: tuple[str, ...] = ("viewer", "labeler", "data_scientist", "admin")

# What each role may do; each role includes everything of the roles before it.
PERMISSIONS: dict[str, frozenset[str]] = {
    "viewer": frozenset({"read"}),
    "labeler": frozenset({"read", "relabel", "flag.dismiss"}),
    "data_scientist": frozenset(
        {"read", "relabel", "flag.dismiss", "flag.create", "import", "train", "score", "evaluate", "promote", "job.cancel"}
    ),
}
PERMISSIONS["admin"] = PERMISSIONS["data_scientist"] | {"admin"}


@dataclass(frozen=True)
class Actor:
    """A person or process acting on the store."""

    name: str
    role: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r}; expected one of {', '.join(ROLES)}")
        if not self.name or not self.name.strip():
            raise ValueError("an actor needs a name")

    def can(self, permission: str) -> bool:
        return permission in PERMISSIONS[self.role]


def cli_actor() -> Actor:
    """The local operator running the CLI: full rights, named after the OS user."""
    try:
        name = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        name = "cli"
    return Actor(name=f"cli:{name}", role="admin")


def require(actor: Actor, permission: str) -> None:
    """Raise :class:`PermissionDeniedError` unless ``actor`` holds ``permission``."""
    if not isinstance(actor, Actor):
        raise PermissionDeniedError("a write needs an authenticated actor")
    if not actor.can(permission):
        raise PermissionDeniedError(f"{actor.name} ({actor.role}) may not {permission}")


def audit(
    con: duckdb.DuckDBPyConnection,
    actor: Actor,
    action: str,
    *,
    target: str | None = None,
    detail: dict | None = None,
) -> None:
    """Append one row to the audit log (inside the caller's transaction)."""
    con.execute(
        "INSERT INTO audit_log (actor, role, action, target, detail, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        [actor.name, actor.role, action, target, json.dumps(detail or {}, default=str), datetime.now()],
    )


def fetch_audit_log(con: duckdb.DuckDBPyConnection, *, limit: int = 100, action: str | None = None):
    """Newest audit rows first, as a DataFrame."""
    return con.execute(
        """
        SELECT audit_id, actor, role, action, target, detail, created_at FROM audit_log
        WHERE ? IS NULL OR action = ?
        ORDER BY audit_id DESC LIMIT ?
        """,
        [action, action, limit],
    ).df()
