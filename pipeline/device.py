"""The compute device and precision, decided once.

Nothing else in tastebud calls ``torch.cuda.is_available()``. How a CPU scores is decided
here, from its flags, never assumed (bench/RESULTS.md, "scoring" and issue 22):

- AMX bf16 tiles: bf16 weights (several times fp32; faster than int8 there too).
- No AMX: fp32 (bf16 would be emulated and slower). Where the CPU has AVX2 (every x86
  server CPU since 2013, e.g. AMD EPYC), ``TASTEBUD_CPU_INT8=1`` quantizes the encoder's
  Linear layers to int8 (dynamic, per-channel weights): 1.3-1.5x fewer CPU seconds than
  fp32, but only 95-97% of labels equal to fp32 on Yelp reviews with a 1-epoch model, under
  the 99% the product asks for, so it is not the default (:data:`INT8_BY_DEFAULT`).

- No AMX, several cores: **parallel inference streams**. The cores run independent forward
  passes on different batches, one intra-op thread each, instead of every core splitting each
  matrix product of one pass. A small encoder's products are too small to split well: on the
  2-core AMD EPYC, two streams of one thread scored 1.3x the reviews per second of one stream of
  two threads, with identical outputs (bench/RESULTS.md, issue 22). AMX keeps one stream: its
  bf16 figures were measured that way and are not re-measured here.

``TASTEBUD_CPU_BF16=0/1`` and ``TASTEBUD_CPU_INT8=0/1`` override the detection (bf16 wins
when both are on); ``TASTEBUD_CPU_THREADS=N`` caps the CPU threads and
``TASTEBUD_CPU_STREAMS=N`` sets the streams (1: one forward pass at a time, every thread on it).

:func:`device_defaults` holds every size that depends on the device (scoring batches and
token budgets, chunk sizes, data-loader workers, pinned memory), so tuning for a new kind
of machine is one edit here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from functools import lru_cache

import torch

from store.settings import current_settings


@dataclass(frozen=True)
class DeviceInfo:
    device: str  # "cuda", "mps" or "cpu"
    name: str
    autocast_dtype: torch.dtype | None  # dtype for torch.autocast at inference, None for fp32
    train_precision: str  # "bf16", "fp16" or "fp32" for training
    threads: int
    # CPU scoring copies get int8 Linear layers (dynamic quantization); see prepare_for_inference.
    int8_linear: bool = False
    # Independent forward passes at once on a CPU, threads // streams intra-op threads each
    # (pipeline.models.inference.predict_encoded); 1 on a GPU.
    streams: int = 1

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@lru_cache(maxsize=1)
def cpu_has_amx_bf16() -> bool:
    """True when the CPU has AMX bf16 tiles (``TASTEBUD_CPU_BF16`` overrides)."""
    override = current_settings().cpu_bf16
    return override if override is not None else "amx_bf16" in _cpu_flags()


# int8 Linear layers on a CPU without AMX where nothing says otherwise. Off: on 600 Yelp reviews
# (1-epoch model, macro-F1 0.58) 96.7% of labels matched fp32 (99.1% where fp32's top two
# classes are more than 0.1 apart), under the >= 99% asked for (bench/RESULTS.md, issue 22).
# Turn on here once a model's agreement is measured at >= 99%.
INT8_BY_DEFAULT = False


@lru_cache(maxsize=1)
def cpu_has_int8_gemm() -> bool:
    """True when int8 dynamic quantization runs fast here: x86 with AVX2 and a PyTorch built
    with the fbgemm engine."""
    # fbgemm's int8 kernels need AVX2; without it (or on ARM, where we have not measured
    # qnnpack) int8 is no gain and fp32 stays. A future PyTorch without torch.ao's dynamic
    # quantization (deprecated there) falls back to fp32 the same way.
    try:
        from torch.ao.quantization import quantize_dynamic  # noqa: F401
    except ImportError:
        return False
    return "avx2" in _cpu_flags() and "fbgemm" in torch.backends.quantized.supported_engines


def _use_int8() -> bool:
    override = current_settings().cpu_int8  # TASTEBUD_CPU_INT8
    if override is not None:
        return override
    return INT8_BY_DEFAULT and cpu_has_int8_gemm()


# Streams at most where nothing says otherwise: measured with 2 (on 2 cores); more streams
# would each hold the GIL for their Python module calls and a batch's activations.
MAX_CPU_STREAMS = 4


def _cpu_streams(threads: int, amx: bool) -> int:
    override = current_settings().cpu_streams  # TASTEBUD_CPU_STREAMS
    if override:
        return min(override, threads)
    return 1 if amx else min(threads, MAX_CPU_STREAMS)


def _cpu_threads() -> int:
    # TASTEBUD_CPU_THREADS caps the threads: on a machine shared with other busy processes,
    # one thread beats two whose OpenMP barriers keep waiting for a descheduled partner.
    override = current_settings().cpu_threads
    if override:
        return override
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def cap_cpu_threads(threads: int) -> None:
    """Use at most ``threads`` CPU threads in this process from now on (a Ray worker's share of its node).

    Ray gives each training worker or scoring actor a number of CPUs, but torch (through
    :func:`resolve_device`) would take every core of the node: two workers on two cores then run four
    threads whose OpenMP barriers wait on each other. Through the setting, so that the device's threads
    and streams agree with it; a smaller ``TASTEBUD_CPU_THREADS`` already set is kept.
    """
    from store.settings import ENV_CPU_THREADS

    current = current_settings().cpu_threads
    threads = max(1, min(threads, current or threads))
    os.environ[ENV_CPU_THREADS] = str(threads)
    resolve_device.cache_clear()
    torch.set_num_threads(threads)


@lru_cache(maxsize=4)
def resolve_device(prefer: str | None = None) -> DeviceInfo:
    """Pick CUDA, else MPS, else CPU (or ``prefer`` when given and available).

    Args:
        prefer: "cuda", "mps" or "cpu" to force one; ``TASTEBUD_DEVICE`` is read when None.

    Returns:
        The device with its inference autocast dtype and training precision.

    Example:
        >>> resolve_device("cpu").device
        'cpu'
    """
    prefer = prefer or current_settings().device
    if prefer not in (None, "cuda", "mps", "cpu"):
        raise ValueError(f"unknown device {prefer!r}; expected cuda, mps or cpu")
    if prefer in (None, "cuda") and torch.cuda.is_available():
        bf16 = torch.cuda.is_bf16_supported()
        return DeviceInfo(
            device="cuda",
            name=torch.cuda.get_device_name(0),
            autocast_dtype=torch.bfloat16 if bf16 else torch.float16,
            train_precision="bf16" if bf16 else "fp16",
            threads=_cpu_threads(),
        )
    if prefer in (None, "mps") and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return DeviceInfo("mps", "Apple MPS", None, "fp32", _cpu_threads())
    if prefer in ("cuda", "mps"):
        raise ValueError(f"device {prefer} was asked for but is not available")
    threads = _cpu_threads()
    torch.set_num_threads(threads)
    amx = cpu_has_amx_bf16()
    # On AMX bf16 beats int8 (bench/RESULTS.md, "scoring"): int8 only where bf16 is off.
    int8 = not amx and _use_int8()
    streams = _cpu_streams(threads, amx)
    return DeviceInfo(
        device="cpu",
        name=f"CPU ({threads} threads{f', {streams} streams' if streams > 1 else ''}"
             f"{', AMX bf16' if amx else ''}{', int8 Linear' if int8 else ''})",
        autocast_dtype=torch.bfloat16 if amx else None,
        # bf16 autocast training on AMX: 1.6x (idle machine) to 2x (busy) the fp32 step rate,
        # and the same validation/test macro-F1 within noise (bench/RESULTS.md, "bf16 training").
        train_precision="bf16" if amx else "fp32",
        threads=threads,
        int8_linear=int8,
        streams=streams,
    )


@dataclass(frozen=True)
class DeviceDefaults:
    """Sizes tuned per kind of device (see :func:`device_defaults`)."""

    score_batch_size: int  # texts per scoring forward pass at most
    score_batch_tokens: int  # padded tokens per scoring forward pass at most (activation memory)
    pad_multiple: int  # padded lengths are multiples of this (fewer distinct shapes; tensor-core tiles)
    score_chunk_size: int  # reviews per read/compute/write cycle of `tastebud score`
    tokenize_ahead: int  # predict_proba tokenizes pieces of this many texts one ahead in a thread (0: all first)
    dataloader_workers: int  # training data-loader worker processes (0: collate in the training process)
    pin_memory: bool  # page-locked host batches, copied to the device asynchronously
    compile: bool  # torch.compile the model (pays only where compile time is amortised)


# CPU: 32-text batches measured best with bf16 on a 2-core AMX CPU; 8,192 padded tokens bound memory.
# Tokenizing ahead in a thread would only take cores from the model there.
_CPU_DEFAULTS = DeviceDefaults(
    score_batch_size=32, score_batch_tokens=8192, pad_multiple=16, score_chunk_size=2048, tokenize_ahead=0,
    dataloader_workers=0, pin_memory=False, compile=False,
)
# GPU: a 22M-parameter encoder needs tens of thousands of tokens per forward pass before the
# card, not the host's kernel launches, sets the pace. Chunks of 32k reviews give length-sorted
# batches with little padding and keep the store's per-chunk cost (a read touches most of the
# reviews table's text, a commit checkpoints) small against the model's work. Collation is
# vectorised and cheap, so training collates in-process (workers cost a fork per epoch). The
# tokenizer (its own threads) works on the next 4k texts while the card scores the current ones.
_CUDA_DEFAULTS = DeviceDefaults(
    score_batch_size=2048, score_batch_tokens=65536, pad_multiple=8, score_chunk_size=32768, tokenize_ahead=4096,
    dataloader_workers=0, pin_memory=True, compile=False,
)


def device_defaults(info: DeviceInfo | None = None) -> DeviceDefaults:
    """The batch sizes, token budgets and loader settings for a device.

    ``TASTEBUD_COMPILE=1`` turns torch.compile on (off by default everywhere: on CPU it
    never paid, and on a GPU its compile time exceeds a typical run's gain).

    Args:
        info: the device (default: :func:`resolve_device`).

    Returns:
        A :class:`DeviceDefaults`.

    Example:
        >>> device_defaults(resolve_device("cpu")).score_batch_size
        32
    """
    info = info or resolve_device()
    base = _CUDA_DEFAULTS if info.device == "cuda" else _CPU_DEFAULTS
    if info.device == "cpu" and info.autocast_dtype is None:
        # fp32 (MKL) prepares nothing per shape, so batches are padded to their longest text only: aspect
        # scoring's short sentences ran 1.25-1.5x faster than padded to 16, review scoring the same
        # (bench/RESULTS.md, issue 22). bf16 on AMX keeps 16: oneDNN builds its kernels per shape.
        base = replace(base, pad_multiple=1)
    compile_flag = current_settings().compile
    if compile_flag != base.compile:
        base = replace(base, compile=compile_flag)
    return base
