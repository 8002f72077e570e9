"""Fit an aspect model: the training loop, validation each epoch, early stopping, the mention threshold.

A plain PyTorch loop rather than the HF Trainer the review model uses, on purpose: a batch here is a set
of *reviews* whose sentences are pooled inside the loss (:func:`pipeline.aspects.model.pool_reviews`), so
the number of sequences per batch varies and the Trainer's evaluation loop (which concatenates logits of
equal width per example) does not fit; what the Trainer would add on top (checkpoint resume) the aspect
runs do not need, as they are short. AdamW with linear warmup and decay, as the review model.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pipeline.aspects.metrics import aspect_metrics, headline
from pipeline.aspects.model import (
    IGNORE, OUTPUTS_PER_ASPECT, Segments, aspect_loss, aspect_suffix, at_least_one, head_labels, pool_reviews,
    review_probabilities, segment_reviews,
)
from pipeline.device import DeviceInfo, device_defaults, resolve_device
from pipeline.models.inference import predict_encoded, prepare_for_inference
from pipeline.train.config import TrainConfig
from store.errors import TastebudError


@dataclass
class FitResult:
    """What a fit produced: the best model (threshold baked in), its validation metrics and the history."""

    model: object
    tokenizer: object
    val_metrics: dict
    history: list = field(default_factory=list)
    duration_s: float = 0.0
    device: str = ""
    precision: str = ""
    threshold: float = 0.5
    examples_per_s: float = 0.0


def load_aspect_model(path_or_id: str, aspects: Sequence[str] | None = None, *, head: str = "mean"):
    """``(model, tokenizer)`` of a saved aspect model, or of a base encoder with a fresh head for ``aspects``.

    ``head`` (fresh heads only): "tokens" gives every aspect its own input token read through the whole
    encoder (:class:`pipeline.models.heads.AspectTokenClassifier`); "attention" gives every aspect its own
    attention over the tokens next to their mean (:class:`pipeline.models.heads.AspectAttentionClassifier`); "mean" pools the token
    embeddings under the attention mask, the sentence embedding all-MiniLM-L6-v2 was trained to produce
    (:class:`pipeline.models.heads.MeanPoolClassifier`); "cls" is transformers' [CLS] pooler head. A saved
    model loads the head it was saved with.
    """
    from transformers import AutoModelForSequenceClassification

    from pipeline.models.heads import (
        AspectAttentionClassifier, AspectTokenClassifier, MeanPoolClassifier, is_mean_pool_dir,
    )
    from pipeline.models.loading import load_tokenizer

    try:
        if aspects is None:
            model = (MeanPoolClassifier.from_pretrained(path_or_id) if Path(str(path_or_id)).is_dir()
                     and is_mean_pool_dir(path_or_id) else AutoModelForSequenceClassification.from_pretrained(path_or_id))
        else:
            labels = head_labels(aspects)
            names = {"num_labels": len(labels), "id2label": labels, "label2id": {v: k for k, v in labels.items()}}
            if head == "tokens":
                model = AspectTokenClassifier.from_encoder(path_or_id, aspect_names=list(aspects), **names)
            elif head == "attention":
                model = AspectAttentionClassifier.from_encoder(path_or_id, **names)
            elif head == "mean":
                model = MeanPoolClassifier.from_encoder(path_or_id, **names)
            else:
                # A base model with a head of another size (a review model) keeps its encoder only.
                model = AutoModelForSequenceClassification.from_pretrained(path_or_id, ignore_mismatched_sizes=True,
                                                                           **names)
    except (OSError, ValueError) as exc:
        raise TastebudError(
            f"cannot load model {path_or_id!r}: {exc}. Give a local directory or a Hugging Face id available offline."
        ) from exc
    if model.config.num_labels % OUTPUTS_PER_ASPECT:
        raise TastebudError(f"{path_or_id!r} is not an aspect model ({model.config.num_labels} outputs)")
    model.eval()
    return model, load_tokenizer(path_or_id)


# A model whose training labels give (almost) every review at least one aspect answers so too
# (:func:`pipeline.aspects.model.at_least_one`); the flag lives in the model's config.json.
AT_LEAST_ONE_FLAG = "aspects_at_least_one"
AT_LEAST_ONE_SHARE = 0.99


def predict_aspects(model, tokenizer, texts: Sequence[str], *, max_length: int, device: DeviceInfo | None = None,
                    segments: Segments | None = None, at_least_one_rule: bool | None = None,
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Score reviews sentence by sentence and pool per review.

    ``at_least_one_rule`` (default: the model's ``aspects_at_least_one`` setting) gives every non-blank
    review at least one mentioned aspect.

    Returns:
        ``(p_mentioned (R, A), p_polarity (R, A, 3), evidence (R, A, 2))``: evidence holds the character
        span of the sentence that carried each aspect most.
    """
    info = device or resolve_device()
    segments = segments or segment_reviews(tokenizer, texts, max_length=max_length,
                                           suffix=aspect_suffix(model, tokenizer))
    n_aspects = model.config.num_labels // OUTPUTS_PER_ASPECT
    if segments.n_reviews == 0:
        return np.zeros((0, n_aspects)), np.zeros((0, n_aspects, 3)), np.zeros((0, n_aspects, 2), dtype=np.int64)
    logits = predict_encoded(model, segments.encoded, device=info, logits=True)
    mentioned, polarity, evidence = pool_reviews(torch.from_numpy(logits), torch.from_numpy(segments.review),
                                                 segments.n_reviews)
    if at_least_one_rule is None:
        at_least_one_rule = bool(getattr(model.config, AT_LEAST_ONE_FLAG, False))
    if at_least_one_rule:
        written = np.bincount(segments.review, weights=(segments.spans[:, 1] > segments.spans[:, 0]),
                              minlength=segments.n_reviews) > 0
        mentioned = at_least_one(mentioned, torch.from_numpy(written))
    p_m, p_pol = review_probabilities(mentioned, polarity)
    return p_m, p_pol, segments.spans[evidence.numpy()]


