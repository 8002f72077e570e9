"""Damaged, foreign, unreadable and busy stores: one line and exit code 2 from every command,
a banner on the dashboard, and `tastebud check` (issue 9, section 6)."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from store.db import transaction
from store.schema import init_store
from tests.conftest import cli_cmd, seed_reviews

COMMANDS = (("stats",), ("check",), ("flags",), ("init",), ("import", "{csv}"))


@pytest.fixture(scope="module")
def healthy(tmp_path_factory) -> Path:
    db, _ = init_store(tmp_path_factory.mktemp("healthy") / "store.duckdb")
    n = 20_000
    seed_reviews(db, pd.DataFrame({
        "review_id": [f"r{i}" for i in range(n)],
        "text": [f"review number {i} about tacos and the service " * 8 for i in range(n)],
        "stars": [1 + i % 5 for i in range(n)],
        "label": [("negative", "neutral", "positive")[i % 3] for i in range(n)],
    }))
    return db


def _copy(healthy: Path, tmp_path: Path) -> Path:
    target = tmp_path / "store.duckdb"
    shutil.copy(healthy, target)
    return target


def _run(*args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, *cli_cmd(*args)], capture_output=True, text=True, timeout=120)


def _assert_every_command_says(db: Path, tmp_path: Path, sentence: str, prefix: tuple[str, ...] = ()) -> None:
    csv = tmp_path / "new.csv"
    csv.write_text("review_id,text\nz1,hello\n")
    os.chmod(csv, 0o644)
    for command in COMMANDS:
        args = [a.format(csv=csv) for a in command]
        proc = _run("--db", str(db), *args, prefix=prefix)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, (command, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr and len(lines) == 1, (command, proc.stderr)
        assert lines[0].startswith("error: ") and sentence in lines[0], (command, lines)


def test_truncated_store(healthy, tmp_path):
    db = _copy(healthy, tmp_path)
    os.truncate(db, db.stat().st_size // 3)
    _assert_every_command_says(db, tmp_path, f"the store {db} is damaged: the file is shorter than its contents need")


def test_zero_byte_store(tmp_path):
    db = tmp_path / "store.duckdb"
    db.write_bytes(b"")
    _assert_every_command_says(db, tmp_path, f"{db} is not a tastebud store: the file is empty (0 bytes)")
    assert db.stat().st_size == 0  # nothing was written into it


def test_file_that_is_not_duckdb(tmp_path):
    db = tmp_path / "store.duckdb"
    db.write_text("review_id,text\n" * 1000)
    _assert_every_command_says(db, tmp_path, f"{db} is not a tastebud store: it is not a DuckDB database file")


def test_connect_never_opens_the_store_file_itself(tmp_path, monkeypatch):
    """DuckDB locks the store with POSIX fcntl locks, which a process drops when it closes *any* descriptor
    of the file: a header check that opened the file beside a live DuckDB handle let two processes write at
    once and lose a chunk (tests/test_scoring.py's concurrent shards). connect must leave the file to DuckDB."""
    import builtins

    from store.db import connect, transaction
    from store.schema import init_store

    db, _ = init_store(tmp_path / "s.duckdb")
    opened = []
    real_open, real_os_open = builtins.open, os.open
    monkeypatch.setattr(builtins, "open", lambda f, *a, **k: (opened.append(str(f)), real_open(f, *a, **k))[1])
    monkeypatch.setattr(os, "open", lambda f, *a, **k: (opened.append(str(f)), real_os_open(f, *a, **k))[1])
    with transaction(db) as con:
        con.execute("SELECT count(*) FROM reviews").fetchone()
        with connect(db) as inner:  # the same process, the same DuckDB instance
            inner.execute("SELECT 1").fetchone()
    with connect(db, read_only=True) as con:
        con.execute("SELECT 1").fetchone()
    assert str(db) not in opened


def test_data_file_named_as_store_is_not_duckdb_whatever_its_extension(tmp_path):
    """DuckDB opens a .csv, .parquet or .json "database" as an in-memory one with the file as a view:
    read-only that was a CatalogException traceback, read-write writes that vanish. tastebud reads the
    header first, so each is the same one line as any other foreign file, and the file is untouched."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from store.db import connect
    from store.errors import StoreDamagedError

    csv = tmp_path / "reviews.csv"
    csv.write_text("a,b\n1,2\n")  # shorter than a DuckDB header
    _assert_every_command_says(csv, tmp_path, f"{csv} is not a tastebud store: it is not a DuckDB database file")
    proc = _run("--db", str(csv), "aspects", "list")
    assert proc.returncode == 2 and proc.stderr == f"error: {csv} is not a tastebud store: it is not a DuckDB database file\n"
    assert csv.read_text() == "a,b\n1,2\n"
    pq.write_table(pa.table({"a": [1, 2]}), tmp_path / "t.parquet")
    (tmp_path / "t.json").write_text('{"a": 1}\n' * 100)
    for name in ("t.parquet", "t.json"):
        for read_only in (True, False):
            with pytest.raises(StoreDamagedError, match="it is not a DuckDB database file"):
                with connect(tmp_path / name, read_only=read_only):
                    pass

def test_directory_as_store(tmp_path):
    db = tmp_path / "a_directory"
    db.mkdir()
    _assert_every_command_says(db, tmp_path, f"{db} is not a tastebud store: it is a directory")


def test_duckdb_file_of_someone_else_is_never_migrated(tmp_path):
    db = tmp_path / "other.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE invoices AS SELECT 1 AS amount")
    con.close()
    _assert_every_command_says(db, tmp_path, f"{db} is not a tastebud store: it is a DuckDB file without tastebud's tables")
    con = duckdb.connect(str(db), read_only=True)
    assert [t for (t,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall()] == ["invoices"]
    con.close()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file modes, so chmod 000 cannot deny it; "
                    "test_permission_error_from_duckdb_is_one_line covers the message as root")
def test_unreadable_store(healthy, tmp_path):
    db = _copy(healthy, tmp_path)
    os.chmod(db, 0o000)
    try:
        _assert_every_command_says(db, tmp_path, f"permission denied: cannot open the store {db}")
    finally:
        os.chmod(db, 0o644)


def test_permission_error_from_duckdb_is_one_line(healthy, tmp_path, monkeypatch, capsys):
    """What DuckDB raises for an unreadable file, through the real CLI entry point (in this process)."""
    import pipeline.cli

    db = _copy(healthy, tmp_path)

    def denied(path, *args, **kwargs):
        raise duckdb.IOException(f'IO Error: Cannot open file "{path}": Permission denied')

    monkeypatch.setattr("store.db.duckdb.connect", denied)
    for command in COMMANDS[:3]:
        monkeypatch.setattr(sys, "argv", ["tastebud", "--db", str(db), *command])
        with pytest.raises(SystemExit) as exit_info:
            pipeline.cli.main()
        assert exit_info.value.code == 2
        assert capsys.readouterr().err == f"error: permission denied: cannot open the store {db}\n"


def test_check_reads_every_block_and_finds_corruption(healthy, tmp_path):
    db = _copy(healthy, tmp_path)
    ok = _run("--db", str(db), "check")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"store {db}: healthy" in ok.stdout and "orphans    none" in ok.stdout
    assert "reviews           20,000" in ok.stdout
    size = db.stat().st_size
    rng = random.Random(3)
    with open(db, "r+b") as f:  # scribble over the middle of the file, where the review texts live
        for at in (size // 3, size // 2, 2 * size // 3):  # several places: one may fall in a free block
            f.seek(at)
            f.write(bytes(rng.randrange(256) for _ in range(64 * 1024)))
    bad = _run("--db", str(db), "check")
    assert bad.returncode == 2, bad.stdout + bad.stderr
    assert "Traceback" not in bad.stderr
    assert "DAMAGED" in bad.stdout or "is damaged" in bad.stderr
    assert "checksum" in bad.stdout + bad.stderr


def test_check_finds_orphans_and_duplicates(healthy, tmp_path):
    db = _copy(healthy, tmp_path)
    with transaction(db) as con:
        con.execute("DELETE FROM reviews WHERE review_id IN ('r1', 'r2')")
        con.execute("INSERT INTO reviews SELECT * FROM reviews WHERE review_id = 'r3'")
    proc = _run("--db", str(db), "check", "--json")
    assert proc.returncode == 2, proc.stderr
    import json

    report = json.loads(proc.stdout)
    assert report["healthy"] is False
    assert report["orphans"]["labels"] == 2 and report["orphans"]["splits"] == 2
    assert report["duplicate_review_ids"] == 1
    assert "2 labels row(s) belong to reviews that are not in the store" in report["problems"]


def test_check_on_a_missing_store_is_one_line(tmp_path):
    proc = _run("--db", str(tmp_path / "nope.duckdb"), "check")
    assert proc.returncode == 2 and proc.stderr.strip().startswith("error: no store at")


@pytest.mark.parametrize("command", [["train"], ["train", "--task", "aspects"], ["flag"], ["promote", "m1"],
                                     ["undo"], ["aspects", "set", "r1", "food=positive"],
                                     ["aspects", "remove", "wait"]])
def test_writing_commands_on_a_missing_store_are_one_line_and_leave_no_file(tmp_path, command):
    # A mistyped --db used to leave an empty DuckDB file behind and call it "not a tastebud store".
    missing = tmp_path / "typo.duckdb"
    proc = _run("--db", str(missing), *command)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == f"error: no store at {missing}: run `tastebud init` or `tastebud demo-data` first"
    assert not missing.exists()


LOCK_HOLDER = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""


def test_busy_store_is_one_line_without_the_other_process(healthy, tmp_path):
    db = _copy(healthy, tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(db), "30"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        env = {**os.environ, "TASTEBUD_LOCK_TIMEOUT": "1"}
        proc = subprocess.run(cli_cmd("--db", str(db), "stats"), capture_output=True, text=True, env=env, timeout=60)
        assert proc.returncode == 2
        assert proc.stderr.strip() == (
            f"error: the store {db} is busy: another process kept it locked; try again when it finishes")
        assert str(holder.pid) not in proc.stderr
    finally:
        holder.kill()
        holder.wait()
