"""The training configuration: one validated dataclass shared by the CLI, jobs and the dashboard.

It travels with the weights (``tastebud.json``) and with every training run row, so a
model can always be traced back to the exact settings that made it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any

# Chosen by measurement on real Yelp reviews (bench/RESULTS.md, "Learning rate"): after 3 epochs
# validation macro-F1 was 0.571 at 1e-5, 0.624 at 3e-5, 0.637 at 1e-4 and 0.633 at 2e-4.
# all-MiniLM-L6-v2 is small (22M parameters) and under-trains at the 1e-5 usual for BERT-base.
DEFAULT_LEARNING_RATE = 1e-4
DEFAULT_BATCH_SIZE = 32
DEFAULT_EPOCHS = 3
# 128 tokens covers the median review (~130 tokens) and keeps CPU training above 30 examples/s.
DEFAULT_MAX_LENGTH = 128
DEFAULT_WEIGHT_DECAY = 0.01
DEFAULT_WARMUP_RATIO = 0.1
DEFAULT_SEED = 42
DEFAULT_PATIENCE = 2

CLASS_WEIGHTINGS = ("none", "balanced", "sqrt")
TRUNCATIONS = ("head", "head_tail")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
DEVICES = ("cuda", "mps", "cpu")


@dataclass
class TrainConfig:
    """Hyperparameters and data options of one fine-tuning run.

    Args:
        base_model: HF id or local path; None means the packaged offline encoder.
        learning_rate: peak AdamW learning rate (linear warmup then linear decay).
        batch_size: examples per optimizer micro-batch.
        epochs: maximum passes over the train split.
        max_length: truncation length in tokens.
        truncation: "head_tail" keeps the opening and the ending of a long review, "head" only the opening.
        weight_decay: AdamW weight decay.
        warmup_ratio: fraction of optimizer steps spent warming up.
        seed: seed for head initialisation and data order.
        class_weighting: "none", "balanced" (n / (k * n_c)) or "sqrt" (its square root) for the loss.
        grad_accum: micro-batches per optimizer step.
        early_stopping_patience: stop after this many epochs without a better validation macro-F1 (0 = never).
        max_train_examples: train on at most this many examples (stratified sample), None for all.
        precision: "auto" (from pipeline.device), "bf16", "fp16" or "fp32".
        device: force "cuda", "mps" or "cpu"; None lets pipeline.device decide.
        eval_batch_size: batch size for validation and test scoring.
        checkpoint_steps: also checkpoint every N optimizer steps (0 = at the end of each epoch only).
        name: a label for the registered model (default: generated).

    Example:
        >>> TrainConfig(learning_rate=3e-5, epochs=2).to_dict()["learning_rate"]
        3e-05
    """

    base_model: str | None = None
    learning_rate: float = DEFAULT_LEARNING_RATE
    batch_size: int = DEFAULT_BATCH_SIZE
    epochs: int = DEFAULT_EPOCHS
    max_length: int = DEFAULT_MAX_LENGTH
    truncation: str = "head_tail"
    weight_decay: float = DEFAULT_WEIGHT_DECAY
    warmup_ratio: float = DEFAULT_WARMUP_RATIO
    seed: int = DEFAULT_SEED
    class_weighting: str = "balanced"
    grad_accum: int = 1
    early_stopping_patience: int = DEFAULT_PATIENCE
    max_train_examples: int | None = None
    precision: str = "auto"
    device: str | None = None
    eval_batch_size: int = 64
    checkpoint_steps: int = 0
    name: str | None = None

    def __post_init__(self) -> None:
        _check(math.isfinite(self.learning_rate) and 0 < self.learning_rate < 1, "learning_rate must be in (0, 1)")
        for name in ("batch_size", "epochs", "max_length", "grad_accum", "eval_batch_size"):
            _check(isinstance(getattr(self, name), int) and getattr(self, name) >= 1, f"{name} must be an integer >= 1")
        _check(self.max_length <= 8192, "max_length must be at most 8192")
        _check(0 <= self.weight_decay < 1, "weight_decay must be in [0, 1)")
        _check(0 <= self.warmup_ratio < 1, "warmup_ratio must be in [0, 1)")
        _check(isinstance(self.seed, int) and self.seed >= 0, "seed must be a non-negative integer")
        _check(self.truncation in TRUNCATIONS, f"truncation must be one of {', '.join(TRUNCATIONS)}")
        _check(self.class_weighting in CLASS_WEIGHTINGS, f"class_weighting must be one of {', '.join(CLASS_WEIGHTINGS)}")
        _check(
            isinstance(self.early_stopping_patience, int) and self.early_stopping_patience >= 0,
            "early_stopping_patience must be an integer >= 0",
        )
        _check(
            self.max_train_examples is None or (isinstance(self.max_train_examples, int) and self.max_train_examples >= 3),
            "max_train_examples must be None or an integer >= 3",
        )
        _check(self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}")
        _check(self.device is None or self.device in DEVICES, f"device must be one of {', '.join(DEVICES)}")
        _check(isinstance(self.checkpoint_steps, int) and self.checkpoint_steps >= 0, "checkpoint_steps must be >= 0")
        _check(self.base_model is None or bool(str(self.base_model).strip()), "base_model must not be empty")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a dict, converting strings (CLI, sweep grids, JSON) to each field's type.

        Unknown keys raise ValueError, so a typo in a sweep grid is not silently ignored.

        Example:
            >>> TrainConfig.from_dict({"lr": "5e-5", "epochs": "2"}).learning_rate
            5e-05
        """
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in data.items():
            name = ALIASES.get(key, key)
            if name not in known:
                raise ValueError(f"unknown training option {key!r}; known: {', '.join(sorted(known))}")
            values[name] = _coerce(name, value)
        return cls(**values)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied (validated again)."""
        return TrainConfig.from_dict({**self.to_dict(), **changes})


# Short names accepted by from_dict and --sweep.
ALIASES = {"lr": "learning_rate", "bs": "batch_size", "patience": "early_stopping_patience", "wd": "weight_decay"}

_FLOATS = {"learning_rate", "weight_decay", "warmup_ratio"}
_INTS = {"batch_size", "epochs", "max_length", "seed", "grad_accum", "early_stopping_patience", "eval_batch_size", "checkpoint_steps"}
_OPTIONAL_INTS = {"max_train_examples"}
_OPTIONAL_STRS = {"base_model", "device", "name"}


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _coerce(name: str, value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip()
        if name in _OPTIONAL_INTS | _OPTIONAL_STRS and value.lower() in ("", "none", "null"):
            return None
    try:
        if name in _FLOATS:
            return float(value)
        if name in _INTS | _OPTIONAL_INTS:
            if value is None and name in _OPTIONAL_INTS:
                return None
            as_float = float(value)
            if not as_float.is_integer():
                raise ValueError
            return int(as_float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    return value


def parse_sweep(specs: list[str]) -> dict[str, list[Any]]:
    """Parse ``--sweep name=v1,v2`` options into a grid, validating every value.

    Example:
        >>> parse_sweep(["lr=1e-5,3e-5", "epochs=2"])
        {'learning_rate': [1e-05, 3e-05], 'epochs': [2]}
    """
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        key, sep, raw = spec.partition("=")
        if not sep or not key.strip() or not raw.strip():
            raise ValueError(f"a sweep is written name=v1,v2,... (got {spec!r})")
        name = ALIASES.get(key.strip(), key.strip())
        if name not in {f.name for f in fields(TrainConfig)}:
            raise ValueError(f"cannot sweep unknown option {key.strip()!r}")
        values = [_coerce(name, v) for v in raw.split(",") if v.strip()]
        for v in values:
            TrainConfig(**{name: v})  # validate each value on its own
        grid[name] = values
    return grid
