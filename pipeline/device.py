"""The compute device and precision, decided once.

Nothing else in tastebud calls ``torch.cuda.is_available()``. On CPU, bf16 autocast is
used only where the processor has native bf16 matrix units (AMX, or AVX512-BF16 at
least): there it scores several times faster than fp32; elsewhere bf16 is emulated and
slower, so we stay in fp32. ``TASTEBUD_CPU_BF16=0/1`` overrides the detection;
``TASTEBUD_CPU_THREADS=N`` caps the CPU threads.

:func:`device_defaults` holds every size that depends on the device (scoring batches and
token budgets, chunk sizes, data-loader workers, pinned memory), so tuning for a new kind
of machine is one edit here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import torch


@dataclass(frozen=True)
class DeviceInfo:
    device: str  # "cuda", "mps" or "cpu"
    name: str
    autocast_dtype: torch.dtype | None  # dtype for torch.autocast at inference, None for fp32
    train_precision: str  # "bf16", "fp16" or "fp32" for training
    threads: int

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
    override = os.environ.get("TASTEBUD_CPU_BF16")
    if override is not None:
        return override.strip() not in ("0", "false", "no", "")
    return "amx_bf16" in _cpu_flags()


def _cpu_threads() -> int:
    # TASTEBUD_CPU_THREADS caps the threads: on a machine shared with other busy processes,
    # one thread beats two whose OpenMP barriers keep waiting for a descheduled partner.
    override = os.environ.get("TASTEBUD_CPU_THREADS", "").strip()
    if override.isdigit() and int(override) > 0:
        return int(override)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


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
    prefer = prefer or os.environ.get("TASTEBUD_DEVICE") or None
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
    return DeviceInfo(
        device="cpu",
        name=f"CPU ({threads} threads{', AMX bf16' if amx else ''})",
        autocast_dtype=torch.bfloat16 if amx else None,
        # bf16 autocast training on AMX: 1.6x (idle machine) to 2x (busy) the fp32 step rate,
        # and the same validation/test macro-F1 within noise (bench/RESULTS.md, "bf16 training").
        train_precision="bf16" if amx else "fp32",
        threads=threads,
    )


@dataclass(frozen=True)
class DeviceDefaults:
    """Sizes tuned per kind of device (see :func:`device_defaults`)."""

    score_batch_size: int  # texts per scoring forward pass at most
    score_batch_tokens: int  # padded tokens per scoring forward pass at most (activation memory)
    pad_multiple: int  # padded lengths are multiples of this (fewer distinct shapes; tensor-core tiles)
    score_chunk_size: int  # reviews per read/compute/write cycle of `tastebud score`
    dataloader_workers: int  # training data-loader worker processes (0: collate in the training process)
    pin_memory: bool  # page-locked host batches, copied to the device asynchronously
    compile: bool  # torch.compile the model (pays only where compile time is amortised)


# CPU: 32-text batches measured best with bf16 on a 2-core AMX CPU; 8,192 padded tokens bound memory.
_CPU_DEFAULTS = DeviceDefaults(
    score_batch_size=32, score_batch_tokens=8192, pad_multiple=16, score_chunk_size=2048,
    dataloader_workers=0, pin_memory=False, compile=False,
)
# GPU: a 22M-parameter encoder needs tens of thousands of tokens per forward pass before the
# card, not the host's kernel launches, sets the pace; length-sorted chunks of 16k reviews give
# batches with little padding and leave the store's per-chunk cost small. Collation is
# vectorised and cheap, so training collates in-process (workers cost a fork per epoch).
_CUDA_DEFAULTS = DeviceDefaults(
    score_batch_size=2048, score_batch_tokens=65536, pad_multiple=8, score_chunk_size=16384,
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
    compile_flag = os.environ.get("TASTEBUD_COMPILE", "").strip().lower() in ("1", "true", "yes")
    if compile_flag != base.compile:
        from dataclasses import replace

        base = replace(base, compile=compile_flag)
    return base
