"""`tastebud dashboard`, `hash-password` and `add-account`."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib

import bcrypt
from conftest import cli_cmd
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.cli.dashboard import APP_PATH, dashboard_command
from pipeline.demo import demo_files, ensure_demo_accounts
from store.accounts import parse_accounts, write_private_file

runner = CliRunner()


def test_dashboard_command_binds_where_asked_and_passes_the_secrets(tmp_path):
    argv = dashboard_command(host="localhost", port=8600, secrets=tmp_path / "secrets.toml")
    assert argv[1:4] == ["-m", "streamlit", "run"] and argv[4] == str(APP_PATH.with_name("server.py"))
    assert APP_PATH.is_file() and APP_PATH.with_name("server.py").is_file()
    options = dict(zip(argv[5::2], argv[6::2]))
    assert options["--server.address"] == "localhost"
    assert options["--server.port"] == "8600"
    assert options["--server.headless"] == "true"
    assert options["--secrets.files"] == str(tmp_path / "secrets.toml")
    assert options["--client.showErrorDetails"] == "none"  # no paths, PIDs or tracebacks in the browser
    assert options["--runner.magicEnabled"] == "false"
    assert "--secrets.files" not in dashboard_command(host="localhost", port=1, secrets=None)


def test_dashboard_refuses_a_missing_store(tmp_path):
    result = subprocess.run(cli_cmd("--db", str(tmp_path / "none.duckdb"), "dashboard"), capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: no store at {tmp_path / 'none.duckdb'}: run `tastebud demo-data` or `tastebud import` first"


def test_hash_password_prints_a_bcrypt_hash():
    result = runner.invoke(app, ["hash-password"], input="long-enough\nlong-enough\n")
    assert result.exit_code == 0, result.output
    hashed = result.output.strip().splitlines()[-1]
    assert bcrypt.checkpw(b"long-enough", hashed.encode())


def test_add_account_appends_a_hashed_entry_the_dashboard_accepts(tmp_path):
    secrets = tmp_path / ".streamlit" / "secrets.toml"
    result = runner.invoke(app, ["add-account", "ana@example.com", "--role", "labeler", "--secrets", str(secrets)],
                           input="s3cret-pass\ns3cret-pass\n")
    assert result.exit_code == 0, result.output
    runner.invoke(app, ["add-account", "bo", "--role", "viewer", "--secrets", str(secrets)], input="another-pw\nanother-pw\n")
    accounts, problems = parse_accounts(tomllib.loads(secrets.read_text())["accounts"])
    assert problems == []
    assert {name: a.role for name, a in accounts.items()} == {"ana@example.com": "labeler", "bo": "viewer"}
    assert bcrypt.checkpw(b"s3cret-pass", accounts["ana@example.com"].password_hash.encode())
    assert "s3cret-pass" not in secrets.read_text()
    assert secrets.stat().st_mode & 0o777 == 0o600


def test_add_account_refuses_bad_input(tmp_path):
    secrets = tmp_path / "secrets.toml"
    runner.invoke(app, ["add-account", "ana", "--role", "labeler", "--secrets", str(secrets)], input="password1\npassword1\n")
    cases = [
        (["add-account", "ana", "--role", "viewer"], "account 'ana' already exists"),
        (["add-account", "bo", "--role", "root"], "unknown role 'root'"),
        (["add-account", "bad name", "--role", "viewer"], "a username may use letters"),
        (["add-account", "cy", "--role", "viewer"], "at least 8 characters"),
    ]
    for args, message in cases:
        result = runner.invoke(app, [*args, "--secrets", str(secrets)], input="short\nshort\n")
        assert result.exit_code != 0
        assert message in str(result.exception)
    assert list(tomllib.loads(secrets.read_text())["accounts"]) == ["ana"]


def test_add_account_loads_neither_streamlit_nor_the_dashboard(tmp_path):
    # The account commands need hashing and the secrets file only (store.accounts), not the web app.
    script = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from pipeline.cli import app\n"
        f"r = CliRunner().invoke(app, ['add-account', 'ana', '--role', 'viewer', '--secrets', {str(tmp_path / 's.toml')!r}],"
        " input='long-enough\\nlong-enough\\n')\n"
        "assert r.exit_code == 0, r.output\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('streamlit', 'dashboard')))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_importing_the_account_code_hashes_nothing():
    result = subprocess.run(
        [sys.executable, "-c", "import bcrypt\nbcrypt.hashpw = None\nimport store.accounts, dashboard.auth\nprint('ok')"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_secrets_and_logins_are_private_from_the_first_byte(tmp_path, monkeypatch):
    # With os.chmod disabled, a file written loose and tightened afterwards would stay 0644.
    monkeypatch.setattr("os.chmod", lambda *a, **k: None)
    old_umask = os.umask(0o022)
    try:
        secrets = tmp_path / "new" / "secrets.toml"
        result = runner.invoke(app, ["add-account", "ana", "--role", "labeler", "--secrets", str(secrets)],
                               input="s3cret-pass\ns3cret-pass\n")
        assert result.exit_code == 0, result.output
        assert secrets.stat().st_mode & 0o777 == 0o600
        loose = tmp_path / "loose.toml"
        loose.write_text("# an existing file someone made world-readable\n")
        loose.chmod(0o644)
        write_private_file(loose, "x = 1\n", append=True)
        assert loose.stat().st_mode & 0o777 == 0o600
        logins = ensure_demo_accounts(tmp_path / "demo.duckdb")
        secrets_file, logins_file = demo_files(tmp_path / "demo.duckdb")
        assert {p.stat().st_mode & 0o777 for p in (secrets_file, logins_file)} == {0o600}
    finally:
        os.umask(old_umask)
    assert sorted(logins) == ["demo-data-scientist", "demo-labeler", "demo-viewer"]
    assert logins_file.read_text() == "".join(f"{u} {p}\n" for u, p in logins.items())
    accounts, problems = parse_accounts(tomllib.loads(secrets_file.read_text())["accounts"])
    assert problems == [] and bcrypt.checkpw(logins["demo-viewer"].encode(), accounts["demo-viewer"].password_hash.encode())
    assert ensure_demo_accounts(tmp_path / "demo.duckdb") == {}  # passwords are handed out once


def test_demo_prints_the_passwords_on_first_creation_only(tmp_path, monkeypatch):
    monkeypatch.setattr("pipeline.demo.demo_is_ready", lambda db: True)
    db = tmp_path / "demo.duckdb"
    first = runner.invoke(app, ["--db", str(db), "demo", "--no-launch"])
    assert first.exit_code == 0, first.output
    password = (tmp_path / "demo-logins.txt").read_text().split()[1]
    assert password in first.output
    second = runner.invoke(app, ["--db", str(db), "demo", "--no-launch"])
    assert second.exit_code == 0, second.output
    assert password not in second.output
    assert "passwords are not printed again" in second.output


def test_streamlit_config_hides_error_details_and_turns_magic_off():
    from streamlit.config import ShowErrorDetailsConfigOptions

    config = tomllib.loads((APP_PATH.parents[1] / ".streamlit" / "config.toml").read_text())
    assert config["client"]["showErrorDetails"] == ShowErrorDetailsConfigOptions.NONE.value
    assert config["runner"]["magicEnabled"] is False
