"""Batched inference for sequence classifiers, tuned for CPUs with bf16 matrix units.

What makes it fast (measured in bench/RESULTS.md, "Scoring"):

- Texts are tokenized once by the fast tokenizer, sorted by length and cut into batches
  padded only to their own longest text (dynamic padding), so short reviews do not pay
  for long ones. Batches hold up to ``batch_size`` texts and at most ``max_batch_tokens``
  padded tokens, which bounds activation memory when ``batch_size`` is raised for short
  texts (with the defaults, 32 x 256 tokens, the token cap never binds).
- Padded lengths are rounded up to a multiple of ``PAD_MULTIPLE``, bounding the number of
  distinct input shapes (oneDNN prepares kernels per shape; a few dozen shapes stay cached).
- ``torch.inference_mode`` and, where :mod:`pipeline.device` says the hardware has it,
  bf16: autocast for a model we must not change, or the weights themselves cast to bf16
  by :func:`prepare_for_inference` for a scoring copy (cheaper: no per-call weight casts).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from pipeline.device import DeviceInfo, resolve_device

# Texts per forward pass at most; 32 measured best with bf16 on a 2-core AMX CPU.
DEFAULT_BATCH_SIZE = 32
# Padded tokens per forward pass at most (batch rows x padded length): bounds activation memory.
DEFAULT_MAX_BATCH_TOKENS = 8192
# Padded lengths are multiples of this, bounding the number of distinct input shapes.
PAD_MULTIPLE = 16
# Truncation length when the model's metadata does not say.
DEFAULT_MAX_LENGTH = 256


def prepare_for_inference(model, device: DeviceInfo | None = None, *, cast_weights: bool = True):
    """Move ``model`` to the device in eval mode, casting its weights to bf16/fp16 where the device
    runs reduced precision natively. Changes ``model`` in place: use it on a scoring copy only.

    Args:
        model: a ``*ForSequenceClassification`` model.
        device: where to run (default: :func:`resolve_device`).
        cast_weights: cast to the device's autocast dtype (False keeps fp32 and relies on autocast).

    Returns:
        The same model object, ready for :func:`predict_proba`.

    Example:
        >>> model = prepare_for_inference(load_classifier(path)[0])  # doctest: +SKIP
    """
    info = device or resolve_device()
    model = model.to(info.torch_device).eval()
    if cast_weights and info.autocast_dtype is not None:
        model = model.to(info.autocast_dtype)
    return model


def _batches(lengths: np.ndarray, batch_size: int, max_batch_tokens: int) -> Iterator[np.ndarray]:
    """Index arrays of length-sorted batches within the row and padded-token limits."""
    order = np.argsort(lengths, kind="stable")
    start, n = 0, len(order)
    while start < n:
        stop = start + 1
        while stop < n and stop - start < batch_size:
            padded = -(-int(lengths[order[stop]]) // PAD_MULTIPLE) * PAD_MULTIPLE
            if (stop - start + 1) * padded > max_batch_tokens:
                break
            stop += 1
        yield order[start:stop]
        start = stop


def _pad(input_ids: list[list[int]], idx: np.ndarray, lengths: np.ndarray, pad_id: int):
    width = -(-int(lengths[idx].max()) // PAD_MULTIPLE) * PAD_MULTIPLE
    ids = np.full((len(idx), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(idx), width), dtype=np.int64)
    for row, i in enumerate(idx):
        ids[row, : lengths[i]] = input_ids[i]
        mask[row, : lengths[i]] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)


def count_tokens(tokenizer, texts: Sequence[str], *, max_length: int = DEFAULT_MAX_LENGTH) -> int:
    """Tokens the model would see for ``texts`` (after truncation, without padding)."""
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length, padding=False)
    return sum(len(ids) for ids in encoded["input_ids"])


def predict_proba(
    model,
    tokenizer,
    texts: Sequence[str],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_length: int = DEFAULT_MAX_LENGTH,
    device: DeviceInfo | None = None,
    autocast: bool = True,
    max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
) -> np.ndarray:
    """Class probabilities for ``texts`` in input order, shape (n, num_labels), float32.

    Args:
        model: a ``*ForSequenceClassification`` model (fp32, or cast by :func:`prepare_for_inference`).
        tokenizer: its tokenizer.
        texts: the texts to score.
        batch_size: texts per forward pass at most.
        max_length: truncation length in tokens.
        device: where to run (default: :func:`resolve_device`).
        autocast: use the device's reduced-precision autocast when it has one.
        max_batch_tokens: padded tokens per forward pass at most.

    Example:
        >>> predict_proba(model, tok, ["Great tacos", "Cold fries"]).shape  # doctest: +SKIP
        (2, 3)
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if max_length < 2:
        raise ValueError("max_length must be at least 2")
    n = len(texts)
    num_labels = model.config.num_labels
    if n == 0:
        return np.zeros((0, num_labels), dtype=np.float32)
    info = device or resolve_device()
    param = next(model.parameters())
    if param.device.type != info.device:
        model = model.to(info.torch_device)
    model.eval()
    encoded = tokenizer(
        [str(t) for t in texts], truncation=True, max_length=max_length, padding=False,
        return_attention_mask=False, return_token_type_ids=False,
    )
    input_ids = encoded["input_ids"]
    lengths = np.fromiter((len(ids) for ids in input_ids), dtype=np.int64, count=n)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out = np.empty((n, num_labels), dtype=np.float32)
    dtype = info.autocast_dtype if autocast else None
    use_autocast = dtype is not None and param.dtype == torch.float32
    with torch.inference_mode(), torch.autocast(info.device, dtype=dtype or torch.float32, enabled=use_autocast):
        for idx in _batches(lengths, batch_size, max(max_batch_tokens, PAD_MULTIPLE)):
            ids, mask = _pad(input_ids, idx, lengths, pad_id)
            logits = model(input_ids=ids.to(info.torch_device), attention_mask=mask.to(info.torch_device)).logits
            out[idx] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
    return out