class _Batches:
    """Batches of reviews with their segments, padded per batch (similar lengths grouped, order shuffled)."""

    def __init__(self, segments: Segments, targets: np.ndarray, batch_size: int, pad_multiple: int, seed: int):
        self.segments, self.targets = segments, targets
        self.batch_size, self.pad_multiple = batch_size, pad_multiple
        self.rng = np.random.default_rng(seed)
        counts = np.bincount(segments.review, minlength=segments.n_reviews)
        self.first = np.concatenate(([0], np.cumsum(counts)[:-1]))
        self.count = counts
        tokens = np.bincount(segments.review, weights=segments.encoded.lengths, minlength=segments.n_reviews)
        self.tokens = tokens

    def __len__(self) -> int:
        return math.ceil(self.segments.n_reviews / self.batch_size)

    def epoch(self):
        # Length-grouped: shuffle, sort within chunks of 50 batches by tokens, shuffle the batches.
        order = self.rng.permutation(self.segments.n_reviews)
        span = self.batch_size * 50
        grouped = np.concatenate([
            chunk[np.argsort(self.tokens[chunk], kind="stable")] for chunk in np.array_split(order, max(1, math.ceil(len(order) / span)))
        ]) if len(order) else order
        batches = [grouped[i : i + self.batch_size] for i in range(0, len(grouped), self.batch_size)]
        for b in self.rng.permutation(len(batches)):
            yield self.collate(batches[b])

    def collate(self, reviews: np.ndarray) -> dict:
        idx = np.concatenate([np.arange(self.first[r], self.first[r] + self.count[r]) for r in reviews])
        ids, mask = self.segments.encoded.padded(idx, self.pad_multiple)
        owner = np.repeat(np.arange(len(reviews)), self.count[reviews])
        return {
            "input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask),
            "review": torch.from_numpy(owner), "targets": torch.from_numpy(self.targets[reviews]), "n": len(reviews),
        }


def labels_say_at_least_one(targets: np.ndarray) -> bool:
    """Whether the labels give (almost, :data:`AT_LEAST_ONE_SHARE`) every review at least one mentioned
    aspect, as SemEval's annotation does: then the model should answer so too. Reviews labeled "absent"
    for every aspect count against it; reviews with no labels at all do not count."""
    known = targets != IGNORE
    labeled = known.any(axis=1)
    if labeled.sum() < 20:
        return False
    some = ((targets >= 1) & known).any(axis=1)
    return bool(some[labeled].mean() >= AT_LEAST_ONE_SHARE)


