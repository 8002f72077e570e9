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
    """Open/close ``db`` read-write in a loop until ``proc`` exits; the gaps between two successful opens
    (longest, 95th percentile, how many over 2 s) and the 1-minute load average at the end."""
    last_ok, opens, failures, gaps = time.monotonic(), 0, 0, []
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
            gaps.append(now - last_ok)
            last_ok, opens = now, opens + 1
        time.sleep(PROBE_INTERVAL_S)
    gaps.append(time.monotonic() - last_ok)  # a hold that lasted until the import exited
    gaps.sort()
    return {"longest_wait_s": round(gaps[-1], 2), "p95_wait_s": round(gaps[int(0.95 * (len(gaps) - 1))], 2),
            "waits_over_2s": sum(g > 2.0 for g in gaps), "probe_opens": opens, "probe_refusals": failures,
            "load_avg_1m": round(os.getloadavg()[0], 1)}


def measure(code: Path, csv: Path, workdir: Path, run: int = 0) -> dict:
    db = workdir / f"store-{run}-{code.name}.duckdb"  # a fresh store per run, even when a checkout repeats
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
    return {**_store_shape(db), "code": str(code), "rows": report["rows"], "accepted": report["accepted"],
            "import_wall_s": round(time.monotonic() - t0, 1), "parse_s": report["parse_seconds"],
            "write_s": report["write_seconds"], "chunks": report.get("chunks", 1),
            "longest_chunk_s": report.get("longest_chunk_seconds"), **result}


def _store_shape(db: Path) -> dict:
    """Size, reviews' row groups and one full scan of the texts: what fewer, smaller merges cost readers."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        groups = con.execute("SELECT count(DISTINCT row_group_id) FROM pragma_storage_info('reviews')").fetchone()[0]
        t0 = time.perf_counter()
        con.execute("SELECT sum(length(text)) FROM reviews").fetchone()
        scan = time.perf_counter() - t0
    finally:
        con.close()
    return {"store_mb": round(db.stat().st_size / 2**20), "review_row_groups": groups, "text_scan_s": round(scan, 2)}


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
        for run, code in enumerate(args.code or [REPO]):
            print(json.dumps(measure(code.resolve(), csv, work, run)), flush=True)


if __name__ == "__main__":
    main()
