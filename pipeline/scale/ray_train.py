"""Fine-tuning data-parallel on a Ray cluster: Ray Train's ``TorchTrainer`` around the same Hugging Face Trainer.

A run here is a local run (:func:`pipeline.train.run.train`) with the loop moved out: the driver (this
process) records the run and reads its data exactly as a local run does (:func:`prepare_run`), N Ray
Train workers each run :func:`pipeline.train.loop.fit_classifier` on their shard (gloo on CPUs, NCCL on
GPUs; same config, metrics, early stopping, best-weights tracking, calibration), and the driver
registers the one model (:func:`finish_run`).

Only the driver writes to the store. Workers never open it (on a cluster they could not: the store
is a file on this machine). Rank 0 sends its records (epoch rows, step losses, progress, log lines)
to a small relay actor pinned to the driver's node, and a thread of the driver replays them into the
same :class:`pipeline.train.records.StoreRecorder` a local run writes through. So the job's progress
is live (the relay is drained every ``RELAY_POLL_S``), each epoch is written once (epoch rows are
keyed by epoch: a resumed epoch replaces its row rather than adding one), and a cancel reaches the
workers as the relay's answer to rank 0's next push. The relay only queues: making it the writer
would put a second process on the store beside the driver, which registers the model.

Checkpoints go through Ray Train's storage (``RUN_DIR/ray``; on a multi-node cluster that path must be
shared storage): rank 0 reports, at every Trainer save, the Trainer checkpoint plus the best weights
and the loop's state. A worker that dies makes Ray restart the group (``FailureConfig``) from that
checkpoint; the final report carries the best (calibrated) weights, which the driver registers.
"""

from __future__ import annotations

import functools
import json
import shutil
import tempfile
import threading
import time
from pathlib import Path

from pipeline.jobs import JobCancelled, JobReporter
from pipeline.scale.ray_score import connect_ray, note_local_instance
from pipeline.scale.storage import RunStorage, check_client_storage, require_shared_storage
from pipeline.train.config import TrainConfig
from pipeline.train.records import NullRecorder, StoreRecorder
from pipeline.train.run import fit_trial, job_actor, finish_run, prepare_run
from pipeline.train.state import BEST_DIR, DATA_FILE, STATE_FILE, VAL_LOGITS_FILE, Trial, TrainingData
from store.actors import Actor, cli_actor, require
from store.errors import TastebudError

# Seconds between the driver's reads of the relay (how live the job's progress is).
RELAY_POLL_S = 0.5
# Seconds rank 0 lets progress updates wait before pushing them (epoch rows go at once).
PUSH_INTERVAL_S = 1.0
# Times Ray restarts the worker group from the last checkpoint before the run fails.
MAX_FAILURES = 2
# Inside a Ray checkpoint: the Trainer's checkpoint, and the run's outcome (final report only).
HF_CHECKPOINT = "checkpoint"
RESULT_FILE = "result.json"
# In the run directory: the run's Ray settings (storage, workers, GPUs), read again by a resumed driver.
RAY_SETUP_FILE = "ray.json"
# Under the run's storage folder: the run's data snapshot (train and validation rows, a ``split`` column).
DATA_DIR = "data"
# Rows per batch a worker pulls while reading the data.
DATA_BATCH_ROWS = 10_000
# CPU share of Ray Data's read tasks (reading Parquet only moves bytes).
DATA_READ_CPUS = 0.25
# A worker's local run directory in the node's temp folder: this, the run id, "-rank" and the rank.
WORKER_DIR_PREFIX = "tastebud-ray-train-"


