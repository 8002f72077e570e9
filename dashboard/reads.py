"""Cached reads for the pages: each opens one short read-only connection and closes it.

Results are cached with ``st.cache_data`` keyed on the store path *and* the store files'
modification times, so any write (a relabel here, a job elsewhere) makes the next read
fresh, while repeated reruns of an unchanged store cost nothing. No connection outlives
a call: background jobs need the file's write lock.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import streamlit as st

from pipeline.jobs import note_store_waits, tail_log
from pipeline.models.predictors import load_predictor
from store import agreement as agreement_store
from store import aspects as aspect_store
from store import evaluations as evaluation_store
from store import flags as flag_store
from store import stats as stats_store
from store import terms as term_store
from store import training_runs as run_store
from store import trends as trend_store
from store import imports as import_store
from store import jobs as job_store
from store import models as model_store
from store import relabeling as relabeling_store
from store.rounds import list_rounds
from store.trends import ReviewFilter, SentimentSource
from store.db import connect

# Seconds a cached read lives even when the store has not changed (bounds memory, not staleness).
CACHE_TTL_S = 300


def store_version(db: Path) -> tuple[int, int]:
    """Modification times of the store and its write-ahead log; changes with every commit."""
    stamps = []
    for path in (db, Path(f"{db}.wal")):
        try:
            stamps.append(os.stat(path).st_mtime_ns)
        except FileNotFoundError:
            stamps.append(0)
    return stamps[0], stamps[1]


def _cached(fn):
    """Cache ``fn(db, *args)`` on the store path, the store version and the arguments."""

    def run(db: str, version: tuple[int, int], *args, **kwargs):
        return fn(Path(db), *args, **kwargs)

    # st.cache_data tells functions apart by module and qualified name.
    run.__module__, run.__name__, run.__qualname__ = fn.__module__, fn.__name__, f"cached.{fn.__qualname__}"
    inner = st.cache_data(ttl=CACHE_TTL_S, show_spinner=False, max_entries=256)(run)

    def call(db: Path, *args, **kwargs):
        return inner(str(db), store_version(db), *args, **kwargs)

    call.__name__, call.__doc__ = fn.__name__, fn.__doc__
    call.uncached = fn  # for bench/dashboard_bench.py, which times the reads without Streamlit
    return call


@_cached
def champion(db: Path, task: str = "sentiment") -> dict | None:
    with connect(db, read_only=True) as con:
        return model_store.get_champion(con, task)


@_cached
def champion_stack(db: Path, task: str = "sentiment") -> list[str]:
    """Champions of a task in effect, oldest first (a rollback needs two)."""
    with connect(db, read_only=True) as con:
        return model_store.fetch_champion_stack(con, task)


@_cached
def overview(db: Path) -> dict:
    """Overview counts, the champion with its test evaluation, and recent jobs."""
    with connect(db, read_only=True) as con:
        data = stats_store.fetch_overview(con)
        data["champion"] = model_store.get_champion(con)
        data["champion_eval"] = (
            evaluation_store.fetch_latest_evaluation(con, data["champion"]["model_id"]) if data["champion"] else None
        )
        data["jobs"] = job_store.list_jobs(con, limit=10)
    data["jobs"] = note_store_waits(db, data["jobs"])
    return data


@_cached
def trend_choices(db: Path) -> dict:
    """Filter options, the models that have predictions, and the champion's id."""
    with connect(db, read_only=True) as con:
        options = trend_store.fetch_filter_options(con)
        options["scored_models"] = agreement_store.list_scored_models(con)
        champ = model_store.get_champion(con)
    options["champion_id"] = champ["model_id"] if champ else None
    return options


@_cached
def trends(db: Path, model_id: str | None, flt: ReviewFilter, grain: str, by: str):
    """(sentiment source, TrendSummary, distinguishing terms) for one selection, in one connection."""
    with connect(db, read_only=True) as con:
        source = trend_store.resolve_sentiment_source(con, model_id)
        # Labels are aggregated twice below: evaluate the current-labels view once.
        used = trend_store.snapshot_current_labels(con) if source.kind == "labels" else source
        summary = trend_store.fetch_trend_summary(con, used, flt, grain=grain, by=by)
        found_terms = term_store.fetch_distinguishing_terms(con, used, flt, class_counts=summary.class_counts())
    return source, summary, found_terms


@_cached
def terms(db: Path, source: SentimentSource, flt: ReviewFilter, class_counts: tuple[int, int] | None) -> pd.DataFrame:
    """Distinguishing terms of a narrower selection (a period or group picked on the page)."""
    with connect(db, read_only=True) as con:
        return term_store.fetch_distinguishing_terms(con, source, flt, class_counts=class_counts)


