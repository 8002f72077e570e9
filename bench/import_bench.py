"""Benchmark `tastebud import` against row-by-row INSERTs, measured in one run.

Generates a synthetic review CSV (default 1M rows, a few texts with quoted paragraphs and
a few bad rows), imports it with :func:`pipeline.data.importer.import_reviews` into a fresh
store (parse, validate, write, labels, splits: the whole import) and times a re-import
of the same file (every row unchanged). The baseline parses the first ``--baseline-rows``
rows with Python's csv module and writes each review and its label with single-row
INSERTs (executemany) into a fresh store of the same schema; its rate is extrapolated to
the full file and printed as such.

Run: PYTHONPATH=. python bench/import_bench.py [--rows 1000000] [--baseline-rows 20000]
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.data.importer import import_reviews  # noqa: E402
from store.actors import cli_actor  # noqa: E402
from store.constants import label_from_stars  # noqa: E402
from store.db import transaction  # noqa: E402
from store.schema import init_store  # noqa: E402

_WORDS = (
    "the food was great good bad terrible slow service friendly staff tacos pizza burger brunch "
    "coffee wait table waiter menu price cheap pricey fresh cold hot spicy sweet sour portion "
    "small huge loved hated okay fine again never always dinner lunch patio music loud quiet "
    "clean dirty rude kind chef special dessert cake wine beer cocktail happy hour parking line"
).split()


def generate_csv(path: Path, rows: int, *, long_texts: bool = False) -> None:
    """Write ``rows`` synthetic reviews built from a seeded phrase pool (hash-based, deterministic).

    Texts are 1-9 phrases (mean ~200 characters, near the demo data's ~150 and short of Yelp's
    ~700); ``long_texts`` makes them 4-36 phrases (~700, Yelp-like). About 5% carry a quoted
    paragraph break, 0.1% have 9 stars and 0.1% an empty text (both must be rejected).
    """
    lo, spread = (4, 33) if long_texts else (1, 9)
    con = duckdb.connect()
    con.execute(
        """
        CREATE TABLE pool AS
        SELECT list(array_to_string(list_transform(range(3 + (hash(i * 5) % 8)::INT),
                    x -> ($words::VARCHAR[])[1 + (hash(i * 131 + x) % $n)::INT]), ' ')) AS phrases
        FROM range(20000) t(i)
        """,
        {"words": list(_WORDS), "n": len(_WORDS)},
    )
    con.execute(
        """
        CREATE TABLE gen AS
        WITH base AS (
            SELECT i, hash(i * 17) % 1000 AS kind,
                   array_to_string(list_transform(range($lo + (hash(i * 13) % $spread)::INT),
                       x -> phrases[1 + (hash(i * 31 + x) % 20000)::INT]), '. ') || '.' AS txt
            FROM range($rows) t(i), pool
        )
        SELECT 'r' || i AS review_id,
               'b' || (hash(i * 3) % 5000) AS business_id,
               'Restaurant ' || (hash(i * 3) % 5000) AS name,
               'Hood ' || (hash(i * 3) % 40) AS neighborhood,
               strftime(TIMESTAMP '2020-01-01' + to_seconds((hash(i * 11) % 157680000)::BIGINT),
                        '%Y-%m-%d %H:%M:%S') AS date,
               CASE WHEN kind = 0 THEN '9' ELSE (1 + hash(i * 7) % 5)::VARCHAR END AS stars,
               CASE WHEN kind = 1 THEN ''
                    WHEN kind < 50 THEN txt || E'\n\n"Really," she said, "the ' || split_part(txt, ' ', 2) || '."'
                    ELSE txt END AS text
        FROM base ORDER BY i
        """,
        {"rows": rows, "lo": lo, "spread": spread},
    )
    con.table("gen").write_csv(str(path), header=True)
    con.close()


def run_ours(db: Path, csv_path: Path) -> tuple[float, float, object]:
    """Wall and CPU seconds (this process, all threads) of one import, and its report."""
    t, c = time.perf_counter(), time.process_time()
    report = import_reviews(db, csv_path, actor=cli_actor())
    return time.perf_counter() - t, time.process_time() - c, report



def run_baseline(db: Path, csv_path: Path, rows: int) -> float:
    """Python csv parse + single-row INSERTs of each review and its label (executemany)."""
    init_store(db)
    t = time.perf_counter()
    now = datetime.now()
    reviews, labels = [], []
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        for i, row in enumerate(reader):
            if i >= rows:
                break
            text = row["text"]
            try:
                stars = int(row["stars"])
            except ValueError:
                continue
            if not text.strip() or not 1 <= stars <= 5:
                continue
            created = datetime.strptime(row["date"], "%Y-%m-%d %H:%M:%S")
            reviews.append((row["review_id"], row["business_id"], row["name"], row["neighborhood"], created,
                            stars, text, "bench", str(hash(text)), now))
            labels.append((row["review_id"], label_from_stars(stars), "stars", now))
    with transaction(db) as con:
        con.executemany(
            "INSERT INTO reviews (review_id, restaurant_id, restaurant_name, neighborhood, created_at, stars, text,"
            " source, content_hash, ingested_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            reviews,
        )
        con.executemany("INSERT INTO labels (review_id, label, source, created_at) VALUES (?, ?, ?, ?)", labels)
    return time.perf_counter() - t


def run_reference(db: Path, csv_path: Path) -> tuple[float, float]:
    """DuckDB alone: one INSERT INTO reviews SELECT FROM read_csv (no validation, rejects, labels or splits)."""
    init_store(db)
    t, c = time.perf_counter(), time.process_time()
    with transaction(db) as con:
        con.execute(
            """
            INSERT INTO reviews
            SELECT review_id, business_id, name, neighborhood, TRY_CAST(date AS TIMESTAMP), TRY_CAST(stars AS TINYINT),
                   text, 'bench', md5(text), now()::TIMESTAMP, NULL
            FROM read_csv(?, header = true, all_varchar = true)
            WHERE text <> '' AND TRY_CAST(stars AS TINYINT) BETWEEN 1 AND 5
            """,
            [str(csv_path)],
        )
    return time.perf_counter() - t, time.process_time() - c


def _pressure() -> str:
    """Load average and Linux CPU pressure (share of time some task waited for a CPU), for context."""
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    try:
        with open("/proc/pressure/cpu") as f:
            some = f.readline().split()[1].split("=")[1]
        return f"load average {load}, cpu pressure {some}% (other processes share the cores)"
    except OSError:
        return f"load average {load}"


def _fresh(work: Path, name: str) -> Path:
    for leftover in work.glob(f"{name}.duckdb*"):
        leftover.unlink()
    return work / f"{name}.duckdb"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--baseline-rows", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=3, help="Fresh imports (and references) to run; best is reported.")
    ap.add_argument("--long", action="store_true", help="Yelp-length texts (~700 characters) instead of ~200.")
    ap.add_argument("--workdir", type=Path, default=None, help="Where to write the CSV and stores (default: temp).")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="tastebud-import-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    csv_path = work / "reviews.csv"
    try:
        t = time.perf_counter()
        generate_csv(csv_path, args.rows, long_texts=args.long)
        size_mb = csv_path.stat().st_size / 1e6
        print(f"generated {args.rows:,} rows, {size_mb:,.0f} MB in {time.perf_counter() - t:.1f} s -> {csv_path}")
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
              f"python {platform.python_version()}, duckdb {duckdb.__version__}")
        print(f"before: {_pressure()}")

        # Ours and the DuckDB-only reference alternate, so both meet similar load from other processes.
        ours, refs = [], []
        for i in range(args.repeats):
            seconds, cpu, report = run_ours(_fresh(work, "ours"), csv_path)
            ours.append((seconds, cpu, report))
            print(f"  run {i + 1}: ours {seconds:6.2f} s (cpu {cpu:.2f} s; parse+validate "
                  f"{report.parse_seconds:.2f} s, write {report.write_seconds:.2f} s)", end="")
            ref_s, ref_cpu = run_reference(_fresh(work, "reference"), csv_path)
            refs.append((ref_s, ref_cpu))
            print(f"   reference {ref_s:6.2f} s (cpu {ref_cpu:.2f} s)")
        seconds, cpu, report = min(ours, key=lambda r: r[0])
        print(
            f"ours     import (fresh store), best of {args.repeats}: {seconds:6.2f} s  {args.rows / seconds:>10,.0f} "
            f"reviews/s  ({size_mb / seconds:,.0f} MB/s; cpu {cpu:.2f} s)"
        )
        print(f"         accepted {report.accepted:,}  rejected {report.rejected:,} {report.rejected_by_reason}  "
              f"labels {report.labels_added:,}  splits {report.splits}")
        seconds2, cpu2, report2 = run_ours(work / "ours.duckdb", csv_path)
        print(f"ours     re-import (all unchanged): {seconds2:6.2f} s  {args.rows / seconds2:>10,.0f} reviews/s  "
              f"(unchanged {report2.unchanged:,}, accepted {report2.accepted:,}, "
              f"labels added {report2.labels_added:,}; cpu {cpu2:.2f} s)")
        ref_s, ref_cpu = min(refs)
        print(f"reference: DuckDB INSERT INTO reviews SELECT FROM read_csv (no checks/rejects/labels/splits), "
              f"best of {args.repeats}: {ref_s:6.2f} s  {args.rows / ref_s:>10,.0f} reviews/s  (cpu {ref_cpu:.2f} s)")

        base_rows = min(args.baseline_rows, args.rows)
        base_s = run_baseline(_fresh(work, "baseline"), csv_path, base_rows)
        rate = base_rows / base_s
        print(
            f"baseline row-by-row INSERT (executemany, reviews+labels): {base_rows:,} rows in {base_s:.2f} s = "
            f"{rate:,.0f} reviews/s; EXTRAPOLATED to {args.rows:,} rows: {args.rows / rate:,.0f} s"
        )
        print(f"speed-up (best fresh import vs baseline rate): {args.rows / seconds / rate:,.1f}x")
        print(f"after: {_pressure()}")
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