def train_on_ray(
    db,
    config: TrainConfig,
    *,
    workers: int,
    address: str | None = None,
    gpus_per_worker: float = 0,
    reporter: JobReporter | None = None,
    actor: Actor | None = None,
    promote_if_better: bool = False,
    max_failures: int = MAX_FAILURES,
    storage: str | None = None,
    resume: bool | str = False,
) -> str:
    """Fine-tune on ``workers`` Ray Train workers, register and evaluate one model; returns its id.

    Args:
        db: the store (only this process opens it).
        config: hyperparameters, as for a local run (``batch_size`` is per worker).
        workers: data-parallel workers (one process each).
        address: a Ray address (``HOST:PORT``, ``ray://HOST:PORT``, ``auto``); None starts a local instance.
        gpus_per_worker: GPUs each worker asks for; 0 trains on CPUs (gloo).
        reporter: progress and cancellation.
        actor: needs "train".
        promote_if_better: as in :func:`pipeline.train.run.train`.
        max_failures: worker-group restarts from the last checkpoint before giving up.
        storage: where checkpoints and the data shards go, a path or URI every node reaches (NFS,
            ``s3://``, ``gs://``: :mod:`pipeline.scale.storage`); default ``RUN_DIR/ray`` on this machine,
            which a cluster of several nodes refuses.
        resume: True continues the newest interrupted run (a killed or cancelled driver) from its last
            checkpoint in its storage, a run id continues that run; its own config, workers and storage
            are kept (``storage`` may name where the storage is mounted now).

    Returns:
        The registered model id.

    Example:
        >>> train_on_ray("tastebud.duckdb", TrainConfig(epochs=2), workers=2)  # doctest: +SKIP
        'ft-20261125-101500-1a2b'
    """
    if workers < 1:
        raise TastebudError("--workers must be at least 1")
    if gpus_per_worker < 0:
        raise TastebudError("--gpus-per-worker cannot be negative")
    actor = actor or cli_actor()
    require(actor, "train")
    reporter = reporter or JobReporter(db, None)
    if storage:
        RunStorage.at(storage, "check")  # a bad URI fails before anything is recorded
    elif not resume:
        check_client_storage(address, storage)
    ray = connect_ray(address)
    if address is None:
        note_local_instance(ray, reporter, "training")
    if not resume:  # before the run is recorded (a resumed run's storage is known after)
        require_shared_storage(ray, bool(storage), "training")
    trial, data = prepare_run(db, config, reporter=reporter, resume=resume)
    setup = _ray_setup(trial, storage=storage, workers=workers, gpus_per_worker=gpus_per_worker, resuming=bool(resume))
    area = _run_storage(trial, setup)
    require_shared_storage(ray, area.shared, "training")
    fit = functools.partial(_fit_on_ray, ray=ray, workers=setup["workers"], gpus_per_worker=setup["gpus_per_worker"],
                            max_failures=max_failures, area=area)
    fit_trial(db, trial, data, reporter=reporter, span=(0.0, 0.9), fit=fit)
    return finish_run(db, trial, data, actor=actor, reporter=reporter, promote_if_better=promote_if_better)


def _ray_setup(trial: Trial, *, storage: str | None, workers: int, gpus_per_worker: float, resuming: bool) -> dict:
    """The run's Ray settings, kept in its directory (``ray.json``) so that a restarted driver finds its storage."""
    path = trial.run_dir / RAY_SETUP_FILE
    if resuming:
        if not path.exists():
            raise TastebudError(f"run {trial.run_id} was not trained on Ray: resume it with `tastebud train --resume`")
        setup = json.loads(path.read_text())
        if storage:
            setup["storage"] = storage
        return setup
    setup = {"storage": storage, "workers": workers, "gpus_per_worker": gpus_per_worker}
    path.write_text(json.dumps(setup))
    return setup


def _run_storage(trial: Trial, setup: dict) -> RunStorage:
    """Where the run's checkpoints and data shards go: ``--storage/RUN_ID``, or ``RUN_DIR/ray/RUN_ID`` on this machine."""
    if setup["storage"]:
        return RunStorage.at(setup["storage"], trial.run_id)
    return RunStorage.at(str(trial.run_dir / "ray"), trial.run_id, shared=False)


