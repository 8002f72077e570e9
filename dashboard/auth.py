"""Who is using the dashboard, and as which role.

Two ways in, both configured in Streamlit's secrets (``.streamlit/secrets.toml``, or the
file ``tastebud dashboard --secrets`` / ``$TASTEBUD_SECRETS`` names):

- local accounts, bcrypt-hashed::

      [accounts.ana]
      password_hash = "$2b$12$..."   # tastebud hash-password
      role = "labeler"                # viewer | labeler | data_scientist | admin

- OpenID Connect through ``st.login`` when an ``[auth]`` section is present; the
  signed-in email is mapped to a role by ``[oidc_roles]`` (``"ana@example.com" =
  "labeler"``). An email not listed there gets no access.

Local sign-ins are throttled per account and per client address in the store (see
:mod:`store.signins`), audited, and last ``[session] hours`` (default 12) across reloads
through an HttpOnly cookie holding a signed token (see :mod:`dashboard.sessions`).

The session keeps only *who* signed in. The role is looked up in the secrets on every
rerun, so a changed or removed account takes effect at once, and nothing a browser can
put into session state (widget values are strings and numbers) passes for a login.
"""

from __future__ import annotations

import importlib.util
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlencode

import duckdb
import streamlit as st

from dashboard import sessions, views
from dashboard.navigation import PERMISSION_OF
from store.accounts import MAX_PASSWORD_BYTES, Account, check_password, parse_accounts
from store.actors import ROLES, Actor
from store.db import connect, resolve_db_path, transaction
from store.errors import StoreBusyError, TastebudError
from store.schema import init_store
from store.signins import (
    audit_sign_in,
    is_session_revoked,
    revoke_session,
    sign_in_succeeded,
    sign_in_wait,
    start_sign_in,
    utcnow,
)

_SESSION_KEY = "_tastebud_login"
_CHECKED_KEY = "_tastebud_login_checked"
# Seconds an open session trusts its last revocation check.
REVOCATION_CHECK_S = 30.0
# Sign-in waits at most this long (seconds) for a store another process is writing.
STORE_WAIT_S = 10.0
_migrated: set[Path] = set()


@dataclass(frozen=True)
class _Login:
    # Stored in session state; a widget can only ever produce plain values, never this type.
    username: str
    fingerprint: str | None = None  # of the password hash at sign-in: a changed password ends the session
    token_id: str | None = None  # the cookie token's id, revoked on sign-out
    expires_at: datetime | None = None  # naive UTC


def role_for_email(oidc_roles: Mapping | None, email: str | None) -> str | None:
    """The role ``[oidc_roles]`` gives ``email`` (case-insensitive), or None."""
    if not email:
        return None
    wanted = email.strip().lower()
    for listed, role in (oidc_roles or {}).items():
        if str(listed).strip().lower() == wanted and role in ROLES:
            return role
    return None


def _secret_section(name: str) -> Mapping | None:
    try:
        return st.secrets.get(name)
    except FileNotFoundError:  # no secrets file at all
        return None
    except Exception:  # an unparsable secrets file: treat as unconfigured, the login page says so
        return None


def _oidc_configured() -> bool:
    return _secret_section("auth") is not None


def _oidc_providers() -> list[str | None]:
    section = _secret_section("auth") or {}
    named = [key for key, value in section.items() if isinstance(value, Mapping)]
    return named or [None]


def _oidc_actor() -> Actor | None:
    if not _oidc_configured() or not st.user.is_logged_in:
        return None
    if st.user.get("email_verified") is False:
        return None
    email = st.user.get("email")
    role = role_for_email(_secret_section("oidc_roles"), email)
    return Actor(name=str(email), role=role) if role else None


def _store() -> Path:
    return resolve_db_path(None).resolve()


def _ensure_schema(db: Path) -> None:
    # The sign-in tables come with migration 71; a store made by an older tastebud gets them here.
    if db not in _migrated:
        init_store(db)
        _migrated.add(db)


def _client_address() -> str | None:
    # The address of the WebSocket connection (None on localhost). Forwarded headers are left to
    # the server, which trusts them only from a proxy on this machine; the per-account count does
    # not depend on the address at all.
    try:
        address = st.context.ip_address
    except Exception:
        return None
    return address if isinstance(address, str) and address else None


def _request_cookie() -> str | None:
    try:
        token = st.context.cookies.get(sessions.COOKIE_NAME)
    except Exception:  # no browser request behind this run (AppTest, bare mode)
        return None
    return token if isinstance(token, str) else None


