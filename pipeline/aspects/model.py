"""The aspect model: one encoder, every aspect at once, a review read sentence by sentence.

Formulation (bench/RESULTS.md "Aspects" has the figures): one encoder pass per sentence answers every
aspect, with ``4 * A`` outputs for ``A`` aspects. Output ``4a`` is aspect a's "mentioned" logit,
``4a+1 .. 4a+3`` its negative / neutral / positive logits. By default (the "tokens" head,
:class:`pipeline.models.heads.AspectTokenClassifier`) each aspect has its own input token after the
sentence ("[CLS] sentence [SEP] <food> <service> ... [SEP]", :func:`aspect_suffix`) whose last hidden
state gives its outputs: the aspect-conditioned reading of the sentence-pair formulation ("sentence",
"aspect") at the price of a few tokens, where the pair formulation reads each sentence once per aspect.
The "mean" and "attention" heads pool the sentence instead. Saved and loaded like any tastebud model (the
scoring and speed work of review models applies unchanged); ``tastebud.json`` says ``"task": "aspects"``
and lists the aspects in head order.

A review is cut into segments: its sentences (:mod:`pipeline.aspects.sentences`), a sentence longer than
the model's length cut into windows. Every segment is scored; the review's answer pools them:
- mentioned: the largest segment "mentioned" logit (a review speaks of the service if one sentence does);
- polarity: the segments' polarity logits averaged with weights softmax(mentioned logits), so the
  sentences that speak of the aspect decide its polarity;
- evidence: the segment with the largest "mentioned" logit.
Training pools the same way (multiple-instance learning), so a review labeled as a whole trains its
sentences, and a SemEval sentence is a review of one segment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.aspects.sentences import split_sentences
from pipeline.models.inference import EncodedTexts

OUTPUTS_PER_ASPECT = 4  # mentioned, negative, neutral, positive
POLARITY_NAMES = ("negative", "neutral", "positive")
IGNORE = -100


def head_labels(aspects: Sequence[str]) -> dict[int, str]:
    """id2label of an aspect model's outputs ("food:mentioned", "food:negative", ...)."""
    names = ("mentioned", *POLARITY_NAMES)
    return {OUTPUTS_PER_ASPECT * a + k: f"{aspect}:{names[k]}" for a, aspect in enumerate(aspects) for k in range(4)}


@dataclass(frozen=True)
class Segments:
    """The segments of ``n`` reviews: token ids (:class:`EncodedTexts`, one row per segment), which review each
    segment belongs to (``review``, ascending), and its character span in that review's text."""

    encoded: EncodedTexts
    review: np.ndarray  # int64, per segment
    spans: np.ndarray  # int64 (n_segments, 2)
    n_reviews: int


def aspect_suffix(model, tokenizer) -> tuple[int, ...]:
    """The token ids an aspect model wants after each segment's [SEP]: its aspect tokens and a closing
    [SEP] for :class:`pipeline.models.heads.AspectTokenClassifier`, nothing for the other heads."""
    ids = getattr(model, "aspect_ids", None)
    if ids is None:
        return ()
    sep = tokenizer.sep_token_id
    return tuple(int(i) for i in ids.tolist()) + ((int(sep),) if sep is not None else ())


def segment_reviews(tokenizer, texts: Sequence[str], *, max_length: int, suffix: Sequence[int] = ()) -> Segments:
    """Cut each text into sentence segments and tokenize them (special tokens included).

    A sentence of more than ``max_length`` tokens becomes several windows of at most that many, each with
    the span of the characters it covers; a text with no sentence (blank) gets one empty segment, so every
    review has at least one. ``suffix`` (:func:`aspect_suffix`) is appended after each segment's [SEP] and
    counts towards ``max_length``.
    """
    if max_length < 4 + len(suffix):
        raise ValueError(f"max_length must be at least {4 + len(suffix)}")
    pieces: list[str] = []
    owner: list[int] = []
    spans: list[tuple[int, int]] = []
    for i, text in enumerate(texts):
        found = split_sentences(str(text)) or [(0, 0)]
        for start, end in found:
            pieces.append(str(text)[start:end])
            owner.append(i)
            spans.append((start, end))
    encoded = tokenizer(pieces, add_special_tokens=False, return_offsets_mapping=True, return_attention_mask=False,
                        return_token_type_ids=False, truncation=False)
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    body = max_length - (cls_id is not None) - (sep_id is not None) - len(suffix)
    tail = list(suffix)
    rows: list[list[int]] = []
    seg_owner: list[int] = []
    seg_spans: list[tuple[int, int]] = []
    for ids, offsets, i, (start, end) in zip(encoded["input_ids"], encoded["offset_mapping"], owner, spans):
        for w in range(0, max(len(ids), 1), body):
            chunk = ids[w : w + body]
            rows.append(([cls_id] if cls_id is not None else []) + chunk + ([sep_id] if sep_id is not None else []) + tail)
            seg_owner.append(i)
            if chunk and len(ids) > body:
                seg_spans.append((start + offsets[w][0], start + offsets[min(w + body, len(ids)) - 1][1]))
            else:
                seg_spans.append((start, end))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return Segments(
        encoded=EncodedTexts.from_lists(rows, pad_id),
        review=np.asarray(seg_owner, dtype=np.int64),
        spans=np.asarray(seg_spans, dtype=np.int64).reshape(-1, 2),
        n_reviews=len(texts),
    )


