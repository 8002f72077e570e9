"""Sign-in and role gating of the dashboard (AppTest), and the account helpers."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard import auth
from dashboard.auth import role_for_email
from store.accounts import Account, check_password, hash_password, parse_accounts
from dashboard_seed import ACCOUNTS, account_secrets
from pipeline.loop.relabel import relabel
from store.actors import Actor
from store.errors import PermissionDeniedError
from store.schema import init_store

APP = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"
PAGES = ("overview", "trends", "aspects", "comparison", "hard_cases", "training", "data")
ALLOWED = {
    "viewer": {"overview", "trends", "aspects", "comparison"},
    "labeler": {"overview", "trends", "aspects", "comparison", "hard_cases"},
    "data_scientist": set(PAGES),
}


@pytest.fixture(scope="module")
def secrets() -> dict:
    return account_secrets()


@pytest.fixture
def empty_store(tmp_path, monkeypatch) -> Path:
    db, _ = init_store(tmp_path / "store.duckdb")
    monkeypatch.setenv("TASTEBUD_DB", str(db))
    return db


def _app(secrets: dict) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=30)
    at.secrets["accounts"] = secrets
    return at.run()


def sign_in(at: AppTest, username: str, password: str | None = None) -> AppTest:
    at.text_input[0].input(username)
    at.text_input[1].input(password if password is not None else ACCOUNTS[username][1])
    return at.button[0].click().run()


def _reachable(at: AppTest) -> set[str]:
    reachable = set()
    for page in PAGES:
        try:
            at.switch_page(f"screens/{page}.py")
        except ValueError:  # not registered in st.navigation for this session
            continue
        reachable.add(page)
    at.switch_page("screens/overview.py")
    return reachable


def test_signed_out_sees_only_the_sign_in_form(empty_store, secrets):
    at = _app(secrets)
    assert not at.exception
    assert [t.value for t in at.title] == ["tastebud"]
    assert [b.label for b in at.button] == ["Sign in"]
    with pytest.raises(ValueError):
        at.switch_page("screens/overview.py")


def test_a_wrong_password_is_refused(empty_store, secrets):
    at = sign_in(_app(secrets), "lena", "not-her-password")
    assert [e.value for e in at.error] == ["Wrong username or password."]
    assert [b.label for b in at.button] == ["Sign in"]
    at = sign_in(at, "nobody", "whatever")
    assert [e.value for e in at.error] == ["Wrong username or password."]


@pytest.mark.parametrize("username", sorted(ACCOUNTS))
def test_each_role_reaches_only_its_pages(empty_store, secrets, username):
    at = sign_in(_app(secrets), username)
    assert not at.exception
    role = ACCOUNTS[username][0]
    assert _reachable(at) == ALLOWED[role]
    assert any(f"Signed in as {username}" in t.value for t in at.sidebar.text)


def test_session_state_cannot_fake_a_login(empty_store, secrets):
    at = AppTest.from_file(str(APP), default_timeout=30)
    at.secrets["accounts"] = secrets
    at.session_state["_tastebud_login"] = "dario"  # what a widget could at most produce: a plain value
    at.run()
    assert [b.label for b in at.button] == ["Sign in"]
    at.session_state["_tastebud_login"] = {"username": "dario"}
    at.run()
    assert [b.label for b in at.button] == ["Sign in"]


def test_the_role_is_read_from_the_secrets_on_every_run(empty_store, secrets):
    at = sign_in(_app(secrets), "lena")
    assert "hard_cases" in _reachable(at)
    at.secrets["accounts"] = {**secrets, "lena": {**secrets["lena"], "role": "viewer"}}
    at.run()
    assert _reachable(at) == ALLOWED["viewer"]
    at.secrets["accounts"] = {k: v for k, v in secrets.items() if k != "lena"}
    at.run()
    assert [b.label for b in at.button] == ["Sign in"]


def test_a_page_run_directly_still_checks_the_role(empty_store, secrets):
    # Reaching a page script by any route other than the router still meets setup_page's check.
    at = AppTest.from_file(str(APP.parent / "screens" / "hard_cases.py"), default_timeout=30)
    at.secrets["accounts"] = secrets
    at.session_state["_tastebud_login"] = auth._Login("vera")
    at.run()
    assert [e.value for e in at.error] == ["You do not have access to this page."]
    assert not at.button


def test_sign_out(empty_store, secrets):
    at = sign_in(_app(secrets), "vera")
    at.sidebar.button(key="sign-out").click().run()
    assert [b.label for b in at.button] == ["Sign in"]


def test_store_writes_check_the_role_too(empty_store):
    with pytest.raises(PermissionDeniedError, match="viewer"):
        relabel(empty_store, Actor("vera", "viewer"), "r1", "negative")


def test_no_accounts_configured_explains_how_to_add_one(empty_store):
    at = AppTest.from_file(str(APP), default_timeout=30).run()
    assert not at.exception
    assert any("tastebud add-account" in i.value for i in at.info)


def test_password_hashing_and_checking():
    hashed = hash_password("s3cret-enough")
    account = Account("ana", "labeler", hashed)
    assert check_password(account, "s3cret-enough")
    assert not check_password(account, "wrong")
    assert not check_password(None, "s3cret-enough")
    assert not check_password(Account("x", "viewer", "$2b$12$not-a-real-hash"), "anything")
    with pytest.raises(ValueError, match="72 bytes"):
        hash_password("x" * 73)
    with pytest.raises(ValueError, match="empty"):
        hash_password("")


def test_parse_accounts_skips_bad_entries_with_reasons():
    good = hash_password("password-1")
    accounts, problems = parse_accounts({
        "ana": {"password_hash": good, "role": "labeler"},
        "bad role": {"password_hash": good, "role": "labeler"},
        "bob": {"password_hash": good, "role": "superuser"},
        "cy": {"password_hash": "plaintext", "role": "viewer"},
        "dee": "not a table",
    })
    assert list(accounts) == ["ana"]
    assert len(problems) == 4
    assert any("role must be one of" in p for p in problems)
    assert any("not a bcrypt hash" in p for p in problems)


def test_oidc_emails_map_to_roles_case_insensitively():
    table = {"Ana@Example.com": "labeler", "eve@example.com": "root"}
    assert role_for_email(table, "ana@example.COM") == "labeler"
    assert role_for_email(table, "eve@example.com") is None  # not a tastebud role
    assert role_for_email(table, "bob@example.com") is None
    assert role_for_email(table, None) is None


def test_oidc_signed_in_user_gets_the_mapped_role(empty_store, secrets):
    at = AppTest.from_file(str(APP), default_timeout=30)
    at.secrets["accounts"] = secrets
    at.secrets["auth"] = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32,
                          "client_id": "id", "client_secret": "s", "server_metadata_url": "https://idp/.well-known"}
    at.secrets["oidc_roles"] = {"ana@example.com": "labeler"}
    at.user = {"is_logged_in": True, "email": "ana@example.com", "email_verified": True}
    at.run()
    assert not at.exception
    assert _reachable(at) == ALLOWED["labeler"]
    at.user = {"is_logged_in": True, "email": "stranger@example.com"}
    at.run()
    assert any("has no tastebud role" in e.value for e in at.error)


def test_sso_button_or_a_clear_note_when_authlib_is_missing(empty_store, secrets):
    import importlib.util

    at = AppTest.from_file(str(APP), default_timeout=30)
    at.secrets["accounts"] = secrets
    at.secrets["auth"] = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32,
                          "client_id": "id", "client_secret": "s", "server_metadata_url": "https://idp/.well-known"}
    at.user = {"is_logged_in": False}
    at.run()
    assert not at.exception
    if importlib.util.find_spec("authlib") is None:
        assert any("needs the Authlib package" in e.value for e in at.error)
    else:
        assert "Sign in with single sign-on" in [b.label for b in at.button]
    assert "Sign in" in [b.label for b in at.button]  # local accounts still work alongside
