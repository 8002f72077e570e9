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

``--device`` picks cpu or cuda for every method; ``--precision fp32`` turns bf16 and int8 off for
ours (``TASTEBUD_CPU_BF16=0 TASTEBUD_CPU_INT8=0``); ``--json-out`` writes the results. With ``--n``
above the data's size, reviews are drawn again (with replacement). Truncation is 128 tokens
(``--max-length``), as the product trains.

A CPU without AMX (issue 22): compare the product's choice with its candidates and the HF
pipeline, interleaved over rounds so every method sees the same drift in load; a method takes
options as ``METHOD+threads=1+omp=active+batch=16+tokens=4096``:

    python bench/scoring_bench.py --model-dir DIR --rounds 3 \
        --methods ours,ours-fp32,ours-int8-tensor,ours-fp32-unsorted,pipeline-batched
    python bench/scoring_bench.py --e2e 2000 --models-from STORE --rounds 3 \
        --variants ours,ours-fp32,ensemble,pipeline-batched   # `tastebud score` with its store writes

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
# Truncation: the product trains at 128 tokens (issue 22 measures there); earlier rounds used 256.
MAX_LENGTH = 128
WARMUP = 16

METHODS = {
    "ours": "tastebud as pipeline.device decides for this CPU (AMX: bf16 weights; AVX2 without AMX: int8 "
            "Linear layers; else fp32), length-sorted token-budget batches",
    "ours-fp32": "tastebud predict_proba, fp32 (no bf16, no int8): the batching alone",
    "ours-int8": "tastebud predict_proba, int8 as the product quantizes (per-channel weights, encoder Linear layers)",
    "ours-int8-tensor": "quantize_dynamic's defaults: per-tensor weights, every Linear layer (head included)",
    "ours-fp32-unsorted": "fp32, batches in input order padded to their longest text (no length sorting)",
    "ort-fp32": "ONNX Runtime (not a dependency: put it on PYTHONPATH), our batches, fp32 graph at ORT_ENABLE_ALL",
    "ort-int8": "ONNX Runtime, our batches, its dynamic int8 quantization (per-channel weights) of the graph",
    "pipeline-single": "transformers pipeline, one text per call (fp32)",
    "pipeline-batched": "transformers pipeline, batched (fp32)",
    "pipeline-batched-bf16": "transformers pipeline, batched, model in bf16",
    "pipeline-batched-fp16": "transformers pipeline, batched, model in fp16 (GPU)",
}
# Per-method options, written METHOD+KEY=VALUE+...: threads (TASTEBUD_CPU_THREADS / torch threads),
# omp (OMP_WAIT_POLICY: passive, active, or default = unset), batch (texts per forward pass),
# tokens (ours: padded tokens per forward pass at most), streams (ours: TASTEBUD_CPU_STREAMS, forward passes at once).
OPTIONS = ("threads", "omp", "batch", "tokens", "streams")


