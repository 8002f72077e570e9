"""Ray runs as jobs on a cluster that outlives them: progress and ETA in the job row, cancel, a killed driver.

Each job runs in its own process (``start_job``, as the dashboard and ``--background`` start it) and joins
this module's local Ray instance by address, as it would join a cluster; so after a cancel or a kill the
test can see whether the cluster got its CPUs back. Skipped where Ray is not installed.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from pipeline.jobs import JobReporter, cancel_job, get_job, start_job, wait_for_job  # noqa: E402
from pipeline.scale.ray_score import score_on_ray  # noqa: E402
from pipeline.scale.ray_train import train_on_ray  # noqa: E402
from store import models as model_store  # noqa: E402
from store import training_runs as run_store  # noqa: E402
from store.actors import cli_actor  # noqa: E402
from store.db import connect  # noqa: E402
from store.predictions import count_predictions  # noqa: E402
from tests.test_ray import _duplicates, _store_with_champion  # noqa: E402
from tests.tiny_model import save_tiny_classifier  # noqa: E402
from training_helpers import fill_store, make_tiny_bert, single_thread, tiny_config  # noqa: E402,F401

pytestmark = pytest.mark.slow

# Seconds the test waits for a state it expects (a loaded machine is slow; none of these is a speed check).
PATIENCE_S = 300


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    return save_tiny_classifier(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> str:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny") / "bert")


@pytest.fixture
def job_env(monkeypatch):
    """Job processes run on one CPU thread, offline, like the other tests' subprocesses."""
    monkeypatch.setenv("TASTEBUD_CPU_THREADS", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _address() -> str:
    return ray.get_runtime_context().gcs_address


def _recorded_checkpoint(storage: Path) -> bool:
    """Whether Ray Train's checkpoint manager snapshot in ``storage`` names a checkpoint yet."""
    for snapshot in storage.glob("run-*/checkpoint_manager_snapshot.json"):
        try:
            if "checkpoint_" in snapshot.read_text(errors="replace"):
                return True
        except OSError:  # being replaced right now
            pass
    return False


def _until(what: str, check, *, poll_s: float = 1.0):
    """Wait for ``check()`` to return something truthy and return it; fail saying ``what`` did not happen."""
    # Looking no more often than a job panel does: each look opens the store, which the job's writes wait out.
    deadline = time.monotonic() + PATIENCE_S
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(poll_s)
    pytest.fail(f"{what} did not happen within {PATIENCE_S} s")


def _cluster_idle() -> bool:
    """Every CPU of the cluster is free again: no actor or worker of a finished job holds one."""
    return ray.available_resources().get("CPU", 0) == ray.cluster_resources().get("CPU")


def _running_with_eta(db, job_id: str, below: float) -> dict | None:
    job = get_job(db, job_id)
    if job["status"] in ("succeeded", "failed", "cancelled"):
        pytest.fail(f"job {job_id} ended ({job['status']}: {job.get('error')}) before it could be cancelled")
    # A job that waits for the store (our own polling reads hold it now and then) says so instead of its
    # progress message: the panel is right, but that is not the moment this test reads.
    if job["status"] == "running" and job["eta_s"] is not None and job["progress"] < below and not job.get("waiting_since"):
        return job
    return None


def test_a_cancelled_scoring_job_shows_progress_keeps_whole_batches_and_frees_the_cluster(
        local_ray, store_path, tiny_model_dir, job_env):
    _store_with_champion(store_path, tiny_model_dir, 30_000)
    job_id = start_job(store_path, "score-ray", {"address": _address()}, cli_actor())

    # What the job panel shows (dashboard and `tastebud jobs` read the same row): progress, a message, an ETA.
    job = _until("a running scoring job with progress and an ETA", lambda: _running_with_eta(store_path, job_id, 0.8))
    assert 0 < job["progress"] < 0.8 and job["message"].endswith("reviews scored")
    cancel_job(store_path, job_id, cli_actor())
    assert wait_for_job(store_path, job_id, timeout_s=PATIENCE_S)["status"] == "cancelled"

    with connect(store_path, read_only=True) as con:
        stored = count_predictions(con, "tiny")
    assert 0 < stored < 30_000 and _duplicates(store_path) == 0
    _until("the cluster's CPUs freed after the cancel", _cluster_idle)
    assert score_on_ray(store_path)["scored"] == 30_000 - stored  # a rerun scores exactly the rest


def test_a_cancelled_training_job_registers_nothing_and_frees_the_cluster(local_ray, store_path, tiny_base, job_env):
    fill_store(store_path, rows=400)
    params = {**tiny_config(tiny_base, epochs=30).to_dict(), "workers": 2, "address": _address()}
    job_id = start_job(store_path, "train-ray", params, cli_actor())

    _until("a running training job with progress and an ETA", lambda: _running_with_eta(store_path, job_id, 0.5))
    cancel_job(store_path, job_id, cli_actor())
    assert wait_for_job(store_path, job_id, timeout_s=PATIENCE_S)["status"] == "cancelled"

    with connect(store_path, read_only=True) as con:
        runs = run_store.list_runs(con)
        models = model_store.list_models(con)
    assert list(runs["status"]) == ["cancelled"] and models.empty
    _until("the cluster's CPUs freed after the cancel", _cluster_idle)


def test_a_killed_driver_resumes_from_shared_storage(local_ray, store_path, tiny_base, tmp_path, job_env):
    fill_store(store_path, rows=400)
    shared = tmp_path / "shared"  # a local directory standing in for shared storage (NFS, s3://)
    params = {**tiny_config(tiny_base, epochs=4).to_dict(), "workers": 2, "address": _address(), "storage": str(shared)}
    job_id = start_job(store_path, "train-ray", params, cli_actor())

    # Two checkpoints in the storage, and Ray Train's own record of them written there (its checkpoint
    # manager snapshot, what a restarted driver resumes from: on a loaded machine it lags the files).
    _until("two checkpoints in the shared storage", lambda: len(list(shared.glob("run-*/checkpoint_*/state.json"))) >= 2)
    _until("a checkpoint recorded by Ray Train", lambda: _recorded_checkpoint(shared))
    os.kill(get_job(store_path, job_id)["pid"], signal.SIGKILL)  # the driver, not a worker
    assert wait_for_job(store_path, job_id, timeout_s=PATIENCE_S)["status"] == "failed"
    _until("the killed driver's workers gone", _cluster_idle)

    lines: list[str] = []
    model_id = train_on_ray(store_path, tiny_config(tiny_base), workers=2, resume=True,
                            reporter=JobReporter(store_path, None, echo=lines.append))
    assert any(line.endswith(", from checkpoint") for line in lines), "\n".join(["no resume from a checkpoint:", *lines])
    with connect(store_path, read_only=True) as con:
        runs = run_store.list_runs(con)
        epochs = con.execute("SELECT epoch FROM epoch_metrics ORDER BY epoch").fetchall()
        finetuned = model_store.list_models(con).query("kind == 'finetuned'")
    assert list(runs["status"]) == ["succeeded"] and list(finetuned["model_id"]) == [model_id]
    assert epochs == [(float(e),) for e in range(1, 5)]  # the epochs before the kill are not repeated as rows
    assert list(shared.iterdir()) == []  # checkpoints and data shards removed once the model is registered
