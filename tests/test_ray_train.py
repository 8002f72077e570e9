"""Training on Ray: 2 CPU workers (gloo) train the tiny BERT, the driver alone writes the store, one model is
registered and each epoch is recorded once; the CLI's errors.

Runs on a local Ray instance with 2 CPUs (the `ray` extra); skipped where Ray is not installed.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from pipeline.jobs import JobReporter, run_foreground  # noqa: E402
from pipeline.scale.ray_train import WORKER_DIR_PREFIX, train_on_ray  # noqa: E402
from store import jobs as job_store  # noqa: E402
from store import models as model_store  # noqa: E402
from store import training_runs as run_store  # noqa: E402
from store.actors import cli_actor  # noqa: E402
from store.db import connect  # noqa: E402
from store.errors import TastebudError  # noqa: E402
from conftest import REPO_ROOT, cli_cmd, sigkill_process_named  # noqa: E402
from training_helpers import SUBPROCESS_ENV, fill_store, make_tiny_bert, single_thread, tiny_config  # noqa: E402,F401

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> str:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny") / "bert")


def test_two_workers_register_one_model_and_write_each_epoch_once(local_ray, store_path, tiny_base):
    fill_store(store_path)
    lines: list[str] = []
    result = run_foreground(
        store_path, "train-ray", {"workers": 2}, cli_actor(),
        lambda reporter: {"model_id": train_on_ray(store_path, tiny_config(tiny_base), workers=2, reporter=reporter)},
        echo=lines.append)
    # Each worker keeps to the one CPU Ray gave it, not a thread per core of the node.
    assert any("fine-tuning" in line and "on CPU (1 threads" in line for line in lines), "\n".join(lines)

    with connect(store_path, read_only=True) as con:
        models = model_store.list_models(con)
        finetuned = models[models["kind"] == "finetuned"]
        model = model_store.get_model(con, result["model_id"])
        runs = run_store.list_runs(con)
        epochs = con.execute("SELECT run_id, epoch FROM epoch_metrics ORDER BY epoch").fetchall()
        jobs = job_store.list_jobs(con)
    assert list(finetuned["model_id"]) == [result["model_id"]]
    assert len(runs) == 1 and runs.iloc[0]["status"] == "succeeded" and runs.iloc[0]["model_id"] == result["model_id"]
    run_id = runs.iloc[0]["run_id"]
    assert epochs == [(run_id, 1.0), (run_id, 2.0)]
    assert model["val_metrics"]["macro_f1"] is not None and model["params"]["throughput"]["workers"] == 2
    # Data-parallel for real: rank 0 saw half of each epoch (its count, doubled, is the train split twice, give
    # or take the last batch of each epoch that accelerate fills up to 8 on each rank); alone it would count 4x.
    n_train, examples = model["data_snapshot"]["n_train"], model["params"]["throughput"]["examples"]
    assert 2 * n_train <= examples <= 2 * (n_train + 2 * 8)
    assert {"config.json", "model.safetensors", "tokenizer.json", "tastebud.json"} <= {p.name for p in Path(model["path"]).iterdir()}
    job = jobs.iloc[0]
    assert job["kind"] == "train-ray" and job["status"] == "succeeded" and job["progress"] == 1.0


def test_bad_worker_counts_are_refused_before_anything_starts(store_path, tiny_base):
    with pytest.raises(TastebudError, match="--workers must be at least 1"):
        train_on_ray(store_path, tiny_config(tiny_base), workers=0)


def _cli(store_path, *args) -> subprocess.CompletedProcess:
    return subprocess.run(cli_cmd("--db", str(store_path), "train", *args), capture_output=True, text=True,
                          cwd=REPO_ROOT, env=SUBPROCESS_ENV, timeout=60)


def test_cli_ray_options_without_ray_are_one_line_errors(store_path):
    for option in (["--workers", "2"], ["--storage", "/mnt/shared"]):
        done = _cli(store_path, *option)
        assert done.returncode != 0
        assert done.stderr.strip().splitlines() == ["error: --workers, --gpus-per-worker and --storage need --ray [ADDRESS]"]
    done = _cli(store_path, "--ray", "--sweep", "lr=1e-4,3e-4")
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == ["error: --ray trains one run: it does not combine with --sweep"]


def test_cli_unreachable_ray_address_is_one_line_and_exit_code_2(store_path):
    done = _cli(store_path, "--ray", "127.0.0.1:9", "--workers", "2")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "the Ray cluster at 127.0.0.1:9 does not answer" in lines[0]


def test_a_killed_worker_resumes_from_the_last_checkpoint(local_ray, store_path, tiny_base):
    import threading

    fill_store(store_path, rows=800)
    killed: list[int] = []
    training_over = threading.Event()
    checkpoints = store_path.parent / "runs" / "training"

    def kill_a_worker_in_the_third_epoch():
        # Once a second checkpoint has appeared, the first one's report has returned (reports are barriers
        # taken in order), so Ray has it; the kill then lands a second into the third of five epochs. No
        # wall-clock deadline: on a loaded machine epochs take longer, and the loop ends with the training.
        while not training_over.is_set():
            if len(list(checkpoints.glob("*/ray/*/checkpoint_*/state.json"))) >= 2:
                time.sleep(1.0)
                if sigkill_process_named("RayTrainWorker", killed):
                    return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_a_worker_in_the_third_epoch)
    before = set(Path(tempfile.gettempdir()).glob(f"{WORKER_DIR_PREFIX}*"))  # Ray modules run one at a time
    killer.start()
    lines: list[str] = []
    try:
        model_id = train_on_ray(store_path, tiny_config(tiny_base, epochs=5), workers=2,
                                reporter=JobReporter(store_path, None, echo=lines.append))
    finally:
        training_over.set()
        killer.join()
    assert killed, "no Ray Train worker was seen to kill"
    assert any(line.endswith(", from checkpoint") for line in lines), "\n".join(["the restarted workers did not resume from a checkpoint:", *lines])
    with connect(store_path, read_only=True) as con:
        models = model_store.list_models(con)
        epochs = con.execute("SELECT epoch FROM epoch_metrics ORDER BY epoch").fetchall()
    assert list(models[models["kind"] == "finetuned"]["model_id"]) == [model_id]
    assert epochs == [(float(e),) for e in range(1, 6)]
    left = set(Path(tempfile.gettempdir()).glob(f"{WORKER_DIR_PREFIX}*")) - before
    assert not left, f"the killed worker's run directory stayed on this node: {left}"
