"""Benchmark the dashboard's server-side work per page against a naive load-everything-into-pandas
version, measured in one run at 100k and 1M demo reviews.

For each store size the script builds a demo store (``pipeline.data.demo_data``) with what the other
parts would add: a champion and a baseline with predictions for every review, test evaluations
and a training curve, a few thousand open flags. Then, per page, it times the page's data
functions exactly as the page calls them (``dashboard.reads``, uncached: each opens its own
short read-only connection, so every call pays DuckDB's cold start) and a naive version that
reads the tables it needs into pandas (``SELECT * ... .df()``) and computes the same numbers there.

Run: PYTHONPATH=. python bench/dashboard_bench.py [--sizes 100000 1000000] [--dir /tmp/tastebud-bench]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dashboard import reads  # noqa: E402
from pipeline.data.demo_data import generate_reviews, load_demo_data  # noqa: E402
from store import evaluations as evaluation_store  # noqa: E402
from store import flags as flag_store  # noqa: E402
from store import models as model_store  # noqa: E402
from store import predictions as prediction_store  # noqa: E402
from store.actors import Actor  # noqa: E402
from store import trends as trend_store  # noqa: E402
from store.trends import ReviewFilter, SentimentSource  # noqa: E402
from store.constants import LABELS  # noqa: E402
from store.flags import QueueFilter  # noqa: E402
from store.db import connect, transaction  # noqa: E402
from store.schema import init_store  # noqa: E402

CHAMPION, BASELINE = "ft-bench", "baseline-bench"
WEEK = ReviewFilter(start=date(2025, 8, 18), end=date(2025, 8, 24))
WEEK_COUNTS: dict = {}  # store -> (negative, positive) reviews of WEEK, as the page takes them from its summary
FLAGS = 5000
CHUNK = 250_000


def build_store(db: Path, rows: int, *, flag_model: str = BASELINE) -> None:
    """Demo reviews plus two scored, evaluated models, a champion and open flags raised by ``flag_model``
    (another model than these two gets the baseline's predictions for the flagged reviews)."""
    init_store(db)
    load_demo_data(db, rows=rows)
    truth = generate_reviews(rows).select(["review_id", "true_label"]).to_pandas()
    codes = truth["true_label"].map({label: i for i, label in enumerate(LABELS)}).to_numpy()
    rng = np.random.default_rng(3)
    admin = Actor("bench", "admin")
    for model_id, accuracy in ((CHAMPION, 0.88), (BASELINE, 0.65)):
        predicted = np.where(rng.random(rows) < accuracy, codes, rng.integers(0, 3, rows))
        confidence = rng.uniform(0.4, 0.99, rows)
        probs = np.tile(((1 - confidence) / 2)[:, None], (1, 3))
        probs[np.arange(rows), predicted] = confidence
        frame = pd.DataFrame(probs, columns=["p_negative", "p_neutral", "p_positive"]).assign(review_id=truth["review_id"])
        for start in range(0, rows, CHUNK):
            with transaction(db) as con:
                prediction_store.write_predictions(con, model_id, frame.iloc[start:start + CHUNK])
        confusion = np.bincount(codes * 3 + predicted, minlength=9).reshape(3, 3)
        metrics = {"accuracy": float(np.trace(confusion) / rows), "macro_f1": accuracy - 0.05,
                   "confusion_matrix": confusion.tolist(), "per_class": {}, "n": rows}
        with transaction(db) as con:
            model_store.register_model(con, model_id=model_id, kind="finetuned", name=model_id, status="ready")
            evaluation_store.insert_evaluation(con, model_id, "test", metrics)
    with transaction(db) as con:
        model_store.promote_model(con, admin, CHAMPION)
        low = np.argsort(confidence)[:FLAGS]
        if flag_model not in (CHAMPION, BASELINE):
            prediction_store.write_predictions(con, flag_model, frame.iloc[low])
        flag_store.insert_flags(con, pd.DataFrame({
            "review_id": truth["review_id"].to_numpy()[low], "reason": "low_confidence",
            "priority": 1 - confidence[low], "model_id": flag_model,
        }))


# ---------------------------------------------------------------- what each page reads (ours)

def ours_overview(db):
    return reads.overview.uncached(db)


def ours_trends(db):
    """First load: filter choices, then the summary and the selection's terms in one read."""
    choices = reads.trend_choices.uncached(db)
    return reads.trends.uncached(db, choices["champion_id"], ReviewFilter(), "week", "restaurant")


def ours_trends_drill(db):
    """A week picked on the chart: its reviews and its terms (the summary, cached by then, gave its class counts)."""
    source = SentimentSource("predictions", CHAMPION)
    reads.selection_reviews.uncached(db, source, WEEK, None, 200)
    return reads.terms.uncached(db, source, WEEK, WEEK_COUNTS[db])


def ours_trends_labels(db):
    """First load when there are no champion predictions: sentiment from the current labels."""
    reads.trend_choices.uncached(db)
    return reads.trends.uncached(db, None, ReviewFilter(), "week", "restaurant")


def ours_comparison(db):
    reads.models.uncached(db)
    reads.comparison.uncached(db, (CHAMPION, BASELINE))
    return reads.disagreement.uncached(db, CHAMPION, BASELINE, "test", 100)


def ours_hard_cases(db):
    return reads.hard_cases.uncached(db, QueueFilter(), 50, "bench", 10)


def ours_training(db):
    reads.champion.uncached(db)
    reads.models.uncached(db)
    return reads.recent_jobs(db)


def ours_data(db):
    return reads.data_stats.uncached(db)


# ---------------------------------------------------------------- the same numbers, naively

def _load(db, sql):
    with connect(db, read_only=True) as con:
        return con.execute(sql).df()


def _naive_current_labels(db):
    labels = _load(db, "SELECT * FROM labels")
    labels["human"] = labels["source"] == "human"
    labels = labels.sort_values(["review_id", "human", "created_at", "label_id"], ascending=[True, False, False, False])
    return labels.drop_duplicates("review_id")


def naive_overview(db):
    reviews = _load(db, "SELECT * FROM reviews")
    current = _naive_current_labels(db)
    predictions = _load(db, "SELECT * FROM predictions")
    flags = _load(db, "SELECT * FROM flags")
    return (len(reviews), current["source"].value_counts(), predictions.groupby("model_id").size(),
            predictions["scored_at"].max(), flags[flags["status"] == "open"]["reason"].value_counts())


def naive_trends(db):
    reviews = _load(db, "SELECT * FROM reviews")
    predictions = _load(db, "SELECT * FROM predictions")
    frame = reviews.merge(predictions[predictions["model_id"] == CHAMPION], on="review_id")
    frame["period"] = frame["created_at"].dt.to_period("W").dt.start_time
    for keys in (["period"], ["period", "restaurant_name"], ["restaurant_name"]):
        counts = frame.groupby(keys)["label"].value_counts().unstack(fill_value=0)
        counts["avg_stars"] = frame.groupby(keys)["stars"].mean()
    sample = pd.concat(g.head(4000) for _, g in frame[frame["label"] != "neutral"].groupby("label"))
    words = sample.assign(term=sample["text"].str.lower().str.findall(r"[a-z']+").map(set)).explode("term")
    words.groupby("term")["label"].value_counts().unstack(fill_value=0)
    week = frame[(frame["created_at"] >= "2025-08-18") & (frame["created_at"] < "2025-08-25")]
    return week.sort_values("created_at", ascending=False).head(200)  # what picking a week shows


def naive_comparison(db):
    predictions = _load(db, "SELECT * FROM predictions")
    reviews = _load(db, "SELECT * FROM reviews")
    splits = _load(db, "SELECT * FROM splits")
    a = predictions[predictions["model_id"] == CHAMPION]
    b = predictions[predictions["model_id"] == BASELINE]
    pair = a.merge(b, on="review_id").merge(splits[splits["split"] == "test"], on="review_id")
    pd.crosstab(pair["label_x"], pair["label_y"])
    differ = pair[pair["label_x"] != pair["label_y"]]
    return differ.merge(reviews, on="review_id").head(100)


def naive_hard_cases(db):
    flags = _load(db, "SELECT * FROM flags")
    reviews = _load(db, "SELECT * FROM reviews")
    predictions = _load(db, "SELECT * FROM predictions")
    current = _naive_current_labels(db)
    queue = flags[flags["status"] == "open"].merge(reviews, on="review_id").merge(
        predictions, on=["model_id", "review_id"], how="left").merge(current, on="review_id", how="left")
    return queue.sort_values("priority", ascending=False).head(50)


def naive_training(db):
    return _load(db, "SELECT * FROM models"), _load(db, "SELECT * FROM evaluations"), _load(db, "SELECT * FROM jobs")


def naive_data(db):
    reviews = _load(db, "SELECT * FROM reviews")
    current = _naive_current_labels(db)
    splits = _load(db, "SELECT * FROM splits")
    merged = splits.merge(current, on="review_id")
    return (len(reviews), current["label"].value_counts(), merged.groupby(["split", "label"]).size(),
            reviews.groupby([reviews["created_at"].dt.to_period("M"), "source"]).size())


PAGES = [
    ("overview", ours_overview, naive_overview),
    ("trends", ours_trends, naive_trends),
    ("trends: pick a week", ours_trends_drill, None),
    ("trends: labels fallback", ours_trends_labels, None),
    ("comparison", ours_comparison, naive_comparison),
    ("hard cases", ours_hard_cases, naive_hard_cases),
    ("training", ours_training, naive_training),
    ("data", ours_data, naive_data),
]


def _time(fn, db, repeats: int) -> tuple[float, float]:
    """Median wall seconds and median CPU seconds (all of this process's threads) of ``fn(db)``."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn(db)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/tastebud-dashboard-bench"))
    parser.add_argument("--repeats", type=int, default=5, help="Timed runs of our functions per page (median).")
    parser.add_argument("--naive-repeats", type=int, default=2, help="Timed runs of the naive version (median).")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; every read opens its own read-only connection (cold)")
    for rows in args.sizes:
        db = args.dir / f"bench-{rows}.duckdb"
        if not db.exists():
            started = time.perf_counter()
            build_store(db, rows)
            print(f"built {db} ({rows:,} reviews) in {time.perf_counter() - started:.0f} s")
        print(f"\n{rows:,} reviews ({db.stat().st_size / 2**20:.0f} MiB)")
        print(f"load average {os.getloadavg()[0]:.1f} (other processes share the {os.cpu_count()} cores)")
        with connect(db, read_only=True) as con:
            week = trend_store.fetch_trend_summary(con, SentimentSource("predictions", CHAMPION), WEEK).trend
        WEEK_COUNTS[db] = (int(week["negative"].sum()), int(week["positive"].sum()))
        print(f"{'page':<26}{'ours wall s':>12}{'ours CPU s':>12}{'naive wall s':>14}{'naive/ours':>12}")
        for name, ours, naive in PAGES:
            ours(db)  # warm the OS page cache once, as a running dashboard would have it
            wall, cpu = _time(ours, db, args.repeats)
            if naive is None:
                print(f"{name:<26}{wall:>12.3f}{cpu:>12.3f}{'-':>14}{'':>12}")
                continue
            naive_wall, _ = _time(naive, db, args.naive_repeats)
            print(f"{name:<26}{wall:>12.3f}{cpu:>12.3f}{naive_wall:>14.3f}{naive_wall / wall:>11.1f}x")


if __name__ == "__main__":
    main()
