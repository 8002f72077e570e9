"""Cross-validated model quality: default `tastebud train`, candidate recipes and baselines, mean ± std over folds.

For each dataset (Yelp dev reviews, 3 classes from stars; SemEval-2014 restaurant sentences,
sentence polarity, mixed excluded) and each fold, a fresh store gets that fold's frozen
train / val / test assignment, and every method is run through the product's own code path:

- TF-IDF + LR, VADER, zero-shot: ``register_baselines`` (C / softmax scale chosen on val);
- each recipe of ``pipeline.train.config.RECIPES``: ``pipeline.train.run.train`` (best epoch,
  temperature and class offsets chosen on val; an ``ensemble`` recipe also registers the
  ensemble, its weight fitted on val), evaluated on the fold's test split.

Nothing is ever chosen on a test fold. Folds: ``--scheme repeated`` draws K stratified
80/10/10 splits with seeds 0..K-1 (the product's own proportions); ``--scheme kfold`` uses
K stratified test folds, 1/9 of the rest as validation. ``--deadline-s`` stops cleanly: a
run is started only when its expected time (the slowest earlier run of the same method)
still fits; what finished is written after every run to ``OUT/results.jsonl``,
``OUT/summary.md`` and ``OUT/summary.json``, with the recommendation (which recipe won by
how much, and whether that beats the fold standard deviation). Usage::

    PYTHONPATH=. python bench/quality_bench.py --datasets yelp --folds 3 --recipes baseline,mean-sqrt-prior \\
        --methods tfidf,vader --device cpu --max-train 1500 --epochs 1 --out /tmp/q
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import traceback
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Set before torch loads OpenMP: idle threads sleep instead of spinning (shared CPUs, see RESULTS.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# No progress bars: the output is a log read afterwards.
os.environ.setdefault("TQDM_DISABLE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.train.config import DEFAULT_RECIPE, RECIPES, TrainConfig  # noqa: E402

# Where data is looked for: --data-dir, $TASTEBUD_SHARED_DATA, ../shared/data beside the checkout,
# /work/shared/data, and the GPU kit's flat .gpukit/data folder.
DATASET_FILES = {
    "yelp": ("yelp_reviews_10k/yelp_dev.csv", "yelp_dev.csv"),
    "semeval": ("semeval2014_restaurants/sentences.csv", "sentences.csv"),
}
BASELINE_METHODS = ("tfidf", "vader", "zeroshot")
METHOD_IDS = {"tfidf": "baseline-tfidf-lr", "vader": "baseline-vader", "zeroshot": "baseline-zeroshot-minilm"}
METHOD_NAMES = {"tfidf": "TF-IDF + LR", "vader": "VADER", "zeroshot": "zero-shot MiniLM"}
# Share of the remaining time budget the first dataset gets when two are benchmarked.
FIRST_DATASET_SHARE = 0.75


def data_dirs(explicit: str | None) -> list[Path]:
    dirs = [Path(explicit)] if explicit else []
    if "TASTEBUD_SHARED_DATA" in os.environ:
        dirs.append(Path(os.environ["TASTEBUD_SHARED_DATA"]))
    return dirs + [ROOT.parent / "shared" / "data", Path("/work/shared/data"), ROOT / ".gpukit" / "data"]


def find_dataset(name: str, dirs: list[Path]) -> Path | None:
    for folder in dirs:
        for rel in DATASET_FILES[name]:
            if (folder / rel).is_file():
                return folder / rel
    return None


def load_dataset(name: str, path: Path) -> pd.DataFrame:
    """review_id, restaurant_id, created_at, stars, text, source, label for one dataset."""
    if name == "yelp":
        raw = pd.read_csv(path)
        stars = raw["stars"].astype(int)
        label = np.where(stars <= 2, "negative", np.where(stars == 3, "neutral", "positive"))
        return pd.DataFrame({
            "review_id": raw["review_id"].astype(str), "restaurant_id": raw["business_id"].astype(str),
            "created_at": pd.to_datetime(raw["date"]), "stars": stars, "text": raw["text"].astype(str),
            "source": "yelp_dev", "label": label,
        })
    raw = pd.read_csv(path, dtype={"sentence_id": str})
    raw = raw[(raw["split"] == "train") & raw["sentence_label"].isin(["negative", "neutral", "positive"])]
    return pd.DataFrame({
        "review_id": "semeval-" + raw["sentence_id"], "restaurant_id": None, "created_at": pd.NaT,
        "stars": pd.array([pd.NA] * len(raw), dtype="Int64"), "text": raw["text"].astype(str),
        "source": "semeval2014", "label": raw["sentence_label"],
    }).reset_index(drop=True)


def fold_assignments(labels: pd.Series, *, scheme: str, folds: int) -> list[pd.Series]:
    """One split column ("train"/"val"/"test") per fold, stratified by label."""
    from sklearn.model_selection import StratifiedKFold, train_test_split

    index = np.arange(len(labels))
    y = labels.to_numpy()
    out = []
    if scheme == "kfold":
        for k, (rest, test) in enumerate(StratifiedKFold(folds, shuffle=True, random_state=0).split(index, y)):
            train, val = train_test_split(rest, test_size=1 / 9, stratify=y[rest], random_state=k)
            out.append(_as_split(len(y), train, val, test))
        return out
    for k in range(folds):
        rest, test = train_test_split(index, test_size=0.1, stratify=y, random_state=k)
        train, val = train_test_split(rest, test_size=1 / 9, stratify=y[rest], random_state=k)
        out.append(_as_split(len(y), train, val, test))
    return out


def _as_split(n: int, train, val, test) -> pd.Series:
    split = np.empty(n, dtype=object)
    split[train], split[val], split[test] = "train", "val", "test"
    return pd.Series(split)


def cap_train(frame: pd.DataFrame, split: pd.Series, max_train: int | None, seed: int) -> pd.DataFrame:
    """The fold's rows; with ``max_train``, a stratified sample of its train rows (the rest left out entirely)."""
    frame = frame.assign(split=split.to_numpy())
    if not max_train or (frame["split"] == "train").sum() <= max_train:
        return frame
    from sklearn.model_selection import train_test_split

    train = frame[frame["split"] == "train"]
    kept, _ = train_test_split(train.index.to_numpy(), train_size=max_train, stratify=train["label"], random_state=seed)
    return pd.concat([frame.loc[kept], frame[frame["split"] != "train"]])