def _session_tokens(db: Path) -> sessions.SessionTokens:
    section = _secret_section("session") or {}
    hours = sessions.session_hours(section.get("hours"))
    return sessions.SessionTokens(sessions.session_secret(db, section.get("secret")), ttl_s=hours * 3600)


def _login_from_cookie(accounts: dict[str, Account]) -> _Login | None:
    token = _request_cookie()
    if not token:
        return None
    db = _store()
    if not db.exists():
        return None
    try:
        claims = _session_tokens(db).verify(token)
        if claims is None:
            return None
        account = accounts.get(claims.username)
        if account is None or sessions.password_fingerprint(account.password_hash) != claims.fingerprint:
            return None
        _ensure_schema(db)
        with connect(db, read_only=True, timeout_s=STORE_WAIT_S) as con:
            if is_session_revoked(con, claims.token_id):
                return None
    except (TastebudError, ValueError, OSError, duckdb.Error):  # a busy or unreadable store, a bad [session] table
        return None
    return _Login(claims.username, claims.fingerprint, claims.token_id, claims.expires_at)


def _still_valid(login: _Login, account: Account) -> bool:
    if login.fingerprint is not None and sessions.password_fingerprint(account.password_hash) != login.fingerprint:
        return False
    if login.expires_at is not None and utcnow() >= login.expires_at:
        return False
    if login.token_id is None:
        return True
    # Opening the store costs tens of milliseconds, so an open session re-checks revocation (a
    # sign-out in another tab) every REVOCATION_CHECK_S; a new session (a reload) always checks.
    checked = st.session_state.get(_CHECKED_KEY)
    if isinstance(checked, tuple) and checked[0] == login.token_id and time.monotonic() - checked[1] < REVOCATION_CHECK_S:
        return True
    try:
        with connect(_store(), read_only=True, timeout_s=STORE_WAIT_S) as con:
            revoked = is_session_revoked(con, login.token_id)
    except StoreBusyError:  # an established session outlives a store that is busy right now
        return True
    except (TastebudError, duckdb.Error):  # the store is gone or unreadable: sign in again
        return False
    st.session_state[_CHECKED_KEY] = (login.token_id, time.monotonic())
    return not revoked


def current_actor() -> Actor | None:
    """The signed-in person as an :class:`Actor` with the role the secrets give them now, or None.

    A new session (a reload, a new tab) is signed in again from a valid session cookie.
    """
    oidc = _oidc_actor()
    if oidc is not None:
        return oidc
    accounts, _ = parse_accounts(_secret_section("accounts"))
    login = st.session_state.get(_SESSION_KEY)
    if not isinstance(login, _Login):
        login = _login_from_cookie(accounts)
        if login is None:
            return None
        st.session_state[_SESSION_KEY] = login
    account = accounts.get(login.username)
    if account is None or not _still_valid(login, account):
        del st.session_state[_SESSION_KEY]
        return None
    return Actor(name=account.username, role=account.role)


def sign_out() -> None:
    """Forget the local login, revoke its session token, and end an OIDC session.

    With the cookie routes served, the browser is then sent to the route that deletes the cookie.
    """
    login = st.session_state.pop(_SESSION_KEY, None)
    if isinstance(login, _Login):
        db = _store()
        try:
            with transaction(db, timeout_s=STORE_WAIT_S) as con:
                if login.token_id is not None:
                    revoke_session(con, token_id=login.token_id, username=login.username,
                                   expires_at=login.expires_at or utcnow())
                audit_sign_in(con, "sign_out", username=login.username, role=None,
                              detail={"client": _client_address(), "token_id": login.token_id})
        except TastebudError:
            # The token cannot be revoked now; deleting the cookie below still signs this browser out.
            pass
        if login.token_id is not None and sessions.cookies_enabled():
            _send_browser_to(_route_url(sessions.SIGN_OUT_ROUTE))
    if _oidc_configured() and st.user.is_logged_in:
        st.logout()


def login_page(url_path: str):
    """The sign-in screen registered under a page's URL, so a deep link opens that page after sign-in."""

    def render() -> None:
        render_login(next_page=url_path)

    render.__name__ = f"sign_in_{url_path}"
    return render


