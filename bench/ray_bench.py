"""Scaling out: local scoring vs scoring through Ray, and the store's Parquet export/ingest throughput.

One run, same store contents, same model, same machine:

1. Parquet exchange: export every review of an N-review store as Parquet shards (what `score --ray` ships
   to the cluster) and ingest N predictions back (what it stores), in rows/s. Goal: >= 200,000 rows/s each
   way, so the store never limits a cluster.
2. Scoring: `tastebud score` locally vs `tastebud score --ray` on a local Ray instance with one actor per
   CPU (on 2 cores Ray cannot win; the point is how much it costs), reported as reviews/s and the overhead
   ratio. Two copies of the same store, so each path scores everything.

    python bench/ray_bench.py --reviews 1000000 --score-reviews 20000
    python bench/ray_bench.py --device cuda --score-reviews 300000   # on a GPU machine: one GPU actor

The scoring model is the packaged MiniLM encoder with a fresh classification head (timings are valid,
predictions are not meaningful), truncated at 128 tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _store(path: Path, rows: int) -> Path:
    from pipeline.data.demo_data import load_demo_data
    from store.schema import init_store

    db, _ = init_store(path)
    load_demo_data(db, rows=rows, seed=7)
    return db


def _register(db: Path, model_dir: Path) -> None:
    from store import models as model_store
    from store.actors import cli_actor
    from store.db import transaction

    with transaction(db) as con:
        model_store.register_model(con, model_id="bench", kind="finetuned", name="bench", path=str(model_dir),
                                   params={"max_length": 128})
        model_store.promote_model(con, cli_actor(), "bench")


def _fresh_head_model(out: Path) -> Path:
    from pipeline.models.loading import default_base_model, load_classifier, save_classifier

    model, tokenizer = load_classifier(default_base_model())
    return save_classifier(model, tokenizer, out, {"max_length": 128, "note": "benchmark: fresh head"})


def exchange(work: Path, rows: int) -> dict:
    """Export all reviews of a ``rows``-review store as Parquet, then ingest ``rows`` predictions back."""
    import numpy as np
    import pyarrow as pa

    import pyarrow.parquet as pq

    from pipeline.scale.ray_score import ingest_prediction_dir
    from store.db import connect
    from store.exchange import export_pending_reviews

    db = _store(work / "exchange.duckdb", rows)
    started = time.perf_counter()
    with connect(db, read_only=True) as con:
        exported = export_pending_reviews(con, "bench", work / "export")
    export_s = time.perf_counter() - started
    ids = pa.concat_tables([pa.parquet.read_table(f, columns=["review_id"]) for f in exported["files"]])["review_id"]
    rng = np.random.default_rng(0)
    probs = rng.dirichlet([1, 1, 1], size=len(ids)).astype(np.float32)
    table = pa.table({"review_id": ids, "p_negative": probs[:, 0], "p_neutral": probs[:, 1], "p_positive": probs[:, 2]})
    shards = work / "predictions"
    shards.mkdir()
    for offset in range(0, table.num_rows, 50_000):  # 50k-row shards, as the Ray workers write them
        pq.write_table(table.slice(offset, 50_000), shards / f"part-{offset // 50_000:05d}.parquet")
    started = time.perf_counter()
    written = ingest_prediction_dir(db, "bench", shards)  # what `score --ray` runs: reads each shard and stores it
    ingest_s = time.perf_counter() - started
    return {"rows": rows, "export_rows_per_s": round(exported["rows"] / export_s),
            "ingest_rows_per_s": round(written / ingest_s), "export_s": round(export_s, 2),
            "ingest_s": round(ingest_s, 2), "files": len(exported["files"])}


def scoring(work: Path, rows: int, device: str) -> dict:
    """`score` locally and `score --ray` on copies of the same store."""
    from pipeline.loop.scoring import score
    from pipeline.scale.ray_score import score_on_ray

    if device:
        os.environ["TASTEBUD_DEVICE"] = device
    local_db = _store(work / "local.duckdb", rows)
    model_dir = _fresh_head_model(work / "model")
    _register(local_db, model_dir)
    ray_db = work / "ray.duckdb"
    shutil.copy(local_db, ray_db)
    started = time.perf_counter()
    local = score(local_db)
    local_s = time.perf_counter() - started
    started = time.perf_counter()
    on_ray = score_on_ray(ray_db, work_dir=work / "ray-work")
    ray_s = time.perf_counter() - started
    return {"reviews": rows, "local_reviews_per_s": round(local["scored"] / local_s, 1),
            "ray_reviews_per_s": round(on_ray["scored"] / ray_s, 1), "ray_replicas": on_ray["replicas"],
            "ray_export_s": on_ray["export_s"], "ray_ingest_s": on_ray["ingest_s"],
            "local_s": round(local_s, 1), "ray_s": round(ray_s, 1),
            "ray_over_local": round(ray_s / local_s, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reviews", type=int, default=1_000_000, help="Store size for the Parquet exchange.")
    ap.add_argument("--score-reviews", type=int, default=1_000_000, help="Reviews scored each way (0: skip).")
    ap.add_argument("--device", default=None, help="cpu or cuda for both scoring paths (default: resolved).")
    ap.add_argument("--json-out", type=Path, default=None)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(f"machine: {_cpu_name()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    work = Path(tempfile.mkdtemp(prefix="tastebud-ray-bench-"))
    results: dict = {"cpu": _cpu_name(), "cpus": os.cpu_count(), "load_at_start": round(os.getloadavg()[0], 1)}
    try:
        results["exchange"] = exchange(work, args.reviews)
        print(f"Parquet exchange, {args.reviews:,} rows: export {results['exchange']['export_rows_per_s']:,} rows/s, "
              f"ingest {results['exchange']['ingest_rows_per_s']:,} rows/s")
        if args.score_reviews:
            results["scoring"] = s = scoring(work, args.score_reviews, args.device)
            print(f"scoring {s['reviews']:,} reviews: local {s['local_reviews_per_s']:,}/s, Ray ({s['ray_replicas']} "
                  f"actors) {s['ray_reviews_per_s']:,}/s; Ray takes {s['ray_over_local']}x the local time")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["load_at_end"] = round(os.getloadavg()[0], 1)
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
