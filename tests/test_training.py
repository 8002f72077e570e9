"""Fine-tuning: a tiny random BERT trains, registers and evaluates; early stopping, sweeps, resume, kill safety."""

from __future__ import annotations

import json
import re
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.train.config import TrainConfig, parse_sweep
from pipeline.jobs import JobCancelled, JobReporter, start_job, wait_for_job
from pipeline.train.run import reap_dead_runs, sweep, train
from store import evaluations as evaluation_store
from store import jobs as job_store
from store import models as model_store
from store import training_runs as run_store
from store.actors import Actor, cli_actor
from store.db import connect, transaction
from store.errors import PermissionDeniedError, TastebudError
from conftest import cli_cmd, seed_reviews
from training_helpers import SUBPROCESS_ENV, fill_store, make_tiny_bert, single_thread, tiny_config  # noqa: F401
from pipeline.models.loading import load_tokenizer
from pipeline.models.truncation import HeadTailTokenizer, encode
from pipeline.models.baselines import register_baselines
from pipeline.loop.registry import promote
from pipeline.train.run import load_training_data
from store.labels import append_labels
from store.splits import split_counts


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> str:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny") / "bert")


@pytest.fixture
def filled_store(store_path: Path) -> Path:
    fill_store(store_path)
    return store_path


class RecordingReporter(JobReporter):
    """A console-less reporter that records log lines and per-step progress messages."""

    def __init__(self, db, *, stop_after_steps: int | None = None):
        super().__init__(db, None, echo=lambda line: None)
        self.lines: list[str] = []
        self.steps = 0
        self.stop_after_steps = stop_after_steps

    def log(self, message: str) -> None:
        self.lines.append(message)

    def progress(self, fraction, message=None, *, force=False):
        if message and message.startswith("epoch "):
            self.steps += 1
            if self.stop_after_steps is not None and self.steps >= self.stop_after_steps:
                raise JobCancelled("stopped by the test")


# ---------------------------------------------------------------- config


def test_config_rejects_bad_values_and_coerces_strings():
    with pytest.raises(ValueError, match="learning_rate must be in"):
        TrainConfig(learning_rate=0)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="class_weighting must be one of none, balanced, sqrt"):
        TrainConfig(class_weighting="inverse")
    with pytest.raises(ValueError, match="unknown training option 'learnin_rate'"):
        TrainConfig.from_dict({"learnin_rate": 1e-4})
    with pytest.raises(ValueError, match="epochs must be a number"):
        TrainConfig.from_dict({"epochs": "two"})
    cfg = TrainConfig.from_dict({"lr": "3e-5", "epochs": "2", "max_train_examples": "none"})
    assert (cfg.learning_rate, cfg.epochs, cfg.max_train_examples) == (3e-5, 2, None)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_parse_sweep_validates_each_value():
    assert parse_sweep(["lr=1e-5,3e-5", "batch_size=16,32"]) == {
        "learning_rate": [1e-5, 3e-5], "batch_size": [16, 32]}
    with pytest.raises(ValueError, match="cannot sweep unknown option 'colour'"):
        parse_sweep(["colour=red"])
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        parse_sweep(["batch_size=16,0"])
    with pytest.raises(ValueError, match="a sweep is written name=v1,v2"):
        parse_sweep(["lr"])


def test_head_tail_truncation_keeps_opening_and_ending(tiny_base):
    tokenizer = load_tokenizer(tiny_base)
    text = "the opening was promising " + "filler words here " * 60 + "but we will never come back"
    full = tokenizer([text])["input_ids"][0]
    cut = encode(tokenizer, [text, "short one"], max_length=32)
    assert cut["input_ids"][0] == full[:8] + full[-24:]  # a quarter head, three quarters tail, [SEP] last
    assert cut["input_ids"][1] == tokenizer(["short one"])["input_ids"][0]
    assert len(cut["attention_mask"][0]) == 32
    head = encode(tokenizer, [text], max_length=32, truncation="head")["input_ids"][0]
    assert head == full[:31] + [full[-1]]
    wrapped = HeadTailTokenizer(tokenizer)
    assert wrapped([text], truncation=True, max_length=32, padding=False)["input_ids"] == cut["input_ids"][:1]
    assert wrapped.pad is not None and wrapped.vocab_size == tokenizer.vocab_size


# ---------------------------------------------------------------- training


