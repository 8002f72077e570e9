"""`tastebud demo`: a fresh install to a working dashboard on a demo store within two minutes on CPU.

First the fast part, in the foreground: synthetic reviews (with a share of their aspects as labels), the fast baselines (VADER, TF-IDF +
LR; the better one becomes the first champion), their scores, hard-case flags and the monitor's health
and alerts, so every page has something to show. Then the dashboard starts, and a quickly
fine-tuned model trains (after the zero-shot baseline is scored) as a background job whose progress the dashboard shows; when it
beats the baseline it is promoted, and the store is scored, flagged and monitored again. A first aspect
model trains after it, as its own background job ("demo-aspects"), and scores the store when it is done.
"""

from __future__ import annotations

import secrets as pysecrets
import time
from pathlib import Path

from pipeline.data.demo_data import DEFAULT_ROWS, DEFAULT_SEED, load_demo_data
from pipeline.jobs import JobReporter
from pipeline.loop.promotion import promote_if_better
from pipeline.models.baselines import register_baselines
from store.accounts import account_entry, hash_password, write_private_file
from store.actors import Actor
from store.db import connect, resolve_db_path
from store.errors import TastebudError
from store.evaluations import fetch_latest_evaluation
from store.models import get_champion

# A first model that trains in a minute or two on 2 CPU cores: demo reviews are short
# (~45 tokens), so 96 tokens truncate nothing; 2,400 examples x 2 epochs is enough to beat VADER.
DEMO_ROLES = ("viewer", "labeler", "data_scientist")
# Baselines before the dashboard starts (seconds on a CPU) and in the background job (an encoder pass).
FAST_BASELINES = ("vader", "tfidf")
SLOW_BASELINES = ("zeroshot",)
DEMO_ACTOR = Actor("demo-setup", "admin")
# The first aspect model, trained in the background after the review model: demo sentences are short
# (a segment is one sentence, ~12 tokens), so 48 tokens cut nothing. On 1,500 demo reviews one epoch cost
# ~4.5 CPU-minutes and already reached validation detection micro-F1 0.92, polarity accuracy 0.82
# (bench/RESULTS.md): 2 epochs on at most 1,200 reviews keep it to a few minutes on an idle 2-core CPU.
DEMO_ASPECT_TRAIN: dict = {"epochs": 2, "max_length": 48, "max_train_examples": 1200}
# Seconds between looks at the job the aspect training waits for.
WAIT_POLL_S = 5.0


def demo_files(db) -> tuple[Path, Path]:
    """The demo accounts secrets file and the plain-text logins file, beside the store."""
    base = resolve_db_path(db).resolve().parent
    return base / "demo-secrets.toml", base / "demo-logins.txt"


def ensure_demo_accounts(db) -> dict[str, str]:
    """Create one local account per role (random passwords, bcrypt-hashed) unless they exist.

    Both files are created mode 0600 from their first byte.

    Returns:
        username -> password of the accounts this call created; empty when they already existed
        (their passwords stay in the logins file and are not repeated).
    """
    secrets_file, logins_file = demo_files(db)
    if secrets_file.exists() and logins_file.exists():
        return {}
    logins = {f"demo-{role.replace('_', '-')}": pysecrets.token_urlsafe(9) for role in DEMO_ROLES}
    lines = ["# Demo accounts written by `tastebud demo`; passwords are in demo-logins.txt beside this file.\n"]
    for (username, password), role in zip(logins.items(), DEMO_ROLES):
        lines.append(account_entry(username, role, hash_password(password)))
    write_private_file(secrets_file, "\n".join(lines))
    write_private_file(logins_file, "".join(f"{u} {p}\n" for u, p in logins.items()))
    return logins


