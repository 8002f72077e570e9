"""Timings behind the data scientist's pages (issue 8 sections 3-5, issue 9 section 5).

Measures, on a demo store of N reviews: the quick preview and the full dry run of an N-row CSV
(the importer's own checks), the time the Data page waits to start an import job (against the
import itself, which used to block the page), CSV/Parquet export, `tastebud jobs`, and one
"Try a review" prediction with a MiniLM classifier kept loaded (median of 20).

    python bench/data_pages_bench.py --rows 100000
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.data.demo_data import generate_reviews, load_demo_data  # noqa: E402
from pipeline.data.export import export_bytes, export_table  # noqa: E402
from pipeline.data.preview import dry_run  # noqa: E402
from pipeline.jobs import start_job, wait_for_job  # noqa: E402
from store.actors import cli_actor  # noqa: E402
from store.schema import init_store  # noqa: E402


def _timed(fn):
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        db, _ = init_store(tmp / "store.duckdb")
        load_demo_data(db, rows=args.rows)
        csv = tmp / "upload.csv"
        generate_reviews(args.rows, seed=99).select(["review_id", "text", "stars", "created_at"]).to_pandas() \
            .assign(review_id=lambda f: "up-" + f["review_id"]).to_csv(csv, index=False)
        preview, t_preview = _timed(lambda: dry_run(csv, head_only=True))
        full, t_dry = _timed(lambda: dry_run(csv))
        print(f"preview (first 200 lines): {t_preview:.2f} s; dry run of {full.rows:,} rows: {t_dry:.2f} s "
              f"({full.accepted:,} would be accepted)")
        job_id, t_start = _timed(lambda: start_job(db, "import", {"path": str(csv), "score_after": False}, cli_actor()))
        job, t_job = _timed(lambda: wait_for_job(db, job_id, timeout_s=600))
        print(f"import as a job: the page waits {t_start * 1000:.0f} ms to start it; the job took {t_job:.1f} s "
              f"({job['status']})")
        (table, _), t_read = _timed(lambda: export_table(db))
        _, t_csv = _timed(lambda: export_bytes(table, "csv"))
        _, t_pq = _timed(lambda: export_bytes(table, "parquet"))
        print(f"export of {table.num_rows:,} reviews: read {t_read:.2f} s, CSV {t_csv:.2f} s, Parquet {t_pq:.2f} s")
        cmd = [sys.executable, "-m", "pipeline.cli", "--db", str(db), "jobs"]
        _, t_cli = _timed(lambda: subprocess.run(cmd, check=True, capture_output=True))
        print(f"`tastebud jobs` (whole command, new interpreter): {t_cli:.2f} s")
    from pipeline.models.inference import ClassifierPredictor
    from pipeline.models.loading import default_base_model

    predictor, t_load = _timed(lambda: ClassifierPredictor(str(default_base_model())))
    review = ("Oh great, another 45-minute wait for lukewarm grits. The server was friendly enough but the kitchen "
              "clearly forgot us, and when the food came the biscuits were cold. Just what I wanted on a Sunday.")
    times = [_timed(lambda: predictor.predict_proba([review]))[1] for _ in range(21)][1:]
    print(f"Try a review: model load {t_load:.2f} s once per process; one review median {statistics.median(times) * 1000:.0f} ms "
          f"(max {max(times) * 1000:.0f} ms, 20 runs)")


if __name__ == "__main__":
    main()