def best_threshold(targets: np.ndarray, p_mentioned: np.ndarray, *, at_least_one_rule: bool = False) -> float:
    """The mention threshold that maximises micro-F1 on validation (searched 0.2-0.8); with
    ``at_least_one_rule`` each review's most likely aspect counts as mentioned at every threshold."""
    known = targets != IGNORE
    gold = (targets >= 1) & known
    top = np.zeros_like(known)
    if at_least_one_rule and len(p_mentioned):
        top[np.arange(len(p_mentioned)), np.argmax(np.where(known, p_mentioned, -1.0), axis=1)] = True
    best, best_f1 = 0.5, -1.0
    for t in np.round(np.arange(0.2, 0.81, 0.025), 3):
        pred = p_mentioned >= t
        if at_least_one_rule:
            pred |= top & ~pred.any(axis=1, keepdims=True)
        pred &= known
        tp = np.sum(gold & pred)
        f1 = 2 * tp / (gold.sum() + pred.sum()) if gold.sum() + pred.sum() else 0.0
        if f1 > best_f1 + 1e-9:
            best, best_f1 = float(t), f1
    return best


def bake_threshold(model, threshold: float) -> None:
    """Shift every aspect's "mentioned" bias so that p >= 0.5 means p >= ``threshold`` before."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    head = getattr(model, "classifier", None) or head
    if head is None or head.bias is None:
        raise TastebudError("cannot find the classification head's bias to set the mention threshold")
    shift = math.log(threshold / (1 - threshold))
    with torch.no_grad():
        head.bias[0::OUTPUTS_PER_ASPECT] -= shift


def fit_aspects(
    train_texts: Sequence[str], train_targets: np.ndarray, val_texts: Sequence[str], val_targets: np.ndarray,
    aspects: Sequence[str], config: TrainConfig, *, base_model: str,
    log: Callable[[str], None] = print, progress: Callable[[float, str], None] | None = None,
    on_epoch: Callable[[dict], None] | None = None,
) -> FitResult:
    """Fine-tune ``base_model`` for ``aspects``; keep the epoch with the best validation score.

    Args:
        train_targets / val_targets: ``(R, A)`` target codes (see :func:`pipeline.aspects.model.aspect_loss`).
        config: learning rate, batch size (reviews per step), epochs, max_length (tokens per sentence
            segment), weight decay, warmup ratio, seed, early-stopping patience, device and precision.
        on_epoch: called after each validation with {"epoch", "step", "train_loss", "val_metrics"}.
        progress: ``progress(fraction, message)`` during training.
    """
    if len(train_texts) == 0 or len(val_texts) == 0:
        raise TastebudError("aspect training needs aspect-annotated reviews in both the train and val splits")
    info = resolve_device(config.device)
    defaults = device_defaults(info)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    model, tokenizer = load_aspect_model(base_model, aspects, head=config.head)
    rule = labels_say_at_least_one(train_targets)
    setattr(model.config, AT_LEAST_ONE_FLAG, rule)
    model.to(info.torch_device)
    precision = info.train_precision if config.precision == "auto" else config.precision
    if precision == "fp16" and info.device != "cuda":
        raise TastebudError("fp16 training needs a CUDA GPU; use --precision bf16 or fp32")
    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    suffix = aspect_suffix(model, tokenizer)
    train_segments = segment_reviews(tokenizer, train_texts, max_length=config.max_length, suffix=suffix)
    val_segments = segment_reviews(tokenizer, val_texts, max_length=config.max_length, suffix=suffix)
    batches = _Batches(train_segments, train_targets, config.batch_size, defaults.pad_multiple, config.seed)
    steps = len(batches) * config.epochs
    from transformers import get_scheduler

    from pipeline.train.loop import layerwise_param_groups

    # The review trainer's parameter groups: layer-wise decay and the output layer's multiplier when asked.
    groups = layerwise_param_groups(model, config.learning_rate, config.layer_lr_decay, config.weight_decay,
                                    head_lr_multiplier=config.head_lr_multiplier)
    optimizer = torch.optim.AdamW(groups, lr=config.learning_rate)

    scheduler = get_scheduler(config.lr_schedule, optimizer, num_warmup_steps=int(config.warmup_ratio * steps),
                              num_training_steps=steps)
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    log(f"aspect model: {len(aspects)} aspects, {len(train_texts)} train / {len(val_texts)} val reviews "
        f"({len(train_segments.review)} / {len(val_segments.review)} sentences), {info.name}, {precision}, "
        f"{config.head} head, lr {config.learning_rate:g}"
        + (f" (layer decay {config.layer_lr_decay:g})" if config.layer_lr_decay < 1 else "")
        + (f" (output layer x{config.head_lr_multiplier:g})" if config.head_lr_multiplier != 1 else "")
        + f", batch {config.batch_size} reviews, {config.epochs} epochs, "
        f"{config.max_length} tokens per sentence"
        + ("; every train review has an aspect, so every review gets at least one" if rule else ""))
    best_state, best_score, best_metrics, stale = None, -1.0, {}, 0
    history: list[dict] = []
    step, started, seen = 0, time.perf_counter(), 0
    for epoch in range(1, config.epochs + 1):
        model.train()
        losses = []
        for batch in batches.epoch():
            ids, mask = batch["input_ids"].to(info.torch_device), batch["attention_mask"].to(info.torch_device)
            with torch.autocast(info.device, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
                logits = model(input_ids=ids, attention_mask=mask).logits
            mentioned, polarity, _ = pool_reviews(logits.float(), batch["review"].to(info.torch_device), batch["n"])
            loss = aspect_loss(mentioned, polarity, batch["targets"].to(info.torch_device))
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()))
            step += 1
            seen += batch["n"]
            if progress is not None and (step % 10 == 0 or step == steps):
                progress(step / steps, f"epoch {epoch}/{config.epochs}, step {step}/{steps}, loss {np.mean(losses[-10:]):.4f}")
        model.eval()
        p_m, p_pol, _ = predict_aspects(model, tokenizer, val_texts, max_length=config.max_length, device=info,
                                        segments=val_segments)
        metrics = aspect_metrics(val_targets, p_m, p_pol, aspects)
        entry = {"epoch": epoch, "step": step, "train_loss": float(np.mean(losses)) if losses else None,
                 "val_metrics": metrics}
        history.append({"epoch": epoch, "train_loss": entry["train_loss"], "val_score": metrics["score"],
                        "val_detection_f1": metrics["detection"]["micro_f1"],
                        "val_polarity_accuracy": metrics["polarity"]["accuracy"]})
        log(f"epoch {epoch}: train loss {entry['train_loss']:.4f}; validation {headline(metrics)}")
        if on_epoch is not None:
            on_epoch(entry)
        if metrics["score"] > best_score + 1e-4:
            best_score, best_metrics, stale = metrics["score"], metrics, 0
            best_state = copy.deepcopy({k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()})
        else:
            stale += 1
            if config.early_stopping_patience and stale >= config.early_stopping_patience:
                log(f"early stop: no better validation score for {stale} epochs")
                break
    duration = time.perf_counter() - started
    model.load_state_dict(best_state)
    model.to("cpu").eval()
    # The mention threshold that maximises validation micro-F1, baked into the head so that every reader
    # (store, dashboard) keeps using p >= 0.5.
    cpu = resolve_device("cpu")
    p_m, p_pol, _ = predict_aspects(model, tokenizer, val_texts, max_length=config.max_length, device=cpu,
                                    segments=val_segments, at_least_one_rule=False)
    threshold = best_threshold(val_targets, p_m, at_least_one_rule=rule)
    if threshold != 0.5:
        bake_threshold(model, threshold)
        p_m, p_pol, _ = predict_aspects(model, tokenizer, val_texts, max_length=config.max_length, device=cpu,
                                        segments=val_segments)
        best_metrics = aspect_metrics(val_targets, p_m, p_pol, aspects)
        log(f"mention threshold {threshold:.3f} fitted on validation: {headline(best_metrics)}")
    return FitResult(model=model, tokenizer=tokenizer, val_metrics=best_metrics, history=history,
                     duration_s=round(duration, 2), device=info.name, precision=precision, threshold=threshold,
                     examples_per_s=round(seen / duration, 2) if duration else 0.0)


def scoring_copy(model, device: DeviceInfo | None = None):
    """A copy of ``model`` prepared for scoring on ``device`` (cast or quantized as the device prefers)."""
    return prepare_for_inference(copy.deepcopy(model), device)
