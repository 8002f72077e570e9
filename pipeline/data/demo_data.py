"""A deterministic, clearly synthetic stream of Atlanta restaurant reviews.

Used by the first run, the tests and the benchmarks, so the project works on a machine
with no real data. Each review has a latent sentiment drawn from its restaurant's
quality; its text is composed from phrase pools of that sentiment
(:mod:`pipeline.data.demo_phrases`) and its stars mostly, not always, agree. Built in:

- two years of timestamps with a weekly rhythm (busy weekends) and slow growth;
- sarcastic praise with low stars, slow-service complaints, neutral reviews, local
  references ("worse than the DMV on Memorial Drive");
- scripted events: Magnolia Table's service collapses for one month, and the food hall
  Krog District opens mid-stream with mixed sentiment (variety loved, crowds hated).

Generation is vectorised (NumPy indices into phrase pools, joined by Arrow), so a
million reviews take seconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.data import demo_phrases as P
from store.constants import LABELS, SPLITS, STARS_TO_LABEL
from store.db import transaction
from store.reviews import add_reviews
from store.schema import init_store

DEFAULT_ROWS = 4000
DEFAULT_SEED = 7
DEFAULT_START = datetime(2024, 11, 1)
DEFAULT_DAYS = 730
# Relative review volume by weekday, Monday first: weekends are busiest.
WEEKDAY_WEIGHTS = np.array([0.75, 0.8, 0.85, 0.95, 1.3, 1.55, 1.2])
# Share of negative reviews written as sarcastic praise.
SARCASM_RATE = 0.10
# Share of reviews whose stars contradict the text (wrong button, sarcasm the other way).
CONTRADICTION_RATE = 0.015
# Share of reviews that mention a local reference.
LOCAL_RATE = 0.12
# Share of reviews going to the food hall once it is open.
FOOD_HALL_SHARE = 0.09
# Extra share of all reviews that go to the collapsing restaurant during its bad month.
COLLAPSE_EXTRA_SHARE = 0.15


@dataclass(frozen=True)
class DemoEvents:
    """When the scripted events happen, as day offsets from the stream's start."""

    collapse_start: int
    collapse_days: int
    food_hall_open: int

    def as_dict(self, start: datetime) -> dict:
        return {
            "collapse_restaurant": P.COLLAPSE_RESTAURANT,
            "collapse_start": (start + timedelta(days=self.collapse_start)).date().isoformat(),
            "collapse_end": (start + timedelta(days=self.collapse_start + self.collapse_days)).date().isoformat(),
            "food_hall": P.FOOD_HALL,
            "food_hall_open": (start + timedelta(days=self.food_hall_open)).date().isoformat(),
        }


def demo_events(days: int = DEFAULT_DAYS) -> DemoEvents:
    """The scripted events for a stream of ``days`` days (collapse at ~40%, food hall at ~55%)."""
    return DemoEvents(collapse_start=int(days * 0.40), collapse_days=30, food_hall_open=int(days * 0.55))


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


class _Pool:
    """Phrases of one kind for the three sentiments, indexable by a sentiment code per row."""

    def __init__(self, by_sentiment: dict[str, tuple[str, ...]], dishes: tuple[str, ...] = P.DISHES):
        phrases, self.offsets, self.sizes = [], [], []
        for label in LABELS:
            rendered = [p.format(dish=d) for p in by_sentiment[label] for d in (dishes if "{dish}" in p else ("",))]
            self.offsets.append(len(phrases))
            self.sizes.append(len(rendered))
            phrases.extend(rendered)
        self.phrases = np.array(phrases, dtype=object)
        self.offsets, self.sizes = np.array(self.offsets), np.array(self.sizes)

    def pick(self, rng: np.random.Generator, sentiment: np.ndarray) -> np.ndarray:
        idx = self.offsets[sentiment] + (rng.random(len(sentiment)) * self.sizes[sentiment]).astype(np.int64)
        return self.phrases[idx]


def _flat(phrases: tuple[str, ...], rng: np.random.Generator, n: int) -> np.ndarray:
    rendered = np.array([p.format(dish=d) for p in phrases for d in (P.DISHES if "{dish}" in p else ("",))], dtype=object)
    return rendered[rng.integers(0, len(rendered), n)]