def run_job(db, params: dict, reporter: JobReporter) -> dict:
    """Job kind "train-ray": ``TrainConfig.to_dict()`` plus "workers", "address" (None or "local": a local
    instance), "gpus_per_worker", "promote_if_better", "storage" and "resume" (True or a run id)."""
    params = dict(params or {})
    workers = int(params.pop("workers", 2))
    address = params.pop("address", None)
    gpus = float(params.pop("gpus_per_worker", 0) or 0)
    promote = bool(params.pop("promote_if_better", False))
    storage = params.pop("storage", None)
    resume = params.pop("resume", False)
    try:
        config = TrainConfig.from_dict(params)
    except ValueError as exc:
        raise TastebudError(f"bad training parameters: {exc}") from exc
    model_id = train_on_ray(db, config, workers=workers, address=None if address in (None, "local") else address,
                            gpus_per_worker=gpus, reporter=reporter, actor=job_actor(db, reporter.job_id),
                            promote_if_better=promote, storage=storage, resume=resume)
    return {"model_id": model_id}


# ---------------------------------------------------------------- driver


def _fit_on_ray(db, trial: Trial, data: TrainingData, *, reporter: JobReporter, span: tuple[float, float], ray,
                workers: int, gpus_per_worker: float, max_failures: int, area: RunStorage) -> None:
    """Run the loop on the workers; fills ``trial`` and puts the best weights in ``trial.run_dir / "best"``."""
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()
    relay = ray.remote(_Relay).options(
        num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=here, soft=False)).remote()
    _share_data(trial, area)
    # Read once, by Ray Data's tasks into the object store (not into this process), before the workers
    # take the CPUs; every worker then iterates the whole of it (the Trainer's sampler gives each rank
    # its share of every epoch, as with torchrun). The frames never travel in the loop's config.
    dataset = ray.data.read_parquet(area.uri(DATA_DIR), num_cpus=DATA_READ_CPUS).materialize()
    trainer = TorchTrainer(
        _train_worker,
        train_loop_config={"relay": relay, "run_id": trial.run_id, "config": trial.config.to_dict(), "span": span},
        datasets={DATA_DIR: dataset},
        dataset_config=DataConfig(datasets_to_split=[]),
        torch_config=TorchConfig(backend="nccl" if gpus_per_worker else "gloo"),
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=bool(gpus_per_worker),
                                     resources_per_worker={"GPU": gpus_per_worker} if gpus_per_worker else None),
        run_config=RunConfig(name=trial.run_id, storage_path=area.root,
                             failure_config=FailureConfig(max_failures=max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=2)),
    )
    reporter.log(f"training run {trial.run_id} on {workers} Ray worker(s)"
                 + (f", {gpus_per_worker:g} GPU each" if gpus_per_worker else " (CPU, gloo)")
                 + f"; checkpoints in {area.uri()}")
    drain = _Drain(ray, relay, StoreRecorder(db, trial.run_id, reporter))
    drain.start()
    try:
        result = trainer.fit()
    except JobCancelled:
        raise
    except Exception as exc:
        if drain.cancelled:
            raise JobCancelled(f"job {reporter.job_id} was cancelled") from None
        raise TastebudError(f"training on Ray failed: {exc}") from exc
    finally:
        drain.stop()
        # Workers killed outright on this node (a failure Ray recovered from, or a cancel) left their
        # directories; the run is over, so none is in use.
        for left in Path(tempfile.gettempdir()).glob(f"{WORKER_DIR_PREFIX}{trial.run_id}-rank*"):
            shutil.rmtree(left, ignore_errors=True)
    if drain.cancelled:
        raise JobCancelled(f"job {reporter.job_id} was cancelled")
    if result.checkpoint is None:
        raise TastebudError("training on Ray ended without a checkpoint; nothing to register")
    with result.checkpoint.as_directory() as folder:
        outcome_file = Path(folder) / RESULT_FILE
        if not outcome_file.exists():
            raise TastebudError("training on Ray ended without its final report; nothing to register")
        shutil.copytree(Path(folder) / BEST_DIR, trial.run_dir / BEST_DIR, dirs_exist_ok=True)
        outcome = json.loads(outcome_file.read_text())
    for name, value in outcome.items():
        setattr(trial, name, value)
    trial.throughput = {**trial.throughput, "workers": workers}
    area.remove()  # the model is in the run directory now; checkpoints and shards are no longer needed


def _share_data(trial: Trial, area: RunStorage) -> None:
    """The run's data snapshot (train and validation, with a ``split`` column) copied under ``area``/data,
    where Ray Data reads it for the workers."""
    local = area.local_dir(DATA_DIR)
    if local is not None:
        shutil.copy2(trial.run_dir / DATA_FILE, local / DATA_FILE)
    else:
        area.upload(trial.run_dir / DATA_FILE, DATA_DIR, DATA_FILE)


