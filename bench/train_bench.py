"""Training throughput: `tastebud train` against a plain Hugging Face Trainer, same data, same device.

    python bench/train_bench.py --device cuda --json-out train.json
    python bench/train_bench.py --device cpu --precision fp32 --max-train-examples 400 --epochs 1

Steps, each in its own subprocess (so each pays its own imports, as a user does):
1. ``tastebud import`` of the data file into a fresh store (timed, not compared);
2. ``tastebud train --json`` with the defaults (or ``--batch-size``/``--epochs`` given): the whole
   command's wall time, and the examples/s it measured itself (training epochs only);
3. the reference: a plain ``Trainer`` script over the same train/val reviews (read from the
   same store), ``DataCollatorWithPadding``, the same batch size, epochs, max length,
   precision and device, with an evaluation per epoch as ours does; its own
   ``train_samples_per_second`` and the whole script's wall time.

Both start from the packaged MiniLM with a fresh head. ``--extra-batch-sizes 128`` also
trains ours at other batch sizes (with its learning rate scaled by the square root of the
batch ratio) and reports validation macro-F1 beside the speed.
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.scoring_bench import DATA, _cpu_model  # noqa: E402

PLAIN_TRAINER = r"""
import json, sys, time
started = time.perf_counter()
import numpy as np, torch
from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, set_seed
from pipeline.models.loading import default_base_model, load_classifier
from store.constants import LABEL_TO_ID
from store.db import connect
from store.reviews import fetch_labeled_split

db, device, precision, batch_size, epochs, max_length, limit = sys.argv[1:8]
batch_size, epochs, max_length = int(batch_size), int(epochs), int(max_length)
set_seed(42)
with connect(db, read_only=True) as con:
    train_df, val_df = fetch_labeled_split(con, "train"), fetch_labeled_split(con, "val")
if limit != "none":
    train_df = train_df.sample(min(len(train_df), int(limit)), random_state=42)
model, tokenizer = load_classifier(default_base_model())

class Data(torch.utils.data.Dataset):
    def __init__(self, frame):
        self.enc = tokenizer(frame["text"].tolist(), truncation=True, max_length=max_length)
        self.labels = [LABEL_TO_ID[l] for l in frame["label"]]
    def __len__(self):
        return len(self.labels)
    def __getitem__(self, i):
        return {"input_ids": self.enc["input_ids"][i], "attention_mask": self.enc["attention_mask"][i], "labels": self.labels[i]}

args = TrainingArguments(
    output_dir="/tmp/plain-trainer-bench", per_device_train_batch_size=batch_size, per_device_eval_batch_size=64,
    num_train_epochs=epochs, learning_rate=1e-4, eval_strategy="epoch", save_strategy="no", report_to="none",
    bf16=precision == "bf16", fp16=precision == "fp16", use_cpu=device == "cpu", disable_tqdm=True, log_level="error",
)
trainer = Trainer(model=model, args=args, train_dataset=Data(train_df), eval_dataset=Data(val_df),
                  data_collator=DataCollatorWithPadding(tokenizer))
out = trainer.train()
print(json.dumps({"train_samples_per_second": out.metrics["train_samples_per_second"],
                  "train_runtime": out.metrics["train_runtime"], "n_train": len(train_df),
                  "script_s": time.perf_counter() - started}))