def _timestamps(rng: np.random.Generator, n: int, start: datetime, days: int) -> np.ndarray:
    day_index = np.arange(days)
    weekday = (start.weekday() + day_index) % 7
    weights = WEEKDAY_WEIGHTS[weekday] * np.linspace(0.7, 1.3, days)  # slow growth over the two years
    day = rng.choice(days, size=n, p=weights / weights.sum())
    # Lunch and dinner peaks (hours after midnight).
    hour = np.where(rng.random(n) < 0.35, rng.normal(12.5, 1.0, n), rng.normal(19.0, 1.5, n)).clip(8, 23.5)
    seconds = day * 86400 + (hour * 3600).astype(np.int64)
    return np.sort(np.datetime64(start, "s") + seconds.astype("timedelta64[s]"))


def generate_reviews(
    n: int = DEFAULT_ROWS, *, seed: int = DEFAULT_SEED, start: datetime = DEFAULT_START, days: int = DEFAULT_DAYS
) -> pa.Table:
    """Generate ``n`` synthetic reviews, ordered by time; the same seed gives the same table.

    Returns:
        An Arrow table with the review columns the store takes (review_id, restaurant_id,
        restaurant_name, neighborhood, created_at, stars, text, source) plus the ground truth
        the generator knows: ``true_label`` (the text's sentiment), ``is_sarcastic`` and
        ``event`` ("collapse", "food_hall" or "").

    Example:
        >>> generate_reviews(5, seed=1).num_rows
        5
    """
    if n < 1:
        raise ValueError(f"need at least one review, got {n}")
    if days < 60:
        raise ValueError("the demo stream needs at least 60 days to place its events")
    rng = np.random.default_rng(seed)
    events = demo_events(days)
    created = _timestamps(rng, n, start, days)
    day = ((created - np.datetime64(start, "s")) // np.timedelta64(1, "D")).astype(np.int64)

    names = [r[0] for r in P.RESTAURANTS]
    popularity = 1.0 / np.arange(1, len(names) + 1) ** 0.6
    # Listed order is popularity order: Magnolia Table, whose collapse must show, is the busiest.
    restaurant = rng.choice(len(names), n, p=popularity / popularity.sum())
    collapse_idx = names.index(P.COLLAPSE_RESTAURANT)
    in_window = (day >= events.collapse_start) & (day < events.collapse_start + events.collapse_days)
    # Angry diners write more: the collapsing restaurant draws extra reviews during its bad month.
    restaurant = np.where(in_window & (rng.random(n) < COLLAPSE_EXTRA_SHARE), collapse_idx, restaurant)
    # The food hall takes a share of reviews once it is open, more in its first weeks of buzz.
    buzz = np.where(day - events.food_hall_open < 45, 1.8, 1.0)
    food_hall = (day >= events.food_hall_open) & (rng.random(n) < FOOD_HALL_SHARE * buzz)
    collapse = (restaurant == collapse_idx) & in_window & ~food_hall

    # Latent sentiment: 0 negative, 1 neutral, 2 positive.
    quality = np.array([r[2] for r in P.RESTAURANTS])[restaurant]
    p_pos = quality
    p_neg = (1 - quality) * 0.55
    p_pos = np.where(food_hall, 0.42, np.where(collapse, 0.08, p_pos))
    p_neg = np.where(food_hall, 0.38, np.where(collapse, 0.80, p_neg))
    u = rng.random(n)
    sentiment = np.where(u < p_neg, 0, np.where(u < p_neg + (1 - p_pos - p_neg), 1, 2))

    parts = [
        _Pool(P.OPENERS).pick(rng, sentiment),
        _Pool(P.FOOD).pick(rng, sentiment),
        _Pool(P.SERVICE).pick(rng, sentiment),
    ]
    ambience = _Pool(P.AMBIENCE).pick(rng, sentiment)
    parts.append(np.where(rng.random(n) < 0.45, ambience, ""))
    local = _Pool(P.LOCAL).pick(rng, sentiment)
    parts.append(np.where(rng.random(n) < LOCAL_RATE, local, ""))
    parts.append(_Pool(P.CLOSERS).pick(rng, sentiment))
    # Slow-service complaints dominate negative reviews' service sentences already;
    # during the collapse the whole review is about the breakdown.
    collapse_text = _flat(P.COLLAPSE, rng, n)
    hall_text = _Pool(P.FOOD_HALL_TEXT).pick(rng, sentiment)
    sarcastic = (sentiment == 0) & (rng.random(n) < SARCASM_RATE) & ~food_hall
    sarcasm_text = _flat(P.SARCASM, rng, n)

    columns = [pa.array(p.tolist(), pa.string()) for p in parts]
    text = pc.binary_join_element_wise(*columns, " ")
    text = pc.utf8_trim_whitespace(pc.replace_substring_regex(text, r"\s{2,}", " "))
    text = np.asarray(text.to_numpy(zero_copy_only=False), dtype=object)
    text = np.where(collapse, collapse_text + " " + parts[1], text)
    text = np.where(food_hall, hall_text + " " + parts[5], text)
    text = np.where(sarcastic, sarcasm_text, text)

    star_draw = rng.random(n)
    stars = np.select(
        [sentiment == 2, sentiment == 1],
        [np.where(star_draw < 0.55, 5, np.where(star_draw < 0.95, 4, 3)), np.where(star_draw < 0.7, 3, np.where(star_draw < 0.85, 2, 4))],
        np.where(star_draw < 0.5, 1, np.where(star_draw < 0.92, 2, 3)),
    )
    contradict = rng.random(n) < CONTRADICTION_RATE
    stars = np.where(contradict & (sentiment == 2), rng.integers(1, 3, n), stars)
    stars = np.where(contradict & (sentiment == 0), 5, stars)

    restaurant_name = np.array(names, dtype=object)[restaurant]
    neighborhood = np.array([r[1] for r in P.RESTAURANTS], dtype=object)[restaurant]
    restaurant_name = np.where(food_hall, P.FOOD_HALL, restaurant_name)
    neighborhood = np.where(food_hall, P.FOOD_HALL_NEIGHBORHOOD, neighborhood)
    slugs = {name: _slug(name) for name in [*names, P.FOOD_HALL]}

    return pa.table(
        {
            "review_id": pa.array([f"demo-{seed}-{i:07d}" for i in range(n)], pa.string()),
            "restaurant_id": pa.array([slugs[x] for x in restaurant_name], pa.string()),
            "restaurant_name": pa.array(restaurant_name.tolist(), pa.string()),
            "neighborhood": pa.array(neighborhood.tolist(), pa.string()),
            "created_at": pa.array(created, pa.timestamp("s")),
            "stars": pa.array(stars.astype(np.int8)),
            "text": pa.array(text.tolist(), pa.string()),
            "source": pa.array(np.full(n, "demo", dtype=object).tolist(), pa.string()),
            "true_label": pa.array(np.array(LABELS, dtype=object)[sentiment].tolist(), pa.string()),
            "is_sarcastic": pa.array(sarcastic),
            "event": pa.array(np.where(collapse, "collapse", np.where(food_hall, "food_hall", "")).tolist(), pa.string()),
        }
    )


def load_demo_data(
    db, *, rows: int = DEFAULT_ROWS, seed: int = DEFAULT_SEED, chunk_rows: int = 250_000, reporter=None
) -> dict:
    """Generate demo reviews and write them to the store with star labels and frozen splits.

    Generation happens with no connection open; each chunk is written in its own short
    transaction, so a dashboard reading the store is never locked out for long.

    Returns:
        Counts written and the scripted events' dates.

    Example:
        >>> load_demo_data("demo.duckdb", rows=500)["inserted"]  # doctest: +SKIP
        500
    """
    init_store(db)
    table = generate_reviews(rows, seed=seed)
    totals = {"inserted": 0, "updated": 0, "unchanged": 0, "labels_added": 0, "splits": dict.fromkeys(SPLITS, 0)}
    for offset in range(0, table.num_rows, chunk_rows):
        chunk = table.slice(offset, chunk_rows)
        labels = pa.table({
            "review_id": chunk["review_id"],
            "label": pa.array([STARS_TO_LABEL[s] for s in chunk["stars"].to_pylist()], pa.string()),
            "source": pa.array(["stars"] * chunk.num_rows, pa.string()),
        })
        with transaction(db) as con:
            written = add_reviews(con, chunk, labels)
        for key in ("inserted", "updated", "unchanged", "labels_added"):
            totals[key] += written[key]
        for split, n in written["splits"].items():
            totals["splits"][split] += n
        if reporter is not None:
            done = offset + chunk.num_rows
            reporter.progress(done / table.num_rows, f"wrote {done:,} of {table.num_rows:,} demo reviews")
    totals["events"] = demo_events().as_dict(DEFAULT_START)
    return totals


def run_job(db, params: dict, reporter) -> dict:
    """Job kind "demo-data": ``params`` may hold ``rows`` and ``seed``."""
    rows = int(params.get("rows", DEFAULT_ROWS))
    seed = int(params.get("seed", DEFAULT_SEED))
    return load_demo_data(db, rows=rows, seed=seed, chunk_rows=int(params.get("chunk_rows", 250_000)), reporter=reporter)
