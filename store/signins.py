"""Sign-in throttling, the sign-in audit trail and revoked session tokens.

Failed sign-ins are counted twice: per account name (what an attacker guesses passwords
for) and per client address (one address guessing across many names). The counts live
in the store, so reloading the page or restarting the dashboard resets nothing. From the
``*_LIMIT``-th failure on, that account or address must wait before the next try, twice as
long after each further failure, up to ``LOCKOUT_MAX_S``; a success clears the account's
count, ``clear_lockout`` (``tastebud unlock-account``) clears either by hand, and a count
whose last failure is older than ``FAILURE_MEMORY`` starts again.

Times are naive UTC.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import duckdb

# Failures of one account name before it has to wait.
ACCOUNT_FAILURE_LIMIT = 5
# Failures from one client address (any names) before it has to wait; higher, as several
# people may share an address behind a proxy.
CLIENT_FAILURE_LIMIT = 20
# The first wait, in seconds; each further failure doubles it.
LOCKOUT_BASE_S = 30
# The longest wait, in seconds.
LOCKOUT_MAX_S = 3600
# A count whose last failure is older than this starts again from zero.
FAILURE_MEMORY = timedelta(hours=24)
# Account names and addresses are stored cut to this many characters.
MAX_KEY_CHARS = 128

_LIMITS = {"account": ACCOUNT_FAILURE_LIMIT, "client": CLIENT_FAILURE_LIMIT}


def utcnow() -> datetime:
    """The current time as naive UTC, as every timestamp of this module."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def lockout_seconds(failures: int, limit: int) -> int:
    """How long to wait after the ``failures``-th failure of a count whose limit is ``limit``.

    Example:
        >>> [lockout_seconds(n, 5) for n in (4, 5, 6, 7)]
        [0, 30, 60, 120]
    """
    if failures < limit:
        return 0
    return min(LOCKOUT_BASE_S * 2 ** min(failures - limit, 20), LOCKOUT_MAX_S)


def _keys(username: str | None, client: str | None) -> list[tuple[str, str]]:
    keys = []
    if username:
        keys.append(("account", username[:MAX_KEY_CHARS]))
    if client:
        keys.append(("client", client[:MAX_KEY_CHARS]))
    return keys


def sign_in_wait(
    con: duckdb.DuckDBPyConnection, *, username: str | None, client: str | None, now: datetime | None = None
) -> float:
    """Seconds before ``username`` from ``client`` may try to sign in again (0 when they may now).

    Example:
        >>> sign_in_wait(con, username="ana", client="203.0.113.9")  # doctest: +SKIP
        0.0
    """
    now = now or utcnow()
    wait = 0.0
    for scope, key in _keys(username, client):
        row = con.execute(
            "SELECT locked_until FROM sign_in_throttle WHERE scope = ? AND key = ?", [scope, key]
        ).fetchone()
        if row and row[0] is not None and row[0] > now:
            wait = max(wait, (row[0] - now).total_seconds())
    return wait


def record_sign_in_failure(
    con: duckdb.DuckDBPyConnection, *, username: str | None, client: str | None, now: datetime | None = None
) -> float:
    """Count one failed sign-in against the account name and the client address.

    Returns:
        Seconds the caller must now wait before the next try (0 while under the limits).
    """
    now = now or utcnow()
    forget_before = now - FAILURE_MEMORY
    con.execute(
        "DELETE FROM sign_in_throttle WHERE last_failure_at < ? AND (locked_until IS NULL OR locked_until < ?)",
        [forget_before, now],
    )
    wait = 0
    for scope, key in _keys(username, client):
        row = con.execute(
            "SELECT failures FROM sign_in_throttle WHERE scope = ? AND key = ?", [scope, key]
        ).fetchone()
        failures = (row[0] if row else 0) + 1
        seconds = lockout_seconds(failures, _LIMITS[scope])
        locked_until = now + timedelta(seconds=seconds) if seconds else None
        con.execute(
            """
            INSERT INTO sign_in_throttle (scope, key, failures, first_failure_at, last_failure_at, locked_until)
            VALUES (?, ?, ?, ?, ?, ?)
            ON CONFLICT (scope, key) DO UPDATE SET
                failures = excluded.failures, last_failure_at = excluded.last_failure_at,
                locked_until = excluded.locked_until
            """,
            [scope, key, failures, now, now, locked_until],
        )
        wait = max(wait, seconds)
    return float(wait)