def build_store(folder: Path, frame: pd.DataFrame) -> Path:
    """A fresh store holding the fold's reviews, labels (source "import") and explicit splits."""
    from store.db import transaction
    from store.reviews import add_reviews
    from store.schema import init_store

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    db, _ = init_store(folder / "store.duckdb")
    with transaction(db) as con:
        add_reviews(con, frame[["review_id", "restaurant_id", "created_at", "stars", "text", "source"]].reset_index(drop=True),
                    frame[["review_id", "label"]].assign(source="import").reset_index(drop=True),
                    splits=frame[["review_id", "split"]].reset_index(drop=True))
    return db


class Bench:
    """Runs methods over folds within a deadline and keeps the results files current."""

    def __init__(self, out: Path, deadline: float, device: str | None, overrides: dict):
        self.out, self.deadline, self.device, self.overrides = out, deadline, device, overrides
        self.records: list[dict] = []
        self.seconds: dict[str, float] = {}
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.jsonl").write_text("")

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def fits(self, key: str, deadline: float) -> bool:
        """Whether a run of ``key`` ("dataset/method") is expected to end before ``deadline``: its slowest
        earlier run, else the slowest run of any recipe on that dataset so far (for a recipe), else yes."""
        expected = self.seconds.get(key)
        dataset, _, method = key.partition("/")
        if expected is None and method.startswith("recipe:"):
            expected = max((s for k, s in self.seconds.items() if k.startswith(f"{dataset}/recipe:")), default=0.0)
        return time.monotonic() + (expected or 0.0) < deadline

    def add(self, record: dict, key: str, seconds: float) -> None:
        self.seconds[key] = max(self.seconds.get(key, 0.0), seconds)
        record["seconds"] = round(seconds, 1)
        self.records.append(record)
        with (self.out / "results.jsonl").open("a") as f:
            f.write(json.dumps(record, default=float) + "\n")
        write_summary(self.out, self.records)
        m = record.get("macro_f1")
        print(f"[{datetime.now():%H:%M:%S}] {record['dataset']} fold {record['fold']} {record['method']}: "
              + (f"macro-F1 {m:.4f} acc {record['accuracy']:.4f}" if m is not None else record.get("status", "")) +
              f" ({seconds:.0f}s, {self.left():.0f}s left)", flush=True)


