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
# "cls": transformers' *ForSequenceClassification head (pooler over [CLS]); "mean": a linear layer over the
# attention-masked mean of the token embeddings, the pooling all-MiniLM-L6-v2 was pre-trained with.
HEADS = ("cls", "mean")
LR_SCHEDULES = ("linear", "cosine", "constant_with_warmup")

# The values a recipe row is applied on top of (what RECIPES["baseline"] means).
_BASE_VALUES = {"head": "cls", "class_weighting": "balanced", "max_length": DEFAULT_MAX_LENGTH, "prior_adjust": False,
                "layer_lr_decay": 1.0, "learning_rate": DEFAULT_LEARNING_RATE, "lr_schedule": "linear",
                "epochs": DEFAULT_EPOCHS, "ensemble": False}

# Candidate recipes measured by bench/quality_bench.py (bench/results/quality.md): name -> options that
# differ from the base values below. ``tastebud train --recipe NAME`` and the benchmark both read this table.
RECIPES: dict[str, dict] = {
    "baseline": {},  # the recipe before issue 13: [CLS] head, balanced class weights, 128 tokens
    "mean": {"head": "mean"},
    "mean-sqrt-prior": {"head": "mean", "class_weighting": "sqrt", "prior_adjust": True},
    "mean-none-prior": {"head": "mean", "class_weighting": "none", "prior_adjust": True},
    "cls-sqrt-prior": {"class_weighting": "sqrt", "prior_adjust": True},
    "mean-sqrt-prior-256": {"head": "mean", "class_weighting": "sqrt", "prior_adjust": True, "max_length": 256},
    "mean-sqrt-prior-llrd": {"head": "mean", "class_weighting": "sqrt", "prior_adjust": True, "layer_lr_decay": 0.8,
                             "learning_rate": 1.5e-4},
    "mean-sqrt-prior-cosine-4ep": {"head": "mean", "class_weighting": "sqrt", "prior_adjust": True,
                                   "lr_schedule": "cosine", "epochs": 4},
    "mean-sqrt-prior-ensemble": {"head": "mean", "class_weighting": "sqrt", "prior_adjust": True, "ensemble": True},
}
# THE DEFAULT RECIPE of `tastebud train`, the Training page and jobs: change this one line to move the default
# to another row of RECIPES (only when bench/quality_bench.py shows a win larger than the fold std).
DEFAULT_RECIPE = "baseline"
_DEFAULTS = {**_BASE_VALUES, **RECIPES[DEFAULT_RECIPE]}
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
        head: "cls" (the pooler over [CLS]) or "mean" (mean-pooled token embeddings, as the encoder was trained).
        lr_schedule: "linear", "cosine" or "constant_with_warmup" decay after warmup.
        layer_lr_decay: learning rate multiplier per encoder layer going down from the top (1.0 = same everywhere).
        prior_adjust: after training, fit per-class logit offsets on the validation split that maximise its
            macro-F1 (undoes what class weighting does to neutral precision); baked into the saved head.
        calibrate: fit a softmax temperature on the validation split and keep it when it lowers validation ECE.
        ensemble: also register an ensemble of this model and TF-IDF + LR, weights fitted on validation.

    Example:
        >>> TrainConfig(learning_rate=3e-5, epochs=2).to_dict()["learning_rate"]
        3e-05
    """

    base_model: str | None = None
    learning_rate: float = _DEFAULTS["learning_rate"]
    batch_size: int = DEFAULT_BATCH_SIZE
    epochs: int = _DEFAULTS["epochs"]
    max_length: int = _DEFAULTS["max_length"]
    truncation: str = "head_tail"
    weight_decay: float = DEFAULT_WEIGHT_DECAY
    warmup_ratio: float = DEFAULT_WARMUP_RATIO
    seed: int = DEFAULT_SEED
    class_weighting: str = _DEFAULTS["class_weighting"]
    grad_accum: int = 1
    early_stopping_patience: int = DEFAULT_PATIENCE
    max_train_examples: int | None = None
    precision: str = "auto"
    device: str | None = None
    eval_batch_size: int = 64
    checkpoint_steps: int = 0
    name: str | None = None
    head: str = _DEFAULTS["head"]
    lr_schedule: str = _DEFAULTS["lr_schedule"]
    layer_lr_decay: float = _DEFAULTS["layer_lr_decay"]
    prior_adjust: bool = _DEFAULTS["prior_adjust"]
    calibrate: bool = True
    ensemble: bool = _DEFAULTS["ensemble"]

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
        _check(self.head in HEADS, f"head must be one of {', '.join(HEADS)}")
        _check(self.lr_schedule in LR_SCHEDULES, f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}")
        _check(math.isfinite(self.layer_lr_decay) and 0 < self.layer_lr_decay <= 1, "layer_lr_decay must be in (0, 1]")
        for name in ("prior_adjust", "calibrate", "ensemble"):
            _check(isinstance(getattr(self, name), bool), f"{name} must be true or false")

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

    @classmethod
    def from_recipe(cls, recipe: str, **overrides: Any) -> TrainConfig:
        """The options of a named row of :data:`RECIPES` on top of the base values, then ``overrides``.

        Example:
            >>> TrainConfig.from_recipe("mean").head
            'mean'
        """
        if recipe not in RECIPES:
            raise ValueError(f"unknown recipe {recipe!r}; known: {', '.join(RECIPES)}")
        return cls.from_dict({**_BASE_VALUES, **RECIPES[recipe], **overrides})


# Short names accepted by from_dict and --sweep.
ALIASES = {"lr": "learning_rate", "bs": "batch_size", "patience": "early_stopping_patience", "wd": "weight_decay"}

_FLOATS = {"learning_rate", "weight_decay", "warmup_ratio", "layer_lr_decay"}
_BOOLS = {"prior_adjust", "calibrate", "ensemble"}
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
    if name in _BOOLS:
        if isinstance(value, str):
            lowered = value.lower()
            if lowered in ("true", "1", "yes", "on"):
                return True
            if lowered in ("false", "0", "no", "off"):
                return False
            raise ValueError(f"{name} must be true or false, got {value!r}")
        return value
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
