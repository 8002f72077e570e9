"""Quality and speed of the default fine-tuned model against general-purpose baselines, measured in one run.

Imports the real Yelp dev reviews (stars -> labels) into a fresh store, then on the same
frozen test split reports accuracy and macro-F1 of:

- the default fine-tuned model (``tastebud train`` defaults, CPU),
- VADER and zero-shot sentence embeddings (``tastebud baselines``),
- a TF-IDF + logistic-regression reference (scikit-learn, class_weight="balanced",
  C chosen on the validation split),

with wall times, plus training throughput (examples/s and tokens/s at the configured
max length). Usage::

    PYTHONPATH=. python bench/quality_bench.py [--rows N] [--lr 1e-4] [--epochs 4] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Set before torch loads OpenMP: idle threads sleep instead of spinning, which keeps two threads
# useful when other processes share the two cores (measured 2-4x faster under load, see RESULTS.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.train.config import TrainConfig  # noqa: E402
from pipeline.evaluation.metrics import compute_classification_metrics  # noqa: E402
from store.actors import cli_actor  # noqa: E402
from store.constants import LABEL_TO_ID, STARS_TO_LABEL  # noqa: E402
from store.db import connect, transaction  # noqa: E402
from store.reviews import add_reviews, fetch_labeled_split  # noqa: E402
from store.schema import init_store  # noqa: E402

# The shared data folder: $TASTEBUD_SHARED_DATA, else ../shared/data beside the checkout, else /work/shared/data.
_CANDIDATES = [Path(os.environ["TASTEBUD_SHARED_DATA"])] if "TASTEBUD_SHARED_DATA" in os.environ else []
_CANDIDATES += [Path(__file__).resolve().parents[2] / "shared" / "data", Path("/work/shared/data")]
DATA = next((p for p in _CANDIDATES if (p / "yelp_reviews_10k").is_dir()), _CANDIDATES[0])
YELP = DATA / "yelp_reviews_10k" / "yelp_dev.csv"


def import_yelp(db: Path, rows: int | None) -> dict:
    """Reviews, star labels and frozen splits from yelp_dev.csv (pandas; the importer is a separate part)."""
    raw = pd.read_csv(YELP)
    if rows:
        raw = raw.head(rows)
    frame = pd.DataFrame({
        "review_id": raw["review_id"], "restaurant_id": raw["business_id"],
        "created_at": pd.to_datetime(raw["date"]), "stars": raw["stars"], "text": raw["text"], "source": "yelp_dev",
    })
    labels = pd.DataFrame({"review_id": frame["review_id"], "label": frame["stars"].map(STARS_TO_LABEL), "source": "stars"})
    with transaction(db) as con:
        return add_reviews(con, frame, labels.dropna())["splits"]


def tfidf_reference(db: Path) -> dict:
    """TF-IDF (word 1-2 grams) + balanced logistic regression; C picked by validation macro-F1."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    started = time.perf_counter()
    with connect(db, read_only=True) as con:
        train, val, test = (fetch_labeled_split(con, s) for s in ("train", "val", "test"))
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    x_train = vec.fit_transform(train["text"])
    y = {name: frame["label"].map(LABEL_TO_ID).to_numpy() for name, frame in (("train", train), ("val", val), ("test", test))}
    best = None
    for c in (0.5, 1.0, 2.0, 4.0, 8.0):
        clf = LogisticRegression(C=c, class_weight="balanced", max_iter=3000).fit(x_train, y["train"])
        f1 = compute_classification_metrics(clf.predict_proba(vec.transform(val["text"])), y["val"])["macro_f1"]
        if best is None or f1 > best[0]:
            best = (f1, c, clf)
    metrics = compute_classification_metrics(best[2].predict_proba(vec.transform(test["text"])), y["test"])
    return {**metrics, "wall_s": time.perf_counter() - started, "note": f"C={best[1]} (val macro-F1 {best[0]:.4f})"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=None, help="Use only the first N reviews (default: all 8001).")
    parser.add_argument("--store", type=Path, default=Path("/tmp/tastebud_quality/store.duckdb"))
    parser.add_argument("--json", type=Path, default=None, help="Also write the results here.")
    parser.add_argument("--skip-finetune", action="store_true")
    parser.add_argument("--skip-baselines", action="store_true")
    parser.add_argument("--skip-tfidf", action="store_true")
    for name in ("lr", "epochs", "max_length", "batch_size", "precision", "patience", "max_train_examples"):
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None)
    args = parser.parse_args()
    if not YELP.exists():
        sys.exit(f"missing {YELP}")

    # A fresh store each run: remove the store file and the models/runs folders beside it.
    for stale in (args.store, args.store.with_name(args.store.name + ".wal")):
        stale.unlink(missing_ok=True)
    for folder in ("models", "runs"):
        shutil.rmtree(args.store.parent / folder, ignore_errors=True)
    db, _ = init_store(args.store)
    t0 = time.perf_counter()
    splits = import_yelp(db, args.rows)
    print(f"imported {YELP.name}: splits {splits} in {time.perf_counter() - t0:.1f}s", flush=True)

    results: dict[str, dict] = {}
    if not args.skip_tfidf:
        results["TF-IDF + LR (balanced)"] = tfidf_reference(db)
        print(f"TF-IDF + LR: macro-F1 {results['TF-IDF + LR (balanced)']['macro_f1']:.4f}", flush=True)

    if not args.skip_baselines:
        from pipeline.models.baselines import ZEROSHOT_ID, VADER_ID, register_baselines
        from store.evaluations import fetch_latest_evaluation

        for model_id, label in ((VADER_ID, "VADER (compound ±0.05)"), (ZEROSHOT_ID, "zero-shot MiniLM embeddings")):
            started = time.perf_counter()
            if model_id == VADER_ID:
                register_baselines(db, actor=cli_actor(), evaluate=False)
                registered = time.perf_counter() - started
                started = time.perf_counter()
            from pipeline.evaluation.evaluator import evaluate_model

            evaluate_model(db, model_id)
            with connect(db, read_only=True) as con:
                results[label] = {**fetch_latest_evaluation(con, model_id), "wall_s": time.perf_counter() - started}
            print(f"{label}: macro-F1 {results[label]['macro_f1']:.4f}", flush=True)
        results["VADER (compound ±0.05)"]["note"] = f"both baselines registered (val calibration) in {registered:.1f}s; wall = test scoring"

    throughput = None
    if not args.skip_finetune:
        from pipeline.train.run import train
        from store.evaluations import fetch_latest_evaluation
        from store.models import get_model
        from store.training_runs import fetch_epoch_metrics

        overrides = {k: v for k, v in {
            "learning_rate": args.lr, "epochs": args.epochs, "max_length": args.max_length, "batch_size": args.batch_size,
            "precision": args.precision, "early_stopping_patience": args.patience,
            "max_train_examples": args.max_train_examples}.items() if v is not None}
        config = TrainConfig.from_dict(overrides)
        started = time.perf_counter()
        model_id = train(db, config)
        wall = time.perf_counter() - started
        with connect(db, read_only=True) as con:
            model = get_model(con, model_id)
            metrics = fetch_latest_evaluation(con, model_id)
            epochs = fetch_epoch_metrics(con, model_id)
        label = f"fine-tuned MiniLM (lr {config.learning_rate:g}, {config.epochs} ep, {model['params']['precision']})"
        results[label] = {**metrics, "wall_s": wall, "note": f"best epoch {model['val_metrics'].get('epoch')}, val macro-F1 {model['val_metrics'].get('macro_f1'):.4f}"}
        throughput = model["params"]["throughput"]
        print("\nepochs:\n" + epochs.to_string(index=False))

    print(f"\n{'method':<52}{'accuracy':>9}{'macro-F1':>9}{'F1 neg':>8}{'F1 neu':>8}{'F1 pos':>8}{'ECE':>7}{'wall s':>9}")
    for label, m in results.items():
        pc = m["per_class"]
        ece = "-" if m.get("ece") is None else f"{m['ece']:.3f}"
        print(f"{label:<52}{m['accuracy']:>9.4f}{m['macro_f1']:>9.4f}{pc['negative']['f1']:>8.3f}{pc['neutral']['f1']:>8.3f}"
              f"{pc['positive']['f1']:>8.3f}{ece:>7}{m['wall_s']:>9.1f}  {m.get('note', '')}")
    if throughput:
        print(f"\ntraining throughput: {throughput['examples_per_s']:.1f} examples/s, {throughput['tokens_per_s']:.0f} tokens/s "
              f"(real tokens, max_length {throughput['max_length']}, {throughput['examples']} examples in {throughput['train_seconds']:.0f}s of training steps)")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "throughput": throughput, "splits": splits}, indent=2, default=str))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
