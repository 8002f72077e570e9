"""Evaluate a registered model on the frozen test split (stored) or on an external labeled file (not stored).

Headline metrics come from the offline ``evaluate`` module :class:`pipeline.evaluation.metrics.SentimentMetrics`;
slices show where a model fails: by restaurant, by whether stars agree with the label, by
review length, by a given term, and on sarcasm candidates (stars and label point opposite
ways). Test results are stored per model, so comparing models reads, never recomputes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.data.importer import ColumnMapping, parse_reviews_file
from pipeline.evaluation.curves import bootstrap_macro_f1_interval
from pipeline.evaluation.snapshot import snapshot_hash
from pipeline.evaluation.metrics import SentimentMetrics, compute_classification_metrics
from pipeline.evaluation.snapshot import current_test_snapshot  # noqa: F401 (current_test_snapshot: API)
from pipeline.models.predictors import load_predictor
from store import evaluations as evaluation_store
from store.constants import LABEL_TO_ID, label_from_stars
from store.db import connect, transaction
from store.errors import TastebudError

# Review length buckets in words: (upper bound exclusive, name).
LENGTH_BUCKETS: tuple[tuple[float, str], ...] = ((50, "short (<50 words)"), (150, "medium (50-149 words)"), (float("inf"), "long (150+ words)"))
# A restaurant gets its own slice once it has this many test reviews (fewer says nothing).
MIN_RESTAURANT_SLICE = 5
# At most this many restaurant slices are stored (the most reviewed ones).
MAX_RESTAURANT_SLICES = 50
# Sarcasm candidates: stars at or above this with a negative label, or at or below LOW with a positive one.
SARCASM_HIGH_STARS = 4
SARCASM_LOW_STARS = 2


def evaluate_model(db, model_id: str, *, terms: Sequence[str] = ()) -> dict:
    """Score the test split with a registered model, compute metrics and slices, and store them.

    Args:
        db: store path.
        model_id: a registered, ready model.
        terms: extra terms to slice by (case-insensitive whole-phrase match), e.g. ("Krog District",).

    Returns:
        The metrics (accuracy, macro_precision, macro_recall, macro_f1, per_class, confusion_matrix,
        ece, n, test_snapshot, ...) plus evaluation_id and slices (list of dicts).

    Raises:
        TastebudError: unknown model or an empty test split.

    Example:
        >>> evaluate_model("store.duckdb", "baseline-vader", terms=["Krog District"])["macro_f1"]  # doctest: +SKIP
        0.47
    """
    predictor = load_predictor(db, model_id)
    frame = load_test_frame(db)
    return store_test_evaluation(db, model_id, frame, predictor.predict_proba(frame["text"].tolist()), terms=terms)


def current_test_evaluation(db, model_id: str) -> dict:
    """The model's stored test evaluation when it was taken on the current answer key, else a fresh one.

    Raises:
        TastebudError: unknown model or an empty test split.
    """
    frame = load_test_frame(db)
    with connect(db, read_only=True) as con:
        stored = evaluation_store.fetch_latest_evaluation(con, model_id)
    if is_current(stored, frame):
        return stored
    probs = load_predictor(db, model_id).predict_proba(frame["text"].tolist())
    return store_test_evaluation(db, model_id, frame, probs)


def load_test_frame(db) -> pd.DataFrame:
    """The labeled test split as it stands now (review_id, text, stars, restaurant, created_at, label).

    Raises:
        TastebudError: the test split has no labeled review.
    """
    with connect(db, read_only=True) as con:
        frame = evaluation_store.fetch_test_frame(con)
    if frame.empty:
        raise TastebudError("the test split has no labeled reviews; import more reviews first")
    return frame


def store_test_evaluation(db, model_id: str, frame: pd.DataFrame, probs: np.ndarray, *, terms: Sequence[str] = ()) -> dict:
    """Store the metrics and slices of ``probs`` (a model's probabilities for ``frame``, the test split).

    Returns:
        As :func:`evaluate_model`.
    """
    terms = _clean_terms(terms)
    metrics, slices = _metrics_and_slices(frame, probs, terms)
    metrics.update(dataset="test", model_id=model_id, terms=list(terms), test_snapshot=snapshot_hash(frame))
    with transaction(db) as con:
        evaluation_id = evaluation_store.insert_evaluation(con, model_id, "test", metrics, slices)
    return {**metrics, "evaluation_id": evaluation_id, "slices": slices.to_dict("records")}


def is_current(evaluation: dict | None, frame: pd.DataFrame) -> bool:
    """Whether a stored test evaluation was taken on exactly ``frame``'s reviews and labels."""
    return bool(evaluation) and evaluation.get("test_snapshot") == snapshot_hash(frame)


def evaluate_file(
    db,
    model_id: str,
    path: str | Path,
    mapping: ColumnMapping | None = None,
    *,
    fmt: str | None = None,
    numeric_labels: str | None = None,
    terms: Sequence[str] = (),
) -> dict:
    """Evaluate a registered model on a labeled file outside the store; the store is not written.

    The file is read and validated by the importer's parser (same formats, column detection,
    label spellings and row checks as ``tastebud import``); labels come from its label column
    when it has one, else from stars (1-2 negative, 3 neutral, 4-5 positive).

    Args:
        db: store path (only read, for the model's registry row).
        model_id: a registered, ready model.
        path: CSV, TSV, JSON Lines or Parquet file.
        mapping: explicit file columns (:class:`pipeline.data.importer.ColumnMapping`); others auto-detected.
        fmt: file format when the extension does not say.
        numeric_labels: accept numeric labels by this scheme ("binary", "ternary", "signed").
        terms: extra term slices.

    Returns:
        Metrics and slices as :func:`evaluate_model`, plus dataset (the path), label_source,
        skipped (accepted rows without a label) and rejected (rows the parser refused).

    Raises:
        TastebudError: unreadable file, no text column, no label or stars column, no labeled row.

    Example:
        >>> evaluate_file("store.duckdb", "ft-20261125-101500-1a2b", "held_out.csv")["macro_f1"]  # doctest: +SKIP
    """
    terms = _clean_terms(terms)
    frame, skipped, rejected, label_source = read_labeled_file(path, mapping, fmt=fmt, numeric_labels=numeric_labels)
    probs = load_predictor(db, model_id).predict_proba(frame["text"].tolist())
    metrics, slices = _metrics_and_slices(frame, probs, terms)
    metrics.update(dataset=str(path), model_id=model_id, terms=list(terms), label_source=label_source,
                   skipped=skipped, rejected=rejected)
    return {**metrics, "slices": slices.to_dict("records")}


def read_labeled_file(
    path: str | Path, mapping: ColumnMapping | None = None, *, fmt: str | None = None, numeric_labels: str | None = None
) -> tuple[pd.DataFrame, int, int, str]:
    """Parse a labeled file with the importer's reader.

    Returns:
        (frame with review_id, text, stars, restaurant, label; accepted rows without a label;
        rejected rows; label source "import" or "stars").

    Raises:
        TastebudError: unreadable file, no label or stars column, or no labeled row.
    """
    rows, rejects, label_source = parse_reviews_file(path, fmt=fmt, columns=mapping, numeric_labels=numeric_labels)
    if label_source is None:
        raise TastebudError(f"{path} has neither a label nor a stars column; name one with --label or --stars")
    frame = rows.select(["review_id", "text", "stars", "restaurant_id", "restaurant_name", "label"]).to_pandas()
    frame["restaurant"] = frame["restaurant_name"].where(frame["restaurant_name"].notna(), frame["restaurant_id"])
    labeled = frame["label"].notna()
    if not labeled.any():
        raise TastebudError(f"{path} has no row with a usable label ({rejects.num_rows} rows rejected)")
    columns = ["review_id", "text", "stars", "restaurant", "label"]
    return frame.loc[labeled, columns].reset_index(drop=True), int((~labeled).sum()), rejects.num_rows, label_source


def _clean_terms(terms: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(t.strip() for t in terms if t and t.strip()))


def _metrics_and_slices(frame: pd.DataFrame, probs: np.ndarray, terms: tuple[str, ...]) -> tuple[dict, pd.DataFrame]:
    references = frame["label"].map(LABEL_TO_ID).to_numpy(dtype=np.int64)
    metrics = SentimentMetrics().compute(predictions=probs.tolist(), references=references.tolist())
    return metrics, compute_slices(frame, probs, references, terms=terms)


def compute_slices(frame: pd.DataFrame, probs: np.ndarray, references: np.ndarray, *, terms: Sequence[str] = ()) -> pd.DataFrame:
    """Accuracy and macro-F1 per slice: restaurant, stars_agreement, length, term, sarcasm.

    Args:
        frame: text, label, stars (may be NaN) and restaurant (may be missing) per example.
        probs: (n, 3) predicted probabilities.
        references: (n,) true class ids.
        terms: phrases for term slices.

    Returns:
        DataFrame with slice_kind, slice_value, n, accuracy, macro_f1 (metrics None where n = 0), and
        f1_ci_low/f1_ci_high, the bootstrap 95% interval of macro-F1 (None below 10 reviews).
    """
    masks: list[tuple[str, str, np.ndarray]] = []
    predicted = np.asarray(probs).argmax(axis=1)
    if "restaurant" in frame and frame["restaurant"].notna().any():
        counts = frame["restaurant"].value_counts()
        for name in counts[counts >= MIN_RESTAURANT_SLICE].index[:MAX_RESTAURANT_SLICES]:
            masks.append(("restaurant", str(name), (frame["restaurant"] == name).to_numpy()))
    stars = pd.to_numeric(frame.get("stars"), errors="coerce") if "stars" in frame else pd.Series(np.nan, index=frame.index)
    if stars.notna().any():
        star_label = stars.map(lambda s: label_from_stars(int(s)) if s in (1, 2, 3, 4, 5) else None)
        agree = (star_label == frame["label"]).to_numpy()
        known = star_label.notna().to_numpy()
        masks.append(("stars_agreement", "agree", agree & known))
        masks.append(("stars_agreement", "disagree", ~agree & known))
        high_neg = ((stars >= SARCASM_HIGH_STARS) & (frame["label"] == "negative")).to_numpy()
        low_pos = ((stars <= SARCASM_LOW_STARS) & (frame["label"] == "positive")).to_numpy()
        masks.append(("sarcasm", "all candidates", high_neg | low_pos))
        masks.append(("sarcasm", "high stars, negative label", high_neg))
        masks.append(("sarcasm", "low stars, positive label", low_pos))
    words = frame["text"].str.split().str.len().fillna(0).to_numpy()
    lower = 0
    for upper, name in LENGTH_BUCKETS:
        masks.append(("length", name, (words >= lower) & (words < upper)))
        lower = upper
    for term in terms:
        pattern = r"(?<!\w)" + re.escape(term) + r"(?!\w)"
        masks.append(("term", term, frame["text"].str.contains(pattern, case=False, regex=True, na=False).to_numpy()))
    rows = []
    for kind, value, mask in masks:
        n = int(mask.sum())  # empty slices stay (n = 0): "no sarcasm candidates" is an answer too
        m = compute_classification_metrics(probs[mask], references[mask], average_over="present") if n else None
        interval = bootstrap_macro_f1_interval(references[mask], predicted[mask]) if n else None
        rows.append({"slice_kind": kind, "slice_value": value, "n": n,
                     "accuracy": m["accuracy"] if m else None, "macro_f1": m["macro_f1"] if m else None,
                     "f1_ci_low": interval[0] if interval else None, "f1_ci_high": interval[1] if interval else None})
    return pd.DataFrame(rows, columns=[*evaluation_store.SLICE_COLUMNS, *evaluation_store.SLICE_INTERVAL_COLUMNS])


def run_job(db, params: dict, reporter) -> dict:
    """Job kind "evaluate": re-evaluate ``params["model_ids"]`` on the current test split.

    Returns:
        {"evaluated": {model_id: {"macro_f1", "n"}}}.
    """
    model_ids = list((params or {}).get("model_ids") or [])
    if not model_ids:
        raise TastebudError("an evaluate job needs model_ids")
    done = {}
    for i, model_id in enumerate(model_ids):
        reporter.progress(i / len(model_ids), f"evaluating {model_id} on the current test set", force=True)
        result = evaluate_model(db, model_id)
        reporter.log(f"{model_id}: test macro-F1 {result['macro_f1']:.4f} (n={result['n']})")
        done[model_id] = {"macro_f1": result["macro_f1"], "n": result["n"]}
    reporter.progress(1.0, f"evaluated {len(done)} model(s)", force=True)
    return {"evaluated": done}
