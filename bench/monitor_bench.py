"""Monitoring benchmarks: the shift detector's hits and false alarms on the demo stream, and the
time from `tastebud demo` to a dashboard that answers.

    python bench/monitor_bench.py shifts [--db STORE_WITH_A_CHAMPION]
    python bench/monitor_bench.py demo [--no-bf16]

``shifts`` builds the default demo stream (4,000 reviews, star labels) in a temporary store, or
reads ``--db`` with the champion's predictions, and counts at week and month grain: scripted
collapse periods of Magnolia Table detected (hits), and group-periods flagged outside the
scripted event (false alarms; the collapse also shows in its neighbourhood, Inman Park, which
counts as the event). ``demo`` runs `tastebud demo` on a fresh store in a temporary directory and
reports the seconds until the dashboard's health endpoint answers (the background fine-tune
starts only after that, so it is left out with --no-finetune).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.data.demo_data import DEFAULT_START, demo_events, load_demo_data  # noqa: E402
from pipeline.monitor.shifts import ShiftSettings, detect_shifts, marked_shifts  # noqa: E402
from store.db import connect  # noqa: E402
from store.models import get_champion  # noqa: E402
from store.shifts import fetch_group_period_counts, newest_review_date  # noqa: E402
from store.trends import SentimentSource, resolve_sentiment_source  # noqa: E402


def cpu_model() -> str:
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def scripted_periods(grain: str) -> set[pd.Timestamp]:
    events = demo_events().as_dict(DEFAULT_START)
    start, end = date.fromisoformat(events["collapse_start"]), date.fromisoformat(events["collapse_end"])
    days = [start + timedelta(days=i) for i in range((end - start).days)]
    if grain == "week":
        return {pd.Timestamp(d - timedelta(days=d.weekday())) for d in days}
    return {pd.Timestamp(d.replace(day=1)) for d in days}


def shift_counts(db: Path, grain: str) -> dict:
    with connect(db, read_only=True) as con:
        champion = get_champion(con)
        source = resolve_sentiment_source(con, champion["model_id"]) if champion else SentimentSource("labels")
        counts = fetch_group_period_counts(con, source, grain=grain)
        newest = newest_review_date(con)
    started = time.perf_counter()
    result = detect_shifts(counts, ShiftSettings(grain=grain), newest=newest)
    seconds = time.perf_counter() - started
    marked = marked_shifts(result)
    scripted = scripted_periods(grain)
    magnolia = marked[(marked["by"] == "restaurant") & (marked["grp"] == "Magnolia Table")]
    event = marked["period"].isin(scripted) & marked["grp"].isin(["Magnolia Table", "Inman Park"])
    tested = result[(result["grp"] == "Magnolia Table") & result["period"].isin(scripted) & result["p_sentiment"].notna()]
    return {
        "grain": grain, "source": source.model_id or "current labels (stars)",
        "scripted_periods": len(scripted), "testable_scripted": len(tested),
        "hits": int(magnolia["period"].isin(scripted).sum()),
        "false_alarms": int((~event).sum()), "tests": int(result["p_sentiment"].notna().sum() + result["p_volume"].notna().sum()),
        "seconds": round(seconds, 2),
    }


def bench_shifts(db: str | None) -> None:
    if db is None:
        tmp = Path(tempfile.mkdtemp()) / "demo.duckdb"
        load_demo_data(tmp)
        path = tmp
    else:
        path = Path(db)
    for grain in ("week", "month"):
        print(shift_counts(path, grain))


def bench_demo(bf16: bool) -> None:
    work = Path(tempfile.mkdtemp())
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if not bf16:
        env["TASTEBUD_CPU_BF16"] = "0"
    argv = [sys.executable, "-m", "pipeline.cli", "--db", str(work / "demo.duckdb"), "demo", "--port", "8799",
            "--no-finetune"]
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    answered = None
    try:
        for line in proc.stdout:
            if line.startswith("dashboard: "):
                answered = time.perf_counter() - started
                break
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    print({"cpu": cpu_model(), "cores": os.cpu_count(), "bf16": bf16, "seconds_to_dashboard": round(answered or -1, 1),
           "load_average_at_end": load})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    shifts = sub.add_parser("shifts")
    shifts.add_argument("--db", help="a store with a champion (default: a fresh demo store, star labels)")
    demo = sub.add_parser("demo")
    demo.add_argument("--no-bf16", action="store_true", help="run as on a CPU without AMX (TASTEBUD_CPU_BF16=0)")
    args = parser.parse_args()
    if args.what == "shifts":
        bench_shifts(args.db)
    else:
        bench_demo(not args.no_bf16)


if __name__ == "__main__":
    main()
