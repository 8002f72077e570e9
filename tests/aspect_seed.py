"""Aspect data for tests: a registered (and promoted) aspect model with stored predictions, and a
generated weekly series in which one restaurant's service collapses while its food stays fine.

Predictions are written with store.aspects.write_aspect_predictions, models with register_model(task=
"aspects"), evaluations in the contract's metrics layout: what the lead's training and scoring write.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from store import aspects as aspect_store
from store import evaluations as evaluation_store
from store import models as model_store
from store.actors import Actor
from store.db import connect, transaction

ASPECT_MODEL = "aspects-seed"
ADMIN = Actor("seed-admin", "admin")
# The sentence each aspect's mention reads as, per polarity.
SENTENCES = {
    ("food", "positive"): "The food was delicious.",
    ("food", "negative"): "The food was cold and bland.",
    ("food", "neutral"): "The food was what you would expect.",
    ("service", "positive"): "Our server was attentive and quick.",
    ("service", "negative"): "The service was painfully slow.",
    ("service", "neutral"): "Service was standard.",
    ("ambience", "positive"): "The room was lively and fun.",
    ("ambience", "negative"): "It was far too crowded and loud.",
    ("ambience", "neutral"): "The room was crowded, as usual.",
    ("price", "positive"): "Prices were fair.",
    ("price", "negative"): "Way overpriced.",
    ("price", "neutral"): "Prices were typical.",
}


def aspect_metrics(detection_f1: float, polarity_accuracy: float, aspects=("food", "service")) -> dict:
    """A test evaluation's metrics in the contract's layout for aspect models."""
    per_det = {a: {"precision": detection_f1, "recall": detection_f1, "f1": detection_f1, "support": 40}
               for a in aspects}
    per_pol = {a: {"accuracy": polarity_accuracy, "macro_f1": polarity_accuracy - 0.05, "n": 30} for a in aspects}
    return {
        "task": "aspects",
        "detection": {"micro_f1": detection_f1, "micro_precision": detection_f1, "micro_recall": detection_f1,
                      "per_aspect": per_det},
        "polarity": {"accuracy": polarity_accuracy, "macro_f1": polarity_accuracy - 0.05, "n": 60,
                     "confusion": {"labels": ["negative", "neutral", "positive"],
                                   "matrix": [[20, 2, 3], [2, 5, 3], [1, 2, 22]]},
                     "per_aspect": per_pol},
        "accuracy": polarity_accuracy, "macro_f1": detection_f1, "n": 80, "test_snapshot": "seed",
    }


def register_aspect_model(con, model_id: str = ASPECT_MODEL, *, promote: bool = True,
                          metrics: dict | None = None) -> str:
    """Register an aspect model (inside a transaction), with a test evaluation when ``metrics`` are given."""
    model_store.register_model(con, model_id=model_id, kind="finetuned", name=model_id, status="ready", task="aspects")
    if metrics is not None:
        evaluation_store.insert_evaluation(con, model_id, "test", metrics)
    if promote:
        model_store.promote_model(con, ADMIN, model_id)
    return model_id


def prediction_rows(review_id: str, mentions: dict[str, str], aspects, spans: dict[str, tuple[int, int]]) -> list[dict]:
    """One review's prediction rows: each aspect in ``mentions`` with its polarity (confident), the rest absent."""
    rows = []
    for aspect in aspects:
        polarity = mentions.get(aspect)
        probs = {p: (0.8 if p == polarity else 0.1) for p in ("negative", "neutral", "positive")}
        start, end = spans.get(aspect, (None, None))
        rows.append({"review_id": review_id, "aspect": aspect, "p_present": 0.92 if polarity else 0.05,
                     **{f"p_{p}": v for p, v in probs.items()}, "evidence_start": start, "evidence_end": end})
    return rows


def compose(mentions: dict[str, str]) -> tuple[str, dict[str, tuple[int, int]]]:
    """A review text of one sentence per mentioned aspect, and each aspect's sentence span."""
    parts, spans, at = [], {}, 0
    for aspect, polarity in mentions.items():
        sentence = SENTENCES[(aspect, polarity)]
        spans[aspect] = (at, at + len(sentence))
        parts.append(sentence)
        at += len(sentence) + 1
    return " ".join(parts) or "We went on a Tuesday.", spans