def _metadata_value(path: str, key: str):
    """``key`` from a model's tastebud.json, at the top level or in its training config."""
    from pipeline.models.loading import read_metadata

    meta = read_metadata(path)
    return meta.get(key) or (meta.get("config") or {}).get(key)


class ClassifierPredictor:
    """A saved classifier directory, loaded once and prepared for fast scoring.

    Loads its own copy of the model, so casting the weights to bf16 touches nothing else.
    The truncation length and strategy ("head" or "head_tail", see :mod:`pipeline.models.truncation`)
    come from the model's ``tastebud.json`` unless given, so scoring cuts texts the way
    training did.

    Example:
        >>> ClassifierPredictor("models/m1").predict_proba(["Great tacos"]).shape  # doctest: +SKIP
        (1, 3)
    """

    def __init__(
        self,
        path: str,
        *,
        device: DeviceInfo | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_length: int | None = None,
        truncation: str | None = None,
        cast_weights: bool = True,
    ):
        from pipeline.models.loading import load_classifier
        from pipeline.models.truncation import TRUNCATIONS, HeadTailTokenizer

        self.path = str(path)
        self.device = device or resolve_device()
        self.truncation = truncation or _metadata_value(self.path, "truncation") or "head"
        if self.truncation not in TRUNCATIONS:
            raise ValueError(f"truncation must be one of {', '.join(TRUNCATIONS)}, got {self.truncation!r}")
        model, tokenizer = load_classifier(self.path)
        self.tokenizer = HeadTailTokenizer(tokenizer) if self.truncation == "head_tail" else tokenizer
        self.model = prepare_for_inference(model, self.device, cast_weights=cast_weights)
        self.batch_size = batch_size
        self.max_length = int(max_length or _metadata_value(self.path, "max_length") or DEFAULT_MAX_LENGTH)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """(n, 3) probabilities for ``texts``."""
        return predict_proba(self.model, self.tokenizer, texts, batch_size=self.batch_size,
                             max_length=self.max_length, device=self.device)