def run_baselines(bench: Bench, db, dataset: str, fold: int, methods: list[str], deadline: float) -> None:
    from pipeline.models.baselines import register_baselines
    from store.actors import cli_actor
    from store.db import connect
    from store.evaluations import fetch_latest_evaluation

    for method in methods:
        if not bench.fits(f"{dataset}/{method}", deadline):
            print(f"skip {method} fold {fold}: deadline", flush=True)
            continue
        started = time.monotonic()
        register_baselines(db, actor=cli_actor(), include=(method,), evaluate=True)
        with connect(db, read_only=True) as con:
            metrics = fetch_latest_evaluation(con, METHOD_IDS[method])
        bench.add(_record(dataset, fold, method, metrics), f"{dataset}/{method}", time.monotonic() - started)


def run_recipe(bench: Bench, db, dataset: str, fold: int, recipe: str) -> None:
    from pipeline.models.ensemble import finetuned_member
    from pipeline.train.run import train
    from store.db import connect
    from store.evaluations import fetch_latest_evaluation
    from store.models import get_model

    config = TrainConfig.from_recipe(recipe, seed=42 + fold, **({"device": bench.device} if bench.device else {}), **bench.overrides)
    started = time.monotonic()
    product = train(db, config)  # the ensemble's id when the recipe builds one
    seconds = time.monotonic() - started
    with connect(db, read_only=True) as con:
        model = get_model(con, product)
        member_id = finetuned_member(model)
        ensemble = fetch_latest_evaluation(con, product) if member_id else None
        if member_id:
            model = get_model(con, member_id)
        metrics = fetch_latest_evaluation(con, model["model_id"])
    extra = _finetune_extra(model, config)
    if ensemble and RECIPES[recipe].get("ensemble"):
        # The recipe's product is the ensemble: "recipe:NAME" is what `train --recipe NAME` hands on, and its
        # fine-tuned member is recorded beside it (paired with it on the same fold).
        bench.add(_record(dataset, fold, f"recipe:{recipe}", ensemble, **extra), f"{dataset}/recipe:{recipe}", seconds)
        bench.add(_record(dataset, fold, f"recipe:{recipe}~finetuned", metrics, **extra), f"{dataset}/member:{recipe}", 0.0)
        return
    bench.add(_record(dataset, fold, f"recipe:{recipe}", metrics, **extra), f"{dataset}/recipe:{recipe}", seconds)
    if ensemble:  # built because of --set ensemble=true; its time is part of the recipe's run above
        bench.add(_record(dataset, fold, f"recipe:{recipe}+ensemble", ensemble, **extra), f"{dataset}/ensemble:{recipe}", 0.0)


def _finetune_extra(model: dict, config: TrainConfig) -> dict:
    params = model.get("params") or {}
    calibration = params.get("calibration") or {}
    throughput = params.get("throughput") or {}
    return {
        "val_macro_f1": (model.get("val_metrics") or {}).get("macro_f1"), "best_epoch": (model.get("val_metrics") or {}).get("epoch"),
        "train_seconds": throughput.get("train_seconds"), "examples_per_s": throughput.get("examples_per_s"),
        "temperature": calibration.get("temperature") if calibration.get("temperature_applied") else 1.0,
        "class_bias": calibration.get("class_bias") if calibration.get("bias_applied") else None,
        "val_ece_before": calibration.get("val_ece_before"), "val_ece_after": calibration.get("val_ece_after"),
        "config": {k: v for k, v in config.to_dict().items() if k in ("head", "class_weighting", "max_length", "learning_rate",
                                                                      "epochs", "lr_schedule", "layer_lr_decay", "prior_adjust")},
        "device": model.get("device"), "precision": params.get("precision"),
    }


def _record(dataset: str, fold: int, method: str, metrics: dict, **extra) -> dict:
    return {
        "dataset": dataset, "fold": fold, "method": method, "n_test": metrics["n"], "macro_f1": metrics["macro_f1"],
        "accuracy": metrics["accuracy"], "ece": metrics.get("ece"),
        **{f"f1_{label}": metrics["per_class"][label]["f1"] for label in ("negative", "neutral", "positive")},
        "precision_neutral": metrics["per_class"]["neutral"]["precision"], "recall_neutral": metrics["per_class"]["neutral"]["recall"],
        **extra,
    }