def collapse_series(*, weeks: int = 20, per_week: int = 30, first_week: date = date(2026, 6, 1),
                    collapse: tuple[int, int] = (14, 17), surge: tuple[int, int] = (15, 17), seed: int = 7
                    ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reviews and aspect predictions of two restaurants over ``weeks`` weeks.

    Magnolia Table's service turns mostly negative in weeks ``collapse`` (0-based, end exclusive;
    week 14 starts 2026-09-07) while its food stays as good as ever; at Krog District the ambience
    (crowds) is suddenly spoken of in most reviews in weeks ``surge``, with the usual mix of opinions.

    Returns:
        (reviews: review_id, restaurant_id, restaurant_name, neighborhood, created_at, stars, text,
        label; predictions: the columns of store.aspects.PREDICTION_COLUMNS).
    """
    rng = np.random.default_rng(seed)
    reviews, predictions = [], []
    for week in range(weeks):
        monday = datetime.combine(first_week + timedelta(weeks=week), datetime.min.time())
        for place, place_id in (("Magnolia Table", "r-magnolia"), ("Krog District", "r-krog")):
            for i in range(per_week):
                collapsed = place == "Magnolia Table" and collapse[0] <= week < collapse[1]
                surging = place == "Krog District" and surge[0] <= week < surge[1]
                mentions = {}
                if rng.random() < 0.8:
                    mentions["food"] = rng.choice(["negative", "neutral", "positive"], p=[0.1, 0.1, 0.8])
                if rng.random() < 0.6:
                    p_neg = 0.75 if collapsed else 0.1
                    mentions["service"] = rng.choice(["negative", "neutral", "positive"], p=[p_neg, 0.1, 0.9 - p_neg])
                if rng.random() < (0.75 if surging else 0.15):
                    mentions["ambience"] = rng.choice(["negative", "neutral", "positive"], p=[0.3, 0.4, 0.3])
                text, spans = compose(mentions)
                review_id = f"{place_id}-{week:02d}-{i:02d}"
                negative = sum(p == "negative" for p in mentions.values())
                stars = 2 if negative >= 2 else (3 if negative == 1 else 5)
                reviews.append({"review_id": review_id, "restaurant_id": place_id, "restaurant_name": place,
                                "neighborhood": "Inman Park",
                                "created_at": monday + timedelta(hours=int(rng.integers(0, 160))),
                                "stars": stars, "text": text,
                                "label": {2: "negative", 3: "neutral", 5: "positive"}[stars]})
                predictions += prediction_rows(review_id, mentions, aspect_store.DEFAULT_ASPECTS[:4], spans)
    return pd.DataFrame(reviews), pd.DataFrame(predictions)


def seed_aspects_on_store(db: Path, model_id: str = ASPECT_MODEL, *, seed: int = 5, promote: bool = True) -> int:
    """Aspect predictions for every review already in ``db`` (the dashboard's seeded store): mentions
    drawn at random, polarity following the stars; evidence spans cover the review's first sentence.

    Returns:
        How many prediction rows were written.
    """
    rng = np.random.default_rng(seed)
    with connect(db, read_only=True) as con:
        reviews = con.execute("SELECT review_id, stars, text FROM reviews ORDER BY review_id").df()
    aspects = aspect_store.DEFAULT_ASPECTS
    rows = []
    for review_id, stars, text in reviews.itertuples(index=False):
        polarity = "negative" if stars is not None and stars <= 2 else ("neutral" if stars == 3 else "positive")
        end = text.find(".") + 1 or len(text)
        mentions = {a: polarity for a in aspects if rng.random() < (0.7 if a in ("food", "service") else 0.2)}
        rows += prediction_rows(review_id, mentions, aspects, {a: (0, end) for a in mentions})
    with transaction(db) as con:
        register_aspect_model(con, model_id, promote=promote, metrics=aspect_metrics(0.86, 0.82, aspects))
        return aspect_store.write_aspect_predictions(con, model_id, pd.DataFrame(rows))
