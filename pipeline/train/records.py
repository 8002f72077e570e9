"""Where a training loop's records go: the store (one writer), nowhere, or a relay to the one writer.

The loop (:mod:`pipeline.train.loop`) never opens the store itself; it hands its step losses, epoch
rows, progress and log lines to a recorder. Which recorder a process gets follows one rule: **only
one process writes to the store**.

- a plain local run: :class:`StoreRecorder`, writing in short transactions as before;
- ``torchrun`` / ``accelerate launch`` on several GPUs: rank 0 gets a :class:`StoreRecorder`, every
  other rank a :class:`NullRecorder` (:func:`is_store_writer` decides);
- Ray Train: rank 0 gets a relay (:mod:`pipeline.scale.ray_train`) whose events the driver replays
  into its own :class:`StoreRecorder`; workers never open the store.
"""

from __future__ import annotations

import os

from pipeline.jobs import JobReporter
from store import training_runs as run_store
from store.db import transaction


def is_store_writer() -> bool:
    """True in the process that may write to the store: rank 0 of a distributed launch, or a plain process.

    ``torchrun`` and ``accelerate launch`` set ``RANK`` for every process they start.

    Example:
        >>> is_store_writer()  # doctest: +SKIP
        True
    """
    return int(os.environ.get("RANK", "0") or 0) == 0


class StoreRecorder:
    """Writes a run's records to the store and its progress to the job row (through ``reporter``)."""

    def __init__(self, db, run_id: str, reporter: JobReporter):
        self.db, self.run_id, self.reporter = db, run_id, reporter

    def log(self, message: str) -> None:
        self.reporter.log(message)

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Raises :class:`pipeline.jobs.JobCancelled` when the job was cancelled."""
        self.reporter.progress(fraction, message)

    def step_loss(self, step: int, epoch: float | None, loss: float, learning_rate: float | None) -> None:
        with transaction(self.db) as con:
            run_store.record_step_loss(con, self.run_id, step=step, epoch=epoch, loss=loss, learning_rate=learning_rate)

    def epoch(self, row: dict) -> None:
        """One epoch's row (keyed by epoch: a resumed run that repeats an epoch replaces it)."""
        with transaction(self.db) as con:
            run_store.record_epoch(con, self.run_id, **row)


class NullRecorder:
    """What a rank other than 0 records: nothing (rank 0 records the same epochs)."""

    def log(self, message: str) -> None:
        pass

    def progress(self, fraction: float, message: str | None = None) -> None:
        pass

    def step_loss(self, step: int, epoch: float | None, loss: float, learning_rate: float | None) -> None:
        pass

    def epoch(self, row: dict) -> None:
        pass
