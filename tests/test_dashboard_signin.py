"""Sign-in throttling in the store, the sign-in audit trail, session tokens that survive a reload
(a new AppTest session) and expire, revocation on sign-out, and deep links (issue 9, section 3).

A browser's cookie is played by patching ``auth._request_cookie``; the cookie routes by setting
``sessions._routes_mounted`` (what dashboard/server.py does in a real server).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from dashboard_seed import ACCOUNTS, account_secrets
from streamlit.testing.v1 import AppTest
from typer.testing import CliRunner

from dashboard import auth, sessions
from pipeline.cli import app as cli_app
from store import signins
from store.actors import fetch_audit_log
from store.db import connect, transaction
from store.schema import init_store

APP = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"
WRONG = "not-the-password"


@pytest.fixture(scope="module")
def secrets() -> dict:
    return account_secrets()


@pytest.fixture
def store(tmp_path, monkeypatch) -> Path:
    db, _ = init_store(tmp_path / "store.duckdb")
    monkeypatch.setenv("TASTEBUD_DB", str(db))
    return db


@pytest.fixture
def browser(monkeypatch) -> dict:
    """A cookie jar the app reads, with the cookie routes 'served' (as by dashboard/server.py)."""
    jar: dict = {}
    monkeypatch.setattr(sessions, "_routes_mounted", True)
    monkeypatch.setattr(auth, "_request_cookie", lambda: jar.get(sessions.COOKIE_NAME))
    return jar


def _session(secrets: dict, page: str | None = None, **sections) -> AppTest:
    """A fresh browser session (what a reload gives), opened at ``page``'s URL."""
    at = AppTest.from_file(str(APP), default_timeout=30)
    at.secrets["accounts"] = secrets
    for name, value in sections.items():
        at.secrets[name] = value
    if page:
        at.switch_page(f"screens/{page}.py")  # before the first run: the URL /page
    return at.run()


def _submit(at: AppTest, username: str, password: str) -> AppTest:
    at.text_input[0].input(username)
    at.text_input[1].input(password)
    return at.button[0].click().run()


def _signed_in(at: AppTest) -> str | None:
    names = [t.value for t in at.sidebar.text if t.value.startswith("Signed in as ")]
    return names[0].removeprefix("Signed in as ").split(" ")[0] if names else None


def _follow_redirect(at: AppTest, jar: dict) -> str:
    """Do what the browser does after a sign-in: open the session route, keep its cookie; returns the page."""
    url = at.get("link_button")[0].proto.url
    assert url in at.get("html")[0].proto.body  # the same address, followed by script
    code = parse_qs(urlparse(url).query)["code"][0]
    handoff = sessions.take_handoff(code)
    assert handoff is not None
    token, page, _ = handoff
    jar[sessions.COOKIE_NAME] = token
    return page


def _refusal(message: str) -> str:
    """``message`` with the seconds left of a 30 s wait (20..30, however slow this machine is) as N."""
    match = re.search(r"Try again in (\d+) s\.", message)
    assert match and 20 <= int(match.group(1)) <= 30, message
    return message.replace(match.group(0), "Try again in N s.")


def _audit(db: Path) -> list[tuple[str, str, dict]]:
    with connect(db, read_only=True) as con:
        rows = fetch_audit_log(con, limit=1000)
    return [(r.action, r.actor, json.loads(r.detail)) for r in rows.itertuples()][::-1]


# --- throttling --------------------------------------------------------------------------


