"""Scaling out: `score --ray` at a million reviews, against local scoring, with the driver's memory.

One run, same machine, same model, same reviews:

1. Parquet exchange (`--reviews N`, 0 skips): export every review of an N-review store as Parquet shards
   (what `score --ray` ships to the cluster) and store N predictions back through the path `score --ray`
   uses (`ingest_stream`, batches of one exported shard), in rows/s.
2. Scoring (`--score-reviews N[,N...]`): for each N, a store of N reviews, copied; `tastebud score` on one
   copy and `tastebud score --ray` (a local Ray instance: one actor per CPU) on the other. Each runs in its
   own process, which reports its wall time and its peak resident memory (``VmHWM``: the driver's
   own, not Ray's worker processes or object store), so the row counts can be compared.
3. GPU workers (`--train-gpus-per-worker G`): `train --ray --workers 1 --gpus-per-worker G` on a 4,000-review
   store; skipped cleanly (reported, exit 0) where Ray sees no GPU. On a GPU machine step 2 scores on GPU
   actors (one per GPU) and locally on the GPU.

    python bench/ray_bench.py --reviews 0 --score-reviews 100000,1000000 --model tiny
    python bench/ray_bench.py --reviews 1000000 --score-reviews 20000 --model minilm
    python bench/ray_bench.py --reviews 0 --score-reviews 100000 --model minilm --train-gpus-per-worker 1  # GPU

Models (nothing is downloaded): ``tiny`` is a 2-layer, 32-wide BERT built from a config with the
packaged tokenizer, 64 tokens (random weights: timings are valid, predictions are not meaningful);
``minilm`` is the packaged MiniLM encoder with a fresh head, 128 tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# Tokens the tiny model reads (it is there to time the plumbing at a million reviews, not the model).
TINY_MAX_LENGTH = 64


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _load() -> float:
    return round(os.getloadavg()[0], 1)


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

    max_length = json.loads((model_dir / "tastebud.json").read_text()).get("max_length", 128)
    with transaction(db) as con:
        model_store.register_model(con, model_id="bench", kind="finetuned", name="bench", path=str(model_dir),
                                   params={"max_length": max_length})
        model_store.promote_model(con, cli_actor(), "bench")


def build_model(kind: str, out: Path) -> Path:
    """The scoring model, saved as a tastebud model directory (built here: nothing is downloaded)."""
    from pipeline.models.loading import ID2LABEL, LABEL2ID, default_base_model, load_classifier, load_tokenizer, save_classifier

    if kind == "minilm":
        model, tokenizer = load_classifier(default_base_model())
        return save_classifier(model, tokenizer, out, {"max_length": 128, "note": "benchmark: fresh head"})
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    tokenizer = load_tokenizer(default_base_model())
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, num_labels=3, id2label=ID2LABEL,
                        label2id=LABEL2ID)
    model = BertForSequenceClassification(config).eval()
    return save_classifier(model, tokenizer, out, {"max_length": TINY_MAX_LENGTH, "note": "benchmark: tiny random BERT"})


def exchange(work: Path, rows: int) -> dict:
    """Export all reviews of a ``rows``-review store as Parquet, then store ``rows`` predictions back."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.jobs import JobReporter
    from pipeline.scale.ray_score import ingest_stream
    from store.db import connect
    from store.exchange import EXPORT_ROWS_PER_FILE, export_pending_reviews

    db = _store(work / "exchange.duckdb", rows)
    started = time.perf_counter()
    with connect(db, read_only=True) as con:
        exported = export_pending_reviews(con, "bench", work / "export")
    export_s = time.perf_counter() - started
    ids = pa.concat_tables([pq.read_table(f, columns=["review_id"]) for f in exported["files"]])["review_id"]
    probs = np.random.default_rng(0).dirichlet([1, 1, 1], size=len(ids)).astype(np.float32)
    table = pa.table({"review_id": ids, "p_negative": probs[:, 0], "p_neutral": probs[:, 1], "p_positive": probs[:, 2]})
    batches = (table.slice(offset, EXPORT_ROWS_PER_FILE) for offset in range(0, table.num_rows, EXPORT_ROWS_PER_FILE))
    started = time.perf_counter()
    written = ingest_stream(db, "bench", batches, reporter=JobReporter(db, None, echo=lambda line: None),
                            pending=table.num_rows)
    ingest_s = time.perf_counter() - started
    return {"rows": rows, "export_rows_per_s": round(exported["rows"] / export_s),
            "ingest_rows_per_s": round(written / ingest_s), "export_s": round(export_s, 2),
            "ingest_s": round(ingest_s, 2), "files": len(exported["files"])}


def _run_one(how: str, db: str) -> dict:
    """In a fresh process: score the store one way; wall time and this process's peak memory."""
    from pipeline.jobs import JobReporter

    reporter = JobReporter(db, None, echo=lambda line: None)
    started = time.perf_counter()
    if how == "local":
        from pipeline.loop.scoring import score

        result = score(db, reporter=reporter)
    else:
        from pipeline.scale.ray_score import score_on_ray

        result = score_on_ray(db, reporter=reporter)
    seconds = time.perf_counter() - started
    # VmHWM: this process's own peak resident memory (ru_maxrss would carry the benchmark's own peak
    # across fork + exec).
    status = Path("/proc/self/status").read_text().splitlines()
    peak_mib = int(next(line.split()[1] for line in status if line.startswith("VmHWM:"))) / 1024
    return {"how": how, "scored": result["scored"], "seconds": round(seconds, 1),
            "reviews_per_s": round(result["scored"] / seconds, 1), "driver_peak_mib": round(peak_mib),
            "replicas": result.get("replicas"), "export_s": result.get("export_s")}


