"""Batched inference for sequence classifiers, on a CPU or a GPU.

What makes it fast (measured in bench/RESULTS.md, "Scoring", and its round 3 GPU sections):

- Texts are tokenized once by the fast tokenizer into one flat token array with per-text
  offsets (:func:`encode_texts`); this step holds no model and can run in another thread
  while the device works on the previous chunk (:mod:`pipeline.loop.scoring` does so).
- Texts are sorted by length and cut into batches padded only to their own longest text,
  holding up to ``batch_size`` texts and at most ``max_batch_tokens`` padded tokens
  (:func:`token_budget_batches`). Sizes come from :func:`pipeline.device.device_defaults`:
  32 texts / 8k tokens on a CPU, thousands of texts / 64k tokens on a GPU, where the card
  only runs at its pace when each forward pass is large.
- Padding is done with array indexing (no Python loop per text), padded lengths are
  multiples of a small number (few distinct shapes: oneDNN and cuBLAS prepare kernels per
  shape), and on a GPU batches are copied from pinned memory without blocking, results
  stay on the device, and the host waits once per call, not once per batch.
- ``torch.inference_mode`` and, where :mod:`pipeline.device` says the hardware has it,
  bf16: autocast for a model we must not change, or the weights themselves cast to bf16
  by :func:`prepare_for_inference` for a scoring copy (cheaper: no per-call weight casts).
  Where :mod:`pipeline.device` chooses int8 (opt-in on a CPU without AMX), :func:`prepare_for_inference`
  quantizes a scoring copy's encoder Linear layers instead (:func:`quantize_linear_int8`).
  BERT runs with PyTorch's fused scaled-dot-product attention (transformers' "sdpa").
- On a CPU without AMX, :mod:`pipeline.device` splits the cores into **streams**: each takes the
  next batch and runs its forward pass with its own intra-op threads (one on a 2-core machine).
  The products of a 22M-parameter encoder are too small for two threads to share well (each
  layer waits on an OpenMP barrier many times per pass); two independent passes keep both cores
  busy. The outputs are the same numbers, batch for batch (:func:`_run_streams`).
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.device import DeviceInfo, device_defaults, resolve_device

# Padded lengths are multiples of this on a CPU unless the device defaults say otherwise.
PAD_MULTIPLE = 16
# Truncation length when the model's metadata does not say.
DEFAULT_MAX_LENGTH = 256


@dataclass(frozen=True)
class EncodedTexts:
    """Token ids of ``n`` texts, unpadded: text i is ``flat[offsets[i] : offsets[i] + lengths[i]]``."""

    flat: np.ndarray  # int64 token ids of every text, back to back
    offsets: np.ndarray  # int64 start of each text in ``flat``
    lengths: np.ndarray  # int64 tokens per text (after truncation)
    pad_id: int

    def __len__(self) -> int:
        return len(self.lengths)

    @classmethod
    def from_lists(cls, rows: Sequence[Sequence[int]], pad_id: int) -> EncodedTexts:
        """Pack ragged token-id lists (the fast tokenizer's output) into one flat array."""
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        flat = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=int(lengths.sum()))
        offsets = np.zeros(len(rows), dtype=np.int64)
        if len(rows) > 1:
            np.cumsum(lengths[:-1], out=offsets[1:])
        return cls(flat, offsets, lengths, pad_id)

    def padded(self, idx: np.ndarray, pad_multiple: int = PAD_MULTIPLE) -> tuple[np.ndarray, np.ndarray]:
        """(input_ids, attention_mask) of the texts ``idx``, padded to a multiple of ``pad_multiple``."""
        lengths = self.lengths[idx]
        width = _round_up(int(lengths.max()), pad_multiple)
        cols = np.arange(width, dtype=np.int64)
        mask = cols[None, :] < lengths[:, None]
        positions = np.where(mask, self.offsets[idx][:, None] + cols[None, :], 0)
        ids = np.where(mask, self.flat[positions] if len(self.flat) else 0, self.pad_id)
        return ids, mask.astype(np.int64)


