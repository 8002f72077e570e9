"""Two real OS processes (spawned, not forked) write and read one store at the same time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from store.db import connect

WORKER = Path(__file__).with_name("concurrency_worker.py")
REPO = WORKER.parents[1]


def test_two_processes_read_and_write_without_errors_or_lost_writes(store_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), env_path] if (env_path := os.environ.get("PYTHONPATH")) else [str(REPO)]))
    batches, per_batch = 40, 25
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(store_path), name, str(batches), str(per_batch)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        for name in ("alpha", "beta")
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err
        assert "Error" not in err, err
        assert json.loads(out)["reads"] == batches
    with connect(store_path, read_only=True) as con:
        per_source = dict(con.execute("SELECT source, count(*) FROM reviews GROUP BY 1").fetchall())
        labels = con.execute("SELECT count(*) FROM labels WHERE source = 'human'").fetchone()[0]
    assert per_source == {"alpha": batches * per_batch, "beta": batches * per_batch}
    assert labels == 2 * batches * per_batch


def test_reader_waits_out_a_writer_holding_the_lock(store_path):
    # A child holds the write lock for a moment; our read-only connect must wait, then succeed.
    code = (
        "import sys, time; from store.db import transaction\n"
        "with transaction(sys.argv[1]) as con:\n"
        "    print('locked', flush=True); time.sleep(1.5)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    child = subprocess.Popen([sys.executable, "-c", code, str(store_path)], stdout=subprocess.PIPE, text=True, env=env)
    assert child.stdout.readline().strip() == "locked"
    with connect(store_path, read_only=True, timeout_s=30) as con:
        assert con.execute("SELECT count(*) FROM reviews").fetchone()[0] == 0
    assert child.wait(timeout=30) == 0


def test_lock_timeout_is_a_clear_error(store_path):
    import pytest

    from store.errors import StoreBusyError

    code = (
        "import sys, time; from store.db import transaction\n"
        "with transaction(sys.argv[1]) as con:\n"
        "    print('locked', flush=True); time.sleep(4)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    child = subprocess.Popen([sys.executable, "-c", code, str(store_path)], stdout=subprocess.PIPE, text=True, env=env)
    assert child.stdout.readline().strip() == "locked"
    with pytest.raises(StoreBusyError, match="is busy: another process kept it locked; try again when it finishes"):
        with connect(store_path, timeout_s=0.5):
            pass
    child.wait(timeout=30)