def test_lockout_grows_and_is_forgotten_after_a_success_or_a_day(store):
    assert [signins.lockout_seconds(n, 5) for n in range(1, 10)] == [0, 0, 0, 0, 30, 60, 120, 240, 480]
    assert signins.lockout_seconds(40, 5) == signins.LOCKOUT_MAX_S
    t0 = signins.utcnow()
    with transaction(store) as con:
        waits = [signins.record_sign_in_failure(con, username="ana", client=None, now=t0) for _ in range(5)]
        assert waits == [0, 0, 0, 0, 30]
        assert signins.sign_in_wait(con, username="ana", client=None, now=t0 + timedelta(seconds=10)) == 20
        assert signins.start_sign_in(con, username="ana", client=None, now=t0 + timedelta(seconds=10)) == 20
        # After the wait, the next attempt is counted up front; a wrong password now waits twice as long.
        assert signins.start_sign_in(con, username="ana", client=None, now=t0 + timedelta(seconds=31)) == 0
        assert signins.sign_in_wait(con, username="ana", client=None, now=t0 + timedelta(seconds=31)) == 60
        signins.sign_in_succeeded(con, username="ana", client=None, now=t0 + timedelta(seconds=31))
        assert signins.sign_in_wait(con, username="ana", client=None, now=t0 + timedelta(seconds=31)) == 0
        for _ in range(4):
            signins.record_sign_in_failure(con, username="bo", client=None, now=t0)
        later = t0 + signins.FAILURE_MEMORY + timedelta(minutes=1)
        assert signins.record_sign_in_failure(con, username="bo", client=None, now=later) == 0  # counts from 1 again


def test_a_client_address_is_throttled_across_account_names(store):
    t0 = signins.utcnow()
    with transaction(store) as con:
        for i in range(signins.CLIENT_FAILURE_LIMIT):
            assert signins.start_sign_in(con, username=f"guess{i}", client="203.0.113.7", now=t0) == 0
        assert signins.sign_in_wait(con, username="someone-else", client="203.0.113.7", now=t0) == 30
        assert signins.sign_in_wait(con, username="someone-else", client="198.51.100.1", now=t0) == 0


def test_a_success_gives_the_address_back_only_its_own_attempt(store):
    t0 = signins.utcnow()
    with transaction(store) as con:
        for i in range(3):
            signins.record_sign_in_failure(con, username=f"guess{i}", client="203.0.113.7", now=t0)
        signins.start_sign_in(con, username="ana", client="203.0.113.7", now=t0)
        signins.sign_in_succeeded(con, username="ana", client="203.0.113.7", now=t0)
        counts = {(r["scope"], r["key"]): r["failures"] for r in signins.fetch_lockouts(con, now=t0)}
    assert counts[("client", "203.0.113.7")] == 3
    assert ("account", "ana") not in counts


def test_reloading_before_each_guess_does_not_reset_the_throttle(store, secrets):
    # Each guess in a brand-new session, as a reload gives: the count lives in the store.
    for attempt in range(1, 6):
        at = _submit(_session(secrets), "lena", WRONG)
        if attempt < 5:
            assert [e.value for e in at.error] == ["Wrong username or password."]
        else:
            assert [_refusal(e.value) for e in at.error] == ["Wrong username or password. Try again in N s."]
    at = _submit(_session(secrets), "lena", ACCOUNTS["lena"][1])  # even the right password waits now
    assert [_refusal(e.value) for e in at.error] == ["Too many failed sign-ins. Try again in N s."]
    assert _signed_in(at) is None
    # Another account is not affected (no client address on localhost).
    assert _signed_in(_submit(_session(secrets), "vera", ACCOUNTS["vera"][1])) == "vera"


def test_a_throttled_client_address_is_refused_in_the_dashboard(store, secrets, monkeypatch):
    monkeypatch.setattr(auth, "_client_address", lambda: "203.0.113.7")
    with transaction(store) as con:
        for i in range(signins.CLIENT_FAILURE_LIMIT):
            signins.record_sign_in_failure(con, username=f"guess{i}", client="203.0.113.7")
    at = _submit(_session(secrets), "dario", ACCOUNTS["dario"][1])
    assert [_refusal(e.value) for e in at.error] == ["Too many failed sign-ins. Try again in N s."]
    assert _audit(store)[-1][:2] == ("sign_in.throttled", "dario")
    assert _audit(store)[-1][2]["client"] == "203.0.113.7"