def summarise(records: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame([r for r in records if r.get("macro_f1") is not None])
    if frame.empty:
        return frame
    cols = ["macro_f1", "accuracy", "f1_negative", "f1_neutral", "f1_positive", "precision_neutral", "ece", "seconds"]
    grouped = frame.groupby(["dataset", "method"], sort=False)
    summary = grouped[cols].mean().add_suffix("_mean")
    summary["macro_f1_std"] = grouped["macro_f1"].std(ddof=1)
    summary["accuracy_std"] = grouped["accuracy"].std(ddof=1)
    summary["folds"] = grouped.size()
    if "val_ece_before" in frame:
        summary["val_ece_before"] = grouped["val_ece_before"].mean()
        summary["val_ece_after"] = grouped["val_ece_after"].mean()
    return summary.reset_index()


def recommend(summary: pd.DataFrame, dataset: str, default_recipe: str = DEFAULT_RECIPE) -> list[str]:
    """Which recipe won on ``dataset`` and whether by more than the fold std (the issue's rule)."""
    rows = summary[(summary["dataset"] == dataset) & summary["method"].str.startswith("recipe:")]
    if rows.empty:
        return [f"{dataset}: no recipe finished"]
    best = rows.sort_values("macro_f1_mean", ascending=False).iloc[0]
    lines = [f"{dataset}: best recipe by mean test macro-F1: {best['method'][7:]} "
             f"{best['macro_f1_mean']:.4f} ± {_std(best['macro_f1_std'])} over {int(best['folds'])} folds"]
    default = rows[rows["method"] == f"recipe:{default_recipe}"]
    if not default.empty and best["method"] != f"recipe:{default_recipe}":
        d = default.iloc[0]
        gain = best["macro_f1_mean"] - d["macro_f1_mean"]
        noise = np.nanmax([best["macro_f1_std"], d["macro_f1_std"]]) if min(best["folds"], d["folds"]) > 1 else float("nan")
        recipe = best["method"][7:].removesuffix("+ensemble").removesuffix("~finetuned")
        target = (f"change DEFAULT_RECIPE to {recipe!r}" + (" and make its ensemble the model to promote"
                                                            if best["method"].endswith("+ensemble") else ""))
        if np.isnan(noise):
            verdict = "cannot tell (fewer than 2 folds each)"
        elif gain > noise:
            verdict = f"WINS: gain {gain:+.4f} > fold std {noise:.4f}; {target}"
        else:
            verdict = f"not a win: gain {gain:+.4f} <= fold std {noise:.4f}; keep {default_recipe!r}"
        lines.append(f"  vs default {default_recipe!r} {d['macro_f1_mean']:.4f} ± {_std(d['macro_f1_std'])}: {verdict}")
    elif not default.empty:
        lines.append(f"  the default {default_recipe!r} is the best recipe measured")
    baselines = summary[(summary["dataset"] == dataset) & ~summary["method"].str.startswith("recipe:")]
    if not baselines.empty:
        top = baselines.sort_values("macro_f1_mean", ascending=False).iloc[0]
        lines.append(f"  best baseline {top['method']}: {top['macro_f1_mean']:.4f} ± {_std(top['macro_f1_std'])}; "
                     f"best recipe {'beats' if best['macro_f1_mean'] > top['macro_f1_mean'] else 'does NOT beat'} it by "
                     f"{best['macro_f1_mean'] - top['macro_f1_mean']:+.4f}")
    return lines


def paired_gains(records: list[dict], dataset: str, default_recipe: str = DEFAULT_RECIPE) -> list[str]:
    """Per recipe: test macro-F1 minus the default's on the same folds, mean ± std over those folds."""
    frame = pd.DataFrame([r for r in records if r.get("macro_f1") is not None and r["dataset"] == dataset])
    if frame.empty:
        return []
    table = frame.pivot_table(index="fold", columns="method", values="macro_f1")
    base = f"recipe:{default_recipe}"
    if base not in table:
        return []
    lines = []
    for method in [m for m in table.columns if m != base]:
        diff = (table[method] - table[base]).dropna()
        if len(diff):
            std = f"{diff.std(ddof=1):.4f}" if len(diff) > 1 else "n/a"
            lines.append(f"  paired vs {default_recipe!r} on {len(diff)} fold(s): {method} {diff.mean():+.4f} ± {std}")
    return lines


def _std(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.4f}"


def write_summary(out: Path, records: list[dict], header: str = "") -> None:
    summary = summarise(records)
    lines = [header] if header else []
    if not summary.empty:
        lines.append("| dataset | method | folds | macro-F1 | accuracy | F1 neg | F1 neu | F1 pos | neu precision | ECE | val ECE before -> after | s/run |")
        lines.append("|---|---|---:|---|---|---:|---:|---:|---:|---:|---|---:|")
        for r in summary.to_dict("records"):
            ece_shift = (f"{r['val_ece_before']:.3f} -> {r['val_ece_after']:.3f}"
                         if r.get("val_ece_before") is not None and not pd.isna(r.get("val_ece_before")) else "")
            lines.append(
                f"| {r['dataset']} | {r['method']} | {r['folds']} | {r['macro_f1_mean']:.4f} ± {_std(r['macro_f1_std'])} | "
                f"{r['accuracy_mean']:.4f} ± {_std(r['accuracy_std'])} | {r['f1_negative_mean']:.3f} | {r['f1_neutral_mean']:.3f} | "
                f"{r['f1_positive_mean']:.3f} | {r['precision_neutral_mean']:.3f} | "
                f"{'' if pd.isna(r['ece_mean']) else format(r['ece_mean'], '.3f')} | {ece_shift} | {r['seconds_mean']:.0f} |"
            )
        lines.append("")
        for dataset in summary["dataset"].unique():
            lines += recommend(summary, dataset)
            lines += paired_gains(records, dataset)
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    (out / "summary.json").write_text(json.dumps({"summary": summary.to_dict("records") if not summary.empty else [],
                                                  "records": records}, indent=1, default=float))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="yelp,semeval", help="yelp, semeval or both (comma-separated).")
    parser.add_argument("--recipes", default=DEFAULT_RECIPE, help=f"Comma-separated names from: {', '.join(RECIPES)}; 'none' for no fine-tune.")
    parser.add_argument("--methods", default=",".join(BASELINE_METHODS), help="Baselines: tfidf, vader, zeroshot; 'none' for none.")
    parser.add_argument("--folds", type=int, default=3, help="Number of folds / repeated splits.")
    parser.add_argument("--scheme", choices=("repeated", "kfold"), default="repeated")
    parser.add_argument("--order", choices=("recipe", "fold", "pairs"), default="recipe",
                        help="recipe: every fold of a recipe before the next; fold: every recipe on a fold before the next "
                             "fold; pairs: the first two recipes fold by fold (a paired comparison first), then the rest "
                             "recipe by recipe.")
    parser.add_argument("--device", choices=("cpu", "cuda", "mps"), default=None)
    parser.add_argument("--deadline-s", type=float, default=None, help="Stop starting runs that would not finish by then.")
    parser.add_argument("--max-train", type=int, default=None, help="Train every method on a stratified sample of this size.")
    parser.add_argument("--rows", type=int, default=None, help="Use a stratified sample of this many rows of each dataset.")
    parser.add_argument("--epochs", type=int, default=None, help="Override every recipe's epochs.")
    parser.add_argument("--max-length", type=int, default=None, help="Override every recipe's max_length.")
    parser.add_argument("--set", action="append", default=[], help="Override any TrainConfig option: name=value (repeatable).")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--work", type=Path, default=Path("/tmp/tastebud_quality_bench"), help="Scratch folder for fold stores.")
    parser.add_argument("--keep", action="store_true",
                        help="Keep each fold's store and trained models under --work (for post-hoc analysis).")
    parser.add_argument("--out", type=Path, default=Path("/tmp/tastebud_quality_bench/out"))
    args = parser.parse_args(argv)

    started = time.monotonic()
    deadline = started + args.deadline_s if args.deadline_s else float("inf")
    recipes = [] if args.recipes == "none" else [r.strip() for r in args.recipes.split(",") if r.strip()]
    methods = [] if args.methods == "none" else [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [r for r in recipes if r not in RECIPES] + [m for m in methods if m not in BASELINE_METHODS]
    if unknown:
        parser.error(f"unknown recipes/methods: {unknown}")
    overrides = {k: v for k, v in {"epochs": args.epochs, "max_length": args.max_length}.items() if v is not None}
    for spec in args.set:
        key, _, value = spec.partition("=")
        overrides[key.strip()] = value.strip()
    TrainConfig.from_recipe(recipes[0] if recipes else DEFAULT_RECIPE, **overrides)  # fail fast on a bad override
    bench = Bench(args.out, deadline, args.device, overrides)
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    dirs = data_dirs(args.data_dir)
    present = []
    for name in datasets:
        path = find_dataset(name, dirs) if name in DATASET_FILES else None
        if path is None:
            print(f"skip dataset {name}: no file found in {[str(d) for d in dirs]}", flush=True)
        else:
            present.append((name, path))
    print(f"quality bench: datasets {[n for n, _ in present]}, recipes {recipes}, methods {methods}, {args.folds} folds "
          f"({args.scheme}), device {args.device or 'auto'}, overrides {overrides}, deadline {args.deadline_s or 'none'}s", flush=True)
    for i, (name, path) in enumerate(present):
        share = FIRST_DATASET_SHARE if (i == 0 and len(present) > 1) else 1.0
        ds_deadline = time.monotonic() + (deadline - time.monotonic()) * share if deadline != float("inf") else deadline
        frame = load_dataset(name, path)
        if args.rows and args.rows < len(frame):
            from sklearn.model_selection import train_test_split

            keep, _ = train_test_split(frame.index.to_numpy(), train_size=args.rows, stratify=frame["label"], random_state=0)
            frame = frame.loc[np.sort(keep)].reset_index(drop=True)
        splits = fold_assignments(frame["label"], scheme=args.scheme, folds=args.folds)
        print(f"{name}: {len(frame)} rows {frame['label'].value_counts().to_dict()} from {path}", flush=True)
        stores = {}

        def store_for(fold: int):
            if fold not in stores:
                stores[fold] = build_store(args.work / f"{name}-fold{fold}", cap_train(frame, splits[fold], args.max_train, fold))
            return stores[fold]

        for fold in range(args.folds):
            if methods and time.monotonic() < ds_deadline:
                _guard(bench, name, fold, "baselines", lambda: run_baselines(bench, store_for(fold), name, fold, methods, ds_deadline))
        jobs = run_order(recipes, args.folds, args.order)
        for recipe, fold in jobs:
            if not bench.fits(f"{name}/recipe:{recipe}", ds_deadline) or time.monotonic() >= ds_deadline:
                bench.records.append({"dataset": name, "fold": fold, "method": f"recipe:{recipe}", "status": "skipped: deadline"})
                print(f"skip recipe {recipe} fold {fold}: deadline", flush=True)
                continue
            _guard(bench, name, fold, f"recipe:{recipe}", lambda: run_recipe(bench, store_for(fold), name, fold, recipe))
        for fold in [] if args.keep else list(stores):
            shutil.rmtree(args.work / f"{name}-fold{fold}", ignore_errors=True)
    header = (f"Quality bench {datetime.now():%Y-%m-%d %H:%M}: datasets {[n for n, _ in present]}, {args.folds} folds "
              f"({args.scheme}), device {args.device or 'auto'}, max_train {args.max_train}, rows {args.rows}, overrides {overrides}, "
              f"wall {time.monotonic() - started:.0f}s\n")
    write_summary(args.out, bench.records, header)
    print((args.out / "summary.md").read_text(), flush=True)
    return 0


def run_order(recipes: list[str], folds: int, order: str) -> list[tuple[str, int]]:
    """(recipe, fold) pairs in the order they run; under a deadline the tail is what gets skipped.

    Example:
        >>> run_order(["a", "b", "c"], 2, "pairs")
        [('a', 0), ('b', 0), ('a', 1), ('b', 1), ('c', 0), ('c', 1)]
    """
    if order == "recipe":
        return [(r, f) for r in recipes for f in range(folds)]
    if order == "fold":
        return [(r, f) for f in range(folds) for r in recipes]
    head, rest = recipes[:2], recipes[2:]
    return [(r, f) for f in range(folds) for r in head] + [(r, f) for r in rest for f in range(folds)]


def _guard(bench: Bench, dataset: str, fold: int, method: str, run) -> None:
    """Run one measurement; a failure is recorded and the benchmark goes on."""
    try:
        run()
    except Exception as exc:  # noqa: BLE001 - one failed run must not lose the others' results
        traceback.print_exc()
        bench.records.append({"dataset": dataset, "fold": fold, "method": method, "status": f"failed: {type(exc).__name__}: {exc}"})
        with (bench.out / "results.jsonl").open("a") as f:
            f.write(json.dumps(bench.records[-1]) + "\n")


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