def _round_up(value: int, multiple: int) -> int:
    return -(-max(value, 1) // multiple) * multiple


def encode_texts(tokenizer, texts: Sequence[str], *, max_length: int = DEFAULT_MAX_LENGTH) -> EncodedTexts:
    """Tokenize ``texts`` (truncated to ``max_length``) into :class:`EncodedTexts`.

    A :class:`pipeline.models.truncation.HeadTailTokenizer` cuts long texts head+tail here.
    Holds no model: safe to run in a worker thread (the fast tokenizer releases the GIL).

    Example:
        >>> encode_texts(tok, ["Great tacos", "Cold fries"], max_length=128).lengths  # doctest: +SKIP
        array([5, 5])
    """
    if max_length < 2:
        raise ValueError("max_length must be at least 2")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    if len(texts) == 0:
        return EncodedTexts.from_lists([], pad_id)
    encoded = tokenizer(
        [str(t) for t in texts], truncation=True, max_length=max_length, padding=False,
        return_attention_mask=False, return_token_type_ids=False,
    )
    return EncodedTexts.from_lists(encoded["input_ids"], pad_id)


def token_budget_batches(
    lengths: np.ndarray, batch_size: int, max_batch_tokens: int, *, pad_multiple: int = PAD_MULTIPLE
) -> Iterator[np.ndarray]:
    """Index arrays of length-sorted batches: at most ``batch_size`` texts and ``max_batch_tokens``
    padded tokens each (a single longer text still gets a batch of its own). Longest batches come
    first, so a GPU's memory pool is sized once by the largest batch; indices inside a batch ascend
    by length.

    Example:
        >>> [b.tolist() for b in token_budget_batches(np.array([3, 40, 5]), 2, 64)]
        [[1], [0, 2]]
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    order = np.argsort(lengths, kind="stable")
    padded = -(-np.maximum(lengths[order], 1) // pad_multiple) * pad_multiple
    cuts, start, n = [], 0, len(order)
    while start < n:
        window = padded[start : start + batch_size]
        # rows * (padded length of the longest, i.e. the last, row) grows with rows: count the prefix that fits
        fits = int(np.count_nonzero(np.arange(1, len(window) + 1) * window <= max_batch_tokens))
        stop = start + max(1, fits)
        cuts.append((start, stop))
        start = stop
    for start, stop in reversed(cuts):
        yield order[start:stop]


# Kept for callers of the previous name.
_batches = token_budget_batches


def quantize_linear_int8(model):
    """Replace the encoder's ``nn.Linear`` layers of ``model`` by dynamically quantized int8 ones, in place.

    Weights are quantized once, per output channel (symmetric); activations are quantized per
    forward pass from their observed range, and every other layer (embeddings, LayerNorm,
    attention softmax) stays fp32. The pooler and classification head stay fp32 too: they run
    once per text, so int8 would save nothing there, and the head's few weights decide the label.
    Per-channel weights are what keep the labels: with one scale per matrix (PyTorch's default),
    macro-F1 fell 0.041 on Yelp reviews, against 0.005 per-channel (bench/RESULTS.md, issue 22). We
    use PyTorch's own dynamic quantization (fbgemm kernels) rather than ONNX Runtime: its int8
    graph took 1.5x the CPU seconds of this one in bench/scoring_bench.py (issue 22).

    Args:
        model: a ``*ForSequenceClassification`` model in fp32, on the CPU.

    Returns:
        The same model object.

    Example:
        >>> quantize_linear_int8(load_classifier(path)[0])  # doctest: +SKIP
    """
    import warnings

    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    encoder = _encoder_of(model)
    if encoder is None:
        raise ValueError(f"cannot find the encoder layers of {type(model).__name__} to quantize")
    # PyTorch marks torch.ao.quantization deprecated in favour of torchao, whose int8 CPU path
    # needs torch.compile to be fast; pipeline.device only picks int8 where quantize_dynamic exists.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning, message=".*quantize_per_channel.*")
        quantize_dynamic(encoder, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)
    return model


def _encoder_of(model):
    """The transformer layer stack of a ``*ForSequenceClassification`` model (BERT-like ``.encoder``), or of a
    :class:`pipeline.models.heads.MeanPoolClassifier` (whose ``encoder`` is the whole pre-trained model)."""
    base = getattr(model, getattr(model, "base_model_prefix", ""), None) or getattr(model, "base_model", None)
    if base is None and hasattr(getattr(model, "encoder", None), "config"):
        base = model.encoder
    return getattr(base, "encoder", None) or getattr(base, "transformer", None)


def is_int8_quantized(model) -> bool:
    """True when ``model`` holds dynamically quantized int8 Linear layers."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    return any(isinstance(m, DynamicLinear) for m in model.modules())


def prepare_for_inference(model, device: DeviceInfo | None = None, *, cast_weights: bool = True):
    """Move ``model`` to the device in eval mode, casting its weights to bf16/fp16 where the device
    runs reduced precision natively, or quantizing its encoder's Linear layers to int8 on a CPU
    where :mod:`pipeline.device` chose int8 (no AMX, ``TASTEBUD_CPU_INT8=1``). Changes ``model`` in place: use it on a
    scoring copy only.

    Args:
        model: a ``*ForSequenceClassification`` model.
        device: where to run (default: :func:`resolve_device`).
        cast_weights: cast or quantize as the device prefers (False keeps fp32 and relies on autocast).

    Returns:
        The same model object (or its torch.compile wrapper when the device defaults ask for it).

    Example:
        >>> model = prepare_for_inference(load_classifier(path)[0])  # doctest: +SKIP
    """
    info = device or resolve_device()
    model = model.to(info.torch_device).eval()
    if cast_weights and info.autocast_dtype is not None:
        model = model.to(info.autocast_dtype)
    elif cast_weights and info.int8_linear and info.device == "cpu" and not is_int8_quantized(model):
        model = quantize_linear_int8(model)
    if device_defaults(info).compile:
        model = torch.compile(model, dynamic=True)
    return model


def count_tokens(tokenizer, texts: Sequence[str], *, max_length: int = DEFAULT_MAX_LENGTH) -> int:
    """Tokens the model would see for ``texts`` (after truncation, without padding)."""
    return int(encode_texts(tokenizer, texts, max_length=max_length).lengths.sum())


def predict_encoded(
    model,
    encoded: EncodedTexts,
    *,
    batch_size: int | None = None,
    device: DeviceInfo | None = None,
    autocast: bool = True,
    max_batch_tokens: int | None = None,
    logits: bool = False,
) -> np.ndarray:
    """Class probabilities of already tokenized texts, in input order, shape (n, num_labels), float32
    (the raw output logits with ``logits=True``: an aspect model's outputs are not one distribution).

    Args:
        model: a ``*ForSequenceClassification`` model (fp32, or cast by :func:`prepare_for_inference`).
        encoded: from :func:`encode_texts`.
        batch_size: texts per forward pass at most (default: the device's).
        device: where to run (default: :func:`resolve_device`).
        autocast: use the device's reduced-precision autocast when it has one.
        max_batch_tokens: padded tokens per forward pass at most (default: the device's).
    """
    info = device or resolve_device()
    defaults = device_defaults(info)
    batch_size = batch_size or defaults.score_batch_size
    max_batch_tokens = max_batch_tokens or defaults.score_batch_tokens
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    n, num_labels = len(encoded), model.config.num_labels
    if n == 0:
        return np.zeros((0, num_labels), dtype=np.float32)
    param = next(model.parameters())
    if param.device.type != info.device:
        model = model.to(info.torch_device)
    model.eval()
    dev = info.torch_device
    on_gpu = info.device == "cuda"
    out = torch.empty((n, num_labels), dtype=torch.float32, device=dev)
    dtype = info.autocast_dtype if autocast else None
    use_autocast = dtype is not None and param.dtype == torch.float32
    batches = list(token_budget_batches(encoded.lengths, batch_size, max(max_batch_tokens, defaults.pad_multiple),
                                        pad_multiple=defaults.pad_multiple))
    if info.device == "cpu" and info.streams > 1 and len(batches) > 1 and not use_autocast:
        _run_streams(model, encoded, batches, out, streams=info.streams, threads=info.threads,
                     pad_multiple=defaults.pad_multiple, logits=logits)
        return out.numpy()
    with torch.inference_mode(), torch.autocast(info.device, dtype=dtype or torch.float32, enabled=use_autocast):
        for idx in batches:
            ids, mask = encoded.padded(idx, defaults.pad_multiple)
            ids_t, mask_t, idx_t = (torch.from_numpy(a) for a in (ids, mask, idx))
            if on_gpu and defaults.pin_memory:
                ids_t, mask_t, idx_t = ids_t.pin_memory(), mask_t.pin_memory(), idx_t.pin_memory()
            ids_t, mask_t, idx_t = (t.to(dev, non_blocking=on_gpu) for t in (ids_t, mask_t, idx_t))
            output = model(input_ids=ids_t, attention_mask=mask_t).logits.float()
            # Results stay on the device; the host waits once, below.
            out.index_copy_(0, idx_t, output if logits else torch.softmax(output, dim=-1))
    return out.cpu().numpy()


def _run_streams(model, encoded: EncodedTexts, batches: list[np.ndarray], out: torch.Tensor, *, streams: int,
                 threads: int, pad_multiple: int, logits: bool) -> None:
    """Run ``batches`` on ``streams`` threads at once, ``threads // streams`` intra-op threads each, writing
    each batch's rows of ``out`` (a CPU tensor). The first error stops the other streams and is raised here."""
    work: queue.SimpleQueue = queue.SimpleQueue()
    # The costliest batches (padded tokens) first, the cheap ones fill in at the end: the streams end together.
    for idx in sorted(batches, key=lambda b: -len(b) * int(encoded.lengths[b].max())):
        work.put(idx)
    per_stream = max(1, threads // streams)
    failed: list[BaseException] = []
    caller_threads = torch.get_num_threads()

    def stream():
        # OpenMP's thread count is per thread; grad mode is per thread too.
        torch.set_num_threads(per_stream)
        try:
            with torch.inference_mode():
                while not failed:
                    try:
                        idx = work.get_nowait()
                    except queue.Empty:
                        return
                    ids, mask = encoded.padded(idx, pad_multiple)
                    output = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits.float()
                    out[torch.from_numpy(idx)] = output if logits else torch.softmax(output, dim=-1)
        except BaseException as exc:  # handed to the caller
            failed.append(exc)

    workers = [threading.Thread(target=stream, name=f"tastebud-stream-{k}", daemon=True) for k in range(streams)]
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    except BaseException as exc:  # e.g. Ctrl-C while waiting: stop the streams after their current batch
        failed.append(exc)
        raise
    finally:
        # MKL keeps one thread count for the whole process: give the caller its own back.
        torch.set_num_threads(caller_threads)
    if failed:
        raise failed[0]


def predict_proba(
    model,
    tokenizer,
    texts: Sequence[str],
    *,
    batch_size: int | None = None,
    max_length: int = DEFAULT_MAX_LENGTH,
    device: DeviceInfo | None = None,
    autocast: bool = True,
    max_batch_tokens: int | None = None,
) -> np.ndarray:
    """Class probabilities for ``texts`` in input order, shape (n, num_labels), float32.

    Args:
        model: a ``*ForSequenceClassification`` model (fp32, or cast by :func:`prepare_for_inference`).
        tokenizer: its tokenizer.
        texts: the texts to score.
        batch_size: texts per forward pass at most (default: the device's).
        max_length: truncation length in tokens.
        device: where to run (default: :func:`resolve_device`).
        autocast: use the device's reduced-precision autocast when it has one.
        max_batch_tokens: padded tokens per forward pass at most (default: the device's).

    Example:
        >>> predict_proba(model, tok, ["Great tacos", "Cold fries"]).shape  # doctest: +SKIP
        (2, 3)
    """
    if batch_size is not None and batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    info = device or resolve_device()
    piece = device_defaults(info).tokenize_ahead
    kwargs = dict(batch_size=batch_size, device=info, autocast=autocast, max_batch_tokens=max_batch_tokens)
    if not piece or len(texts) <= piece:
        return predict_encoded(model, encode_texts(tokenizer, texts, max_length=max_length), **kwargs)
    # Many texts: tokenize the next piece in a thread while the device scores this one.
    pieces = [texts[start : start + piece] for start in range(0, len(texts), piece)]
    outputs = []
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(encode_texts, tokenizer, pieces[0], max_length=max_length)
        for k in range(len(pieces)):
            encoded = future.result()
            if k + 1 < len(pieces):
                future = pool.submit(encode_texts, tokenizer, pieces[k + 1], max_length=max_length)
            outputs.append(predict_encoded(model, encoded, **kwargs))
    return np.concatenate(outputs)