def test_a_data_scientist_clears_a_lockout_from_the_cli(store, secrets):
    for _ in range(5):
        _submit(_session(secrets), "lena", WRONG)
    runner = CliRunner()
    listed = runner.invoke(cli_app, ["--db", str(store), "lockouts"])
    assert listed.exit_code == 0, listed.output
    assert 'account  "lena"' in listed.output and "5 failures" in listed.output and "locked for" in listed.output
    result = runner.invoke(cli_app, ["--db", str(store), "unlock-account", "lena"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "unlocked account 'lena'"
    assert _signed_in(_submit(_session(secrets), "lena", ACCOUNTS["lena"][1])) == "lena"
    _, actor, detail = next(row for row in _audit(store) if row[0] == "sign_in.unlocked")
    assert actor.startswith("cli:") and detail == {"account": "lena", "client": None, "cleared": 1}
    again = runner.invoke(cli_app, ["--db", str(store), "unlock-account", "lena"])
    assert "nothing to unlock for account 'lena'" in again.output
    bare = runner.invoke(cli_app, ["--db", str(store), "unlock-account"])
    assert bare.exit_code != 0 and "name an account" in str(bare.exception)


def test_sign_ins_are_audited_without_the_password(store, secrets):
    _submit(_session(secrets), "lena", WRONG)
    _submit(_session(secrets), "nobody", WRONG)
    at = _submit(_session(secrets), "lena", ACCOUNTS["lena"][1])
    at.sidebar.button(key="sign-out").click().run()
    rows = _audit(store)
    assert [(action, actor, detail.get("reason")) for action, actor, detail in rows] == [
        ("sign_in.failed", "lena", "wrong_password"),
        ("sign_in.failed", "nobody", "unknown_account"),
        ("sign_in.succeeded", "lena", None),
        ("sign_out", "lena", None),
    ]
    with connect(store, read_only=True) as con:
        dump = str(con.execute("SELECT * FROM audit_log").fetchall())
    assert WRONG not in dump and ACCOUNTS["lena"][1] not in dump


def test_sign_in_without_a_store_says_how_to_make_one(tmp_path, monkeypatch, secrets):
    monkeypatch.setenv("TASTEBUD_DB", str(tmp_path / "none.duckdb"))
    at = _submit(_session(secrets), "lena", ACCOUNTS["lena"][1])
    assert any("No store at" in e.value and "tastebud demo-data" in e.value for e in at.error)
    assert _signed_in(at) is None and not (tmp_path / "none.duckdb").exists()


# --- staying signed in ---------------------------------------------------------------------


def test_a_reload_keeps_the_user_signed_in_through_the_cookie(store, secrets, browser):
    at = _submit(_session(secrets), "lena", ACCOUNTS["lena"][1])
    assert _follow_redirect(at, browser) == ""
    reloaded = _session(secrets)  # a new session: nothing in session state, only the cookie
    assert not reloaded.exception
    assert _signed_in(reloaded) == "lena"
    assert [b.label for b in reloaded.button if b.label == "Sign in"] == []


def test_without_the_cookie_routes_a_sign_in_lasts_for_the_tab(store, secrets):
    at = _session(secrets)
    assert any("lasts for this browser tab" in c.value for c in at.caption)
    at = _submit(at, "lena", ACCOUNTS["lena"][1])
    assert _signed_in(at) == "lena" and not at.get("link_button")
    assert _signed_in(_session(secrets)) is None


def test_the_token_expires_after_the_configured_hours(store, secrets, browser):
    tokens = auth._session_tokens(store)
    assert tokens.ttl_s == 12 * 3600  # the default
    account = auth.parse_accounts(secrets)[0]["lena"]
    issued_at = time.time() - 2 * 3600
    old = sessions.SessionTokens(sessions.session_secret(store, None), ttl_s=3600, clock=lambda: issued_at)
    browser[sessions.COOKIE_NAME] = old.issue("lena", account.password_hash)[0]
    assert _signed_in(_session(secrets, session={"hours": 1})) is None  # two hours old, one-hour sessions
    assert _signed_in(_session(secrets, session={"hours": 3})) == "lena"  # the same token, three-hour sessions


def test_an_open_session_ends_when_its_time_is_up(store, secrets, browser):
    at = _submit(_session(secrets), "lena", ACCOUNTS["lena"][1])
    _follow_redirect(at, browser)
    at = _session(secrets)
    assert _signed_in(at) == "lena"
    login = at.session_state["_tastebud_login"]
    at.session_state["_tastebud_login"] = auth._Login(login.username, login.fingerprint, login.token_id,
                                                      signins.utcnow() - timedelta(seconds=1))
    at.run()
    assert _signed_in(at) is None and "Sign in" in [b.label for b in at.button]


def test_forged_tampered_and_foreign_tokens_are_refused(store, secrets, browser):
    account = auth.parse_accounts(secrets)[0]["dario"]
    good, _ = auth._session_tokens(store).issue("dario", account.password_hash)
    foreign, _ = sessions.SessionTokens("x" * 40, ttl_s=3600).issue("dario", account.password_hash)
    for token in (foreign, good[:-2] + ("AA" if not good.endswith("AA") else "BB"), "garbage", "a" * 5000):
        browser[sessions.COOKIE_NAME] = token
        assert _signed_in(_session(secrets)) is None
    browser[sessions.COOKIE_NAME] = good
    assert _signed_in(_session(secrets)) == "dario"
    changed = {**secrets, "dario": {**secrets["dario"], "password_hash": secrets["lena"]["password_hash"]}}
    assert _signed_in(_session(changed)) is None  # a changed password ends the sessions signed with the old one


def test_sign_out_revokes_the_token(store, secrets, browser):
    at = _submit(_session(secrets), "lena", ACCOUNTS["lena"][1])
    _follow_redirect(at, browser)
    at = _session(secrets)
    assert _signed_in(at) == "lena"
    token_id = at.session_state["_tastebud_login"].token_id
    at.sidebar.button(key="sign-out").click().run()
    assert at.get("link_button")[0].proto.url == sessions.SIGN_OUT_ROUTE  # the browser goes to delete the cookie
    with connect(store, read_only=True) as con:
        assert signins.is_session_revoked(con, token_id)
    # Even a browser that kept the cookie (or a copy of it) is not signed in any more.
    assert _signed_in(_session(secrets)) is None


def test_revocation_ends_other_open_sessions_of_the_token(store, secrets, browser, monkeypatch):
    at = _submit(_session(secrets), "lena", ACCOUNTS["lena"][1])
    _follow_redirect(at, browser)
    tab1, tab2 = _session(secrets), _session(secrets)
    tab1.sidebar.button(key="sign-out").click().run()
    tab2.run()
    assert _signed_in(tab2) == "lena"  # an open tab trusts its last check for REVOCATION_CHECK_S
    monkeypatch.setattr(auth, "REVOCATION_CHECK_S", 0.0)
    tab2.run()
    assert _signed_in(tab2) is None


# --- deep links ----------------------------------------------------------------------------


def test_a_deep_link_shows_the_sign_in_form_then_that_page(store, secrets):
    at = _session(secrets, page="hard_cases")
    assert not at.exception
    assert [b.label for b in at.button] == ["Sign in"]
    at = _submit(at, "lena", ACCOUNTS["lena"][1])
    assert not at.exception
    assert [t.value for t in at.title] == ["Hard cases"]


def test_a_deep_link_the_role_lacks_opens_the_default_page(store, secrets):
    at = _submit(_session(secrets, page="training"), "lena", ACCOUNTS["lena"][1])
    assert not at.exception
    assert [t.value for t in at.title] == ["Overview"]


def test_with_the_cookie_a_deep_link_continues_to_its_page(store, secrets, browser):
    at = _submit(_session(secrets, page="hard_cases"), "lena", ACCOUNTS["lena"][1])
    assert _follow_redirect(at, browser) == "hard_cases"
    browser.clear()
    at = _submit(_session(secrets, page="training"), "lena", ACCOUNTS["lena"][1])
    assert _follow_redirect(at, browser) == ""  # a labeler may not train: the route goes to the default page


# --- the cookie route ------------------------------------------------------------------------


def _get(routes: list, path: str) -> tuple[int, dict[str, list[str]]]:
    from starlette.routing import Router

    scope = {"type": "http", "method": "GET", "scheme": "http", "http_version": "1.1", "root_path": "",
             "path": path.split("?")[0], "query_string": path.partition("?")[2].encode(), "headers": [],
             "server": ("localhost", 8501), "client": ("127.0.0.1", 5000)}
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(Router(routes=routes)(scope, receive, send))
    headers: dict[str, list[str]] = {}
    for key, value in sent[0]["headers"]:
        headers.setdefault(key.decode().lower(), []).append(value.decode())
    return sent[0]["status"], headers


def test_the_session_route_sets_an_httponly_cookie_once(monkeypatch):
    monkeypatch.setattr(sessions, "_routes_mounted", False)
    routes = sessions.routes(pages=("hard_cases",))
    assert sessions.cookies_enabled()
    code = sessions.create_handoff("signed.token.value", "hard_cases", 3600)
    status, headers = _get(routes, f"{sessions.SESSION_ROUTE}?code={code}")
    assert status == 303 and headers["location"] == ["/hard_cases"]
    cookie = headers["set-cookie"][0]
    assert cookie.startswith(f"{sessions.COOKIE_NAME}=signed.token.value;")
    assert {"HttpOnly", "Max-Age=3600", "Path=/", "SameSite=lax"} <= {part.strip() for part in cookie.split(";")}
    assert "Secure" not in cookie  # plain http here; set over https
    assert _get(routes, f"{sessions.SESSION_ROUTE}?code={code}")[0] == 400  # a code works once
    assert _get(routes, f"{sessions.SESSION_ROUTE}?code=guessed")[0] == 400
    # A page that is not a dashboard page is never a redirect target.
    code = sessions.create_handoff("t", "//evil.example/x", 60)
    assert _get(routes, f"{sessions.SESSION_ROUTE}?code={code}")[1]["location"] == ["/"]
    status, headers = _get(routes, sessions.SIGN_OUT_ROUTE)
    assert status == 303 and f'{sessions.COOKIE_NAME}=""' in headers["set-cookie"][0]
    assert "Max-Age=0" in headers["set-cookie"][0]


def test_session_settings_are_checked(tmp_path):
    assert sessions.session_hours(None) == 12.0
    for bad in (0, -1, "12", True, 10_000):
        with pytest.raises(ValueError, match="hours"):
            sessions.session_hours(bad)
    with pytest.raises(ValueError, match="32 characters"):
        sessions.session_secret(tmp_path / "s.duckdb", "short")
    key = sessions.session_secret(tmp_path / "s.duckdb", None)
    key_file = tmp_path / "s.duckdb.session-key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert sessions.session_secret(tmp_path / "s.duckdb", None) == key and len(key) == 64


def test_signing_in_on_a_store_from_before_migration_71_adds_the_tables(tmp_path, monkeypatch, secrets):
    from store.migrations import migrate

    db = tmp_path / "old.duckdb"
    with connect(db) as con:
        migrate(con, target=70)
    monkeypatch.setenv("TASTEBUD_DB", str(db))
    monkeypatch.setattr(auth, "_migrated", set())
    assert _signed_in(_submit(_session(secrets), "lena", ACCOUNTS["lena"][1])) == "lena"
    assert [action for action, *_ in _audit(db)] == ["sign_in.succeeded"]