@_cached
def selection_reviews(db: Path, source: SentimentSource, flt: ReviewFilter, label: str | None, limit: int):
    with connect(db, read_only=True) as con:
        return trend_store.fetch_selection_reviews(con, source, flt, label=label, limit=limit)


@_cached
def models(db: Path) -> pd.DataFrame:
    with connect(db, read_only=True) as con:
        return model_store.list_models(con)


def _model_details(con, model_id: str) -> dict:
    return {
        "evaluation": evaluation_store.fetch_latest_evaluation(con, model_id),
        "epochs": run_store.fetch_epoch_metrics(con, model_id),
        "slices": evaluation_store.fetch_evaluation_slices(con, model_id),
    }


@_cached
def comparison(db: Path, chosen: tuple[str, ...]) -> dict:
    """The rest of the comparison page but disagreements, in one connection: the chosen models'
    details, the scored models, the champion, rounds and promotions."""
    with connect(db, read_only=True) as con:
        champ = model_store.get_champion(con)
        return {
            "details": {model_id: _model_details(con, model_id) for model_id in chosen},
            "scored": agreement_store.list_scored_models(con),
            "champion_id": champ["model_id"] if champ else None,
            "rounds": list_rounds(con),
            "promotions": model_store.promotion_history(con),
        }


@_cached
def model_curves(db: Path, model_id: str) -> dict | None:
    """Reliability bins and per-class precision-recall curves of a model's stored test-split predictions
    (None when the model has not scored the test split)."""
    from pipeline.evaluation.curves import precision_recall_curves, reliability_bins
    from store.constants import LABEL_TO_ID
    from store.evaluations import fetch_test_predictions

    with connect(db, read_only=True) as con:
        frame = fetch_test_predictions(con, model_id)
    if frame.empty:
        return None
    probs = frame[["p_negative", "p_neutral", "p_positive"]].to_numpy()
    references = frame["label"].map(LABEL_TO_ID).to_numpy()
    return {"n": len(frame), "reliability": reliability_bins(probs, references),
            "pr": precision_recall_curves(probs, references)}


@_cached
def test_snapshot(db: Path) -> dict:
    """The current labeled test split's size and hash (to compare with stored evaluations)."""
    from pipeline.evaluation.snapshot import current_test_snapshot

    return current_test_snapshot(db)