def render_login(next_page: str = "") -> None:
    """The sign-in page: a local-account form, and SSO buttons when OIDC is configured."""
    st.title("tastebud")
    st.caption("Restaurant-review sentiment. Sign in to continue.")
    accounts, problems = parse_accounts(_secret_section("accounts"))
    for problem in problems:
        st.warning(problem)
    if _oidc_configured():
        if st.user.is_logged_in:
            st.error(f"{views.md(st.user.get('email'))} is signed in but has no tastebud role; "
                     "ask an admin to add the address to the oidc\\_roles table of the secrets.")
            if st.button("Sign out"):
                st.logout()
        elif importlib.util.find_spec("authlib") is None:
            st.error("Single sign-on is configured, but st.login needs the Authlib package: pip install Authlib")
        else:
            for provider in _oidc_providers():
                if st.button(f"Sign in with {provider or 'single sign-on'}", key=f"sso-{provider}"):
                    if provider:
                        st.login(provider)
                    else:
                        st.login()
    if not accounts and not _oidc_configured():
        st.info(
            "No accounts are configured. Add one with `tastebud add-account NAME --role labeler` "
            "(or put `tastebud hash-password` output into `.streamlit/secrets.toml`), then reload."
        )
        return
    if accounts:
        _password_form(accounts, next_page)


def _password_form(accounts: dict[str, Account], next_page: str) -> None:
    with st.form("login"):
        username = st.text_input("Username", max_chars=64)
        password = st.text_input("Password", type="password", max_chars=MAX_PASSWORD_BYTES)
        submitted = st.form_submit_button("Sign in")
    if not sessions.cookies_enabled():
        st.caption("A sign-in here lasts for this browser tab; `tastebud dashboard` keeps you signed in across reloads.")
    if not submitted:
        return
    db = _store()
    if not db.exists():
        st.error(f"No store at {views.md(db)}. Create one with `tastebud demo-data` or `tastebud import`, then reload.")
        return
    try:
        login, token = _attempt_sign_in(db, accounts, username.strip(), password)
    except StoreBusyError:
        st.error("The store is busy with another task; try again in a moment.")
        return
    except (TastebudError, ValueError) as exc:  # a store or [session] setting that needs fixing
        st.error(f"Sign-in is unavailable: {views.md(exc)}")
        return
    if login is None:
        return
    permission = PERMISSION_OF.get(next_page)
    if permission is None or not Actor(login.username, accounts[login.username].role).can(permission):
        next_page = ""
    st.session_state[_SESSION_KEY] = login
    if token is not None:
        code = sessions.create_handoff(token, next_page, int((login.expires_at - utcnow()).total_seconds()))
        _send_browser_to(_route_url(sessions.SESSION_ROUTE, code=code))
    st.rerun()


def _attempt_sign_in(
    db: Path, accounts: dict[str, Account], username: str, password: str
) -> tuple[_Login | None, str | None]:
    """Check one sign-in against the throttle and the password; show why it failed; audit it.

    Returns:
        The login (None when refused) and, when the cookie routes are served, its signed token.
    """
    client = _client_address()
    _ensure_schema(db)
    account = accounts.get(username)
    role = account.role if account else None
    with transaction(db, timeout_s=STORE_WAIT_S) as con:
        wait = start_sign_in(con, username=username, client=client)
        if wait:
            audit_sign_in(con, "sign_in.throttled", username=username, role=role,
                          detail={"client": client, "wait_s": round(wait)})
    if wait:
        st.error(f"Too many failed sign-ins. Try again in {_duration(wait)}.")
        return None, None
    # bcrypt runs with no connection open; the attempt is already counted as a failure, so
    # parallel guesses cannot slip past the limit while it runs.
    ok = check_password(account, password)
    with transaction(db, timeout_s=STORE_WAIT_S) as con:
        if ok:
            sign_in_succeeded(con, username=username, client=client)
            audit_sign_in(con, "sign_in.succeeded", username=username, role=role, detail={"client": client})
        else:
            reason = "wrong_password" if account else "unknown_account"
            audit_sign_in(con, "sign_in.failed", username=username, role=role, detail={"client": client, "reason": reason})
            wait = sign_in_wait(con, username=username, client=client)
    if not ok:
        st.error("Wrong username or password." + (f" Try again in {_duration(wait)}." if wait else ""))
        return None, None
    fingerprint = sessions.password_fingerprint(account.password_hash)
    if not sessions.cookies_enabled():
        return _Login(username, fingerprint), None
    token, claims = _session_tokens(db).issue(username, account.password_hash)
    return _Login(username, fingerprint, claims.token_id, claims.expires_at), token


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.999)
    return f"{seconds} s" if seconds < 120 else f"{(seconds + 59) // 60} min"


def _route_url(route: str, **params: str) -> str:
    base = (st.get_option("server.baseUrlPath") or "").strip("/")
    return (f"/{base}" if base else "") + route + (f"?{urlencode(params)}" if params else "")


def _send_browser_to(url: str) -> None:
    # The HTTP route sets or deletes the HttpOnly cookie; the link is the fallback without JavaScript.
    st.html(f"<script>window.location.replace({json.dumps(url)});</script>", unsafe_allow_javascript=True)
    st.link_button("Continue", url)
    st.stop()
