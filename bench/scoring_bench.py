"""Scoring speed: tastebud's batched inference vs Hugging Face ``pipeline("text-classification")``.

Same real reviews (yelp_dev.csv), same model, same truncation (256 tokens), one run. Each
method runs in its own subprocess so its peak memory (ru_maxrss) is its own; model loading
and a 16-text warm-up are excluded from the timing. Reports reviews/s, tokens/s (real,
unpadded tokens after truncation), peak RSS, RSS growth while scoring, macro-F1 against
star labels (1-2 negative, 3 neutral, 4-5 positive), and argmax agreement with fp32.

    python bench/scoring_bench.py --model-dir DIR --n 2000
    python bench/scoring_bench.py --device cpu --precision fp32   # as on a CPU without AMX (bf16 off)
    python bench/scoring_bench.py --device cuda --n 20000 --methods ours,pipeline-batched,pipeline-batched-fp16
    python bench/scoring_bench.py --store-scale 1000000   # chunked scoring of 1M stored reviews
    python bench/scoring_bench.py --e2e 300000 --model-dir DIR   # `tastebud score` on 300k stored reviews

``--device`` picks cpu or cuda for every method; ``--precision fp32`` turns bf16 off for ours
(``TASTEBUD_CPU_BF16=0``, the path a CPU without AMX takes); ``--json-out`` writes the results.
With ``--n`` above the data's size, reviews are drawn again (with replacement).

Without --model-dir the packaged MiniLM encoder gets a fresh (random) classification head:
timings are valid, macro-F1 is then meaningless (and printed as such).

``--store-scale N`` measures the store side of ``tastebud score``: N synthetic reviews in a
temporary store, scored in chunks by a constant predictor, recording throughput and RSS
after every chunk (memory must stay flat as the predictions table grows).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))



def shared_data_dir() -> Path:
    """``$TASTEBUD_SHARED_DATA``, else the nearest ``shared/data`` above the repository."""
    if os.environ.get("TASTEBUD_SHARED_DATA"):
        return Path(os.environ["TASTEBUD_SHARED_DATA"])
    for parent in REPO.parents:
        if (parent / "shared" / "data").is_dir():
            return parent / "shared" / "data"
    return REPO.parent / "shared" / "data"


DATA = Path(os.environ.get("TASTEBUD_BENCH_DATA") or shared_data_dir() / "yelp_reviews_10k" / "yelp_dev.csv")
MAX_LENGTH = 256
WARMUP = 16

METHODS = {
    "ours": "tastebud predict_proba: length-sorted token-budget batches, bf16 weights (AMX)",
    "ours-fp32": "tastebud predict_proba, fp32 (no bf16): the batching alone",
    "ours-int8": "tastebud predict_proba, int8 dynamic quantization of Linear layers (fp32 activations)",
    "pipeline-single": "transformers pipeline, one text per call (fp32)",
    "pipeline-batched": "transformers pipeline, batched (fp32)",
    "pipeline-batched-bf16": "transformers pipeline, batched, model in bf16",
    "pipeline-batched-fp16": "transformers pipeline, batched, model in fp16 (GPU)",
}


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _load_texts(n: int, seed: int):
    import pandas as pd

    frame = pd.read_csv(DATA)
    # the later half of the file by date: never seen by a model fine-tuned on the first 4,000 rows
    unseen = frame.iloc[len(frame) // 2 :]
    return unseen.sample(n, random_state=seed, replace=n > len(unseen)).reset_index(drop=True)


def run_method(method: str, model_dir: str | None, n: int, seed: int, device: str = "cpu",
               pipeline_batch_size: int = 32) -> dict:
    """Score the sample with one method in this process; returns timings and predictions."""
    import copy

    import numpy as np
    import torch

    from pipeline.device import resolve_device
    from pipeline.models.inference import predict_proba, prepare_for_inference
    from pipeline.models.loading import default_base_model, load_classifier

    frame = _load_texts(n, seed)
    texts = frame["text"].tolist()
    info = resolve_device(device)
    torch.manual_seed(0)  # the same fresh head in every subprocess when there is no fine-tuned model
    model, tokenizer = load_classifier(model_dir or default_base_model())
    if method == "ours":
        model = prepare_for_inference(model, info)
        run = lambda batch: predict_proba(model, tokenizer, batch, max_length=MAX_LENGTH, device=info)  # noqa: E731
    elif method == "ours-fp32":
        run = lambda batch: predict_proba(model, tokenizer, batch, max_length=MAX_LENGTH, device=info, autocast=False)  # noqa: E731
    elif method == "ours-int8":
        model = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8)
        run = lambda batch: predict_proba(model, tokenizer, batch, max_length=MAX_LENGTH, device=info, autocast=False)  # noqa: E731
    else:
        from transformers import pipeline

        if method == "pipeline-batched-bf16":
            model = model.to(torch.bfloat16)
        if method == "pipeline-batched-fp16":
            model = model.to(torch.float16)
        pipe = pipeline("text-classification", model=model, tokenizer=tokenizer, device=info.torch_device)
        order = list(model.config.label2id)
        batch_size = 1 if method == "pipeline-single" else pipeline_batch_size

        def run(batch):
            if batch_size == 1:
                outputs = [pipe(t, truncation=True, max_length=MAX_LENGTH, top_k=None) for t in batch]
            else:
                outputs = pipe(batch, batch_size=batch_size, truncation=True, max_length=MAX_LENGTH, top_k=None)
            return np.array([[{d["label"]: d["score"] for d in out}[label] for label in order] for out in outputs])

    run(texts[:WARMUP])
    rss_before = _rss_kb()
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    probs = run(texts)
    seconds = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tokens = sum(len(ids) for ids in tokenizer(texts, truncation=True, max_length=MAX_LENGTH)["input_ids"])
    return {"method": method, "seconds": seconds, "cpu_s": cpu_s, "n": len(texts), "tokens": tokens, "peak_rss_mb": peak / 1024,
            "scoring_rss_growth_mb": max(0, peak - rss_before) / 1024, "pred": probs.argmax(axis=1).tolist(),
            "loadavg_1m": os.getloadavg()[0], "device": info.name, "autocast": str(info.autocast_dtype),
            "attention": getattr(model.config, "_attn_implementation", None),
            "batch_size": pipeline_batch_size if method.startswith("pipeline-batched") else None}


def compare(model_dir: str | None, n: int, seed: int, methods: list[str], *, device: str = "cpu",
            precision: str = "auto", pipeline_batch_size: int | None = None) -> list[dict]:
    """Run each method in its own subprocess and print the comparison table."""
    import numpy as np
    from sklearn.metrics import f1_score

    from store.constants import LABEL_TO_ID, label_from_stars

    frame = _load_texts(n, seed)
    y = np.array([LABEL_TO_ID[label_from_stars(int(s))] for s in frame["stars"]])
    results = []
    pipeline_batch_size = pipeline_batch_size or (128 if device == "cuda" else 32)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
               HF_HUB_OFFLINE="1")
    if precision == "fp32":
        env["TASTEBUD_CPU_BF16"] = "0"
    elif precision == "bf16":
        env["TASTEBUD_CPU_BF16"] = "1"
    for method in methods:
        load_before = os.getloadavg()[0]
        out = subprocess.run(
            [sys.executable, __file__, "--worker", method, "--n", str(n), "--seed", str(seed), "--device", device,
             "--pipeline-batch-size", str(pipeline_batch_size)]
            + (["--model-dir", model_dir] if model_dir else []),
            capture_output=True, text=True, env=env,
        )
        if out.returncode != 0:
            print(f"  {method} failed:\n{out.stderr[-3000:]}", flush=True)
            results.append({"method": method, "error": out.stderr[-3000:]})
            continue
        result = json.loads(out.stdout.strip().splitlines()[-1])
        result["loadavg_before"] = load_before
        result["macro_f1"] = f1_score(y, result["pred"], average="macro")
        results.append(result)
        print(f"  {method}: {result['n'] / result['seconds']:.1f} reviews/s", flush=True)
    failed = [r for r in results if "error" in r]
    results = [r for r in results if "error" not in r]
    if not results:
        raise SystemExit("every method failed")
    reference = next((r["pred"] for r in results if r["method"] == "ours-fp32"), None)
    base = {r["method"]: r for r in results}
    print()
    print(f"model: {model_dir or 'packaged MiniLM encoder + fresh random head (macro-F1 meaningless)'}")
    print(f"data: {n} reviews from {DATA.name} (seed {seed}), truncation {MAX_LENGTH} tokens, "
          f"{results[0]['tokens'] / n:.0f} tokens/review on average")
    print(f"device: {results[0]['device']} (precision {precision}; pipeline batch {pipeline_batch_size}); "
          f"attention: {results[0]['attention']}")
    print(f"machine: {_cpu_model()}, {os.cpu_count()} CPUs; "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}; load = 1-min load average before each method")
    header = f"{'method':<22} {'reviews/s':>9} {'tokens/s':>9} {'CPU s':>7} {'peak RSS MB':>11} {'+RSS scoring':>12} " \
             f"{'macro-F1':>8} {'agree fp32':>10} {'load':>5}"
    print(header)
    print("-" * len(header))
    for r in results:
        agree = (np.array(r["pred"]) == np.array(reference)).mean() if reference is not None else float("nan")
        print(f"{r['method']:<22} {r['n'] / r['seconds']:>9.1f} {r['tokens'] / r['seconds']:>9.0f} {r['cpu_s']:>7.1f} "
              f"{r['peak_rss_mb']:>11.0f} {r['scoring_rss_growth_mb']:>12.0f} {r['macro_f1']:>8.4f} {agree:>10.4f} "
              f"{r['loadavg_before']:>5.1f}")
    for r in results:
        r["reviews_per_s"] = r["n"] / r["seconds"]
        r["agree_fp32"] = float((np.array(r["pred"]) == np.array(reference)).mean()) if reference is not None else None
    if "ours" in base:
        for other in ("pipeline-single", "pipeline-batched", "pipeline-batched-bf16", "pipeline-batched-fp16", "ours-fp32"):
            if other in base:
                ratio = base[other]["seconds"] / base["ours"]["seconds"]
                base["ours"][f"x_{other}"] = ratio
                print(f"ours vs {other}: {ratio:.2f}x")
    for r in failed:
        print(f"{r['method']}: FAILED")
    return results + failed


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def store_scale(n: int, chunk_size: int) -> None:
    """Chunked scoring of ``n`` stored reviews with a constant predictor: store throughput and flat memory."""
    import numpy as np
    import pandas as pd

    from pipeline.jobs import JobReporter
    from pipeline.loop.scoring import score_with
    from store.db import transaction
    from store.reviews import upsert_reviews
    from store.schema import init_store

    class Constant:
        def predict_proba(self, texts):
            return np.tile(np.array([0.2, 0.3, 0.5], dtype=np.float32), (len(texts), 1))

    class RssReporter(JobReporter):
        def __init__(self):
            super().__init__(None, None, echo=lambda line: None)
            self.samples = []

        def progress(self, fraction, message=None, *, force=False):
            self.samples.append((fraction, _rss_kb() / 1024))

    with tempfile.TemporaryDirectory() as tmp:
        db, _ = init_store(Path(tmp) / "scale.duckdb")
        started = time.perf_counter()
        for start in range(0, n, 250_000):
            ids = np.arange(start, min(n, start + 250_000))
            batch = pd.DataFrame({"review_id": [f"r{i:08d}" for i in ids], "source": "bench",
                                  "text": [f"review number {i} about tacos and service" for i in ids]})
            with transaction(db) as con:
                upsert_reviews(con, batch)
        print(f"seeded {n:,} reviews in {time.perf_counter() - started:.0f}s; RSS {_rss_kb() / 1024:.0f} MB")
        reporter = RssReporter()
        result = score_with(db, Constant(), "const", chunk_size=chunk_size, reporter=reporter)
        rss = [mb for _, mb in reporter.samples]
        quarter = len(rss) // 4
        print(f"scored {result['scored']:,} in {result['seconds']:.0f}s ({result['reviews_per_s']:,.0f} reviews/s of "
              f"store work, chunks of {chunk_size})")
        print(f"RSS over the run: first quarter max {max(rss[:quarter]):.0f} MB, last quarter max "
              f"{max(rss[-quarter:]):.0f} MB, overall max {max(rss):.0f} MB; "
              f"ru_maxrss {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
        again = score_with(db, Constant(), "const", chunk_size=chunk_size)
        print(f"re-run scored {again['scored']} in {again['seconds']:.1f}s (idempotent)")


def end_to_end(n: int, model_dir: str | None, work: Path, *, chunk_size: int | None = None,
               max_length: int = 128, truncation: str = "head_tail") -> dict:
    """``tastebud score`` as a user runs it, on ``n`` stored reviews (real texts drawn again as needed).

    The store is seeded through the store API (reviews only), ``model_dir`` (default: the packaged
    encoder with a fresh head) is registered and promoted, then the CLI scores in a subprocess;
    the command's wall time (interpreter start included) and its own figures are reported.
    """
    import numpy as np
    import pandas as pd

    from store import models as model_store
    from store.actors import cli_actor
    from store.db import transaction
    from store.reviews import upsert_reviews
    from store.schema import init_store

    work.mkdir(parents=True, exist_ok=True)
    db, _ = init_store(work / "e2e.duckdb")
    if model_dir is None:
        import torch

        from pipeline.models.loading import default_base_model, load_classifier, save_classifier

        torch.manual_seed(0)
        model, tokenizer = load_classifier(default_base_model())
        model_dir = str(save_classifier(model, tokenizer, work / "fresh-head", {"max_length": max_length}))
    texts = pd.read_csv(DATA)["text"].astype(str).to_numpy()
    started = time.perf_counter()
    rng = np.random.default_rng(0)
    for start in range(0, n, 100_000):
        ids = np.arange(start, min(n, start + 100_000))
        batch = pd.DataFrame({"review_id": [f"e2e{i:09d}" for i in ids], "source": "bench",
                              "text": texts[rng.integers(0, len(texts), size=len(ids))]})
        with transaction(db) as con:
            upsert_reviews(con, batch)
    seed_s = time.perf_counter() - started
    with transaction(db) as con:
        model_store.register_model(con, model_id="bench", kind="finetuned", name="bench", path=model_dir,
                                   params={"max_length": max_length, "truncation": truncation})
        model_store.promote_model(con, cli_actor(), "bench")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
               HF_HUB_OFFLINE="1")
    cmd = [sys.executable, "-m", "pipeline.cli", "--db", str(db), "score", "--json"]
    if chunk_size:
        cmd += ["--chunk-size", str(chunk_size)]
    started = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if out.returncode != 0:
        raise SystemExit(f"tastebud score failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout)
    summary = {"reviews": n, "seed_s": round(seed_s, 1), "command_wall_s": round(wall, 2),
               "reviews_per_s_wall": round(result["scored"] / wall, 1), **result}
    print(f"`tastebud score` on {n:,} stored reviews: {result['scored']:,} scored in {result['seconds']}s of its own "
          f"timing ({result['reviews_per_s']:,.0f}/s), {wall:.1f}s wall for the whole command "
          f"({summary['reviews_per_s_wall']:,.0f}/s); chunks of {result.get('chunk_size')}, {result.get('commits')} commits")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", help="a fine-tuned model directory (default: packaged encoder + fresh head)")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", default="ours,pipeline-single,pipeline-batched",
                        help=f"comma-separated, from: {', '.join(METHODS)}")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--store-scale", type=int, help="instead: chunked scoring of this many stored reviews")
    parser.add_argument("--chunk-size", type=int, default=None, help="reviews per chunk (default: the device's)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                        help="ours: auto-detect bf16, force it, or fp32 (bf16 off, as without AMX)")
    parser.add_argument("--pipeline-batch-size", type=int, default=None, help="default: 32 on cpu, 128 on cuda")
    parser.add_argument("--e2e", type=int, help="instead: `tastebud score` end to end on this many stored reviews")
    parser.add_argument("--work-dir", default=None, help="--e2e: where the store goes (default: a temp dir)")
    parser.add_argument("--json-out", help="also write the results as JSON here")
    args = parser.parse_args()
    if args.worker:
        result = run_method(args.worker, args.model_dir, args.n, args.seed, args.device, args.pipeline_batch_size or 32)
        print(json.dumps(result))
        return
    if args.store_scale:
        store_scale(args.store_scale, args.chunk_size or 2048)
        return
    if args.e2e:
        with tempfile.TemporaryDirectory() as tmp:
            result = end_to_end(args.e2e, args.model_dir, Path(args.work_dir or tmp), chunk_size=args.chunk_size)
        _write_json(args.json_out, result)
        return
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise SystemExit(f"unknown methods: {sorted(unknown)}")
    for m in methods:
        print(f"{m}: {METHODS[m]}")
    results = compare(args.model_dir, args.n, args.seed, methods, device=args.device, precision=args.precision,
                      pipeline_batch_size=args.pipeline_batch_size)
    _write_json(args.json_out, {"device": args.device, "precision": args.precision, "n": args.n,
                                "cpu": _cpu_model(), "results": [{k: v for k, v in r.items() if k != "pred"}
                                                                 for r in results]})


def _write_json(path: str | None, payload) -> None:
    if path:
        Path(path).write_text(json.dumps(payload, indent=2, default=str))


if __name__ == "__main__":
    main()
