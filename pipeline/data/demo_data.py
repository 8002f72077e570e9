"""A deterministic, clearly synthetic stream of Atlanta restaurant reviews.

Used by the first run, the tests and the benchmarks, so the project works on a machine
with no real data. Each review has a latent sentiment drawn from its restaurant's
quality; its text is composed from phrase pools of that sentiment
(:mod:`pipeline.data.demo_phrases`) and its stars mostly, not always, agree. Built in:

- two years of timestamps with a weekly rhythm (busy weekends) and slow growth;
- sarcastic praise with low stars, slow-service complaints, neutral reviews, local
  references ("worse than the DMV on Memorial Drive");
- scripted events: Magnolia Table's service collapses for one month (its food stays good), and
  the food hall Krog District opens mid-stream with mixed sentiment (variety loved, crowds hated);
- aspects: every phrase is tagged with the aspects it speaks of (:func:`pipeline.data.demo_phrases.phrase_aspects`),
  so each review's true aspects are known, and a share of them is imported as aspect labels.

Generation is vectorised (NumPy indices into phrase pools, joined by Arrow), so a
million reviews take seconds.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.data import demo_phrases as P
from store.aspects import append_aspect_labels
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


# The aspects the generator tags its phrases with (SemEval-2014's five) and their polarity codes.
ASPECTS: tuple[str, ...] = ("food", "service", "price", "ambience", P.MISC)
# One bit per polarity, so the phrases of a review combine by OR; 0: the phrase does not speak of the aspect.
_POLARITY_BIT = {"negative": 1, "neutral": 2, "positive": 4}
# The column of generate_reviews' table holding each aspect's true polarity.
TRUE_ASPECT_COLUMNS = {aspect: f"true_{aspect.split('/')[0]}" for aspect in ASPECTS}
# Share of demo reviews whose true aspects are imported as aspect labels (source 'import'), and at most
# this many reviews: enough to train a first aspect model in minutes on a CPU, as few as a labeler would have.
ASPECT_LABEL_SHARE = 0.5
ASPECT_LABEL_MAX_REVIEWS = 5000
# In the collapse month the food stays good: the share of collapse reviews praising it (else neutral).
COLLAPSE_FOOD_POSITIVE = 0.85
# Share of food-hall reviews that also speak of the hall's other side (praise: the crowds; complaints: the food).
FOOD_HALL_OTHER_SIDE = 0.5


def _aspect_codes(pairs) -> np.ndarray:
    codes = np.zeros(len(ASPECTS), dtype=np.int8)
    for aspect, polarity in pairs:
        codes[ASPECTS.index(aspect)] = _POLARITY_BIT[polarity]
    return codes


def _render(template: str, dishes: tuple[str, ...]) -> list[str]:
    return [template.format(dish=d) for d in (dishes if "{dish}" in template else ("",))]


class _Pool:
    """Phrases of one kind for the three sentiments, indexable by a sentiment code per row, each with the
    aspects it speaks of (a row of polarity bits per phrase)."""

    def __init__(self, name: str, dishes: tuple[str, ...] = P.DISHES):
        by_sentiment = getattr(P, name)
        phrases, codes, self.offsets, self.sizes = [], [], [], []
        for label in LABELS:
            self.offsets.append(len(phrases))
            for template in by_sentiment[label]:
                rendered = _render(template, dishes)
                phrases += rendered
                codes += [_aspect_codes(P.phrase_aspects(name, template, label))] * len(rendered)
            self.sizes.append(len(phrases) - self.offsets[-1])
        self.phrases, self.codes = np.array(phrases, dtype=object), np.array(codes, dtype=np.int8)
        self.offsets, self.sizes = np.array(self.offsets), np.array(self.sizes)

    def pick(self, rng: np.random.Generator, sentiment: np.ndarray) -> np.ndarray:
        """Phrase indices, one per row, of each row's sentiment."""
        return self.offsets[sentiment] + (rng.random(len(sentiment)) * self.sizes[sentiment]).astype(np.int64)


