"""Local dashboard accounts: bcrypt hashing and the TOML secrets file that holds them.

The CLI (`tastebud add-account`, `hash-password`, `demo`) and the dashboard both need this,
so it lives below both of them and imports neither Streamlit nor anything of the
dashboard. Nothing is hashed at import time.

An account in the secrets file::

    [accounts."ana"]
    password_hash = "$2b$12$..."
    role = "labeler"

Files holding hashes or passwords are created with mode 0600 from their first byte.
"""

from __future__ import annotations

import functools
import os
import re
import secrets
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import bcrypt

from store.actors import ROLES
from store.errors import TastebudError

# bcrypt looks at the first 72 bytes only; longer passwords are refused rather than silently cut.
MAX_PASSWORD_BYTES = 72
# Shorter passwords are refused when an account is created.
MIN_PASSWORD_CHARS = 8
USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
# bcrypt cost of new hashes (about 0.2 s per check on one core).
BCRYPT_ROUNDS = 12


@dataclass(frozen=True)
class Account:
    """One local account from the secrets."""

    username: str
    role: str
    password_hash: str


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
    return bcrypt.hashpw(encoded, bcrypt.gensalt(rounds=BCRYPT_ROUNDS)).decode("ascii")


def check_new_password(password: str) -> None:
    """Raise :class:`TastebudError` unless ``password`` is acceptable for a new account."""
    if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
        raise TastebudError(f"passwords are limited to {MAX_PASSWORD_BYTES} bytes")
    if len(password) < MIN_PASSWORD_CHARS:
        raise TastebudError(f"use a password of at least {MIN_PASSWORD_CHARS} characters")


@functools.cache
def _dummy_hash() -> bytes:
    # Checked against when the username is unknown, so timing does not reveal which names exist.
    return bcrypt.hashpw(b"tastebud-dummy", bcrypt.gensalt(rounds=BCRYPT_ROUNDS))


def check_password(account: Account | None, password: str) -> bool:
    """Whether ``password`` matches ``account`` (always spends one bcrypt check, even for no account)."""
    encoded = password.encode("utf-8")[:MAX_PASSWORD_BYTES]
    if account is None:
        bcrypt.checkpw(encoded, _dummy_hash())
        return False
    try:
        return bcrypt.checkpw(encoded, account.password_hash.encode("ascii"))
    except ValueError:  # a malformed hash in the secrets
        return False


def parse_accounts(section: Mapping | None) -> tuple[dict[str, Account], list[str]]:
    """Read the ``[accounts]`` table of the secrets.

    Returns:
        The valid accounts by username, and one line per entry that was skipped and why.

    Example:
        >>> parse_accounts({"ana": {"password_hash": "$2b$12$x", "role": "labeler"}})[0]["ana"].role
        'labeler'
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


def account_entry(username: str, role: str, password_hash: str) -> str:
    """The TOML lines of one ``[accounts."NAME"]`` table."""
    return f'[accounts."{username}"]\npassword_hash = "{password_hash}"\nrole = "{role}"\n'


def write_private_file(path: str | os.PathLike, text: str, *, append: bool = False) -> Path:
    """Write ``text`` to ``path`` so that only the owner can ever read it.

    A new file is created with mode 0600 by ``os.open`` itself, so it is never readable by
    others, not even for an instant. An existing file is tightened to 0600 before anything
    is written into it.

    Args:
        path: the file; its folder is created if missing.
        text: UTF-8 text to write.
        append: add to the end instead of replacing the contents.

    Example:
        >>> write_private_file("demo-logins.txt", "demo-viewer s3cret\\n")  # doctest: +SKIP
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            fd = -1
            f.write(text)
    finally:
        if fd != -1:
            os.close(fd)
    return path


def read_secrets_file(path: str | os.PathLike) -> dict:
    """The parsed TOML of a secrets file ({} when it does not exist)."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise TastebudError(f"{path} is not valid TOML: {exc}") from exc


def add_account(path: str | os.PathLike, username: str, role: str, password: str) -> Path:
    """Append a bcrypt-hashed local account to the secrets file at ``path`` (created 0600 if missing).

    Raises:
        TastebudError: a bad name, role or password, an unreadable file, or an existing account.

    Example:
        >>> add_account(".streamlit/secrets.toml", "ana", "labeler", "s3cret-pass")  # doctest: +SKIP
    """
    if not USERNAME_PATTERN.match(username):
        raise TastebudError("a username may use letters, digits and _ . @ - only (at most 64)")
    if role not in ROLES:
        raise TastebudError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    check_new_password(password)
    existing = read_secrets_file(path)
    if username in existing.get("accounts", {}):
        raise TastebudError(f"account {username!r} already exists in {path}")
    return write_private_file(path, "\n" + account_entry(username, role, hash_password(password)), append=True)


def read_or_create_key(path: str | os.PathLike, *, nbytes: int = 32) -> str:
    """The random key kept in ``path``, created (mode 0600, ``nbytes`` random bytes as hex) on first use.

    Two processes creating it at once agree: only one ``O_EXCL`` create wins, the other reads.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_text(encoding="ascii").strip()
        for _ in range(20):  # the creating process may not have written it yet
            if key:
                break
            time.sleep(0.05)
            key = path.read_text(encoding="ascii").strip()
        if len(key) < 32:
            raise TastebudError(f"the key file {path} is damaged (too short); delete it to make a new one")
        return key
    key = secrets.token_hex(nbytes)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(key + "\n")
    return key