class _Relay:
    """Queues rank 0's records for the driver (a Ray actor on the driver's node); answers pushes with the cancel flag."""

    def __init__(self):
        self.events: list = []
        self.cancel_requested = False

    def push(self, events: list) -> bool:
        self.events.extend(events)
        return self.cancel_requested

    def drain(self) -> list:
        events, self.events = self.events, []
        return events

    def cancel(self) -> None:
        self.cancel_requested = True

    def cancelled(self) -> bool:
        return self.cancel_requested


class _Drain(threading.Thread):
    """The driver's thread that replays the relay's events into the store, in order."""

    def __init__(self, ray, relay, store: StoreRecorder):
        super().__init__(daemon=True)
        self.ray, self.relay, self.store = ray, relay, store
        self.cancelled = False
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(RELAY_POLL_S):
            self._apply()

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
        self._apply()  # what rank 0 pushed after the last poll

    def _apply(self) -> None:
        for name, args in self.ray.get(self.relay.drain.remote()):
            try:
                getattr(self.store, name)(*args)
            except JobCancelled:
                self.cancelled = True
                self.relay.cancel.remote()


# ---------------------------------------------------------------- workers


class _RelayRecorder:
    """Rank 0's recorder: events go to the relay; progress is coalesced, epoch rows are pushed at once."""

    def __init__(self, relay):
        self.relay, self.events, self._progress, self._pushed = relay, [], None, 0.0

    def log(self, message: str) -> None:
        self.events.append(("log", (message,)))

    def progress(self, fraction: float, message: str | None = None) -> None:
        self._progress = ("progress", (fraction, message))
        if time.monotonic() - self._pushed >= PUSH_INTERVAL_S:
            self.flush()

    def step_loss(self, step: int, epoch: float | None, loss: float, learning_rate: float | None) -> None:
        self.events.append(("step_loss", (step, epoch, loss, learning_rate)))

    def epoch(self, row: dict) -> None:
        self.events.append(("epoch", (row,)))
        self.flush()

    def flush(self) -> None:
        """Push what is waiting; raises :class:`JobCancelled` when the driver's job was cancelled."""
        import ray

        events = self.events + ([self._progress] if self._progress else [])
        self.events, self._progress, self._pushed = [], None, time.monotonic()
        if ray.get(self.relay.push.remote(events)):
            raise JobCancelled("the training job was cancelled")