def demo_is_ready(db) -> bool:
    """True when the store has a champion that has scored reviews (nothing left to build)."""
    path = resolve_db_path(db)
    if not path.exists():
        return False
    with connect(path, read_only=True) as con:
        tables = {t for (t,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        if "models" not in tables:
            return False
        champion = get_champion(con)
        if champion is None:
            return False
        scored = con.execute("SELECT count(*) FROM predictions WHERE model_id = ?", [champion["model_id"]]).fetchone()[0]
    return scored > 0


def build_demo_store(
    db, *, rows: int = DEFAULT_ROWS, seed: int = DEFAULT_SEED, reporter: JobReporter | None = None,
    finetune: bool = False, train: dict | None = None,
) -> dict:
    """Build a demo store whose every page is populated, fast: no fine-tuning on this path.

    Synthetic reviews, the fast baselines (VADER, TF-IDF + LR) evaluated on the test split and the
    better one promoted, both scored (their disagreements are hard cases too), hard-case flags, the monitor run (health and alerts). Well under a minute on 2 CPU cores. The fine-tuned model comes after, in
    the background (:func:`finetune_demo`, job kind "demo-finetune"), or here when ``finetune``.

    Args:
        db: store path (created if missing).
        rows: demo reviews to generate.
        seed: generator seed.
        reporter: progress sink (default: console).
        finetune: also fine-tune, promote, rescore and reflag in this process (the old, slow path).
        train: TrainConfig overrides on top of QUICK_TRAIN (with ``finetune``).

    Returns:
        What each step did: counts, the champion id, its test macro-F1, flags, seconds per step.

    Example:
        >>> build_demo_store("demo.duckdb", rows=1000)["champion"]  # doctest: +SKIP
        'baseline-tfidf-lr'
    """
    reporter = reporter or JobReporter(db, None)
    timings: dict[str, float] = {}

    def step(name: str, fraction: float, fn):
        reporter.progress(fraction, f"demo: {name}", force=True)
        reporter.log(f"demo: {name}")
        started = time.perf_counter()
        result = fn()
        timings[name] = round(time.perf_counter() - started, 1)
        return result

    data = step("generating reviews", 0.0, lambda: load_demo_data(db, rows=rows, seed=seed))
    # VADER and TF-IDF + LR register, evaluate and score in seconds; the zero-shot baseline (an
    # encoder pass over every review) comes with the fine-tune, in the background.
    baselines = step("registering the fast baselines", 0.1,
                     lambda: register_baselines(db, actor=DEMO_ACTOR, include=FAST_BASELINES))
    for model_id in baselines:
        promote_if_better(db, model_id, DEMO_ACTOR)
    champion_id = _champion_id(db)
    result = step("scoring, flagging and monitoring", 0.4,
                  lambda: _refresh(db, champion_id, others=[m for m in baselines if m != champion_id], reporter=reporter))
    if finetune:
        step("fine-tuning the first model", 0.7, lambda: finetune_demo(db, reporter=reporter, train=train))
        champion_id = _champion_id(db)
    with connect(db, read_only=True) as con:
        evaluation = fetch_latest_evaluation(con, champion_id) or {}
    reporter.progress(1.0, "demo store ready", force=True)
    return {
        "reviews": data["inserted"] + data["updated"] + data["unchanged"],
        "baselines": baselines,
        "champion": champion_id,
        "champion_macro_f1": evaluation.get("macro_f1"),
        "scored": result["scored"],
        "flags": result["flags"],
        "alerts": result["alerts"],
        "seconds": timings,
    }


def _champion_id(db) -> str:
    from store.models import get_champion

    with connect(db, read_only=True) as con:
        champion = get_champion(con)
    if champion is None:
        raise TastebudError("the demo has no champion: no model has a test evaluation")
    return champion["model_id"]


def _refresh(db, champion_id: str, *, others: list[str], reporter) -> dict:
    """Score with the champion (and ``others``), flag from the champion, run the monitor."""
    from pipeline.loop.flagging import flag
    from pipeline.loop.scoring import score
    from pipeline.monitor.health import run_monitor

    scored = score(db, model_id=champion_id, reporter=reporter)
    for model_id in others:
        score(db, model_id=model_id, reporter=reporter)
    flags = flag(db, model_id=champion_id, reporter=reporter)
    monitor = run_monitor(db, model_id=champion_id, reporter=reporter)
    return {"scored": scored.get("scored"), "flags": flags["inserted"], "alerts": monitor["alerts_new"]}


def finetune_demo(db, *, reporter: JobReporter | None = None, train: dict | None = None) -> dict:
    """Register and score the zero-shot baseline, then fine-tune the quick demo model; when it beats the
    champion, promote it, score, flag and monitor again.

    Returns:
        {"model_id", "promoted", "champion", "scored", "flags", "alerts"}.
    """
    from pipeline.loop.scoring import score
    from pipeline.models.baselines import register_baselines
    from pipeline.train.config import QUICK_TRAIN, TrainConfig
    from pipeline.train.run import train as train_model

    reporter = reporter or JobReporter(db, None)
    config = TrainConfig.from_dict({**QUICK_TRAIN, **(train or {})})
    reporter.progress(0.0, "demo: registering and scoring the zero-shot baseline", force=True)
    for model_id in register_baselines(db, actor=DEMO_ACTOR, include=SLOW_BASELINES, reporter=reporter):
        score(db, model_id=model_id, reporter=reporter)
    model_id = train_model(db, config, reporter=reporter, actor=DEMO_ACTOR, promote_if_better=True)
    champion_id = _champion_id(db)
    outcome = {"model_id": model_id, "promoted": champion_id == model_id, "champion": champion_id}
    if champion_id == model_id:
        reporter.log(f"demo: {model_id} is the new champion; scoring, flagging and monitoring with it")
        outcome |= _refresh(db, champion_id, others=[], reporter=reporter)
    return outcome


def finetune_pending(db) -> bool:
    """True when the demo store has no fine-tuned model yet and no demo fine-tune job is queued or running."""
    from store import jobs as job_store
    from store.models import list_models

    if not resolve_db_path(db).exists():
        return False
    with connect(db, read_only=True) as con:
        models = list_models(con)
        active = job_store.list_jobs(con, kind="demo-finetune", active_only=True)
    has_finetuned = not models.empty and bool(((models["kind"] == "finetuned") & (models["status"] == "ready")).any())
    return not has_finetuned and active.empty


def start_finetune(db, train: dict | None = None) -> str:
    """Start :func:`finetune_demo` as a background job (``train``: TrainConfig overrides); returns its id."""
    from pipeline.jobs import start_job

    return start_job(db, "demo-finetune", {"train": {k: v for k, v in (train or {}).items() if v is not None}},
                     DEMO_ACTOR)


def run_finetune_job(db, params: dict, reporter: JobReporter) -> dict:
    """Job kind "demo-finetune": ``params`` may hold ``train`` overrides."""
    return finetune_demo(db, reporter=reporter, train=params.get("train"))


def train_demo_aspects(db, *, reporter: JobReporter | None = None, train: dict | None = None,
                       after: str | None = None) -> dict:
    """Train the demo's first aspect model on the aspect labels the demo data imported, then score every
    review with it and flag aspect disagreements (:func:`pipeline.loop.flagging.find_aspect_disagreements`).

    The first aspect model of a store becomes the aspect champion; a later one only when it is better.

    Args:
        db: the demo store.
        reporter: progress sink (default: console).
        train: TrainConfig overrides on top of the aspect defaults and :data:`DEMO_ASPECT_TRAIN`.
        after: a job to let finish first (the review model's fine-tune: two trainings at once halve each
            other's speed on a small CPU).

    Returns:
        {"model_id", "promoted", "champion"}, plus "scored" and "flags" when it was promoted.

    Example:
        >>> train_demo_aspects("demo.duckdb")["promoted"]  # doctest: +SKIP
        True
    """
    from pipeline.aspects.scoring import score_aspects
    from pipeline.aspects.train import aspect_train_config, train_aspects
    from pipeline.jobs import SpanReporter
    from pipeline.loop.flagging import flag

    reporter = reporter or JobReporter(db, None)
    if after:
        _wait_for_job(db, after, reporter)
    config = aspect_train_config(**{**DEMO_ASPECT_TRAIN, **{k: v for k, v in (train or {}).items() if v is not None}})
    reporter.progress(0.0, "demo: training the first aspect model", force=True)
    model_id = train_aspects(db, config, reporter=SpanReporter(reporter, 0.0, 0.8), actor=DEMO_ACTOR,
                             promote_if_better=True)
    with connect(db, read_only=True) as con:
        champion = get_champion(con, task="aspects")
    champion_id = champion["model_id"] if champion else None
    outcome = {"model_id": model_id, "promoted": champion_id == model_id, "champion": champion_id}
    if champion_id == model_id:
        reporter.log(f"demo: {model_id} is the aspect champion; scoring the reviews with it, flagging disagreements")
        scored = score_aspects(db, model_id=model_id, reporter=SpanReporter(reporter, 0.8, 0.95))
        flags = flag(db, reasons=["aspect_disagreement"], reporter=SpanReporter(reporter, 0.95, 1.0))
        outcome |= {"scored": scored.get("scored"), "flags": flags["inserted"]}
    return outcome


def _wait_for_job(db, job_id: str, reporter: JobReporter) -> None:
    """Wait until ``job_id`` has ended, however it ended, saying so in this job's progress."""
    from pipeline.jobs import get_job
    from store.jobs import ACTIVE_STATUSES

    while (job := get_job(db, job_id)) is not None and job["status"] in ACTIVE_STATUSES:
        reporter.progress(0.0, f"demo: waiting for job {job_id} (the review model's fine-tune) to finish")
        time.sleep(WAIT_POLL_S)


def aspects_pending(db) -> bool:
    """True when the demo store has aspect labels but no aspect model, and no demo aspect job is queued or running."""
    from store import jobs as job_store
    from store.aspects import count_annotated_reviews
    from store.models import list_models

    if not resolve_db_path(db).exists():
        return False
    with connect(db, read_only=True) as con:
        models = list_models(con, task="aspects")
        active = job_store.list_jobs(con, kind="demo-aspects", active_only=True)
        annotated = count_annotated_reviews(con)
    has_model = not models.empty and bool((models["status"] == "ready").any())
    return annotated > 0 and not has_model and active.empty


def start_aspects(db, *, after: str | None = None, train: dict | None = None) -> str:
    """Start :func:`train_demo_aspects` as a background job (after job ``after``, if given); returns its id."""
    from pipeline.jobs import start_job

    return start_job(db, "demo-aspects", {"after": after, "train": {k: v for k, v in (train or {}).items() if v is not None}},
                     DEMO_ACTOR)


def run_aspects_job(db, params: dict, reporter: JobReporter) -> dict:
    """Job kind "demo-aspects": ``params`` may hold ``after`` (a job id) and ``train`` overrides."""
    return train_demo_aspects(db, reporter=reporter, train=params.get("train"), after=params.get("after"))


def run_job(db, params: dict, reporter: JobReporter) -> dict:
    """Job kind "demo-pipeline": ``params`` may hold ``rows``, ``seed``, ``finetune`` and ``train`` overrides."""
    return build_demo_store(
        db,
        rows=int(params.get("rows", DEFAULT_ROWS)),
        seed=int(params.get("seed", DEFAULT_SEED)),
        reporter=reporter,
        finetune=bool(params.get("finetune", True)),
        train=params.get("train"),
    )
