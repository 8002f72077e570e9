"""`tastebud dashboard`, and the account commands it needs: `hash-password`, `add-account`, `lockouts`,
`unlock-account`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import typer

from pipeline.cli.app import app, db_path, emit_json
from store.accounts import (
    USERNAME_PATTERN,
    add_account,
    check_new_password,
    hash_password,
    read_secrets_file,
)
from store.actors import ROLES, audit, cli_actor
from store.db import connect, transaction
from store.errors import TastebudError
from store.schema import init_store
from store.signins import clear_lockout, fetch_lockouts
from store.settings import ENV_DB, ENV_SECRETS, current_settings

DEFAULT_SECRETS = Path(".streamlit") / "secrets.toml"
APP_PATH = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"
# The st.App that serves APP_PATH plus the routes that set the HttpOnly sign-in cookie.
SERVER_PATH = APP_PATH.with_name("server.py")


def dashboard_command(*, host: str, port: int, secrets: Path | None) -> list[str]:
    """argv that serves the dashboard with ``streamlit run`` (headless, no usage statistics, no "magic"); the store
    comes from ``$TASTEBUD_DB``.

    Example:
        >>> dashboard_command(host="localhost", port=8501, secrets=None)[3]
        'run'
    """
    argv = [
        sys.executable, "-m", "streamlit", "run", str(SERVER_PATH),
        "--server.address", host, "--server.port", str(port), "--server.headless", "true",
        "--browser.gatherUsageStats", "false", "--client.toolbarMode", "viewer",
        # Users see a generic message for an unexpected error; the traceback goes to the server log.
        # No Streamlit "magic": a bare expression on a page is never rendered, whatever the working directory.
        "--client.showErrorDetails", "none", "--runner.magicEnabled", "false",
        # Blue accent: red and green mean negative and positive only (as in .streamlit/config.toml).
        "--theme.primaryColor", "#2563eb",
    ]
    if secrets is not None:
        argv += ["--secrets.files", str(secrets)]
    return argv


def start_dashboard(db: Path, *, host: str = "localhost", port: int = 8501, secrets: Path | None = None) -> subprocess.Popen:
    """Start serving the dashboard on ``db`` in a child process and return it (see :func:`serve_dashboard`)."""
    db = Path(db).resolve()
    if not db.exists():
        raise TastebudError(f"no store at {db}: run `tastebud demo-data` or `tastebud import` first")
    if secrets is not None and not Path(secrets).is_file():
        raise TastebudError(f"no secrets file at {secrets}")
    env = dict(os.environ, **{ENV_DB: str(db)})
    # The app imports store/ and pipeline/; make them importable however tastebud was installed.
    root = str(APP_PATH.parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return subprocess.Popen(dashboard_command(host=host, port=port, secrets=secrets), env=env)


def wait_until_answering(url: str, proc: subprocess.Popen, *, timeout_s: float = 120.0) -> float:
    """Poll Streamlit's health endpoint until it answers; returns the seconds waited.

    Raises:
        TastebudError: the server exited, or did not answer within ``timeout_s``.
    """
    import time
    import urllib.error
    import urllib.request

    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if proc.poll() is not None:
            raise TastebudError(f"the dashboard exited with code {proc.returncode} before answering (port in use?)")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    raise TastebudError(f"the dashboard did not answer at {url} within {timeout_s:.0f}s")


def serve_dashboard(db: Path, *, host: str = "localhost", port: int = 8501, secrets: Path | None = None) -> int:
    """Serve the dashboard on ``db`` in the foreground until it stops; returns streamlit's exit code.

    Args:
        db: an existing store.
        host: address to bind; the default keeps the dashboard private to this machine.
        port: port to serve on.
        secrets: accounts/OIDC secrets file; None lets Streamlit read ``.streamlit/secrets.toml``.

    Example:
        >>> serve_dashboard(Path("demo.duckdb"), secrets=Path("demo-secrets.toml"))  # doctest: +SKIP
    """
    proc = start_dashboard(db, host=host, port=port, secrets=secrets)
    return wait_dashboard(proc)


def wait_dashboard(child: subprocess.Popen) -> int:
    """Wait for a started dashboard to stop; SIGTERM/SIGINT are passed on to it. Returns its exit code."""

    def forward(signum, frame):
        # Pass SIGTERM/SIGINT on to Streamlit and keep waiting: this process ends when its child does,
        # so a killed `tastebud dashboard` never leaves the server running under pid 1.
        if child.poll() is None:
            child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while True:
            try:
                code = child.wait()
                break
            except KeyboardInterrupt:  # a second Ctrl+C between our handler and wait
                forward(signal.SIGINT, None)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    # Streamlit exits 0 on a forwarded SIGINT/SIGTERM; a negative code means it died of a signal.
    return 128 - code if code < 0 else code


@app.command("dashboard")
def dashboard_cmd(
    port: int = typer.Option(8501, "--port", min=1, max=65535, help="Port to serve on."),
    host: str = typer.Option("localhost", "--host", help="Address to bind (localhost keeps it private to this machine)."),
    secrets: Path = typer.Option(
        None, "--secrets", help=f"Accounts/OIDC secrets file (default ${ENV_SECRETS}, else .streamlit/secrets.toml)."
    ),
) -> None:
    """Serve the Streamlit dashboard on the store given by --db."""
    db = db_path().resolve()
    secrets = secrets or current_settings().secrets
    if db.exists():
        typer.echo(f"tastebud dashboard on http://{host}:{port} (store {db}); Ctrl+C stops it")
    raise typer.Exit(serve_dashboard(db, host=host, port=port, secrets=secrets))


def _prompt_password() -> str:
    password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    check_new_password(password)
    return password


@app.command("hash-password")
def hash_password_cmd() -> None:
    """Prompt for a password and print its bcrypt hash for a dashboard account in the secrets file."""
    typer.echo(hash_password(_prompt_password()))


@app.command("add-account")
def add_account_cmd(
    username: str = typer.Argument(..., help="Login name (letters, digits, _ . @ -)."),
    role: str = typer.Option(..., "--role", help=f"One of {', '.join(ROLES)}."),
    secrets: Path = typer.Option(None, "--secrets", help="Secrets file to append to (default .streamlit/secrets.toml)."),
) -> None:
    """Add a local dashboard account (password prompted, stored bcrypt-hashed, file mode 0600)."""
    if not USERNAME_PATTERN.match(username):
        raise TastebudError("a username may use letters, digits and _ . @ - only (at most 64)")
    if role not in ROLES:
        raise TastebudError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    path = secrets or current_settings().secrets or DEFAULT_SECRETS
    if username in read_secrets_file(path).get("accounts", {}):
        raise TastebudError(f"account {username!r} already exists in {path}")
    add_account(path, username, role, _prompt_password())
    typer.echo(f"added {role} account {username!r} to {path}")


def _sign_in_store() -> Path:
    db = db_path()
    if not db.exists():
        raise TastebudError(f"no store at {db}")
    init_store(db)  # a store from before migration 71 gets the sign-in tables
    return db


@app.command("lockouts")
def lockouts_cmd(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List dashboard accounts and client addresses with failed sign-ins, and how long each must wait."""
    with connect(_sign_in_store(), read_only=True) as con:
        rows = fetch_lockouts(con)
    if as_json:
        emit_json(rows)
        return
    if not rows:
        typer.echo("no failed sign-ins in the last 24 hours")
    for row in rows:
        wait = f"locked for {int(row['wait_s'] + 0.999)} s more" if row["wait_s"] else "not locked"
        name = json.dumps(row["key"])  # quoted and escaped: names typed into the sign-in form are untrusted
        typer.echo(f"{row['scope']:<8} {name:<30} {row['failures']:>3} failures, last {row['last_failure_at']:%Y-%m-%d %H:%M} UTC, {wait}")


@app.command("unlock-account")
def unlock_account_cmd(
    username: str = typer.Argument(None, help="Account name whose failed sign-ins to forget."),
    client: str = typer.Option(None, "--client", help="Also (or instead) unlock this client address."),
) -> None:
    """Clear a dashboard sign-in lockout (failed-attempt count and wait) for an account and/or a client address."""
    if not username and not client:
        raise TastebudError("name an account (tastebud unlock-account NAME) or a --client address; see `tastebud lockouts`")
    actor = cli_actor()
    with transaction(_sign_in_store()) as con:
        removed = clear_lockout(con, username=username, client=client)
        audit(con, actor, "sign_in.unlocked", target=username or client,
              detail={"account": username, "client": client, "cleared": removed})
    what = " and ".join(part for part in (username and f"account {username!r}", client and f"client {client!r}") if part)
    typer.echo(f"unlocked {what}" if removed else f"nothing to unlock for {what}: no failed sign-ins recorded")
