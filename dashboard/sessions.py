"""Staying signed in across reloads: signed, expiring session tokens in an HttpOnly cookie.

A Streamlit script cannot set a cookie: it talks to the browser over a WebSocket, and
JavaScript (st.html, components) could only set a cookie that scripts can read, which is
what HttpOnly exists to prevent. Streamlit >= 1.53 serves apps through Starlette and lets
an ``st.App`` add its own HTTP routes, so the cookie is set by a real HTTP response:

1. The sign-in form checks the password inside the script, signs a token (itsdangerous:
   HMAC-SHA1 over the account name, a random token id, a fingerprint of the password hash
   and the issue time) and stores it here under a random one-time code that lives 60 s.
2. The script sends the browser to ``/api/tastebud/session?code=...&next=PAGE``.
3. That route takes the code (once), answers ``Set-Cookie: tastebud_session=...; HttpOnly;
   SameSite=Lax; Path=/; Max-Age=TTL`` (``Secure`` over HTTPS) and redirects to ``PAGE``.
4. Every new session (a reload, a new tab, a deep link) reads the cookie from the WebSocket
   request (``st.context.cookies``) and verifies signature, age, revocation and that the
   account still exists with the same password.

Signing out revokes the token id in the store (``revoked_sessions``) and sends the browser
to ``/api/tastebud/sign-out``, which deletes the cookie. The token never appears in a URL,
only the short-lived one-time code does.

``dashboard/server.py`` mounts the routes; served any other way (``streamlit run
dashboard/app.py``, AppTest) :func:`cookies_enabled` is False and a sign-in lasts for the
browser tab only.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from itsdangerous import (
    BadSignature,
    SignatureExpired,
    TimestampSigner,
    URLSafeTimedSerializer,
)

from store.accounts import read_or_create_key

COOKIE_NAME = "tastebud_session"
SESSION_ROUTE = "/api/tastebud/session"
SIGN_OUT_ROUTE = "/api/tastebud/sign-out"
# How long a sign-in lasts unless the secrets' [session] hours says otherwise.
DEFAULT_SESSION_HOURS = 12.0
# A one-time code must be redeemed this quickly (seconds) after the password was checked.
HANDOFF_TTL_S = 60
_SALT = "tastebud-session-v1"

_handoffs: dict[str, tuple[str, str, int, float]] = {}
_handoffs_lock = threading.Lock()
_routes_mounted = False


@dataclass(frozen=True)
class SessionClaims:
    """What a valid token says."""

    username: str
    token_id: str
    fingerprint: str
    expires_at: datetime  # naive UTC


def password_fingerprint(password_hash: str) -> str:
    """A short digest of an account's password hash: changing the password ends its sessions."""
    return hashlib.sha256(password_hash.encode("utf-8")).hexdigest()[:16]


class SessionTokens:
    """Issues and verifies session tokens signed with ``secret`` and valid for ``ttl_s`` seconds.

    Example:
        >>> tokens = SessionTokens("k" * 32, ttl_s=3600)
        >>> token, claims = tokens.issue("ana", "$2b$12$hash")
        >>> tokens.verify(token).username
        'ana'
    """

    def __init__(self, secret: str, *, ttl_s: float, clock: Callable[[], float] = time.time) -> None:
        if len(secret) < 32:
            raise ValueError("the session secret must be at least 32 characters")
        if ttl_s <= 0:
            raise ValueError("the session lifetime must be positive")
        signer = type("_ClockSigner", (TimestampSigner,), {"get_timestamp": lambda self: int(clock())})
        self._serializer = URLSafeTimedSerializer(secret, salt=_SALT, signer=signer)
        self.ttl_s = ttl_s
        self._clock = clock

    def issue(self, username: str, password_hash: str) -> tuple[str, SessionClaims]:
        """A new token for ``username`` and what it claims."""
        claims = SessionClaims(
            username=username,
            token_id=secrets.token_urlsafe(16),
            fingerprint=password_fingerprint(password_hash),
            expires_at=_utc(self._clock() + self.ttl_s),
        )
        token = self._serializer.dumps({"u": claims.username, "j": claims.token_id, "h": claims.fingerprint})
        return token, claims

    def verify(self, token: str | None) -> SessionClaims | None:
        """The claims of a genuine, unexpired token; None for anything else."""
        if not token or len(token) > 1024:
            return None
        try:
            payload, issued = self._serializer.loads(token, max_age=self.ttl_s, return_timestamp=True)
        except (BadSignature, SignatureExpired, ValueError, TypeError):
            return None
        if not isinstance(payload, dict) or not all(isinstance(payload.get(k), str) for k in ("u", "j", "h")):
            return None
        expires = issued.replace(tzinfo=None) + timedelta(seconds=self.ttl_s)
        return SessionClaims(username=payload["u"], token_id=payload["j"], fingerprint=payload["h"], expires_at=expires)


