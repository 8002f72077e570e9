"""The compute device and precision, decided once.

Nothing else in tastebud calls ``torch.cuda.is_available()``. On CPU, bf16 autocast is
used only where the processor has native bf16 matrix units (AMX, or AVX512-BF16 at
least): there it scores several times faster than fp32; elsewhere bf16 is emulated and
slower, so we stay in fp32. ``TASTEBUD_CPU_BF16=0/1`` overrides the detection;
``TASTEBUD_CPU_THREADS=N`` caps the CPU threads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
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
    return DeviceInfo(
        device="cpu",
        name=f"CPU ({threads} threads{', AMX bf16' if amx else ''})",
        autocast_dtype=torch.bfloat16 if amx else None,
        # bf16 autocast training on AMX: 1.6x (idle machine) to 2x (busy) the fp32 step rate,
        # and the same validation/test macro-F1 within noise (bench/RESULTS.md, "bf16 training").
        train_precision="bf16" if amx else "fp32",
        threads=threads,
    )
