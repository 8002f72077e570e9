"""Shared fixtures: real temporary DuckDB stores, never a mocked one."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest

from store.db import transaction
from store.reviews import add_reviews
from store.schema import init_store

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("TASTEBUD_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def migrated_store_template(tmp_path_factory) -> Path:
    """A store migrated once per test session (per xdist worker); :func:`store_path` hands out copies."""
    db, _ = init_store(tmp_path_factory.mktemp("template") / "store.duckdb")
    return db


@pytest.fixture
def store_path(tmp_path: Path, migrated_store_template: Path) -> Path:
    """A fresh, migrated store file: a copy of the session's template (running every migration again
    costs ~0.1 s, hundreds of times a run; the migrations have their own tests in test_store.py)."""
    db = tmp_path / "store.duckdb"
    shutil.copyfile(migrated_store_template, db)
    return db


@pytest.fixture(scope="session")
def local_ray(tmp_path_factory):
    """A local Ray instance with 2 CPUs, started once per test session (once per xdist worker) and shared
    by every test that needs it: ``ray.init`` and its first actors cost seconds each time.

    ``make test`` sends every module that uses it to one xdist worker (:data:`RAY_MODULES`), so a single
    instance serves them all. Should two workers still both want one (another ``--dist`` mode), they take
    turns (an exclusive file lock beside the workers' temporary folders, held until the worker's session
    ends), so two Ray instances never fight over the same two cores.
    """
    import fcntl

    ray = pytest.importorskip("ray")
    with open(tmp_path_factory.getbasetemp().parent / "local-ray.lock", "w") as lock, pytest.MonkeyPatch.context() as env:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # Ray Train's controller looks at its worker group every 2 s by default: a group that started,
        # finished or lost a worker is seen up to 2 s late, several times per training run. The instance's
        # processes inherit this from the environment it starts in.
        env.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        try:
            yield ray
        finally:
            ray.shutdown()


# The modules that start a local Ray instance: one work unit under ``--dist loadfile``, so that one xdist
# worker runs them all on one instance while the other worker runs the rest.
RAY_MODULES = ("test_ray.py", "test_ray_jobs.py", "test_ray_train.py")
# The work units that take longest, longest first: handed out first, they do not leave one worker alone with
# a long module at the end of the run. The other units follow in collection order.
SLOWEST_FIRST = ("ray", "test_browser.py", "test_demo.py", "test_dashboard_pages.py", "test_scoring.py",
                 "test_aspects_pipeline.py", "test_training.py", "test_demo_fast.py", "test_jobs.py")


def _work_unit(path: str) -> str:
    """The work unit of a test file: its name, or "ray" for the modules that share the Ray instance."""
    name = path.rsplit("/", 1)[-1]
    return "ray" if name in RAY_MODULES else name


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """The slowest work units first (each unit's tests together, files in their order)."""
    rank = {unit: i for i, unit in enumerate(SLOWEST_FIRST)}
    first_seen: dict[str, int] = {}
    for item in items:
        first_seen.setdefault(_work_unit(item.path.name), len(first_seen))
    items.sort(key=lambda item: (rank.get(_work_unit(item.path.name), len(rank)), first_seen[_work_unit(item.path.name)]))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile`` (``make test``) with the Ray modules as one work unit, units handed out in collection
    order (slowest first, above) rather than by their number of tests."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class RayTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "ray" if _work_unit(path) == "ray" else path

    config.option.loadscopereorder = False
    return RayTogether(config, log)


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