def _utc(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, tz=timezone.utc).replace(tzinfo=None)


def session_secret(db: Path, configured: object) -> str:
    """The signing secret: ``[session] secret`` from the secrets, else a key file beside the store.

    The key file (``<store>.session-key``, mode 0600) keeps sessions valid across dashboard
    restarts without anyone having to configure anything.
    """
    if isinstance(configured, str) and configured:
        if len(configured) < 32:
            raise ValueError("[session] secret must be at least 32 characters")
        return configured
    return read_or_create_key(db.with_name(db.name + ".session-key"))


def session_hours(configured: object) -> float:
    """``[session] hours`` from the secrets (default 12), checked to be a positive number."""
    if configured is None:
        return DEFAULT_SESSION_HOURS
    if isinstance(configured, bool) or not isinstance(configured, int | float) or not 0 < configured <= 24 * 90:
        raise ValueError("[session] hours must be a number of hours between 0 and 2160")
    return float(configured)


def cookies_enabled() -> bool:
    """Whether this process serves the cookie routes (the dashboard was started through server.py)."""
    return _routes_mounted


def create_handoff(token: str, next_page: str, max_age_s: int) -> str:
    """Keep ``token`` under a new one-time code for the session route; returns the code."""
    code = secrets.token_urlsafe(24)
    now = time.monotonic()
    with _handoffs_lock:
        for stale in [c for c, entry in _handoffs.items() if entry[3] < now]:
            del _handoffs[stale]
        _handoffs[code] = (token, next_page, max_age_s, now + HANDOFF_TTL_S)
    return code


def take_handoff(code: str) -> tuple[str, str, int] | None:
    """The token, page and cookie lifetime stored under ``code``; each code works once."""
    with _handoffs_lock:
        entry = _handoffs.pop(code, None)
    if entry is None or entry[3] < time.monotonic():
        return None
    return entry[0], entry[1], entry[2]


def routes(*, base_url: str = "", pages: tuple[str, ...] = ()) -> list:
    """The Starlette routes that set and delete the session cookie.

    Args:
        base_url: Streamlit's ``server.baseUrlPath`` (without slashes), when the app is served below one.
        pages: the page url paths a sign-in may continue to; anything else goes to the default page.
    """
    global _routes_mounted
    from starlette.responses import PlainTextResponse, RedirectResponse
    from starlette.routing import Route

    prefix = f"/{base_url.strip('/')}" if base_url.strip("/") else ""
    allowed = set(pages)

    def _home(page: str = "") -> str:
        return f"{prefix}/{page if page in allowed else ''}"

    async def session(request):
        handoff = take_handoff(request.query_params.get("code", ""))
        if handoff is None:
            return PlainTextResponse("This sign-in link has expired or was already used; sign in again.", status_code=400)
        token, page, max_age = handoff
        response = RedirectResponse(_home(page), status_code=303)
        response.set_cookie(
            COOKIE_NAME, token, max_age=max_age, path=prefix or "/", httponly=True, samesite="lax",
            secure=request.url.scheme == "https",
        )
        response.headers["Cache-Control"] = "no-store"
        return response

    async def sign_out(request):
        response = RedirectResponse(_home(), status_code=303)
        response.delete_cookie(COOKIE_NAME, path=prefix or "/", httponly=True, samesite="lax")
        response.headers["Cache-Control"] = "no-store"
        return response

    _routes_mounted = True
    return [
        Route(prefix + SESSION_ROUTE, session, methods=["GET"]),
        Route(prefix + SIGN_OUT_ROUTE, sign_out, methods=["GET"]),
    ]
