"""`tastebud demo`: a fresh install to a working dashboard on a demo store, in a few minutes on CPU.

Builds the whole loop once — synthetic reviews, general-purpose baselines, a quickly
fine-tuned champion, scores from the champion and VADER, hard-case flags — then serves
the dashboard with one demo login per role.
"""

from __future__ import annotations

import secrets as pysecrets
import time
from pathlib import Path

from pipeline.data.demo_data import DEFAULT_ROWS, DEFAULT_SEED, load_demo_data
from pipeline.jobs import JobReporter
from store.accounts import account_entry, hash_password, write_private_file
from store.actors import Actor
from store.db import connect, resolve_db_path

# A first model that trains in a minute or two on 2 CPU cores: demo reviews are short
# (~45 tokens), so 96 tokens truncate nothing; 2,400 examples x 2 epochs is enough to beat VADER.
QUICK_TRAIN = {"epochs": 2, "max_train_examples": 2400, "max_length": 96, "batch_size": 32, "name": "demo-quick"}
DEMO_ROLES = ("viewer", "labeler", "data_scientist")
DEMO_ACTOR = Actor("demo-setup", "admin")


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
    from store.models import get_champion

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
    db, *, rows: int = DEFAULT_ROWS, seed: int = DEFAULT_SEED, reporter: JobReporter | None = None, train: dict | None = None
) -> dict:
    """Run the whole loop once on synthetic data.

    Args:
        db: store path (created if missing).
        rows: demo reviews to generate.
        seed: generator seed.
        reporter: progress sink (default: console).
        train: TrainConfig overrides on top of QUICK_TRAIN.

    Returns:
        What each step did: counts, the champion id, its test macro-F1, seconds per step.

    Example:
        >>> build_demo_store("demo.duckdb", rows=1000)["champion"]  # doctest: +SKIP
        'ft-20261125-...'
    """
    from pipeline.models.baselines import register_baselines
    from pipeline.train.config import TrainConfig
    from pipeline.loop.flagging import flag
    from pipeline.loop.scoring import score
    from pipeline.train.run import train as train_model
    from store.models import fetch_latest_evaluation, get_champion

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
    baselines = step("registering baselines", 0.1, lambda: register_baselines(db, actor=DEMO_ACTOR))
    config = TrainConfig.from_dict({**QUICK_TRAIN, **(train or {})})
    model_id = step(
        "fine-tuning the first model", 0.2,
        lambda: train_model(db, config, reporter=reporter, actor=DEMO_ACTOR, promote_if_better=True),
    )  # fmt: skip
    with connect(db, read_only=True) as con:
        champion = get_champion(con)
    champion_id = champion["model_id"] if champion else model_id
    scored = step("scoring with the champion", 0.75, lambda: score(db, model_id=champion_id, reporter=reporter))
    step("scoring with VADER", 0.85, lambda: score(db, model_id=baselines[0], reporter=reporter))
    flags = step("flagging hard cases", 0.9, lambda: flag(db, model_id=champion_id, reporter=reporter))
    with connect(db, read_only=True) as con:
        evaluation = fetch_latest_evaluation(con, champion_id) or {}
    reporter.progress(1.0, "demo store ready", force=True)
    return {
        "reviews": data["inserted"] + data["updated"] + data["unchanged"],
        "baselines": baselines,
        "champion": champion_id,
        "champion_macro_f1": evaluation.get("macro_f1"),
        "scored": scored.get("scored"),
        "flags": flags,
        "seconds": timings,
    }


def run_job(db, params: dict, reporter: JobReporter) -> dict:
    """Job kind "demo-pipeline": ``params`` may hold ``rows``, ``seed`` and ``train`` overrides."""
    return build_demo_store(
        db,
        rows=int(params.get("rows", DEFAULT_ROWS)),
        seed=int(params.get("seed", DEFAULT_SEED)),
        reporter=reporter,
        train=params.get("train"),
    )
