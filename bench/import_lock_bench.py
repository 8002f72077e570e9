"""How long does a large import keep other processes out of the store?

Generates a synthetic review CSV (``import_bench.generate_csv``, default 1M rows), then runs
``tastebud import`` in a child process while this process probes the store: it tries a
read-write open every few milliseconds (plain DuckDB, as any other writer would) and records
the longest stretch during the import in which no open succeeded. That stretch is the
longest time another writer (a score job, a dashboard relabel) had to wait. While refused it
touches ``<store>.waiting`` as tastebud's own connections do, so a chunked import pauses for it.

``--code DIR`` runs the import with another checkout's code (e.g. the commit before chunked
imports, unpacked with ``git archive``), so before and after are measured the same way.

Run: PYTHONPATH=. python bench/import_lock_bench.py [--rows 1000000] [--code DIR] [--csv PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.import_bench import generate_csv  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# Seconds between two open attempts of the probe.
PROBE_INTERVAL_S = 0.005


def probe_while(proc: subprocess.Popen, db: Path) -> dict:
    """Open/close ``db`` read-write in a loop until ``proc`` exits; the longest gap between two successful opens."""
    last_ok, longest, opens, failures = time.monotonic(), 0.0, 0, 0
    waiting = Path(f"{db}.waiting")
    while proc.poll() is None:
        try:
            con = duckdb.connect(str(db))
            con.close()
        except duckdb.Error:
            failures += 1
            waiting.touch()  # as tastebud's own connections do while they wait (store.db.waiting_marker)
        else:
            now = time.monotonic()
            longest = max(longest, now - last_ok)
            last_ok, opens = now, opens + 1
        time.sleep(PROBE_INTERVAL_S)
    longest = max(longest, time.monotonic() - last_ok)  # a hold that lasted until the import exited
    return {"longest_wait_s": round(longest, 2), "probe_opens": opens, "probe_refusals": failures}


def measure(code: Path, csv: Path, workdir: Path) -> dict:
    db = workdir / f"store-{code.name}.duckdb"
    env = {**os.environ, "PYTHONPATH": str(code)}
    subprocess.run([sys.executable, "-m", "pipeline.cli", "--db", str(db), "init"], env=env, check=True,
                   capture_output=True, cwd=code)
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "--db", str(db), "import", str(csv), "--json"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=code)
    # The import parses for a while with no store open; only count from the first refused open.
    result = probe_while(proc, db)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"import failed: {err}")
    report = json.loads(out)
    return {"code": str(code), "rows": report["rows"], "accepted": report["accepted"],
            "import_wall_s": round(time.monotonic() - t0, 1), "parse_s": report["parse_seconds"],
            "write_s": report["write_seconds"], "chunks": report.get("chunks", 1), **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--code", type=Path, action="append", help="checkout(s) to run the import with")
    parser.add_argument("--csv", type=Path, help="reuse this CSV instead of generating one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tastebud-lock-bench-") as tmp:
        work = Path(tmp)
        csv = args.csv or work / "reviews.csv"
        if not args.csv:
            generate_csv(csv, args.rows)
        for code in args.code or [REPO]:
            print(json.dumps(measure(code.resolve(), csv, work)), flush=True)


if __name__ == "__main__":
    main()