class _FlatPool:
    """Phrases of one kind and one sentiment, each with its aspects."""

    def __init__(self, name: str):
        rendered = [(phrase, template) for template in getattr(P, name) for phrase in _render(template, P.DISHES)]
        self.phrases = np.array([phrase for phrase, _ in rendered], dtype=object)
        self.codes = np.array([_aspect_codes(P.phrase_aspects(name, t)) for _, t in rendered], dtype=np.int8)

    def pick(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.integers(0, len(self.phrases), n)


def _true_aspects(bits: np.ndarray) -> dict[str, np.ndarray]:
    """Each aspect's polarity per review from the polarity bits of the phrases it joined, OR-ed ((n, aspects)):
    praised and criticised at once is "conflict", neutral only when no phrase takes a side, "absent" when
    no phrase speaks of it."""
    neg, neu, pos = (bits & _POLARITY_BIT[p] > 0 for p in ("negative", "neutral", "positive"))
    polarity = np.select([pos & neg, pos, neg, neu], ["conflict", "positive", "negative", "neutral"], "absent")
    return {aspect: polarity[:, i].astype(object) for i, aspect in enumerate(ASPECTS)}


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
        the generator knows: ``true_label`` (the text's sentiment), ``is_sarcastic``,
        ``event`` ("collapse", "food_hall" or "") and each aspect's true polarity (columns
        :data:`TRUE_ASPECT_COLUMNS`: ``true_food``, ``true_service``...; "absent" where the review does not
        speak of it).

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

    # A review joins phrases; each phrase pool also says which aspects its phrases speak of.
    pools = {name: _Pool(name) for name in ("OPENERS", "FOOD", "SERVICE", "AMBIENCE", "LOCAL", "CLOSERS",
                                              "FOOD_HALL_TEXT")}
    flats = {name: _FlatPool(name) for name in ("COLLAPSE", "SARCASM", "FOOD_HALL_VARIETY", "FOOD_HALL_CROWDS")}
    picked = {name: pools[name].pick(rng, sentiment) for name in ("OPENERS", "FOOD", "SERVICE")}
    picked["AMBIENCE"] = pools["AMBIENCE"].pick(rng, sentiment)
    with_ambience = rng.random(n) < 0.45
    picked["LOCAL"] = pools["LOCAL"].pick(rng, sentiment)
    with_local = rng.random(n) < LOCAL_RATE
    picked["CLOSERS"] = pools["CLOSERS"].pick(rng, sentiment)
    # Slow-service complaints dominate negative reviews' service sentences already;
    # during the collapse the whole review is about the breakdown.
    picked["COLLAPSE"] = flats["COLLAPSE"].pick(rng, n)
    picked["FOOD_HALL_TEXT"] = pools["FOOD_HALL_TEXT"].pick(rng, sentiment)
    sarcastic = (sentiment == 0) & (rng.random(n) < SARCASM_RATE) & ~food_hall
    picked["SARCASM"] = flats["SARCASM"].pick(rng, n)
    # The aspect stories draw from their own stream, so every earlier draw (and review) stays as it was.
    arng = np.random.default_rng([seed, 20])
    # The collapse is the service's: the food its reviews mention stays good.
    collapse_food = pools["FOOD"].pick(arng, np.where(arng.random(n) < COLLAPSE_FOOD_POSITIVE, 2, 1))
    # The food hall's other side: praise of its food gets a word on the crowds, and the other way round.
    other_side = food_hall & (arng.random(n) < FOOD_HALL_OTHER_SIDE) & (sentiment != 1)
    variety, crowds = flats["FOOD_HALL_VARIETY"].pick(arng, n), flats["FOOD_HALL_CROWDS"].pick(arng, n)

    def phrases(name: str, idx: np.ndarray, keep: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        pool = pools.get(name) or flats[name]
        text, codes = pool.phrases[idx], pool.codes[idx]
        if keep is None:
            return text, codes
        return np.where(keep, text, ""), np.where(keep[:, None], codes, 0)

    base = [phrases(name, picked[name]) for name in ("OPENERS", "FOOD", "SERVICE")]
    base += [phrases("AMBIENCE", picked["AMBIENCE"], with_ambience), phrases("LOCAL", picked["LOCAL"], with_local),
             phrases("CLOSERS", picked["CLOSERS"])]
    columns = [pa.array(t.tolist(), pa.string()) for t, _ in base]
    text = pc.binary_join_element_wise(*columns, " ")
    text = pc.utf8_trim_whitespace(pc.replace_substring_regex(text, r"\s{2,}", " "))
    text = np.asarray(text.to_numpy(zero_copy_only=False), dtype=object)
    # Which phrases each review joined decides its true aspects (bits: see _POLARITY_BIT).
    plain = ~(collapse | food_hall | sarcastic)
    bits = np.zeros((n, len(ASPECTS)), dtype=np.int8)
    for _, codes in base:
        bits[plain] |= codes[plain]
    closer_text, closer_codes = base[5]
    collapse_text, collapse_codes = phrases("COLLAPSE", picked["COLLAPSE"])
    food_text, food_codes = phrases("FOOD", collapse_food)
    text[collapse] = collapse_text[collapse] + " " + food_text[collapse]
    bits[collapse] = collapse_codes[collapse] | food_codes[collapse]
    hall_text, hall_codes = phrases("FOOD_HALL_TEXT", picked["FOOD_HALL_TEXT"])
    crowd_text, crowd_codes = phrases("FOOD_HALL_CROWDS", crowds)
    praise_text, praise_codes = phrases("FOOD_HALL_VARIETY", variety)
    hall = np.flatnonzero(food_hall)
    side = other_side[hall]
    praised = sentiment[hall] == 2
    side_text = np.where(side, np.where(praised, crowd_text[hall], praise_text[hall]) + " ", "")
    side_codes = np.where(side[:, None], np.where(praised[:, None], crowd_codes[hall], praise_codes[hall]), 0)
    text[hall] = hall_text[hall] + " " + side_text + closer_text[hall]
    bits[hall] = hall_codes[hall] | side_codes | closer_codes[hall]
    sarcasm_text, sarcasm_codes = phrases("SARCASM", picked["SARCASM"])
    text[sarcastic] = sarcasm_text[sarcastic]
    bits[sarcastic] = sarcasm_codes[sarcastic]
    true_aspects = _true_aspects(bits)

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
            **{TRUE_ASPECT_COLUMNS[a]: pa.array(true_aspects[a], pa.string()) for a in ASPECTS},
        }
    )


