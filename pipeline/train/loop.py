"""One fine-tuning run with transformers' Trainer: weighted loss, per-epoch records, early stopping.

:func:`pipeline.train.run.train` decides what to train and registers the result; this
module only runs the loop. The Trainer gives mixed precision (bf16 autocast on CPUs with
AMX and on recent GPUs), checkpoints and exact resume for free. What tastebud adds:

- a class-weighted cross-entropy for the imbalanced star-derived labels (validation
  loss stays unweighted, so it reads as the model's real fit);
- a callback that, after each epoch's validation, hands the epoch row to a recorder
  (:mod:`pipeline.train.records`: the store, written by one process only), keeps the best
  weights by validation macro-F1 in the run directory (rank 0), stops after
  ``early_stopping_patience`` epochs without improvement (every rank decides alike), and
  reports progress (which raises :class:`JobCancelled` when the job was cancelled).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import (
    ProgressCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)
from transformers import logging as hf_logging
from transformers.trainer_callback import PrinterCallback

from pipeline.device import DeviceInfo, device_defaults, resolve_device
from pipeline.jobs import JobReporter
from pipeline.evaluation.metrics import compute_classification_metrics
from pipeline.models.inference import EncodedTexts
from pipeline.models.loading import default_base_model, load_classifier
from pipeline.models.truncation import encode
from pipeline.evaluation.calibration import fit_adjustment
from pipeline.models.heads import bake_adjustment
from pipeline.train.state import (
    ADJUSTED_FILE,
    BEST_DIR,
    CHECKPOINT_DIR,
    STATE_FILE,
    VAL_LOGITS_FILE,
    TrainingData,
    Trial,
)
from pipeline.train.records import NullRecorder, StoreRecorder, is_store_writer
from store.constants import LABEL_TO_ID, LABELS
from store.errors import TastebudError

# A validation macro-F1 must beat the best so far by more than this to count as better.
MIN_IMPROVEMENT = 1e-4
# Training-loss log points per epoch (background jobs log a line at each).
LOG_LINES = 10


def fit_classifier(db, trial: Trial, data: TrainingData, *, reporter: JobReporter, span: tuple[float, float],
                   recorder=None, checkpoint: str | Path | None = None, callbacks: tuple = (), wrap=None) -> None:
    """Run the Trainer loop for ``trial`` (a :class:`pipeline.train.state.Trial`); fills its results.

    The best weights and the tokenizer end up in ``trial.run_dir / "best"`` (written by rank 0 only
    when the loop runs in several processes).

    Args:
        db: the store (unused when ``recorder`` is given).
        trial: the run; ``trial.resuming`` continues from its newest checkpoint.
        data: train and validation frames.
        reporter: console and log lines (its ``console`` asks for a progress bar).
        span: the part of the job's progress this loop fills.
        recorder: where records go (default: the store when :func:`pipeline.train.records.is_store_writer`,
            else nowhere; see :mod:`pipeline.train.records`).
        checkpoint: a Trainer checkpoint to resume from (default: the run's newest when resuming).
        callbacks: more Trainer callbacks (Ray Train's checkpoint reporting).
        wrap: ``wrap(trainer) -> trainer`` before training (Ray Train's ``prepare_trainer``).
    """
    if recorder is None:
        recorder = StoreRecorder(db, trial.run_id, reporter) if is_store_writer() else NullRecorder()

    cfg = trial.config
    info = resolve_device(cfg.device)
    precision = _precision(cfg.precision, info)
    set_seed(cfg.seed)
    # The "newly initialised head" report is expected here, and per-file progress bars are noise.
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    model, tokenizer = load_classifier(cfg.base_model or default_base_model(), head=cfg.head)
    defaults = device_defaults(info)
    best_dir = trial.run_dir / BEST_DIR
    if is_store_writer():
        tokenizer.save_pretrained(best_dir)
    train_set = _encode(tokenizer, data.train, cfg)
    val_set = _encode(tokenizer, data.val, cfg)
    console = reporter.console
    steps_per_epoch = max(1, -(-len(train_set) // (cfg.batch_size * cfg.grad_accum)))
    args = TrainingArguments(
        output_dir=str(trial.run_dir / CHECKPOINT_DIR),
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        warmup_steps=cfg.warmup_ratio,
        num_train_epochs=cfg.epochs,
        lr_scheduler_type=cfg.lr_schedule,
        eval_strategy="epoch",
        save_strategy="steps" if cfg.checkpoint_steps else "epoch",
        save_steps=cfg.checkpoint_steps or 500,
        save_total_limit=1,
        logging_strategy="steps",
        logging_steps=max(1, steps_per_epoch // LOG_LINES),
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=info.device == "cpu",
        # Batches of similar length waste less compute on padding (long reviews are common).
        train_sampling_strategy="group_by_length",
        dataloader_pin_memory=defaults.pin_memory,
        dataloader_num_workers=defaults.dataloader_workers,
        # The NaN/inf filter reads the loss on the host at every step, making the host wait for the GPU.
        logging_nan_inf_filter=False,
        torch_compile=defaults.compile,
        report_to="none",
        disable_tqdm=not console,
        log_level="error",
    )
    meter = _Meter()
    val_scorer = _ValScorer()
    callback = _RunCallback(trial, meter, recorder, span, console, best_dir, trial.run_dir / STATE_FILE, val_scorer)
    trainer = _WeightedTrainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=val_set,
        processing_class=tokenizer,
        data_collator=PadCollator(tokenizer.pad_token_id or 0, defaults.pad_multiple),
        compute_metrics=val_scorer,
        callbacks=[callback, *callbacks],
        class_weights=_class_weights(data.train["label"], cfg.class_weighting),
        meter=meter,
        layer_lr_decay=cfg.layer_lr_decay,
        head_lr_multiplier=cfg.head_lr_multiplier,
    )
    trainer.remove_callback(PrinterCallback)
    if console:
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(_QuietProgressCallback())
    if wrap is not None:
        trainer = wrap(trainer)
    if checkpoint is None and trial.resuming:
        checkpoint = _last_checkpoint(trial.run_dir / CHECKPOINT_DIR)
    checkpoint = Path(checkpoint) if checkpoint else None
    recorder.log(
        f"fine-tuning {cfg.base_model or 'the packaged all-MiniLM-L6-v2'} on {info.name}, {precision}, "
        f"lr {cfg.learning_rate:g}, batch {cfg.batch_size}x{cfg.grad_accum}, {cfg.epochs} epochs, "
        f"max_length {cfg.max_length} ({cfg.truncation}), {cfg.head} head, {cfg.class_weighting} class weights"
        + (f", layer lr decay {cfg.layer_lr_decay:g}" if cfg.layer_lr_decay < 1 else "")
        + (f", from {checkpoint.name}" if checkpoint else "")
    )
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    if trainer.is_world_process_zero() and not (best_dir / "config.json").exists():
        raise TastebudError("training ended without a validation pass; nothing to register")
    state = callback.state
    trial.val_metrics = state["best_metrics"]
    trial.history = state["history"]
    trial.device, trial.precision = info.name, precision
    trial.duration_s = round(callback.elapsed_before + time.perf_counter() - started, 2)
    # Where the weights really were (the device's name alone would not show a run that fell back to the CPU).
    trial.throughput = {**meter.throughput(cfg.max_length), "weights_on": str(next(trainer.model.parameters()).device)}
    # Files of the run directory are rank 0's (the others may have no copy of it).
    trial.adjustment = _adjust_best(trial, data, recorder) if trainer.is_world_process_zero() else {}


def _adjust_best(trial: Trial, data: TrainingData, reporter) -> dict:
    """Fit temperature / class offsets on the best epoch's validation logits and bake them into the best weights.

    Done once per run: a marker file keeps a resumed run from adjusting already adjusted weights.
    """
    cfg = trial.config
    marker = trial.run_dir / ADJUSTED_FILE
    if marker.exists():
        return json.loads(marker.read_text())
    logits_path = trial.run_dir / VAL_LOGITS_FILE
    if not (cfg.calibrate or cfg.prior_adjust) or not logits_path.exists():
        return {}
    saved = np.load(logits_path)
    # The labels saved with the logits are in the order the Trainer evaluated them, which need not be
    # the validation frame's order (length-grouped sampling reorders batches).
    logits, labels = saved["logits"], saved["labels"]
    if len(logits) != len(data.val):
        reporter.log("validation logits do not match the validation split; no calibration applied")
        return {}
    adjustment = fit_adjustment(logits, labels, calibrate=cfg.calibrate, prior_adjust=cfg.prior_adjust)
    if adjustment.temperature_applied or adjustment.bias_applied:
        best_dir = trial.run_dir / BEST_DIR
        model, _ = load_classifier(str(best_dir))
        bake_adjustment(model, adjustment.temperature, adjustment.class_bias)
        model.save_pretrained(best_dir)
    result = adjustment.to_dict()
    marker.write_text(json.dumps(result))
    reporter.log(
        f"validation ECE {adjustment.val_ece_before:.4f} -> {adjustment.val_ece_after:.4f}"
        + (f" (temperature {adjustment.temperature:.2f})" if adjustment.temperature_applied else " (temperature not applied: no gain)")
        + (f"; class offsets {', '.join(f'{b:+.2f}' for b in adjustment.class_bias)}: val macro-F1 "
           f"{adjustment.val_macro_f1_before:.4f} -> {adjustment.val_macro_f1_after:.4f}" if adjustment.bias_applied else "")
    )
    return result



def _precision(requested: str, info: DeviceInfo) -> str:
    precision = info.train_precision if requested == "auto" else requested
    if precision == "fp16" and info.device != "cuda":
        raise TastebudError("fp16 training needs a CUDA GPU; use --precision bf16 or fp32")
    return precision


def _last_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint; partial ones (a kill mid-save) are removed.

    The Trainer writes ``trainer_state.json`` last, so a checkpoint without it is incomplete.
    """
    if not folder.is_dir():
        return None
    found = sorted(
        (p for p in folder.glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()),
        key=lambda p: int(p.name.split("-")[-1]),
    )
    complete = [p for p in found if (p / "trainer_state.json").exists()]
    for partial in (p for p in found if p not in complete):
        shutil.rmtree(partial, ignore_errors=True)
    return complete[-1] if complete else None


class _Encoded(torch.utils.data.Dataset):
    """Tokenized reviews, unpadded, in one flat array, with label ids; :class:`PadCollator` pads per batch."""

    def __init__(self, encoded: EncodedTexts, labels: list[int]):
        self.encoded, self.labels = encoded, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        start = self.encoded.offsets[i]
        return {"input_ids": self.encoded.flat[start : start + self.encoded.lengths[i]], "labels": self.labels[i]}


class PadCollator:
    """Pads a batch with array operations (no Python loop per example, no tokenizer call).

    Padded lengths are multiples of ``pad_multiple``, so a run sees few distinct shapes.
    """

    def __init__(self, pad_id: int, pad_multiple: int):
        self.pad_id, self.pad_multiple = pad_id, pad_multiple

    def __call__(self, features: list[dict]) -> dict:
        rows = [f["input_ids"] for f in features]
        encoded = EncodedTexts(
            flat=np.concatenate(rows).astype(np.int64, copy=False),
            offsets=np.concatenate(([0], np.cumsum([len(r) for r in rows[:-1]], dtype=np.int64))).astype(np.int64),
            lengths=np.fromiter(map(len, rows), dtype=np.int64, count=len(rows)),
            pad_id=self.pad_id,
        )
        ids, mask = encoded.padded(np.arange(len(rows)), self.pad_multiple)
        return {
            "input_ids": torch.from_numpy(ids),
            "attention_mask": torch.from_numpy(mask),
            "labels": torch.tensor([f["labels"] for f in features], dtype=torch.long),
        }


def _encode(tokenizer, frame, cfg) -> _Encoded:
    encodings = encode(tokenizer, frame["text"].tolist(), max_length=cfg.max_length, truncation=cfg.truncation)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return _Encoded(EncodedTexts.from_lists(encodings["input_ids"], pad_id), [LABEL_TO_ID[label] for label in frame["label"]])


def _class_weights(labels, scheme: str) -> torch.Tensor | None:
    """Loss weights per class: n / (k * n_c) for "balanced", its square root for "sqrt"."""
    if scheme == "none":
        return None
    counts = np.array([(labels == label).sum() for label in LABELS], dtype=np.float64)
    present = counts > 0
    weights = np.zeros(len(LABELS))
    weights[present] = counts.sum() / (present.sum() * counts[present])
    if scheme == "sqrt":
        weights = np.sqrt(weights)
    return torch.tensor(weights, dtype=torch.float32)


class _ValScorer:
    """The Trainer's compute_metrics: validation metrics, keeping the last logits for post-hoc fitting."""

    def __init__(self):
        self.last_logits: np.ndarray | None = None
        self.last_labels: np.ndarray | None = None

    def __call__(self, eval_pred) -> dict:
        logits = eval_pred.predictions[0] if isinstance(eval_pred.predictions, tuple) else eval_pred.predictions
        self.last_logits = np.asarray(logits, dtype=np.float32)
        self.last_labels = np.asarray(eval_pred.label_ids, dtype=np.int64)
        probs = torch.softmax(torch.as_tensor(logits, dtype=torch.float32), dim=-1).numpy()
        m = compute_classification_metrics(probs, np.asarray(eval_pred.label_ids))
        return {k: m[k] for k in ("accuracy", "macro_f1", "macro_precision", "macro_recall", "ece")}


class _Meter:
    """Training-loss average per epoch and throughput (examples, real tokens, seconds spent training).

    Loss and token counts accumulate on the device and are read only at epoch ends: reading
    them at every step would make the host wait for the GPU at every step.
    """

    def __init__(self):
        self.loss_sum, self.loss_count = None, 0
        self.examples, self.seconds = 0, 0.0
        self._tokens, self._tokens_read = None, 0

    def add(self, loss: torch.Tensor, examples: int, tokens: torch.Tensor) -> None:
        loss = loss.detach().float()
        self.loss_sum = loss if self.loss_sum is None else self.loss_sum + loss
        self.loss_count += 1
        self.examples += examples
        self._tokens = tokens if self._tokens is None else self._tokens + tokens

    @property
    def tokens(self) -> int:
        if self._tokens is not None:
            self._tokens_read += int(self._tokens)
            self._tokens = None
        return self._tokens_read

    def take_epoch_loss(self) -> float | None:
        value = float(self.loss_sum) / self.loss_count if self.loss_count else None
        self.loss_sum, self.loss_count = None, 0
        return value

    def throughput(self, max_length: int) -> dict:
        seconds = max(self.seconds, 1e-9)
        return {
            "examples": self.examples,
            "train_seconds": round(self.seconds, 2),
            "examples_per_s": round(self.examples / seconds, 2),
            "tokens_per_s": round(self.tokens / seconds, 1),
            "max_length": max_length,
        }


class _WeightedTrainer(Trainer):
    # compute_loss returns a per-micro-batch mean; the Trainer divides it by grad_accum.
    loss_is_scaled_for_ga = False

    def __init__(self, *args, class_weights: torch.Tensor | None, meter: _Meter, layer_lr_decay: float = 1.0,
                 head_lr_multiplier: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.class_weights, self.meter, self.layer_lr_decay = class_weights, meter, layer_lr_decay
        self.head_lr_multiplier = head_lr_multiplier

    def create_optimizer(self, model=None):
        """AdamW with layer-wise learning-rate decay when asked for: the head and top layer get the
        full rate, each layer below ``layer_lr_decay`` times the one above, the embeddings the least;
        the freshly initialised output layer gets ``head_lr_multiplier`` times the rate."""
        if (self.layer_lr_decay >= 1 and self.head_lr_multiplier == 1) or self.optimizer is not None:
            return super().create_optimizer(model)
        groups = layerwise_param_groups(self.model, self.args.learning_rate, self.layer_lr_decay, self.args.weight_decay,
                                        head_lr_multiplier=self.head_lr_multiplier)
        self.optimizer = torch.optim.AdamW(groups, lr=self.args.learning_rate, betas=(self.args.adam_beta1, self.args.adam_beta2),
                                           eps=self.args.adam_epsilon)
        return self.optimizer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        logits = outputs.logits.float()
        weight = None
        if model.training and self.class_weights is not None:
            if self.class_weights.device != logits.device:  # copied once: a copy per step would make the host wait
                self.class_weights = self.class_weights.to(logits.device)
            weight = self.class_weights
        loss = F.cross_entropy(logits, labels, weight=weight)
        if model.training:
            mask = inputs.get("attention_mask")
            tokens = mask.sum() if mask is not None else torch.tensor(labels.numel(), device=labels.device)
            self.meter.add(loss, int(labels.shape[0]), tokens)
        return (loss, outputs) if return_outputs else loss


def layerwise_param_groups(model, lr: float, decay: float, weight_decay: float, *, head_lr_multiplier: float = 1.0) -> list[dict]:
    """Optimizer parameter groups with learning rate ``lr * decay ** depth``, depth counted from the top layer.

    Encoder layer i of L gets depth L - i; embeddings depth L + 1; everything else (pooler, head) depth 0.
    The output layer (``classifier.*``) gets ``lr * head_lr_multiplier``.
    Biases and LayerNorm weights get no weight decay, as the Trainer does.

    Example:
        >>> groups = layerwise_param_groups(model, 1e-4, 0.8, 0.01)  # doctest: +SKIP
    """
    import re

    names = [n for n, _ in model.named_parameters()]
    layer_ids = [int(m.group(1)) for n in names if (m := re.search(r"\.layer\.(\d+)\.", n))]
    num_layers = max(layer_ids) + 1 if layer_ids else 0
    buckets: dict[tuple[float, float], list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        match = re.search(r"\.layer\.(\d+)\.", name)
        if match:
            depth = num_layers - int(match.group(1))
        elif "embeddings" in name:
            depth = num_layers + 1
        else:
            depth = 0
        no_decay = name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name
        group_lr = lr * decay**depth * (head_lr_multiplier if name.startswith("classifier.") else 1.0)
        key = (group_lr, 0.0 if no_decay else weight_decay)
        buckets.setdefault(key, []).append(param)
    return [{"params": params, "lr": group_lr, "weight_decay": wd} for (group_lr, wd), params in buckets.items()]


class _QuietProgressCallback(ProgressCallback):
    """The console training bar without the raw log dictionaries or a bar per validation pass
    (an epoch summary line is printed instead)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        pass

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        pass

    def on_evaluate(self, args, state, control, **kwargs):
        pass


class _RunCallback(TrainerCallback):
    """Epoch records, best-weights tracking, early stopping and progress for one run."""

    def __init__(self, trial, meter: _Meter, recorder, span, console: bool, best_dir: Path, state_path: Path,
                 val_scorer: _ValScorer):
        self.trial, self.meter, self.recorder, self.val_scorer = trial, meter, recorder, val_scorer
        self.span, self.console, self.best_dir, self.state_path = span, console, best_dir, state_path
        self.patience = trial.config.early_stopping_patience
        self.state = json.loads(state_path.read_text()) if state_path.exists() else {
            "history": [], "best_metrics": {}, "best_epoch": None, "elapsed_s": 0.0,
        }
        self._epoch_started = None
        self._fit_started = time.perf_counter()
        # Seconds spent by earlier processes of this run (before a kill and --resume).
        self.elapsed_before = float(self.state.get("elapsed_s", 0.0))

    def on_epoch_begin(self, args, state, control, **kwargs):
        self._epoch_started = time.perf_counter()
        self.meter.take_epoch_loss()  # a resumed epoch reports only the steps it ran

    def on_epoch_end(self, args, state, control, **kwargs):
        if self._epoch_started is not None:
            self.meter.seconds += time.perf_counter() - self._epoch_started
            self._epoch_started = None

    def on_step_end(self, args, state, control, **kwargs):
        fraction = state.global_step / max(1, state.max_steps)
        lo, hi = self.span
        epoch = state.epoch or 0.0
        self.recorder.progress(lo + (hi - lo) * fraction, f"epoch {epoch:.2f}/{args.num_train_epochs:g}, step {state.global_step}/{state.max_steps}")
        if not self.console and state.global_step % max(1, args.logging_steps) == 0:
            self.recorder.log(f"step {state.global_step}/{state.max_steps} (epoch {epoch:.2f})")

    def on_log(self, args, state, control, logs=None, **kwargs):
        # The Trainer's running training loss at each logged step feeds the live loss chart.
        if logs and logs.get("loss") is not None:
            self.recorder.step_loss(int(state.global_step), state.epoch, float(logs["loss"]), logs.get("learning_rate"))

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        metrics = metrics or {}
        epoch = round(float(state.epoch or 0.0), 3)
        row = {
            "epoch": epoch,
            "step": int(state.global_step),
            "train_loss": self.meter.take_epoch_loss(),
            "val_loss": metrics.get("eval_loss"),
            "val_accuracy": metrics.get("eval_accuracy"),
            "val_macro_f1": metrics.get("eval_macro_f1"),
        }
        self.recorder.epoch(row)
        # A resumed run repeats the epoch it was killed in: forget what that epoch said before.
        history = [h for h in self.state["history"] if h["epoch"] < epoch] + [row]
        best_before = max((h["val_macro_f1"] for h in history[:-1]), default=None)
        stale_best = self.state["best_epoch"] is not None and self.state["best_epoch"] >= epoch
        improved = best_before is None or row["val_macro_f1"] > best_before + MIN_IMPROVEMENT or stale_best
        # Every rank keeps the same history (validation metrics are gathered across ranks), so all
        # take the same early-stopping decision; only rank 0 writes the run directory's files.
        writes = state.is_world_process_zero
        if improved and writes:
            model.save_pretrained(self.best_dir)
            if self.val_scorer.last_logits is not None:
                with open(self.trial.run_dir / VAL_LOGITS_FILE, "wb") as f:
                    np.savez(f, logits=self.val_scorer.last_logits, labels=self.val_scorer.last_labels)
        if improved:
            self.state["best_epoch"] = epoch
            self.state["best_metrics"] = {
                "epoch": epoch, "loss": row["val_loss"],
                **{k[len("eval_"):]: v for k, v in metrics.items() if k.startswith("eval_") and k[5:] in (
                    "accuracy", "macro_f1", "macro_precision", "macro_recall", "ece")},
            }
        self.state["history"] = history
        self.state["elapsed_s"] = self.elapsed_before + time.perf_counter() - self._fit_started
        if writes:
            self._write_state()
        since_best = sum(1 for h in history if h["epoch"] > self.state["best_epoch"])
        self.recorder.log(
            f"epoch {epoch:g}: train loss {_fmt(row['train_loss'])}, val loss {_fmt(row['val_loss'])}, "
            f"val accuracy {_fmt(row['val_accuracy'])}, val macro-F1 {_fmt(row['val_macro_f1'])}"
            + (" (best)" if improved else f" (best {self.state['best_metrics'].get('macro_f1', 0):.4f} at epoch {self.state['best_epoch']:g})")
        )
        if self.patience and since_best >= self.patience:
            self.recorder.log(f"early stopping: no better validation macro-F1 for {since_best} epoch(s)")
            control.should_training_stop = True

    def _write_state(self) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, default=float))
        tmp.replace(self.state_path)


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"