def _in_process(how: str, db: Path) -> dict:
    load = _load()
    out = db.with_suffix(f".{how}.json")  # not stdout: Ray may print there as the process ends
    done = subprocess.run([sys.executable, __file__, "--one", how, str(db), str(out)], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    if done.returncode != 0 or not out.exists():
        raise RuntimeError(f"{how} scoring failed:\n{done.stderr[-3000:]}")
    return {**json.loads(out.read_text()), "load_before": load, "load_after": _load()}


def scoring(work: Path, rows: int, model_dir: Path, *, skip_local: bool) -> dict:
    """`score` and `score --ray` on two copies of a ``rows``-review store, each in its own process."""
    local_db = _store(work / f"local-{rows}.duckdb", rows)
    _register(local_db, model_dir)
    ray_db = work / f"ray-{rows}.duckdb"
    shutil.copy(local_db, ray_db)
    out = {"reviews": rows, "ray": _in_process("ray", ray_db)}
    if not skip_local:
        out["local"] = _in_process("local", local_db)
        out["ray_over_local"] = round(out["ray"]["seconds"] / out["local"]["seconds"], 2)
    for path in (local_db, ray_db):
        path.unlink(missing_ok=True)
    return out


def gpu_workers(work: Path, gpus_per_worker: float) -> dict:
    """`train --ray --workers 1 --gpus-per-worker G` on a 4,000-review store (packaged encoder, one epoch);
    {"skipped": why} where Ray sees no GPU."""
    import ray

    from pipeline.scale.ray_score import connect_ray
    from pipeline.scale.ray_train import train_on_ray
    from pipeline.train.config import TrainConfig

    connect_ray(None)
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        if gpus < gpus_per_worker:
            return {"skipped": f"Ray sees {gpus:g} GPU(s); --gpus-per-worker {gpus_per_worker:g} needs more"}
        db = _store(work / "gpu.duckdb", 4000)
        started = time.perf_counter()
        model_id = train_on_ray(db, TrainConfig(epochs=1, max_length=128, ensemble=False), workers=1,
                                gpus_per_worker=gpus_per_worker, storage=str(work / "shared"))
        seconds = time.perf_counter() - started
    finally:
        ray.shutdown()
    from store import models as model_store
    from store.db import connect

    with connect(db, read_only=True) as con:
        model = model_store.get_model(con, model_id)
    throughput = model["params"].get("throughput", {})
    return {"gpus": gpus, "gpus_per_worker": gpus_per_worker, "model_id": model_id, "train_s": round(seconds, 1),
            "weights_on": throughput.get("weights_on"), "examples_per_s": throughput.get("examples_per_s"),
            "val_macro_f1": (model.get("val_metrics") or {}).get("macro_f1")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reviews", type=int, default=1_000_000, help="Store size for the Parquet exchange (0: skip).")
    ap.add_argument("--score-reviews", default="100000,1000000", help="Reviews scored each way, comma-separated (0: skip).")
    ap.add_argument("--model", choices=("tiny", "minilm"), default="tiny")
    ap.add_argument("--skip-local", action="store_true", help="Only `score --ray` (driver memory, rows/s).")
    ap.add_argument("--train-gpus-per-worker", type=float, default=0,
                    help="Also run `train --ray --gpus-per-worker G` and GPU scoring (skipped without a GPU).")
    ap.add_argument("--json-out", type=Path, default=None)
    ap.add_argument("--one", nargs=3, metavar=("HOW", "DB", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.one:
        how, db, out = args.one
        Path(out).write_text(json.dumps(_run_one(how, db)))
        return
    print(f"machine: {_cpu_name()}, {os.cpu_count()} CPUs, load {_load()}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="tastebud-ray-bench-"))
    results: dict = {"cpu": _cpu_name(), "cpus": os.cpu_count(), "load_at_start": _load(), "model": args.model}
    try:
        if args.reviews:
            results["exchange"] = e = exchange(work, args.reviews)
            print(f"Parquet exchange, {args.reviews:,} rows: export {e['export_rows_per_s']:,} rows/s, "
                  f"ingest {e['ingest_rows_per_s']:,} rows/s", flush=True)
        model_dir = build_model(args.model, work / "model")
        results["scoring"] = []
        for rows in (int(n) for n in args.score_reviews.split(",") if int(n)):
            s = scoring(work, rows, model_dir, skip_local=args.skip_local)
            results["scoring"].append(s)
            r = s["ray"]
            line = (f"{rows:,} reviews: score --ray {r['reviews_per_s']:,}/s ({r['seconds']} s, {r['replicas']} actors, "
                    f"driver peak {r['driver_peak_mib']} MiB, load {r['load_before']}->{r['load_after']})")
            if "local" in s:
                lo = s["local"]
                line += (f"; local {lo['reviews_per_s']:,}/s ({lo['seconds']} s, peak {lo['driver_peak_mib']} MiB); "
                         f"Ray takes {s['ray_over_local']}x the local time")
            print(line, flush=True)
        if args.train_gpus_per_worker:
            results["gpu_workers"] = g = gpu_workers(work, args.train_gpus_per_worker)
            print(f"train --ray on GPU workers: {g}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["load_at_end"] = _load()
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