def pool_reviews(logits: torch.Tensor, review: torch.Tensor, n_reviews: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pool segment logits ``(S, 4A)`` into review logits.

    Args:
        logits: segment outputs in the head layout above.
        review: ``(S,)`` index of each segment's review, in ``0..n_reviews-1``.

    Returns:
        ``(mentioned (R, A), polarity (R, A, 3), evidence (R, A))``: review "mentioned" logits, review
        polarity logits, and the index of the segment that carried each aspect most.
    """
    seg = logits.float().reshape(logits.shape[0], -1, OUTPUTS_PER_ASPECT)
    mention, polarity = seg[..., 0], seg[..., 1:]
    n_aspects = mention.shape[1]
    index = review.view(-1, 1).expand(-1, n_aspects)
    top = torch.full((n_reviews, n_aspects), float("-inf"), dtype=mention.dtype, device=mention.device)
    top = top.scatter_reduce(0, index, mention, reduce="amax", include_self=True)
    weights = torch.exp(mention - top[review])  # softmax over each review's segments, per aspect
    total = torch.zeros_like(top).index_add_(0, review, weights)
    weights = weights / total[review]
    pooled = torch.zeros((n_reviews, n_aspects, 3), dtype=mention.dtype, device=mention.device)
    pooled = pooled.index_add_(0, review, weights.unsqueeze(-1) * polarity)
    # The carrying segment: the first whose logit reaches the review's maximum.
    hit = (mention >= top[review]).float()
    positions = torch.arange(mention.shape[0], device=mention.device, dtype=mention.dtype).view(-1, 1)
    candidate = torch.where(hit > 0, positions, torch.full_like(positions.expand_as(mention), float("inf")))
    evidence = torch.full_like(top, float("inf")).scatter_reduce(0, index, candidate, reduce="amin", include_self=True)
    return top, pooled, evidence.long()


def aspect_loss(mentioned: torch.Tensor, polarity: torch.Tensor, targets: torch.Tensor,
                *, mention_weight: torch.Tensor | None = None, polarity_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Training loss of pooled review logits against ``targets (R, A)`` holding per aspect
    0 absent, 1 negative, 2 neutral, 3 positive, 4 conflict (mentioned, polarity not trained), or
    :data:`IGNORE` (no label: the aspect is left out).

    Detection is binary cross-entropy on the "mentioned" logit (``mention_weight``: per-aspect weight of
    the positive class); polarity is cross-entropy over the three polarities for aspects labeled with one.
    """
    known = targets != IGNORE
    present = ((targets >= 1) & known).float()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(
        mentioned, present, reduction="none", pos_weight=mention_weight
    )
    detection = (bce * known.float()).sum() / known.float().sum().clamp(min=1)
    polar = (targets >= 1) & (targets <= 3)
    if polar.any():
        polarity_loss = torch.nn.functional.cross_entropy(
            polarity[polar], targets[polar] - 1, weight=polarity_weight
        )
    else:
        polarity_loss = polarity.sum() * 0.0
    return detection + polarity_loss


def at_least_one(mentioned: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """Pooled "mentioned" logits ``(R, A)`` where every review speaks of at least one aspect: a review with
    no logit at or above 0 (p 0.5, the mention threshold) has its largest lifted to exactly 0, so its most
    likely aspect counts as mentioned with p 0.5, the borderline it is. ``keep`` (``(R,)`` bool) leaves
    the reviews where it is False (blank texts) as they are.

    SemEval annotates every sentence with at least one category ("anecdotes/miscellaneous" when nothing
    more specific fits); a model trained on such labels turns the rule on
    (:func:`pipeline.aspects.fit.fit_aspects`), and it matters most where a strict mention threshold
    would leave a sentence with none.
    """
    top, where = mentioned.max(dim=1)
    lift = top < 0
    if keep is not None:
        lift &= keep
    if not bool(lift.any()):
        return mentioned
    out = mentioned.clone()
    rows = torch.nonzero(lift).flatten()
    out[rows, where[rows]] = 0.0
    return out


def review_probabilities(mentioned: torch.Tensor, polarity: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(p_mentioned (R, A), p_polarity (R, A, 3)) from pooled logits."""
    return torch.sigmoid(mentioned).cpu().numpy(), torch.softmax(polarity, dim=-1).cpu().numpy()


# Target codes of aspect label values (see :func:`aspect_loss`).
TARGET_OF = {"absent": 0, "negative": 1, "neutral": 2, "positive": 3, "conflict": 4}


def targets_from_frame(frame, aspects: Sequence[str]) -> np.ndarray:
    """``(R, A)`` target codes of a wide label frame (one column per aspect, as
    :func:`store.aspects.fetch_aspect_split` returns); a missing column is :data:`IGNORE`."""
    out = np.full((len(frame), len(aspects)), IGNORE, dtype=np.int64)
    for a, aspect in enumerate(aspects):
        if aspect in frame.columns:
            out[:, a] = frame[aspect].map(TARGET_OF).fillna(IGNORE).astype(np.int64).to_numpy()
    return out
