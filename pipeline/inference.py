"""Batched inference for sequence classifiers.

Texts are tokenized once, sorted by length and cut into batches padded only to the
longest text in each batch (dynamic padding), so short reviews do not pay for long
ones. Runs under ``torch.inference_mode`` and, where the device supports it, bf16
autocast (see :mod:`pipeline.device`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from pipeline.device import DeviceInfo, resolve_device


def predict_proba(
    model,
    tokenizer,
    texts: Sequence[str],
    *,
    batch_size: int = 64,
    max_length: int = 256,
    device: DeviceInfo | None = None,
    autocast: bool = True,
) -> np.ndarray:
    """Class probabilities for ``texts`` in input order, shape (n, num_labels), float32.

    Args:
        model: a ``*ForSequenceClassification`` model.
        tokenizer: its tokenizer.
        texts: the texts to score.
        batch_size: texts per forward pass.
        max_length: truncation length in tokens.
        device: where to run (default: :func:`resolve_device`).
        autocast: use the device's reduced-precision autocast when it has one.

    Example:
        >>> predict_proba(model, tok, ["Great tacos", "Cold fries"]).shape  # doctest: +SKIP
        (2, 3)
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    n = len(texts)
    num_labels = model.config.num_labels
    if n == 0:
        return np.zeros((0, num_labels), dtype=np.float32)
    info = device or resolve_device()
    model = model.to(info.torch_device).eval()
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length, padding=False)
    input_ids = encoded["input_ids"]
    order = np.argsort([len(ids) for ids in input_ids], kind="stable")
    out = np.empty((n, num_labels), dtype=np.float32)
    dtype = info.autocast_dtype if autocast else None
    with torch.inference_mode(), torch.autocast(info.device, dtype=dtype or torch.float32, enabled=dtype is not None):
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            features = [{k: encoded[k][i] for k in encoded.keys()} for i in idx]
            batch = tokenizer.pad(features, return_tensors="pt")
            batch = {k: v.to(info.torch_device) for k, v in batch.items()}
            logits = model(**batch).logits.float()
            out[idx] = torch.softmax(logits, dim=-1).cpu().numpy()
    return out
