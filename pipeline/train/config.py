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
# "attention" (aspect models only): one attention pooling per aspect next to the mean; "tokens" (aspect models
# only): one input token per aspect read through the whole encoder (pipeline/models/heads.py).
HEADS = ("cls", "mean", "attention", "tokens")
LR_SCHEDULES = ("linear", "cosine", "constant_with_warmup")

# The values a recipe row is applied on top of (what RECIPES["baseline"] means).
_BASE_VALUES = {"head": "cls", "class_weighting": "balanced", "max_length": DEFAULT_MAX_LENGTH, "prior_adjust": False,
                "layer_lr_decay": 1.0, "learning_rate": DEFAULT_LEARNING_RATE, "lr_schedule": "linear",
                "epochs": DEFAULT_EPOCHS, "ensemble": False, "head_lr_multiplier": 1.0}

# Candidate recipes measured by bench/quality_bench.py (bench/RESULTS.md, round 3): name -> options that
# differ from the base values above. ``tastebud train --recipe NAME`` and the benchmark both read this table.
RECIPES: dict[str, dict] = {
    "baseline": {},  # the recipe before issue 13: [CLS] head, balanced class weights, 128 tokens
    # The baseline fine-tune plus its ensemble with TF-IDF + LR (weight fitted on validation); the run's
    # product, promoted and reported, is the ensemble.
    "ensemble": {"ensemble": True},
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
    # A fresh linear layer on mean-pooled embeddings learned slowly at cheap CPU settings (1 epoch): a faster head.
    "mean-sqrt-prior-headlr10": {"head": "mean", "class_weighting": "sqrt", "prior_adjust": True, "head_lr_multiplier": 10.0},
}
# THE DEFAULT RECIPE of `tastebud train`, the Training page and jobs: change this one line to move the default
# to another row of RECIPES (only when bench/quality_bench.py shows a win larger than the fold std).
# "ensemble" since 2026-11-27: on 3 repeated Yelp splits (CPU, full settings) the baseline fine-tune plus
# TF-IDF + LR gained +0.047 ± 0.009 macro-F1 over the fine-tune alone (fold std 0.016; bench/RESULTS.md).
DEFAULT_RECIPE = "ensemble"
# The demo's first fine-tune: small enough to finish in a few minutes on a 2-core CPU (TrainConfig overrides).
QUICK_TRAIN = {"epochs": 2, "max_train_examples": 2400, "max_length": 96, "batch_size": 32, "name": "demo-quick"}
_DEFAULTS = {**_BASE_VALUES, **RECIPES[DEFAULT_RECIPE]}
TRUNCATIONS = ("head", "head_tail")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
DEVICES = ("cuda", "mps", "cpu")


def _option(default: Any, help: str, *, label: str, flags: tuple[str, ...] = (), choices: tuple[str, ...] | None = None,
            min: float | None = None, max: float | None = None, open_min: bool = False, open_max: bool = False,
            advanced: bool = True, fmt: str | None = None) -> Any:
    """A TrainConfig field whose metadata drives validation, the CLI options and the Training form.

    Metadata keys: help, label (form), flags (CLI; default ``--field-name``), choices, min/max bounds
    (``open_*``: the bound itself is excluded), advanced (the form folds it away), fmt (form number format).
    """
    return dataclasses.field(default=default, metadata={
        "help": help, "label": label, "flags": flags, "choices": choices, "min": min, "max": max,
        "open_min": open_min, "open_max": open_max, "advanced": advanced, "fmt": fmt,
    })


