"""Collect the steps of bench/gpu_run.sh into one JSON file and one markdown summary.

    python bench/gpu_report.py add STEP STATUS SECONDS [RESULT.json]   # after each step

``$OUT/gpu_results.json`` maps each step to {status, seconds, result}; ``$OUT/gpu_summary.md``
gets a section per step as it finishes, so whatever ran is reported even if a later step is
killed. Kept to two files: the device runner brings back at most 8 files from $OUT.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return "" if value is None else str(value)


def _table(rows: list[dict], columns: list[str]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c)) for c in columns) + " |")
    return lines


def render(step: str, status: str, seconds: float, result) -> list[str]:
    lines = [f"## {step}: {status} ({seconds:.0f} s)", ""]
    if isinstance(result, dict) and "results" in result and step.startswith("scoring"):
        lines.append(f"device {result['results'][0].get('device', '?')}, n={result.get('n')}, "
                     f"precision {result.get('precision')}, CPU {result.get('cpu')}")
        lines.append("")
        lines += _table(result["results"], ["method", "reviews_per_s", "seconds", "batch_size", "agree_fp32",
                                            "x_pipeline-batched", "x_pipeline-batched-fp16", "error"])
    elif isinstance(result, dict) and "runs" in result:
        lines.append(f"device {result.get('device')}, {result.get('precision')}, batch {result.get('batch_size')}, "
                     f"{result.get('epochs')} epochs, max_length {result.get('max_length')}, "
                     f"import {result.get('import_s')} s, CPU {result.get('cpu')}")
        lines.append("")
        lines += _table(result["runs"], ["method", "examples_per_s", "train_seconds", "command_wall_s",
                                         "outside_training_s", "weights_on", "val_macro_f1", "test_macro_f1"])
        failed = [r for r in result["runs"] if "error" in r]
        lines += [f"\n{r['method']} failed: `{r['error'][-400:]}`" for r in failed]
    elif isinstance(result, dict) and "gpu_workers" in result:  # bench/ray_bench.py
        lines.append(f"model {result.get('model')}, load {result.get('load_at_start')} -> {result.get('load_at_end')}")
        lines.append("")
        rows = [{"reviews": s["reviews"], "way": way, **s[way]} for s in result.get("scoring", [])
                for way in ("local", "ray") if way in s]
        lines += _table(rows, ["reviews", "way", "reviews_per_s", "seconds", "replicas", "driver_peak_mib"])
        lines += ["", "train --ray on GPU workers: " + ", ".join(f"{k} {_fmt(v)}" for k, v in result["gpu_workers"].items())]
    elif isinstance(result, dict):
        lines += _table([result], [k for k in result if not isinstance(result[k], (dict, list))][:12])
    elif result is not None:
        lines.append(f"```\n{str(result)[-3000:]}\n```")
    return lines + [""]


def add(step: str, status: str, seconds: float, result_path: str | None) -> None:
    out = Path(os.environ.get("OUT") or ".")
    result = None
    if result_path and Path(result_path).exists():
        text = Path(result_path).read_text()
        try:
            result = json.loads(text)
        except json.JSONDecodeError:
            result = text
    store = out / "gpu_results.json"
    everything = json.loads(store.read_text()) if store.exists() else {}
    everything[step] = {"status": status, "seconds": round(seconds, 1), "result": result}
    store.write_text(json.dumps(everything, indent=2, default=str))
    with (out / "gpu_summary.md").open("a") as f:
        f.write("\n".join(render(step, status, seconds, result)) + "\n")


if __name__ == "__main__":
    if len(sys.argv) < 5 or sys.argv[1] != "add":
        raise SystemExit(__doc__)
    add(sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5] if len(sys.argv) > 5 else None)