def start_sign_in(
    con: duckdb.DuckDBPyConnection, *, username: str, client: str | None, now: datetime | None = None
) -> float:
    """Begin one sign-in attempt: refuse it while a wait is due, else count it as a failure up front.

    Counting before the password is checked (inside the caller's transaction) means that
    many attempts started at once cannot all pass the limit; :func:`sign_in_succeeded`
    takes the count back when the password was right.

    Returns:
        Seconds still to wait (nothing was counted), or 0 when the attempt may go ahead.

    Example:
        >>> with transaction(db) as con:  # doctest: +SKIP
        ...     wait = start_sign_in(con, username="ana", client=None)
    """
    now = now or utcnow()
    wait = sign_in_wait(con, username=username, client=client, now=now)
    if wait:
        return wait
    record_sign_in_failure(con, username=username, client=client, now=now)
    return 0.0


def sign_in_succeeded(
    con: duckdb.DuckDBPyConnection, *, username: str, client: str | None, now: datetime | None = None
) -> None:
    """The attempt begun by :func:`start_sign_in` had the right password: forget the account's failures.

    The client address only gets back the one failure counted up front; resetting it would let
    the owner of one valid account reset the address limit between guesses at other accounts.
    """
    now = now or utcnow()
    con.execute("DELETE FROM sign_in_throttle WHERE scope = 'account' AND key = ?", [username[:MAX_KEY_CHARS]])
    if not client:
        return
    row = con.execute(
        "SELECT failures FROM sign_in_throttle WHERE scope = 'client' AND key = ?", [client[:MAX_KEY_CHARS]]
    ).fetchone()
    if row is None:
        return
    failures = row[0] - 1
    if failures <= 0:
        con.execute("DELETE FROM sign_in_throttle WHERE scope = 'client' AND key = ?", [client[:MAX_KEY_CHARS]])
        return
    seconds = lockout_seconds(failures, CLIENT_FAILURE_LIMIT)
    con.execute(
        "UPDATE sign_in_throttle SET failures = ?, locked_until = ? WHERE scope = 'client' AND key = ?",
        [failures, now + timedelta(seconds=seconds) if seconds else None, client[:MAX_KEY_CHARS]],
    )


def clear_lockout(con: duckdb.DuckDBPyConnection, *, username: str | None = None, client: str | None = None) -> int:
    """Remove the failure counts (and any wait) of an account name and/or a client address.

    Returns:
        How many counts were removed (0 when there was nothing to clear).

    Example:
        >>> clear_lockout(con, username="ana")  # doctest: +SKIP
        1
    """
    if not username and not client:
        raise ValueError("name an account or a client address to unlock")
    removed = 0
    for scope, key in _keys(username, client):
        removed += len(con.execute(
            "DELETE FROM sign_in_throttle WHERE scope = ? AND key = ? RETURNING key", [scope, key]
        ).fetchall())
    return removed


def fetch_lockouts(con: duckdb.DuckDBPyConnection, *, now: datetime | None = None) -> list[dict]:
    """Every failure count still remembered, most failures first, with the seconds left to wait."""
    now = now or utcnow()
    rows = con.execute(
        """
        SELECT scope, key, failures, first_failure_at, last_failure_at, locked_until
        FROM sign_in_throttle WHERE last_failure_at >= ? OR locked_until > ?
        ORDER BY failures DESC, last_failure_at DESC
        """,
        [now - FAILURE_MEMORY, now],
    ).fetchall()
    return [
        {
            "scope": scope, "key": key, "failures": failures, "first_failure_at": first, "last_failure_at": last,
            "wait_s": max(0.0, (locked_until - now).total_seconds()) if locked_until else 0.0,
        }
        for scope, key, failures, first, last, locked_until in rows
    ]


def audit_sign_in(
    con: duckdb.DuckDBPyConnection, action: str, *, username: str, role: str | None, detail: dict
) -> None:
    """Append a sign-in event to the audit log; ``role`` is None for a name that is no account.

    ``detail`` must never hold a password; the client address and the reason go here.
    """
    con.execute(
        "INSERT INTO audit_log (actor, role, action, target, detail, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        [username[:MAX_KEY_CHARS] or "(empty)", role, action, username[:MAX_KEY_CHARS] or None,
         json.dumps(detail, default=str), datetime.now()],
    )


def revoke_session(
    con: duckdb.DuckDBPyConnection, *, token_id: str, username: str, expires_at: datetime
) -> None:
    """Record that the session token ``token_id`` no longer signs anyone in (signing out).

    Expired tokens are refused anyway, so revocations past their expiry are dropped here.
    """
    now = utcnow()
    con.execute("DELETE FROM revoked_sessions WHERE expires_at < ?", [now])
    con.execute(
        "INSERT INTO revoked_sessions (token_id, username, revoked_at, expires_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (token_id) DO NOTHING",
        [token_id, username, now, expires_at],
    )


def is_session_revoked(con: duckdb.DuckDBPyConnection, token_id: str) -> bool:
    """Whether the session token ``token_id`` was revoked."""
    return con.execute("SELECT count(*) FROM revoked_sessions WHERE token_id = ?", [token_id]).fetchone()[0] > 0
