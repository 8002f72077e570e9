"""Shared fixtures: real temporary DuckDB stores, never a mocked one."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pandas as pd
import pytest

from store.db import transaction
from store.reviews import add_reviews
from store.schema import init_store

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("TASTEBUD_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    """A fresh, migrated store file."""
    db, _ = init_store(tmp_path / "store.duckdb")
    return db


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    """A local Ray instance with 2 CPUs for one test module.

    Under pytest-xdist the modules that use it take turns (an exclusive file lock beside the workers'
    temporary folders), so two Ray instances never fight over the same two cores.
    """
    import fcntl

    ray = pytest.importorskip("ray")
    with open(tmp_path_factory.getbasetemp().parent / "local-ray.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        try:
            yield ray
        finally:
            ray.shutdown()


def sigkill_process_named(marker: str, killed: list[int]) -> bool:
    """SIGKILL the first process whose command line holds ``marker`` (a Ray actor's or worker's class name),
    noting its pid in ``killed``; False when there is none yet."""
    import signal

    import psutil

    for proc in psutil.process_iter(["pid", "cmdline"]):
        if marker in " ".join(proc.info["cmdline"] or []):
            os.kill(proc.info["pid"], signal.SIGKILL)
            killed.append(proc.info["pid"])
            return True
    return False


def seed_reviews(db: Path, frame: pd.DataFrame, *, label_source: str = "stars") -> None:
    """Insert reviews (review_id, text, optional stars/label/...) with labels and splits."""
    frame = frame.copy()
    if "source" not in frame.columns:
        frame["source"] = "test"
    labels = frame[["review_id", "label"]].dropna().assign(source=label_source) if "label" in frame.columns else None
    with transaction(db) as con:
        add_reviews(con, frame.drop(columns=[c for c in ("label",) if c in frame.columns]), labels)


def cli_cmd(*args: str) -> list[str]:
    """argv that runs the tastebud CLI in a fresh interpreter (works without the console script)."""
    return [sys.executable, "-m", "pipeline.cli", *args]


requires_shared_data = pytest.mark.skipif(
    not (SHARED_DATA / "yelp_reviews_10k" / "yelp_dev.csv").exists(), reason="../shared/data is not present"
)