@_cached
def disagreement(
    db: Path, model_a: str, model_b: str, split: str | None, limit: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(3x3 agreement table, the most confident disagreements) on ``split`` (None: every review)."""
    with connect(db, read_only=True) as con:
        return (
            agreement_store.fetch_prediction_agreement(con, model_a, model_b, split=split),
            agreement_store.fetch_disagreements(con, model_a, model_b, split=split, limit=limit),
        )


@_cached
def relabel_progress(db: Path) -> dict:
    """Human labels per labeler and those waiting for the next retraining round."""
    with connect(db, read_only=True) as con:
        return relabeling_store.relabel_progress(con)


@_cached
def data_stats(db: Path) -> dict:
    """Store statistics, monthly review volume by source, and recent imports."""
    with connect(db, read_only=True) as con:
        return {
            "stats": stats_store.store_stats(con),
            "volume": stats_store.fetch_review_volume(con),
            "imports": import_store.list_imports(con),
            "aspect_annotated": aspect_store.count_annotated_reviews(con),
        }


@_cached
def import_rejects(db: Path, import_id: int) -> pd.DataFrame:
    with connect(db, read_only=True) as con:
        return import_store.fetch_rejects(con, import_id, limit=200)


@st.cache_resource(max_entries=4, show_spinner="Loading the model...")
def _predictor(db: str, model_id: str):
    return load_predictor(db, model_id)


def predictor(db: Path, model_id: str):
    """A loaded model for interactive predictions, kept across reruns and sessions (st.cache_resource;
    a registered model's weights never change under its id). At most four stay loaded."""
    return _predictor(str(db), model_id)


def job_panel(db: Path, job_id: str) -> dict | None:
    """A job row (with elapsed_s, eta_s), its training runs as trials, their epoch metrics and step losses,
    and its log tail; never cached (the live panel polls it)."""
    from pipeline.jobs import job_timing, note_store_wait

    with connect(db, read_only=True) as con:
        job = job_store.get_job(con, job_id)
        if job is None:
            return None
        epochs = run_store.fetch_job_epoch_metrics(con, job_id)
        trials = run_store.fetch_job_trials(con, job_id)
        losses = run_store.fetch_job_step_losses(con, job_id)
    job["elapsed_s"], job["eta_s"] = job_timing(job)
    note_store_wait(db, job)
    return {"job": job, "epochs": epochs, "trials": trials, "losses": losses,
            "log": tail_log(job.get("log_path"), lines=30)}


def recent_jobs(db: Path, *, limit: int = 15) -> pd.DataFrame:
    """Newest jobs first (dead ones marked failed) with elapsed_s and eta_s; uncached so a finished job shows at once."""
    from pipeline.jobs import list_jobs

    return list_jobs(db, limit=limit)


@_cached
def hard_cases(db: Path, flt, limit: int, actor_name: str, recent: int) -> dict:
    """Everything the hard-cases page reads, in one connection: the filtered open-flag queue (highest
    priority first) and how many flags match, flag counts by status, the filter choices, the
    labeler's recent actions and the labeling guidelines."""
    from store.guidelines import get_guidelines
    from store.relabeling import fetch_recent_actions

    with connect(db, read_only=True) as con:
        queue, total = flag_store.search_flag_queue(con, flt, limit=limit)
        return {
            "queue": queue,
            "total": total,
            "status": flag_store.count_flags_by_status(con),
            "options": flag_store.fetch_queue_filter_options(con),
            "recent": fetch_recent_actions(con, actor_name, limit=recent),
            "guidelines": get_guidelines(con),
        }


@_cached
def review_aspects(db: Path, review_id: str) -> dict:
    """One queued review's aspects: the store's aspects, its current aspect labels and the aspect
    champion's predictions (see store.relabeling.fetch_review_aspects)."""
    with connect(db, read_only=True) as con:
        return relabeling_store.fetch_review_aspects(con, review_id)


@_cached
def guidelines(db: Path) -> dict | None:
    """The current labeling guidelines (None when never written)."""
    from store.guidelines import get_guidelines

    with connect(db, read_only=True) as con:
        return get_guidelines(con)


class _AttributionWorker:
    """Word attributions computed one at a time on a background thread, so a labeler's key press
    never waits for a model: the page shows the review at once and the highlights when ready.
    Results are kept per (store, model, review) for the life of the process (bounded)."""

    MAX_RESULTS = 512
    MAX_MODELS = 2

    def __init__(self) -> None:
        import threading
        from collections import OrderedDict
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tastebud-attribution",
                                        initializer=_lowest_priority)
        self._lock = threading.Lock()
        self._futures: OrderedDict = OrderedDict()
        self._predictors: OrderedDict = OrderedDict()

    def _predictor(self, db: str, model_id: str):
        from pipeline.models.predictors import load_predictor

        key = (db, model_id)
        if key not in self._predictors:
            self._predictors[key] = load_predictor(db, model_id)
            while len(self._predictors) > self.MAX_MODELS:
                self._predictors.popitem(last=False)
        self._predictors.move_to_end(key)
        return self._predictors[key]

    def _compute(self, db: str, model_id: str, text: str):
        from pipeline.models.attribution import word_attributions

        return word_attributions(self._predictor(db, model_id), text)

    def submit(self, db: str, model_id: str, review_id: str, text: str):
        key = (db, model_id, review_id, text)
        with self._lock:
            future = self._futures.get(key)
            if future is None:
                future = self._pool.submit(self._compute, db, model_id, text)
                self._futures[key] = future
                while len(self._futures) > self.MAX_RESULTS:
                    self._futures.popitem(last=False)
            self._futures.move_to_end(key)
            return future


def _lowest_priority() -> None:
    """Run this thread (and the model threads it starts) at the lowest CPU priority: a labeler's
    next page run must never wait behind highlights computed ahead."""
    import threading

    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):  # not Linux, or not allowed: run at normal priority
        pass


@st.cache_resource(show_spinner=False)
def _attribution_worker() -> _AttributionWorker:
    return _AttributionWorker()


def word_attribution(db: Path, model_id: str, review_id: str, text: str):
    """The words that drove ``model_id``'s call on a review: a ``WordAttribution`` when ready, None while
    it is being computed (asked for now if it was not), or the error text when the model cannot explain it."""
    future = _attribution_worker().submit(str(db), model_id, review_id, text)
    if not future.done():
        return None
    error = future.exception()
    if error is not None:
        return f"{type(error).__name__}: {error}" if not str(error) else str(error)
    return future.result()


def prefetch_attributions(db: Path, rows: list[tuple[str, str, str]]) -> None:
    """Start computing the attributions of (model_id, review_id, text) rows the labeler will see next."""
    worker = _attribution_worker()
    for model_id, review_id, text in rows:
        worker.submit(str(db), model_id, review_id, text)


def matching_review_ids(db: Path, flt) -> list[str]:
    """Every review with an open flag matching the queue filter; uncached, it feeds a write."""
    with connect(db, read_only=True) as con:
        return flag_store.fetch_matching_review_ids(con, flt)
