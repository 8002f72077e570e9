"""What a training run and the loop that fits it share: the run directory's layout and the run's state.

:mod:`pipeline.train.run` decides what to train and registers the result; :mod:`pipeline.train.loop` fits the
weights. Both read these names from here, so neither imports the other's internals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from pipeline.train.config import TrainConfig
from store.constants import LABELS

# Inside a run directory (``runs/training/RUN_ID``):
BEST_DIR = "best"  # the best checkpoint so far, as a loadable model directory
DATA_FILE = "data.parquet"  # the train/val snapshot the run was started with (what --resume reads)
STATE_FILE = "state.json"  # the loop's own bookkeeping: best score, epochs done
CHECKPOINT_DIR = "checkpoints"  # the Trainer's checkpoints
VAL_LOGITS_FILE = "val_logits.npz"  # the best epoch's validation logits and their labels, in evaluation order (post-hoc calibration is fitted on them)
ADJUSTED_FILE = "adjustment.json"  # the fitted temperature / class offsets, once baked into the best weights


@dataclass
class TrainingData:
    """The train and validation frames of one run, and the label round they were read at."""

    train: pd.DataFrame
    val: pd.DataFrame
    round: int = 0

    def label_counts(self) -> dict:
        return {
            split: {label: int((frame["label"] == label).sum()) for label in LABELS}
            for split, frame in (("train", self.train), ("val", self.val))
        }

    def snapshot(self) -> dict:
        """What the model was trained on: sizes, label round and a hash of (review_id, label) pairs."""
        pairs = pd.concat([self.train, self.val])[["review_id", "label"]].sort_values("review_id")
        digest = pd.util.hash_pandas_object(pairs, index=False).sum() & 0xFFFFFFFFFFFF
        return {"n_train": len(self.train), "n_val": len(self.val), "round": self.round, "labels_hash": f"{digest:012x}"}


@dataclass
class Trial:
    """One training run in progress: its id, config, directory and what it measured."""

    run_id: str
    config: TrainConfig
    run_dir: Path
    sweep_id: str | None = None
    resuming: bool = False
    val_metrics: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    throughput: dict = field(default_factory=dict)
    duration_s: float = 0.0
    device: str = ""
    precision: str = ""
    adjustment: dict = field(default_factory=dict)

    def result(self) -> dict:
        return {"val_metrics": self.val_metrics, "throughput": self.throughput, "device": self.device,
                "precision": self.precision, "duration_s": self.duration_s, "adjustment": self.adjustment}