def aspect_label_rows(table: pa.Table, share: float) -> pd.DataFrame:
    """The true aspects of a deterministic ``share`` of ``table``'s reviews (chosen by a hash of the id, so
    every split gets its part) as imported aspect labels: review_id, aspect, polarity, source; the aspects a
    review speaks of only (an annotated review's other aspects are absent).

    Example:
        >>> aspect_label_rows(generate_reviews(100), 0.5)["source"].unique().tolist()
        ['import']
    """
    ids = np.asarray(table["review_id"].to_pylist(), dtype=object)
    chosen = np.array([zlib.crc32(r.encode()) % 10_000 < share * 10_000 for r in ids], dtype=bool)
    parts = []
    for aspect in ASPECTS:
        polarity = np.asarray(table[TRUE_ASPECT_COLUMNS[aspect]].to_pylist(), dtype=object)
        keep = chosen & (polarity != "absent")
        parts.append(pd.DataFrame({"review_id": ids[keep], "aspect": aspect, "polarity": polarity[keep]}))
    return pd.concat(parts, ignore_index=True).assign(source="import")


def load_demo_data(
    db, *, rows: int = DEFAULT_ROWS, seed: int = DEFAULT_SEED, chunk_rows: int = 250_000, reporter=None
) -> dict:
    """Generate demo reviews and write them to the store with star labels and frozen splits, and the true
    aspects of a share of them (``ASPECT_LABEL_SHARE``, at most ``ASPECT_LABEL_MAX_REVIEWS`` reviews) as
    imported aspect labels, so an aspect model can train on the demo store.

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
    totals = {"inserted": 0, "updated": 0, "unchanged": 0, "labels_added": 0, "aspect_labels_added": 0,
              "splits": dict.fromkeys(SPLITS, 0)}
    share = min(ASPECT_LABEL_SHARE, ASPECT_LABEL_MAX_REVIEWS / table.num_rows)
    for offset in range(0, table.num_rows, chunk_rows):
        chunk = table.slice(offset, chunk_rows)
        labels = pa.table({
            "review_id": chunk["review_id"],
            "label": pa.array([STARS_TO_LABEL[s] for s in chunk["stars"].to_pylist()], pa.string()),
            "source": pa.array(["stars"] * chunk.num_rows, pa.string()),
        })
        with transaction(db) as con:
            written = add_reviews(con, chunk, labels)
            totals["aspect_labels_added"] += append_aspect_labels(con, aspect_label_rows(chunk, share))
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
