"""`tastebud demo`, the README's main command, end to end on a tiny store with a tiny model."""

from __future__ import annotations

import subprocess
import tomllib

import pytest

from conftest import cli_cmd
from store.db import connect
from store.models import get_champion
from tests.tiny_model import save_tiny_classifier
from training_helpers import SUBPROCESS_ENV


@pytest.mark.slow
def test_demo_builds_the_whole_loop_then_finds_it_ready(tmp_path):
    db = tmp_path / "demo.duckdb"
    tiny = save_tiny_classifier(tmp_path / "tiny")
    demo = cli_cmd("--db", str(db), "demo", "--rows", "300", "--epochs", "1", "--base-model", str(tiny), "--no-launch")
    first = subprocess.run(demo, capture_output=True, text=True, timeout=300, env=SUBPROCESS_ENV)
    assert first.returncode == 0, first.stderr
    assert "demo store ready: 300 reviews, champion ft-" in first.stdout
    for role in ("viewer", "labeler", "data scientist"):
        assert f"  {role:<15} user demo-" in first.stdout

    with connect(db, read_only=True) as con:
        champion = get_champion(con)
        scored = dict(con.execute("SELECT model_id, count(*) FROM predictions GROUP BY 1").fetchall())
        splits = dict(con.execute("SELECT split, count(*) FROM splits GROUP BY 1").fetchall())
        evaluated = {m for (m,) in con.execute("SELECT DISTINCT model_id FROM evaluations").fetchall()}
    assert champion["model_id"].startswith("ft-") and champion["params"]["base_model"] == str(tiny)
    assert scored == {champion["model_id"]: 300, "baseline-vader": 300}
    assert sum(splits.values()) == 300 and splits["train"] == 240 and min(splits.values()) >= 25
    assert {champion["model_id"], "baseline-vader"} <= evaluated
    accounts = tomllib.loads((tmp_path / "demo-secrets.toml").read_text())["accounts"]
    assert {a["role"] for a in accounts.values()} == {"viewer", "labeler", "data_scientist"}

    again = subprocess.run(demo, capture_output=True, text=True, timeout=120, env=SUBPROCESS_ENV)
    assert again.returncode == 0, again.stderr
    assert f"demo store at {db} is ready" in again.stdout and "building" not in again.stdout
    assert (tmp_path / "demo-logins.txt").read_text().split()[1] in again.stdout  # the same logins again