def parse_method(spec: str) -> tuple[str, dict[str, str]]:
    """``"ours-fp32+threads=1+batch=16"`` -> ("ours-fp32", {"threads": "1", "batch": "16"})."""
    name, *parts = spec.split("+")
    if name not in METHODS:
        raise SystemExit(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    options = dict(part.split("=", 1) for part in parts if "=" in part)
    if len(options) != len(parts) or set(options) - set(OPTIONS):
        raise SystemExit(f"bad options in {spec!r}; known: {', '.join(OPTIONS)} (as +key=value)")
    if options.get("omp", "default").lower() not in ("passive", "active", "default"):
        raise SystemExit(f"{spec}: omp must be passive, active or default")
    return name, options


def worker_env(spec: str, base: dict[str, str]) -> dict[str, str]:
    """The environment a method runs in: each as its users get it unless its options say otherwise.

    Ours runs as tastebud does (pipeline/__init__.py sets OMP_WAIT_POLICY=PASSIVE); the HF
    pipeline runs with OpenMP's own default (the variable unset: spin a while, then sleep).
    """
    name, options = parse_method(spec)
    env = dict(base)
    env.pop("OMP_WAIT_POLICY", None)
    omp = options.get("omp", "passive" if name.startswith("ours") else "default").lower()
    if omp != "default":
        env["OMP_WAIT_POLICY"] = omp.upper()
    if "threads" in options:
        env["TASTEBUD_CPU_THREADS"] = options["threads"]
    if "streams" in options:
        env["TASTEBUD_CPU_STREAMS"] = options["streams"]
    return env


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


def run_method(spec: str, model_dir: str | None, n: int, seed: int, device: str = "cpu",
               pipeline_batch_size: int = 32, max_length: int = MAX_LENGTH) -> dict:
    """Score the sample with one method in this process; returns timings and predictions."""
    import dataclasses
    import warnings

    omp_policy = os.environ.get("OMP_WAIT_POLICY", "(unset)")  # as OpenMP reads it when torch loads, below
    import numpy as np
    import torch

    from pipeline.device import resolve_device
    from pipeline.models.inference import predict_proba, prepare_for_inference, quantize_linear_int8
    from pipeline.models.loading import default_base_model, load_classifier

    method, options = parse_method(spec)
    frame = _load_texts(n, seed)
    texts = frame["text"].tolist()
    info = resolve_device(device)
    torch.manual_seed(0)  # the same fresh head in every subprocess when there is no fine-tuned model
    model, tokenizer = load_classifier(model_dir or default_base_model())
    sizes = {"batch_size": int(options["batch"]) if "batch" in options else None,
             "max_batch_tokens": int(options["tokens"]) if "tokens" in options else None}
    fp32 = dataclasses.replace(info, autocast_dtype=None, int8_linear=False)
    if method == "ours":
        model = prepare_for_inference(model, info)
        run = lambda batch: predict_proba(model, tokenizer, batch, max_length=max_length, device=info, **sizes)  # noqa: E731
    elif method == "ours-fp32":
        run = lambda batch: predict_proba(model, tokenizer, batch, max_length=max_length, device=fp32, **sizes)  # noqa: E731
    elif method == "ours-int8":
        model = quantize_linear_int8(model.eval())
        run = lambda batch: predict_proba(model, tokenizer, batch, max_length=max_length, device=fp32, **sizes)  # noqa: E731
    elif method == "ours-int8-tensor":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = torch.ao.quantization.quantize_dynamic(model.eval(), {torch.nn.Linear}, dtype=torch.qint8)
        run = lambda batch: predict_proba(model, tokenizer, batch, max_length=max_length, device=fp32, **sizes)  # noqa: E731
    elif method.startswith("ort-"):
        run = _onnx_runner(model, tokenizer, max_length, int8=method == "ort-int8", threads=info.threads,
                           batch_size=sizes["batch_size"] or 32, max_batch_tokens=sizes["max_batch_tokens"] or 8192)
    elif method == "ours-fp32-unsorted":
        run = lambda batch: _unsorted(model.eval(), tokenizer, batch, max_length, sizes["batch_size"] or 32)  # noqa: E731
    else:
        from transformers import pipeline

        if method == "pipeline-batched-bf16":
            model = model.to(torch.bfloat16)
        if method == "pipeline-batched-fp16":
            model = model.to(torch.float16)
        pipe = pipeline("text-classification", model=model, tokenizer=tokenizer, device=info.torch_device)
        order = list(model.config.label2id)
        batch_size = 1 if method == "pipeline-single" else (sizes["batch_size"] or pipeline_batch_size)

        def run(batch):
            if batch_size == 1:
                outputs = [pipe(t, truncation=True, max_length=max_length, top_k=None) for t in batch]
            else:
                outputs = pipe(batch, batch_size=batch_size, truncation=True, max_length=max_length, top_k=None)
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
    tokens = sum(len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"])
    return {"method": spec, "seconds": seconds, "omp_wait_policy": omp_policy, "threads": torch.get_num_threads(), "cpu_s": cpu_s, "n": len(texts), "tokens": tokens, "peak_rss_mb": peak / 1024,
            "scoring_rss_growth_mb": max(0, peak - rss_before) / 1024, "pred": probs.argmax(axis=1).tolist(),
            "loadavg_1m": os.getloadavg()[0], "device": info.name, "autocast": str(info.autocast_dtype),
            "attention": getattr(model.config, "_attn_implementation", None),
            "batch_size": pipeline_batch_size if method.startswith("pipeline-batched") else None}


def _unsorted(model, tokenizer, texts, max_length: int, batch_size: int):
    """fp32 batches in input order, each padded to its longest text (what length sorting is measured against)."""
    import numpy as np
    import torch

    from pipeline.models.inference import encode_texts

    encoded = encode_texts(tokenizer, texts, max_length=max_length)
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            ids, mask = encoded.padded(np.arange(start, min(len(texts), start + batch_size)))
            logits = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits
            out.append(torch.softmax(logits.float(), dim=-1).numpy())
    return np.concatenate(out)


def _onnx_runner(model, tokenizer, max_length: int, *, int8: bool, threads: int, batch_size: int,
                 max_batch_tokens: int):
    """Export ``model`` to ONNX (TorchScript exporter), optionally quantize it, and return a scorer that
    feeds ONNX Runtime our length-sorted token-budget batches (so only the runtime differs from ours)."""
    import numpy as np
    import onnxruntime as ort
    import torch

    from pipeline.models.inference import encode_texts, token_budget_batches

    folder = Path(tempfile.mkdtemp(prefix="ort-"))
    path = folder / "model.onnx"
    ids = torch.ones((2, 16), dtype=torch.long)
    torch.onnx.export(model.eval(), (ids, torch.ones_like(ids)), str(path), input_names=["input_ids", "attention_mask"],
                      output_names=["logits"], dynamic_axes={"input_ids": {0: "b", 1: "t"}, "attention_mask": {0: "b", 1: "t"},
                                                             "logits": {0: "b"}}, opset_version=17, dynamo=False)
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(path), str(folder / "int8.onnx"), weight_type=QuantType.QInt8, per_channel=True)
        path = folder / "int8.onnx"
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(texts):
        encoded = encode_texts(tokenizer, texts, max_length=max_length)
        out = np.empty((len(texts), model.config.num_labels), dtype=np.float32)
        for idx in token_budget_batches(encoded.lengths, batch_size, max_batch_tokens):
            batch_ids, mask = encoded.padded(idx)
            logits = session.run(["logits"], {"input_ids": batch_ids, "attention_mask": mask})[0]
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            out[idx] = e / e.sum(axis=1, keepdims=True)
        return out

    return run


# Predictions every other method's labels are compared with: the first of these that ran.
REFERENCES = ("ours-fp32", "pipeline-batched", "pipeline-single")


def compare(model_dir: str | None, n: int, seed: int, methods: list[str], *, device: str = "cpu",
            precision: str = "auto", pipeline_batch_size: int | None = None, json_out: str | None = None,
            rounds: int = 1, max_length: int = MAX_LENGTH) -> list[dict]:
    """Run each method in its own subprocess, ``rounds`` times interleaved, and print the comparison.

    Interleaving (A, B, C, A, B, C, ...) exposes every method to the same drift in the machine's
    load; ratios are taken within a round, then their median is reported.
    """
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
        env["TASTEBUD_CPU_INT8"] = "0"
    elif precision == "bf16":
        env["TASTEBUD_CPU_BF16"] = "1"
    elif precision == "int8":
        env["TASTEBUD_CPU_BF16"] = "0"
        env["TASTEBUD_CPU_INT8"] = "1"
    for round_no in range(rounds):
        for method in methods:
            load_before = os.getloadavg()[0]
            out = subprocess.run(
                [sys.executable, __file__, "--worker", method, "--n", str(n), "--seed", str(seed), "--device", device,
                 "--pipeline-batch-size", str(pipeline_batch_size), "--max-length", str(max_length)]
                + (["--model-dir", model_dir] if model_dir else []),
                capture_output=True, text=True, env=worker_env(method, env),
            )
            if out.returncode != 0:
                print(f"  {method} failed:\n{out.stderr[-3000:]}", flush=True)
                results.append({"method": method, "round": round_no, "error": out.stderr[-3000:]})
                continue
            result = json.loads(out.stdout.strip().splitlines()[-1])
            result.update(round=round_no, loadavg_before=load_before, loadavg_after=os.getloadavg()[0],
                          macro_f1=f1_score(y, result["pred"], average="macro"),
                          reviews_per_s=result["n"] / result["seconds"])
            results.append(result)
            _note_agreement(results)
            _write_json(json_out, _report(device, precision, n, results))  # a run killed for time keeps what it measured
            print(f"  round {round_no + 1}/{rounds} {method}: {result['reviews_per_s']:.1f} reviews/s "
                  f"(load {load_before:.1f})", flush=True)
    failed = [r for r in results if "error" in r]
    results = [r for r in results if "error" not in r]
    if not results:
        raise SystemExit("every method failed")
    reference_name = _note_agreement(results)
    print()
    print(f"model: {model_dir or 'packaged MiniLM encoder + fresh random head (macro-F1 meaningless)'}")
    print(f"data: {n} reviews from {DATA.name} (seed {seed}), truncation {max_length} tokens, "
          f"{results[0]['tokens'] / n:.0f} tokens/review on average")
    print(f"device: {results[0]['device']} (precision {precision}; pipeline batch {pipeline_batch_size}); "
          f"attention: {results[0]['attention']}")
    print(f"machine: {_cpu_model()}, {os.cpu_count()} CPUs; load = 1-min load average before -> after each method; "
          f"agreement = same argmax as {reference_name} (fp32)")
    header = f"{'method':<40} {'rnd':>3} {'reviews/s':>9} {'tokens/s':>9} {'CPU s':>7} {'peak MB':>7} " \
             f"{'macro-F1':>8} {'agree':>7} {'OMP wait':>8} {'thr':>3} {'load':>9}"
    print(header)
    print("-" * len(header))
    for r in results:
        agree = r["agree_ref"] if r["agree_ref"] is not None else float("nan")
        print(f"{r['method']:<40} {r['round'] + 1:>3} {r['reviews_per_s']:>9.1f} {r['tokens'] / r['seconds']:>9.0f} "
              f"{r['cpu_s']:>7.1f} {r['peak_rss_mb']:>7.0f} {r['macro_f1']:>8.4f} {agree:>7.2%} "
              f"{r['omp_wait_policy']:>8} {r['threads']:>3} {r['loadavg_before']:>4.1f}>{r['loadavg_after']:<4.1f}")
    summary = summarize(results)
    print()
    print("medians over rounds; ratios are taken within each round (same load), then the median of those:")
    for method, row in summary.items():
        ratios = ", ".join(f"{row[k]:.2f}x {k.removeprefix('x_')}" for k in row if k.startswith("x_"))
        print(f"  {method:<40} {row['reviews_per_s']:>7.1f} reviews/s  {row['cpu_s']:>6.1f} CPU s  "
              f"agree {row['agree_ref']:.2%}" + (f"  | {ratios}" if ratios else ""))
    for r in failed:
        print(f"{r['method']} (round {r['round'] + 1}): FAILED")
    _write_json(json_out, _report(device, precision, n, results + failed, summary))
    return results + failed


def _note_agreement(results: list[dict]) -> str | None:
    """Set each result's ``agree_ref`` (share of argmaxes equal to the reference's); returns the reference's name."""
    import numpy as np

    reference_name = next((m for m in REFERENCES if any(r["method"] == m for r in results)), None)
    reference = next((r["pred"] for r in results if r["method"] == reference_name), None)
    for r in results:
        r["agree_ref"] = float((np.array(r["pred"]) == np.array(reference)).mean()) if reference is not None else None
    return reference_name


def summarize(results: list[dict]) -> dict[str, dict]:
    """Per method: median reviews/s, CPU s and agreement, and the median within-round speed ratio of
    each ``ours*`` method over each other method that ran in the same round."""
    import statistics

    by_method: dict[str, list[dict]] = {}
    for r in results:
        by_method.setdefault(r["method"], []).append(r)
    summary = {}
    for method, rows in by_method.items():
        row = {"reviews_per_s": statistics.median(r["reviews_per_s"] for r in rows),
               "cpu_s": statistics.median(r["cpu_s"] for r in rows),
               "agree_ref": statistics.median(r["agree_ref"] if r["agree_ref"] is not None else float("nan") for r in rows),
               "rounds": len(rows)}
        if method.startswith("ours"):
            for other in by_method:
                if other.startswith("ours"):
                    continue
                ratios = [mine["reviews_per_s"] / theirs["reviews_per_s"]
                          for mine in rows for theirs in by_method[other] if theirs["round"] == mine["round"]]
                if ratios:
                    row[f"x_{other}"] = statistics.median(ratios)
        summary[method] = row
    return summary


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


# `tastebud score` variants for --e2e: the model they score with and the environment they run in.
E2E_VARIANTS = {
    "ours": ("finetuned", {}),  # as pipeline.device decides for this CPU
    "ours-fp32": ("finetuned", {"TASTEBUD_CPU_BF16": "0", "TASTEBUD_CPU_INT8": "0"}),
    "ours-int8": ("finetuned", {"TASTEBUD_CPU_BF16": "0", "TASTEBUD_CPU_INT8": "1"}),
    "ours-fp32-1stream": ("finetuned", {"TASTEBUD_CPU_BF16": "0", "TASTEBUD_CPU_INT8": "0", "TASTEBUD_CPU_STREAMS": "1"}),
    "ensemble": ("ensemble", {}),  # the default product: fine-tuned + TF-IDF member, as decided here
    "ensemble-fp32": ("ensemble", {"TASTEBUD_CPU_BF16": "0", "TASTEBUD_CPU_INT8": "0"}),
}


def end_to_end(n: int, model_dir: str | None, work: Path, *, chunk_size: int | None = None,
               max_length: int = 128, truncation: str = "head_tail", variants: tuple[str, ...] = ("ours",),
               rounds: int = 1, seed: int = 0, models_from: str | None = None) -> dict:
    """``tastebud score`` as a user runs it, on ``n`` stored reviews, against the batched HF pipeline.

    The store is seeded through the store API with the same reviews the other benchmarks use
    (``_load_texts``: the later half of yelp_dev.csv, never trained on), the models are
    registered (``model_dir``, or the newest ensemble of the store ``models_from`` and its
    fine-tuned member), and each variant scores a fresh copy of that store in a subprocess:
    its own timing (model loading, reading, tokenizing, scoring and writing) and the command's
    wall time (interpreter start included) are reported. ``pipeline-batched`` in ``variants``
    runs the HF pipeline on the same reviews and model (its compute only, model load excluded:
    the most favourable figure for it). Variants run interleaved for ``rounds`` rounds; labels
    are compared with the fp32 variant of the same model (``ours-fp32`` / ``ensemble-fp32``).
    """
    import shutil
    import statistics

    import numpy as np
    import pandas as pd

    from store import models as model_store
    from store.actors import cli_actor
    from store.db import connect, transaction
    from store.predictions import fetch_predictions
    from store.reviews import upsert_reviews
    from store.schema import init_store

    work.mkdir(parents=True, exist_ok=True)
    pristine, _ = init_store(work / "e2e-seeded.duckdb")
    rows = {}
    if models_from:
        with connect(models_from, read_only=True) as con:
            ensembles = model_store.list_models(con, kind="ensemble")  # newest first
            ready = ensembles[ensembles["status"] == "ready"]
            if ready.empty:
                raise SystemExit(f"no ready ensemble in {models_from}")
            rows["ensemble"] = model_store.get_model(con, ready.iloc[0]["model_id"])
        rows["finetuned"] = dict(rows["ensemble"]["params"]["members"][0]["row"])
        model_dir = rows["finetuned"]["path"]
    elif model_dir is None:
        import torch

        from pipeline.models.loading import default_base_model, load_classifier, save_classifier

        torch.manual_seed(0)
        model, tokenizer = load_classifier(default_base_model())
        model_dir = str(save_classifier(model, tokenizer, work / "fresh-head", {"max_length": max_length}))
    if "finetuned" not in rows:
        rows["finetuned"] = {"model_id": "bench", "kind": "finetuned", "name": "bench", "path": model_dir,
                             "params": {"max_length": max_length, "truncation": truncation}}
    sample = _load_texts(n, seed)
    started = time.perf_counter()
    for start in range(0, n, 100_000):
        part = sample.iloc[start : start + 100_000]
        batch = pd.DataFrame({"review_id": [f"e2e{i:09d}" for i in range(start, start + len(part))], "source": "bench",
                              "text": part["text"].astype(str).to_numpy()})
        with transaction(pristine) as con:
            upsert_reviews(con, batch)
    seed_s = time.perf_counter() - started
    with transaction(pristine) as con:
        for row in rows.values():
            model_store.register_model(con, model_id=row["model_id"], kind=row["kind"], name=row.get("name") or row["model_id"],
                                       path=row.get("path"), params=row.get("params"))
        model_store.promote_model(con, cli_actor(), rows["finetuned"]["model_id"])
    base_env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
                    HF_HUB_OFFLINE="1")
    runs, labels = [], {}
    for round_no in range(rounds):
        for variant in variants:
            load_before = os.getloadavg()[0]
            if variant.startswith("pipeline"):
                out = subprocess.run(
                    [sys.executable, __file__, "--worker", variant, "--n", str(n), "--seed", str(seed),
                     "--max-length", str(max_length), "--model-dir", model_dir],
                    capture_output=True, text=True, env=worker_env(variant, base_env))
                if out.returncode != 0:
                    raise SystemExit(f"{variant} failed:\n{out.stderr[-3000:]}")
                result = json.loads(out.stdout.strip().splitlines()[-1])
                run = {"variant": variant, "round": round_no, "reviews_per_s": result["n"] / result["seconds"],
                       "seconds": result["seconds"], "cpu_s": result["cpu_s"], "omp_wait_policy": result["omp_wait_policy"]}
                labels.setdefault(variant, np.array(result["pred"]))
            else:
                which, extra = E2E_VARIANTS[variant]
                db = work / "e2e-run.duckdb"
                for suffix in ("", ".wal"):
                    Path(f"{db}{suffix}").unlink(missing_ok=True)
                shutil.copyfile(pristine, db)
                cmd = [sys.executable, "-m", "pipeline.cli", "--db", str(db), "score", "--model", rows[which]["model_id"],
                       "--json"] + (["--chunk-size", str(chunk_size)] if chunk_size else [])
                env = dict(base_env, **extra)
                env.pop("OMP_WAIT_POLICY", None)  # tastebud's own default (pipeline/__init__.py)
                started = time.perf_counter()
                out = subprocess.run(cmd, capture_output=True, text=True, env=env)
                wall = time.perf_counter() - started
                if out.returncode != 0:
                    raise SystemExit(f"tastebud score ({variant}) failed:\n{out.stderr[-3000:]}")
                result = json.loads(out.stdout)
                with connect(db, read_only=True) as con:
                    stored = fetch_predictions(con, rows[which]["model_id"])
                probs = stored[["p_negative", "p_neutral", "p_positive"]].to_numpy()
                labels.setdefault(variant, probs.argmax(axis=1))
                run = {"variant": variant, "round": round_no, "reviews_per_s": result["reviews_per_s"],
                       "seconds": result["seconds"], "command_wall_s": round(wall, 2),
                       "reviews_per_s_wall": round(result["scored"] / wall, 1), "scored": result["scored"],
                       "chunk_size": result.get("chunk_size"), "commits": result.get("commits")}
            run.update(loadavg_before=load_before, loadavg_after=os.getloadavg()[0])
            runs.append(run)
            print(f"  round {round_no + 1}/{rounds} {variant}: {run['reviews_per_s']:.1f} reviews/s"
                  + (f" (own timing; {run['reviews_per_s_wall']:.1f}/s whole command)" if "command_wall_s" in run else "")
                  + f", load {load_before:.1f} -> {run['loadavg_after']:.1f}", flush=True)
    summary = {}
    for variant in variants:
        mine = [r for r in runs if r["variant"] == variant]
        row = {"reviews_per_s": statistics.median(r["reviews_per_s"] for r in mine)}
        # fp32 labels to compare with: the fp32 run of the same model, else the single-stream fp32 run (the same
        # numbers: streams change the schedule, not the arithmetic), else the plain pipeline's fp32 labels.
        candidates = ("ensemble-fp32",) if variant.startswith("ensemble") else (
            "ours-fp32", "ours-fp32-1stream", *[v for v in variants if v.startswith("pipeline-batched")])
        reference = next((c for c in candidates if c in labels and c != variant), None)
        if reference is not None and not variant.startswith("pipeline"):
            row[f"agree_{reference}"] = float((labels[variant] == labels[reference]).mean())
        for other in variants:
            if other != variant and (other.startswith("pipeline") or other in ("ours-fp32", "ours")):
                ratios = [a["reviews_per_s"] / b["reviews_per_s"] for a in mine for b in runs
                          if b["variant"] == other and b["round"] == a["round"]]
                if ratios:
                    row[f"x_{other}"] = statistics.median(ratios)
        summary[variant] = row
    print(f"\n`tastebud score` end to end on {n:,} stored reviews ({max_length} tokens, {truncation}); "
          f"{_cpu_model()}; medians over {rounds} round(s), ratios within a round:")
    for variant, row in summary.items():
        extras = "  ".join(f"{k}={v:.2%}" if k.startswith("agree") else f"{v:.2f}x {k[2:]}" for k, v in row.items()
                           if k != "reviews_per_s")
        print(f"  {variant:<16} {row['reviews_per_s']:>7.1f} reviews/s  {extras}")
    return {"reviews": n, "seed_s": round(seed_s, 1), "cpu": _cpu_model(), "max_length": max_length,
            "models": {k: v["model_id"] for k, v in rows.items()}, "runs": runs, "summary": summary}


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
    parser.add_argument("--precision", choices=("auto", "bf16", "fp32", "int8"), default="auto",
                        help="ours: as detected, or forced bf16, fp32 (bf16 and int8 off) or int8 (bf16 off)")
    parser.add_argument("--max-length", type=int, default=MAX_LENGTH, help=f"truncation in tokens (default {MAX_LENGTH})")
    parser.add_argument("--rounds", type=int, default=1, help="run the methods (or --e2e variants) this many times, "
                        "interleaved; medians and within-round ratios are reported")
    parser.add_argument("--variants", default="ours,ours-fp32,pipeline-batched",
                        help=f"--e2e: comma-separated, from {', '.join(E2E_VARIANTS)} and pipeline methods")
    parser.add_argument("--models-from", help="--e2e: score the newest ensemble of this store and its fine-tuned member")
    parser.add_argument("--pipeline-batch-size", type=int, default=None, help="default: 32 on cpu, 128 on cuda")
    parser.add_argument("--e2e", type=int, help="instead: `tastebud score` end to end on this many stored reviews")
    parser.add_argument("--work-dir", default=None, help="--e2e: where the store goes (default: a temp dir)")
    parser.add_argument("--json-out", help="also write the results as JSON here")
    args = parser.parse_args()
    if args.worker:
        result = run_method(args.worker, args.model_dir, args.n, args.seed, args.device, args.pipeline_batch_size or 32,
                            args.max_length)
        print(json.dumps(result))
        return
    if args.store_scale:
        store_scale(args.store_scale, args.chunk_size or 2048)
        return
    if args.e2e:
        with tempfile.TemporaryDirectory() as tmp:
            variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())
            for v in variants:
                if v not in E2E_VARIANTS:
                    parse_method(v)
            result = end_to_end(args.e2e, args.model_dir, Path(args.work_dir or tmp), chunk_size=args.chunk_size,
                                max_length=args.max_length, variants=variants, rounds=args.rounds, seed=args.seed,
                                models_from=args.models_from)
        _write_json(args.json_out, result)
        return
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        print(f"{m}: {METHODS[parse_method(m)[0]]}")
    compare(args.model_dir, args.n, args.seed, methods, device=args.device, precision=args.precision,
            pipeline_batch_size=args.pipeline_batch_size, json_out=args.json_out, rounds=args.rounds,
            max_length=args.max_length)


def _report(device: str, precision: str, n: int, results: list[dict], summary: dict | None = None) -> dict:
    return {"device": device, "precision": precision, "n": n, "cpu": _cpu_model(), "summary": summary,
            "results": [{k: v for k, v in r.items() if k != "pred"} for r in results]}


def _write_json(path: str | None, payload) -> None:
    if path:
        Path(path).write_text(json.dumps(payload, indent=2, default=str))


if __name__ == "__main__":
    main()