def _checkpoint_reporter():
    """A Trainer callback that reports each saved Trainer checkpoint to Ray Train with the run's best weights
    and loop state (built lazily: transformers is imported on the workers only).

    Ray's own ``RayTrainReportCallback`` ships the Trainer checkpoint alone; a resumed run also needs the
    best weights so far and the loop's history (early stopping, best epoch).
    """
    import ray.train
    from transformers import TrainerCallback
    from transformers.trainer_utils import get_last_checkpoint

    class CheckpointReporter(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            with tempfile.TemporaryDirectory() as tmp:
                checkpoint = None
                if state.is_world_process_zero:
                    run_dir = Path(args.output_dir).parent
                    shutil.copytree(get_last_checkpoint(args.output_dir), Path(tmp) / HF_CHECKPOINT)
                    _copy_run_files(run_dir, Path(tmp))
                    checkpoint = ray.train.Checkpoint.from_directory(tmp)
                # Every rank reports (it is a barrier); only rank 0 carries files.
                ray.train.report({"step": state.global_step, "epoch": state.epoch}, checkpoint=checkpoint)

    return CheckpointReporter()


def _copy_run_files(source: Path, target: Path) -> None:
    """The run-directory files a resumed run needs: best weights, loop state, best validation logits."""
    if (source / BEST_DIR).is_dir():
        shutil.copytree(source / BEST_DIR, target / BEST_DIR, dirs_exist_ok=True)
    for name in (STATE_FILE, VAL_LOGITS_FILE):
        if (source / name).exists():
            shutil.copy2(source / name, target / name)


def _read_data() -> TrainingData:
    """This worker's copy of the run's data, streamed from the object store by Ray Data, in review order
    (every rank must hold the same rows in the same order for the Trainer's sampler to share them out)."""
    import pandas as pd
    import ray.train

    batches = ray.train.get_dataset_shard(DATA_DIR).iter_batches(batch_format="pandas", batch_size=DATA_BATCH_ROWS)
    frame = pd.concat(list(batches), ignore_index=True).sort_values("review_id", ignore_index=True)
    cols = ["review_id", "text", "label"]
    return TrainingData(train=frame.loc[frame["split"] == "train", cols].reset_index(drop=True),
                        val=frame.loc[frame["split"] == "val", cols].reset_index(drop=True))


def worker_run_dir(run_id: str, rank: int) -> Path:
    """A worker's local run directory, named by run and rank: a worker killed outright (no ``finally`` runs)
    leaves its directory behind, and the worker restarted in its place, or the driver at the run's end,
    finds it by name and removes it."""
    return Path(tempfile.gettempdir()) / f"{WORKER_DIR_PREFIX}{run_id}-rank{rank}"


def _train_worker(loop_config: dict) -> None:
    """One Ray Train worker: the local training loop on this worker's shard, in a local run directory."""
    import ray.train
    from ray.train.huggingface.transformers import prepare_trainer

    from pipeline.train.loop import fit_classifier

    relay = loop_config["relay"]
    rank = ray.train.get_context().get_world_rank()
    given = ray.get_runtime_context().get_assigned_resources()
    if not given.get("GPU") and given.get("CPU"):
        # The CPUs Ray gave this worker (1 unless the scaling config asks for more), not every core of the
        # node: workers sharing a node would otherwise each run a thread per core and wait on each other.
        from pipeline.device import cap_cpu_threads

        cap_cpu_threads(max(1, int(given["CPU"])))
    if ray.get(relay.cancelled.remote()):  # restarted after a cancel: nothing to do
        return
    run_dir = worker_run_dir(loop_config["run_id"], rank)
    shutil.rmtree(run_dir, ignore_errors=True)  # what a killed worker of this run and rank left on this node
    run_dir.mkdir(parents=True)
    try:
        resume_from = None
        restored = ray.train.get_checkpoint()
        if restored is not None:
            folder = Path(restored.to_directory(str(run_dir / "restored")))
            _copy_run_files(folder, run_dir)
            resume_from = folder / HF_CHECKPOINT
        trial = Trial(run_id=loop_config["run_id"], config=TrainConfig.from_dict(loop_config["config"]), run_dir=run_dir,
                      resuming=restored is not None)
        data = _read_data()
        recorder = _RelayRecorder(relay) if rank == 0 else NullRecorder()
        if rank == 0 and (run_dir / STATE_FILE).exists():  # restored from a checkpoint
            # The epochs the checkpoint holds, recorded again: a driver killed before it drained the relay
            # never wrote them (epoch rows are keyed by epoch, so rows it did write are only replaced).
            for row in json.loads((run_dir / STATE_FILE).read_text()).get("history", []):
                recorder.epoch(row)
        fit_classifier(None, trial, data, reporter=JobReporter(None, None, console=False), span=loop_config["span"],
                       recorder=recorder, checkpoint=resume_from, callbacks=(_checkpoint_reporter(),), wrap=prepare_trainer)
        if rank == 0:
            recorder.flush()
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = None
            if rank == 0:
                _copy_run_files(run_dir, Path(tmp))
                outcome = trial.result()
                # Measured on rank 0 alone; every worker trains an equal shard in lockstep, so the run's is N times it.
                size = ray.train.get_context().get_world_size()
                outcome["throughput"] = {k: v * size if k in ("examples", "examples_per_s", "tokens_per_s") else v
                                         for k, v in outcome["throughput"].items()}
                (Path(tmp) / RESULT_FILE).write_text(json.dumps(outcome, default=str))
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report({"final": 1}, checkpoint=checkpoint)
    finally:  # a cancelled or failed worker leaves no copy of the run behind either
        shutil.rmtree(run_dir, ignore_errors=True)