@dataclass
class TrainConfig:
    """Hyperparameters and data options of one fine-tuning run.

    Every field carries its help text, bounds and choices as ``metadata`` (see :func:`_option`);
    ``__post_init__`` checks values against them, the CLI's ``train`` and ``retrain`` options and
    the dashboard's Training form are built from them (:func:`config_fields`). Defaults are the
    :data:`DEFAULT_RECIPE` row of :data:`RECIPES` on top of the base values.

    Example:
        >>> TrainConfig(learning_rate=3e-5, epochs=2).to_dict()["learning_rate"]
        3e-05
    """

    base_model: str | None = _option(
        None, "HF id or local path (default: the packaged MiniLM encoder).", label="Base model", advanced=False)
    learning_rate: float = _option(
        _DEFAULTS["learning_rate"], "Peak AdamW learning rate (linear warmup, then the lr schedule).",
        label="Learning rate", flags=("--lr", "--learning-rate"), min=0, max=1, open_min=True, open_max=True,
        advanced=False, fmt="%.1e")
    batch_size: int = _option(DEFAULT_BATCH_SIZE, "Examples per optimizer micro-batch.", label="Batch size", min=1,
                              advanced=False)
    epochs: int = _option(_DEFAULTS["epochs"], "Maximum passes over the train split.", label="Epochs", min=1,
                          advanced=False)
    max_length: int = _option(_DEFAULTS["max_length"], "Truncation length in tokens.", label="Max length (tokens)",
                              min=1, max=8192, advanced=False)
    truncation: str = _option(
        "head_tail", "head_tail keeps the opening and the ending of a long review, head only the opening.",
        label="Truncation", choices=TRUNCATIONS)
    weight_decay: float = _option(DEFAULT_WEIGHT_DECAY, "AdamW weight decay.", label="Weight decay", min=0, max=1,
                                  open_max=True)
    warmup_ratio: float = _option(DEFAULT_WARMUP_RATIO, "Fraction of optimizer steps spent warming up.",
                                  label="Warmup ratio", min=0, max=1, open_max=True)
    seed: int = _option(DEFAULT_SEED, "Seed for head initialisation and data order.", label="Seed", min=0)
    class_weighting: str = _option(
        _DEFAULTS["class_weighting"], "Loss weights per class: none, balanced (n / (k * n_c)) or sqrt (its square root).",
        label="Class weighting", choices=CLASS_WEIGHTINGS)
    grad_accum: int = _option(1, "Micro-batches per optimizer step.", label="Gradient accumulation", min=1)
    early_stopping_patience: int = _option(
        DEFAULT_PATIENCE, "Stop after this many epochs without a better validation macro-F1 (0 = never).",
        label="Early-stopping patience (epochs)", flags=("--patience",), min=0)
    max_train_examples: int | None = _option(
        None, "Train on a stratified sample of at most this many examples (human relabels always kept).",
        label="Train on at most this many examples (0: all)", min=3, advanced=False)
    precision: str = _option("auto", "auto (from pipeline.device), bf16, fp16 or fp32.", label="Precision",
                             choices=PRECISIONS)
    device: str | None = _option(None, "Force cuda, mps or cpu (default: pipeline.device decides).", label="Device",
                                 choices=DEVICES)
    eval_batch_size: int = _option(64, "Batch size for validation and test scoring.", label="Evaluation batch size",
                                   min=1)
    checkpoint_steps: int = _option(0, "Also checkpoint every N optimizer steps (0 = at the end of each epoch only).",
                                    label="Checkpoint every N steps", min=0)
    name: str | None = _option(None, "A name for the registered model (default: generated).", label="Model name")
    head: str = _option(
        _DEFAULTS["head"], "cls (the pooler over [CLS]), mean (mean-pooled token embeddings, as the encoder was "
        "trained); aspect models also attention (an attention pooling per aspect beside the mean) or tokens (an "
        "input token per aspect, read through the whole encoder).", label="Classification head", choices=HEADS)
    lr_schedule: str = _option(_DEFAULTS["lr_schedule"], "How the learning rate decays after warmup.",
                               label="Learning-rate schedule", choices=LR_SCHEDULES)
    layer_lr_decay: float = _option(
        _DEFAULTS["layer_lr_decay"], "Learning-rate factor per encoder layer going down from the top (1 = same "
        "everywhere).", label="Layer-wise learning-rate decay", min=0, max=1, open_min=True)
    head_lr_multiplier: float = _option(
        _DEFAULTS["head_lr_multiplier"], "The new output layer learns this many times faster than the encoder.",
        label="Output-layer learning-rate multiplier", min=1, max=1000)
    prior_adjust: bool = _option(
        _DEFAULTS["prior_adjust"], "After training, fit per-class logit offsets on validation that maximise its "
        "macro-F1 (baked into the saved head).", label="Fit class offsets on validation")
    calibrate: bool = _option(True, "Fit a softmax temperature on validation; kept when it lowers validation ECE.",
                              label="Calibrate (temperature scaling)")
    ensemble: bool = _option(_DEFAULTS["ensemble"], "Also register an ensemble of the fine-tuned model and TF-IDF + "
                             "LR (weight and temperature fitted on validation) and hand it on as the run's model: "
                             "reported, promoted and judged by retrain. Off: the fine-tuned model alone.",
                             label="Ensemble with TF-IDF + LR (the run's model)")

    def __post_init__(self) -> None:
        for f in fields(self):
            _check_field(f, getattr(self, f.name))
        _check(math.isfinite(self.learning_rate), "learning_rate must be in (0, 1)")
        _check(math.isfinite(self.layer_lr_decay), "layer_lr_decay must be in (0, 1]")
        _check(self.base_model is None or bool(str(self.base_model).strip()), "base_model must not be empty")
        _check(math.isfinite(self.head_lr_multiplier), "head_lr_multiplier must be in [1, 1000]")
        _check(self.learning_rate * self.head_lr_multiplier < 1, "learning_rate x head_lr_multiplier must be below 1")

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

_FLOATS = {"learning_rate", "weight_decay", "warmup_ratio", "layer_lr_decay", "head_lr_multiplier"}
_BOOLS = {"prior_adjust", "calibrate", "ensemble"}
_INTS = {"batch_size", "epochs", "max_length", "seed", "grad_accum", "early_stopping_patience", "eval_batch_size", "checkpoint_steps"}
_OPTIONAL_INTS = {"max_train_examples"}
_OPTIONAL_STRS = {"base_model", "device", "name"}


def config_fields() -> tuple[dataclasses.Field, ...]:
    """TrainConfig's fields in declaration order; each one's ``metadata`` holds help, label, flags,
    choices and bounds, and :func:`field_type` gives its value type."""
    return fields(TrainConfig)


def field_type(f: dataclasses.Field) -> type:
    """bool, int, float or str: the type of a field's values (None aside)."""
    if f.name in _BOOLS:
        return bool
    return float if f.name in _FLOATS else int if f.name in _INTS | _OPTIONAL_INTS else str


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _check_field(f: dataclasses.Field, value: Any) -> None:
    meta, kind = f.metadata, field_type(f)
    if value is None and f.default is None:
        return
    if meta["choices"]:
        _check(value in meta["choices"], f"{f.name} must be one of {', '.join(meta['choices'])}")
        return
    if kind is bool:
        _check(isinstance(value, bool), f"{f.name} must be true or false")
        return
    if kind is str:
        return
    lo, hi = meta["min"], meta["max"]
    if kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        ok = ok and (lo is None or value >= lo) and (hi is None or value <= hi)
        bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        _check(ok, f"{f.name} must be {'None or ' if f.default is None else ''}an integer {bound}")
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and (lo is None or (value > lo if meta["open_min"] else value >= lo))
    ok = ok and (hi is None or (value < hi if meta["open_max"] else value <= hi))
    _check(ok, f"{f.name} must be in {'(' if meta['open_min'] else '['}{lo}, {hi}{')' if meta['open_max'] else ']'}")


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