def test_tiny_bert_trains_registers_and_evaluates(filled_store, tiny_base):
    model_id = train(filled_store, tiny_config(tiny_base), reporter=RecordingReporter(filled_store))

    with connect(filled_store, read_only=True) as con:
        model = model_store.get_model(con, model_id)
        epochs = run_store.fetch_epoch_metrics(con, model_id)
        runs = run_store.list_runs(con)
        evaluation = evaluation_store.fetch_latest_evaluation(con, model_id)
        champion = model_store.get_champion(con)
        audit_actions = [a for (a,) in con.execute("SELECT action FROM audit_log").fetchall()]
    assert model["status"] == "ready" and model["kind"] == "finetuned"
    assert model["params"]["learning_rate"] == 5e-4 and model["params"]["precision"] == "fp32"
    assert model["label_counts"]["train"]["positive"] > 0
    assert model["data_snapshot"]["n_train"] == sum(model["label_counts"]["train"].values())
    assert model["duration_s"] > 0 and model["device"].startswith("CPU")
    assert model["params"]["throughput"]["examples_per_s"] > 0
    assert list(epochs["epoch"]) == [1.0, 2.0]
    assert epochs[["train_loss", "val_loss", "val_accuracy", "val_macro_f1"]].notna().all().all()
    assert runs.iloc[0]["status"] == "succeeded" and runs.iloc[0]["model_id"] == model_id
    assert evaluation is not None and evaluation["n"] > 0 and len(evaluation["confusion_matrix"]) == 3
    assert champion is None  # training never promotes on its own
    assert "model.register" in audit_actions
    files = {p.name for p in Path(model["path"]).iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tastebud.json"} <= files
    meta = json.loads((Path(model["path"]) / "tastebud.json").read_text())
    assert meta["labels"] == ["negative", "neutral", "positive"] and meta["config"]["max_length"] == 32
    assert not Path(runs.iloc[0]["checkpoint_dir"]).exists()  # checkpoints are cleaned after success


def test_early_stopping_stops(filled_store, tiny_base):
    # A learning rate this small leaves validation macro-F1 unchanged, so patience 1 stops after epoch 2.
    cfg = tiny_config(tiny_base, epochs=6, learning_rate=1e-12, early_stopping_patience=1)
    reporter = RecordingReporter(filled_store)
    model_id = train(filled_store, cfg, reporter=reporter)
    with connect(filled_store, read_only=True) as con:
        epochs = run_store.fetch_epoch_metrics(con, model_id)
        model = model_store.get_model(con, model_id)
    assert list(epochs["epoch"]) == [1.0, 2.0]
    assert any("early stopping" in line for line in reporter.lines)
    assert model["val_metrics"]["epoch"] == 1.0  # the best epoch's weights were registered


def test_sweep_records_every_trial_and_registers_the_best(filled_store, tiny_base):
    result = sweep(filled_store, tiny_config(tiny_base, epochs=1), {"learning_rate": [1e-12, 5e-3]},
                   reporter=RecordingReporter(filled_store))
    assert len(result["trials"]) == 2
    best = max(result["trials"], key=lambda t: t["val_macro_f1"])
    assert [t["best"] for t in result["trials"]].count(True) == 1 and best["best"]
    with connect(filled_store, read_only=True) as con:
        runs = run_store.list_runs(con, sweep_id=result["sweep_id"])
        models = model_store.list_models(con)
    assert len(runs) == 2 and set(runs["status"]) == {"succeeded"}
    assert len(models) == 1 and models.iloc[0]["model_id"] == result["model_id"]
    assert runs.set_index("run_id").loc[best["run_id"], "model_id"] == result["model_id"]


def test_resume_continues_from_the_last_checkpoint(filled_store, tiny_base):
    cfg = tiny_config(tiny_base, epochs=2, checkpoint_steps=5)  # 21 steps per epoch
    with pytest.raises(JobCancelled):
        train(filled_store, cfg, reporter=RecordingReporter(filled_store, stop_after_steps=12))
    with connect(filled_store, read_only=True) as con:
        run = run_store.latest_interrupted_run(con)
    assert run["status"] == "cancelled"

    resumed = RecordingReporter(filled_store)
    model_id = train(filled_store, TrainConfig(), reporter=resumed, resume=True)
    assert any("from checkpoint-10" in line for line in resumed.lines)
    assert resumed.steps == 42 - 10  # only the steps after the checkpoint ran again
    with connect(filled_store, read_only=True) as con:
        finished = run_store.get_run(con, run["run_id"])
        model = model_store.get_model(con, model_id)
    assert finished["status"] == "succeeded" and finished["model_id"] == model_id
    assert model["params"]["max_length"] == 32  # the interrupted run's own config, not the new default
    with pytest.raises(TastebudError, match="no interrupted training run"):
        train(filled_store, TrainConfig(), resume=True)


def test_training_refuses_bad_stores_and_roles(store_path, tiny_base):
    with pytest.raises(TastebudError, match="the train split has no labeled reviews"):
        train(store_path, tiny_config(tiny_base))
    with pytest.raises(PermissionDeniedError, match="may not train"):
        train(store_path, tiny_config(tiny_base), actor=Actor("lee", "labeler"))


def test_reap_marks_runs_of_dead_processes_failed(store_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    with transaction(store_path) as con:
        for run_id, pid in (("run-dead", dead.pid), ("run-alive", os.getpid())):
            run_store.create_run(con, run_id=run_id, config={}, checkpoint_dir="/nonexistent/checkpoints",
                                   pid=pid, host=os.uname().nodename, proc_start=None)
    assert reap_dead_runs(store_path) == ["run-dead"]
    with connect(store_path, read_only=True) as con:
        assert run_store.get_run(con, "run-dead")["status"] == "failed"
        assert run_store.get_run(con, "run-alive")["status"] == "running"


@pytest.mark.slow
def test_killed_training_process_leaves_store_consistent_and_champion_unchanged(filled_store, tiny_base):
    register_baselines(filled_store, actor=cli_actor(), include=("vader",), evaluate=False)
    promote(filled_store, "baseline-vader", cli_actor())
    with connect(filled_store, read_only=True) as con:
        before = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("reviews", "labels", "models", "promotions")}
    proc = subprocess.Popen(
        cli_cmd("--db", str(filled_store), "train", "--base-model", tiny_base, "--epochs", "40", "--batch-size", "8",
                "--max-length", "32", "--patience", "0", "--checkpoint-steps", "3", "--precision", "fp32"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=SUBPROCESS_ENV,
    )
    runs_root = filled_store.parent / "runs" / "training"
    deadline = time.monotonic() + 90
    try:
        while not list(runs_root.glob("*/checkpoints/checkpoint-*/trainer_state.json")):
            assert proc.poll() is None, "training ended before it could be killed"
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL

    with connect(filled_store, read_only=True) as con:
        (run,) = [r for r in run_store.running_runs(con)]
        after = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("reviews", "labels", "models", "promotions")}
        assert model_store.get_champion(con)["model_id"] == "baseline-vader"
    assert after == before  # no half-registered model, no data touched
    assert reap_dead_runs(filled_store) == [run["run_id"]]
    with connect(filled_store, read_only=True) as con:
        assert run_store.get_run(con, run["run_id"])["status"] == "failed"
        assert model_store.get_champion(con)["model_id"] == "baseline-vader"


@pytest.mark.slow
def test_background_job_reports_progress_and_cli_json(filled_store, tiny_base, monkeypatch):
    monkeypatch.setenv("TASTEBUD_CPU_THREADS", "1")  # the job process inherits this environment
    params = tiny_config(tiny_base, epochs=1).to_dict()
    job_id = start_job(filled_store, "train", params, cli_actor())
    job = wait_for_job(filled_store, job_id, timeout_s=120)
    assert job["status"] == "succeeded", job["error"]
    assert job["progress"] == 1.0 and job["result"]["model_id"].startswith("ft-")
    assert job["result"]["metrics"]["n"] > 0
    with connect(filled_store, read_only=True) as con:
        run = run_store.list_runs(con).iloc[0]
        from store.training_runs import fetch_job_step_losses, fetch_job_trials

        losses = fetch_job_step_losses(con, job_id)
        trials = fetch_job_trials(con, job_id)
    assert run["job_id"] == job_id
    assert len(losses) >= 2 and losses["step"].is_monotonic_increasing and (losses["loss"] > 0).all()  # the live chart
    assert trials["winner"].tolist() == [True] and trials["val_macro_f1"].notna().all()

    out = subprocess.run(
        cli_cmd("--db", str(filled_store), "train", "--base-model", tiny_base, "--epochs", "1", "--batch-size", "8",
                "--max-length", "32", "--precision", "fp32", "--json"),
        capture_output=True, text=True, env=SUBPROCESS_ENV, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    payload = json.loads(out.stdout)
    # The default recipe's product is the ensemble of the fine-tuned model and TF-IDF + LR.
    assert payload["model_id"].startswith("ens-") and payload["finetuned_id"].startswith("ft-")
    assert 0 <= payload["metrics"]["macro_f1"] <= 1
    with connect(filled_store, read_only=True) as con:
        foreground = job_store.get_job(con, job_store.list_jobs(con)["job_id"].iloc[0])
    # A foreground run records its job row too (the README says so): no log file, succeeded, with its model.
    assert (foreground["kind"], foreground["status"], foreground["log_path"]) == ("train", "succeeded", None)
    assert foreground["result"]["model_id"] == payload["model_id"] and foreground["progress"] == 1.0


@pytest.mark.slow
def test_real_packaged_encoder_fine_tunes_a_few_steps(filled_store):
    cfg = TrainConfig(epochs=1, batch_size=16, max_length=48, max_train_examples=64, early_stopping_patience=0)
    model_id = train(filled_store, cfg, reporter=RecordingReporter(filled_store))
    with connect(filled_store, read_only=True) as con:
        model = model_store.get_model(con, model_id)
        evaluation = evaluation_store.fetch_latest_evaluation(con, model_id)
    # The default recipe hands on the ensemble, named after its fine-tuned member.
    assert model["kind"] == "ensemble" and model["data_snapshot"]["n_train"] == 64
    assert "all-MiniLM-L6-v2" in model["name"] or model["name"].startswith("minilm")
    assert evaluation["n"] > 0


def test_sampled_training_data_keeps_every_human_relabel(store_path):
    import pandas as pd

    n = 400
    labels = ["negative", "neutral", "positive", "positive"]
    seed_reviews(store_path, pd.DataFrame({"review_id": [f"r{i:04d}" for i in range(n)], "text": ["t"] * n,
                                           "label": [labels[i % 4] for i in range(n)]}))
    with connect(store_path, read_only=True) as con:
        train_ids = [r for (r,) in con.execute("SELECT review_id FROM splits WHERE split = 'train' ORDER BY review_id").fetchall()]
        assert split_counts(con)["train"] > 100
    relabeled = train_ids[:30]
    with transaction(store_path) as con:
        append_labels(con, pd.DataFrame({"review_id": relabeled, "label": ["negative"] * 30, "source": ["human"] * 30}))
    data = load_training_data(store_path, TrainConfig(max_train_examples=60))
    assert len(data.train) == 60
    assert set(relabeled) <= set(data.train["review_id"])


# ---------------------------------------------------------------- --base-model checks


def _pickle_only_model(tiny_base: str, out: Path) -> Path:
    import shutil

    import torch

    shutil.copytree(tiny_base, out)
    (out / "model.safetensors").unlink()
    torch.save({"weight": torch.zeros(2)}, out / "pytorch_model.bin")
    return out


def test_bad_base_models_are_refused_before_a_run_starts(filled_store, tiny_base, tmp_path):
    (tmp_path / "a-file.txt").write_text("not a model")
    (tmp_path / "empty").mkdir()
    cases = {
        str(tmp_path / "missing"): "no such directory",
        str(tmp_path / "a-file.txt"): "not a directory",
        str(tmp_path / "empty"): "not a model directory (no config.json in it)",
        str(_pickle_only_model(tiny_base, tmp_path / "pickled")): "only a pickle checkpoint (pytorch_model.bin); refused",
        "no-such-org/no-such-model": "no such directory, and no Hugging Face model of that name in the local cache",
    }
    for base, message in cases.items():
        with pytest.raises(TastebudError, match=re.escape(f"--base-model {base}: {message}")):
            train(filled_store, tiny_config(base), reporter=RecordingReporter(filled_store))
    runs_root = filled_store.parent / "runs" / "training"
    assert not runs_root.exists() or list(runs_root.iterdir()) == []
    with connect(filled_store, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM training_runs").fetchone()[0] == 0


def test_cli_train_says_what_is_wrong_with_the_base_model(filled_store, tmp_path):
    result = subprocess.run(
        cli_cmd("--db", str(filled_store), "train", "--base-model", str(tmp_path / "missing"), "--epochs", "1"),
        capture_output=True, text=True, env=SUBPROCESS_ENV, timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: --base-model {tmp_path / 'missing'}: no such directory"
    assert not (filled_store.parent / "runs" / "training").exists()


def test_only_rank_0_of_a_distributed_launch_writes_the_store(monkeypatch):
    from pipeline.train.records import NullRecorder, is_store_writer

    monkeypatch.delenv("RANK", raising=False)
    assert is_store_writer()
    monkeypatch.setenv("RANK", "0")
    assert is_store_writer()
    monkeypatch.setenv("RANK", "1")
    assert not is_store_writer()
    NullRecorder().epoch({"epoch": 1.0})  # writes nothing, needs no store


@pytest.mark.slow
def test_torchrun_two_processes_register_one_model_and_each_epoch_once(filled_store, tiny_base):
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "pipeline.cli", "--db", str(filled_store),
         "train", "--base-model", tiny_base, "--epochs", "2", "--batch-size", "8", "--max-length", "32",
         "--learning-rate", "5e-4", "--patience", "0", "--device", "cpu", "--precision", "fp32"],
        capture_output=True, text=True, env={**SUBPROCESS_ENV, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    with connect(filled_store, read_only=True) as con:
        models = model_store.list_models(con)
        runs = run_store.list_runs(con)
        epochs = con.execute("SELECT epoch FROM epoch_metrics ORDER BY epoch").fetchall()
        jobs = job_store.list_jobs(con)
    assert len(models[models["kind"] == "finetuned"]) == 1 and len(runs) == 1 and len(jobs) == 1
    assert epochs == [(1.0,), (2.0,)]
    assert "/22 " in done.stderr + done.stdout  # 11 steps an epoch: each rank trains half of the 161 reviews
