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

The session keeps only *who* signed in. The role is looked up in the secrets on every
rerun, so a changed or removed account takes effect at once, and nothing a browser can
put into session state (widget values are strings and numbers) passes for a login.
"""

from __future__ import annotations

import importlib.util
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

import bcrypt
import streamlit as st

from dashboard import views
from store.actors import ROLES, Actor

_SESSION_KEY = "_tastebud_login"
_FAILURES_KEY = "_tastebud_login_failures"
# bcrypt looks at the first 72 bytes only; longer passwords are refused rather than silently cut.
MAX_PASSWORD_BYTES = 72
USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
# Seconds added per failed sign-in in a session (capped), to slow down guessing.
FAILED_LOGIN_DELAY_S = 0.5
# A valid hash checked against when the username is unknown, so timing does not reveal which names exist.
_DUMMY_HASH = bcrypt.hashpw(b"tastebud-dummy", bcrypt.gensalt(rounds=12))


@dataclass(frozen=True)
class Account:
    """One local account from the secrets."""

    username: str
    role: str
    password_hash: str


@dataclass(frozen=True)
class _Login:
    # Stored in session state; a widget can only ever produce plain values, never this type.
    username: str


def hash_password(password: str) -> str:
    """bcrypt hash of ``password`` for an ``[accounts.NAME]`` entry.

    Example:
        >>> hash_password("correct horse battery staple").startswith("$2b$")
        True
    """
    encoded = password.encode("utf-8")
    if not password:
        raise ValueError("the password is empty")
    if len(encoded) > MAX_PASSWORD_BYTES:
        raise ValueError(f"passwords are limited to {MAX_PASSWORD_BYTES} bytes")
    return bcrypt.hashpw(encoded, bcrypt.gensalt(rounds=12)).decode("ascii")


def parse_accounts(section: Mapping | None) -> tuple[dict[str, Account], list[str]]:
    """Read the ``[accounts]`` table of the secrets.

    Returns:
        The valid accounts by username, and one line per entry that was skipped and why.
    """
    accounts, problems = {}, []
    for username, entry in (section or {}).items():
        if not USERNAME_PATTERN.match(str(username)):
            problems.append(f"account {username!r}: the name may use letters, digits and _ . @ - only")
            continue
        if not isinstance(entry, Mapping):
            problems.append(f"account {username!r}: expected a table with password_hash and role")
            continue
        role, password_hash = entry.get("role"), entry.get("password_hash")
        if role not in ROLES:
            problems.append(f"account {username!r}: role must be one of {', '.join(ROLES)}")
            continue
        if not isinstance(password_hash, str) or not password_hash.startswith("$2"):
            problems.append(f"account {username!r}: password_hash is not a bcrypt hash (see `tastebud hash-password`)")
            continue
        accounts[username] = Account(username=username, role=role, password_hash=password_hash)
    return accounts, problems


def check_password(account: Account | None, password: str) -> bool:
    """Whether ``password`` matches ``account`` (always spends one bcrypt check, even for no account)."""
    encoded = password.encode("utf-8")[:MAX_PASSWORD_BYTES]
    if account is None:
        bcrypt.checkpw(encoded, _DUMMY_HASH)
        return False
    try:
        return bcrypt.checkpw(encoded, account.password_hash.encode("ascii"))
    except ValueError:  # a malformed hash in the secrets
        return False


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


def current_actor() -> Actor | None:
    """The signed-in person as an :class:`Actor` with the role the secrets give them now, or None."""
    oidc = _oidc_actor()
    if oidc is not None:
        return oidc
    login = st.session_state.get(_SESSION_KEY)
    if not isinstance(login, _Login):
        return None
    accounts, _ = parse_accounts(_secret_section("accounts"))
    account = accounts.get(login.username)
    if account is None:
        del st.session_state[_SESSION_KEY]
        return None
    return Actor(name=account.username, role=account.role)


def sign_out() -> None:
    """Forget the local login and end an OIDC session."""
    st.session_state.pop(_SESSION_KEY, None)
    if _oidc_configured() and st.user.is_logged_in:
        st.logout()


def render_login() -> None:
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
        _password_form(accounts)


def _password_form(accounts: dict[str, Account]) -> None:
    with st.form("login"):
        username = st.text_input("Username")
        password = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Sign in")
    if not submitted:
        return
    failures = st.session_state.get(_FAILURES_KEY, 0)
    if failures:
        time.sleep(min(failures, 6) * FAILED_LOGIN_DELAY_S)
    account = accounts.get(username.strip())
    if check_password(account, password):
        st.session_state[_SESSION_KEY] = _Login(username=account.username)
        st.session_state[_FAILURES_KEY] = 0
        st.rerun()
    st.session_state[_FAILURES_KEY] = failures + 1
    st.error("Wrong username or password.")
