"""The dashboard against odd stored rows and damaged or busy stores (issue 9, sections 1 and 6):
every page renders without a traceback; a store that cannot be read is one sentence in a banner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard_seed import private_copy, seed_dashboard_store, signed_in
from store.db import connect, transaction
from store.schema import init_store

SCREENS = (("vera", "overview"), ("vera", "trends"), ("vera", "comparison"),
           ("dario", "hard_cases"), ("dario", "training"), ("dario", "data"))


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> Path:
    db, _ = init_store(tmp_path_factory.mktemp("robust") / "store.duckdb")
    seed_dashboard_store(db)
    return db


@pytest.fixture
def store(seeded, tmp_path, monkeypatch) -> Path:
    return private_copy(seeded, tmp_path, monkeypatch)


def _signed_in(username: str) -> AppTest:
    return signed_in(username)


def _seed_odd_rows(db: Path) -> None:
    """Rows the importer refuses, written straight into the store with SQL."""
    with transaction(db) as con:
        ids = [r for (r,) in con.execute("SELECT review_id FROM reviews ORDER BY review_id LIMIT 4").fetchall()]
        for review_id, when in zip(ids, ["infinity", "-infinity", "0044-03-15 (BC)", "9999-12-31"]):
            con.execute("UPDATE reviews SET created_at = ?::TIMESTAMP WHERE review_id = ?", [when, review_id])
        con.execute(
            """
            INSERT INTO reviews
            SELECT 'odd-text', restaurant_id, NULL, NULL, TIMESTAMP '0001-01-01', NULL,
                   chr(0) || chr(27) || '[2J' || repeat(chr(65533), 5000), source, md5('odd'), ingested_at, NULL
            FROM reviews LIMIT 1
            """
        )
        con.execute("INSERT INTO flags (review_id, reason, priority, status, created_at) "
                    "VALUES ('odd-text', 'low_confidence', 0.99, 'open', now())")


@pytest.mark.parametrize(("username", "screen"), SCREENS)
def test_every_page_survives_odd_stored_rows(store, username, screen):
    _seed_odd_rows(store)
    at = _signed_in(username)
    at.switch_page(f"screens/{screen}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_trend_date_range_ignores_implausible_dates(store):
    with connect(store, read_only=True) as con:
        first, last = con.execute("SELECT min(created_at), max(created_at) FROM reviews").fetchone()
    _seed_odd_rows(store)
    at = _signed_in("vera")
    at.switch_page("screens/trends.py").run()
    assert not at.exception
    shown = [d.value for d in at.date_input]
    assert shown, "the trends page shows a date range"
    low, high = shown[0] if isinstance(shown[0], tuple) else (shown[0], shown[-1])
    assert low.year >= first.year - 1 and high.year <= last.year + 1


def _damage(db: Path, how: str) -> None:
    if how == "truncated":
        os.truncate(db, db.stat().st_size // 3)
    elif how == "zero-byte":
        db.write_bytes(b"")
    elif how == "not-duckdb":
        db.write_text("this is not a database\n" * 500)
    wal = Path(f"{db}.wal")
    if wal.exists():
        wal.unlink()


@pytest.mark.parametrize(("how", "sentence"), [
    ("truncated", "the store {db} is damaged: the file is shorter than its contents need (truncated)"),
    ("zero-byte", "{db} is not a tastebud store: the file is empty (0 bytes)"),
    ("not-duckdb", "{db} is not a tastebud store: it is not a DuckDB database file"),
])
def test_damaged_store_is_a_banner_not_a_traceback(store, how, sentence):
    at = _signed_in("vera")
    at.switch_page("screens/overview.py").run()
    assert not at.exception and [m.label for m in at.metric]  # a normal Overview first
    _damage(store, how)
    at.switch_page("screens/trends.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert [e.value for e in at.error] == [sentence.format(db=store)]
    at.switch_page("screens/overview.py").run()  # cached numbers are not shown for a damaged store
    assert not at.exception and not at.metric and len(at.error) == 1


LOCK_HOLDER = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("locked", flush=True)
time.sleep(60)
"""


def test_busy_store_is_a_banner_without_pids_or_tracebacks(store, monkeypatch):
    at = _signed_in("dario")
    monkeypatch.setattr("store.db._lock_timeout_override", 0.5)
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(store)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        at.switch_page("screens/training.py").run()
        assert not at.exception, [e.value for e in at.exception]
        errors = [e.value for e in at.error]
        assert errors == [f"the store {store} is busy: another process kept it locked; try again when it finishes"]
        assert str(holder.pid) not in errors[0]
    finally:
        holder.kill()
        holder.wait()