"""


def _env(precision: str) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
               HF_HUB_OFFLINE="1")
    if precision == "fp32":
        env["TASTEBUD_CPU_BF16"] = "0"
    return env


def _run(cmd: list[str], env: dict, timeout: float | None) -> tuple[subprocess.CompletedProcess, float]:
    started = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    return out, time.perf_counter() - started


def _cli(db: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "pipeline.cli", "--db", str(db), *args]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--precision", choices=("auto", "bf16", "fp16", "fp32"), default="auto")
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--epochs", type=int, default=None, help="default: tastebud's")
    parser.add_argument("--batch-size", type=int, default=None, help="default: tastebud's")
    parser.add_argument("--max-train-examples", type=int, default=None)
    parser.add_argument("--extra-batch-sizes", default="", help="comma-separated: also train ours at these")
    parser.add_argument("--skip-plain", action="store_true", help="skip the plain Trainer reference")
    parser.add_argument("--work-dir", default=None)
    parser.add_argument("--timeout", type=float, default=None, help="seconds per subprocess")
    parser.add_argument("--json-out")
    args = parser.parse_args()

    from pipeline.device import resolve_device
    from pipeline.train.config import DEFAULT_BATCH_SIZE, DEFAULT_EPOCHS, DEFAULT_LEARNING_RATE, DEFAULT_MAX_LENGTH

    env = _env(args.precision)
    if args.precision == "fp32":
        os.environ["TASTEBUD_CPU_BF16"] = "0"
    info = resolve_device(args.device)
    precision = info.train_precision if args.precision == "auto" else args.precision
    batch_size, epochs = args.batch_size or DEFAULT_BATCH_SIZE, args.epochs or DEFAULT_EPOCHS
    report: dict = {"device": info.name, "cpu": _cpu_model(), "precision": precision, "batch_size": batch_size,
                    "epochs": epochs, "max_length": DEFAULT_MAX_LENGTH, "data": Path(args.data).name, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work_dir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        db = work / "train.duckdb"
        out, wall = _run(_cli(db, "import", args.data, "--json"), env, args.timeout)
        if out.returncode != 0:
            raise SystemExit(f"import failed:\n{out.stderr[-3000:]}")
        report["import_s"] = round(wall, 2)
        print(f"import: {wall:.1f}s", flush=True)
        sizes = [batch_size] + [int(b) for b in args.extra_batch_sizes.split(",") if b.strip()]
        for size in sizes:
            lr = DEFAULT_LEARNING_RATE * (size / batch_size) ** 0.5
            cmd = _cli(db, "train", "--json", "--device", args.device, "--precision", precision,
                       "--batch-size", str(size), "--epochs", str(epochs), "--lr", f"{lr:g}")
            if args.max_train_examples:
                cmd += ["--max-train-examples", str(args.max_train_examples)]
            out, wall = _run(cmd, env, args.timeout)
            if out.returncode != 0:
                print(f"tastebud train (batch {size}) failed:\n{out.stderr[-3000:]}", flush=True)
                report["runs"].append({"method": f"tastebud-batch{size}", "error": out.stderr[-3000:]})
                continue
            result = json.loads(out.stdout)
            tp = result.get("throughput") or {}
            row = {"method": f"tastebud train (batch {size}, lr {lr:g})", "command_wall_s": round(wall, 2),
                   "examples_per_s": tp.get("examples_per_s"), "train_seconds": tp.get("train_seconds"),
                   "tokens_per_s": tp.get("tokens_per_s"), "examples": tp.get("examples"),
                   "val_macro_f1": (result.get("val_metrics") or {}).get("macro_f1"),
                   "test_macro_f1": (result.get("metrics") or {}).get("macro_f1"), "model_id": result.get("model_id"),
                   "model_dir": str(work / "models" / result["model_id"]), "weights_on": tp.get("weights_on"),
                   "outside_training_s": round(wall - (tp.get("train_seconds") or 0), 2),
                   "log_tail": out.stderr[-1500:]}
            report["runs"].append(row)
            print(f"{row['method']}: {row['examples_per_s']} examples/s in training, {wall:.1f}s for the whole "
                  f"command, val macro-F1 {row['val_macro_f1']}", flush=True)
        if not args.skip_plain:
            limit = str(args.max_train_examples) if args.max_train_examples else "none"
            out, wall = _run([sys.executable, "-c", PLAIN_TRAINER, str(db), args.device, precision, str(batch_size),
                              str(epochs), str(DEFAULT_MAX_LENGTH), limit], env, args.timeout)
            if out.returncode != 0:
                print(f"plain Trainer failed:\n{out.stderr[-3000:]}", flush=True)
                report["runs"].append({"method": "plain-trainer", "error": out.stderr[-3000:]})
            else:
                plain = json.loads(out.stdout.strip().splitlines()[-1])
                row = {"method": f"plain HF Trainer (batch {batch_size})", "command_wall_s": round(wall, 2),
                       "examples_per_s": round(plain["train_samples_per_second"], 1),
                       "train_seconds": round(plain["train_runtime"], 2)}
                report["runs"].append(row)
                print(f"{row['method']}: {row['examples_per_s']} examples/s (train_runtime includes its per-epoch "
                      f"evaluation), {wall:.1f}s for the whole script", flush=True)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
