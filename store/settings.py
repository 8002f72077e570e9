"""Every environment variable tastebud reads, read in one place and checked.

``current_settings()`` reads the environment each time it is called (it is cheap), so a
test's monkeypatched variable or a job's subprocess environment is always honoured.
Other modules ask it rather than ``os.environ``; the only environment tastebud *writes*
is in ``pipeline/__init__.py`` (offline Hugging Face, passive OpenMP threads) and the
``env`` of the processes it starts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from store.errors import TastebudError

ENV_DB = "TASTEBUD_DB"
ENV_LOCK_TIMEOUT = "TASTEBUD_LOCK_TIMEOUT"
ENV_JOB_LOCK_TIMEOUT = "TASTEBUD_JOB_LOCK_TIMEOUT"
ENV_MODELS_DIR = "TASTEBUD_MODELS_DIR"
ENV_SECRETS = "TASTEBUD_SECRETS"
ENV_DEVICE = "TASTEBUD_DEVICE"
ENV_CPU_THREADS = "TASTEBUD_CPU_THREADS"
ENV_CPU_BF16 = "TASTEBUD_CPU_BF16"
ENV_CPU_INT8 = "TASTEBUD_CPU_INT8"
ENV_COMPILE = "TASTEBUD_COMPILE"
ENV_CPU_STREAMS = "TASTEBUD_CPU_STREAMS"

DEFAULT_DB_FILENAME = "tastebud.duckdb"
# How long a caller waits for another process's lock on the store before giving up (seconds).
DEFAULT_LOCK_TIMEOUT_S = 60.0
# Background jobs wait far longer for the store: a long import must not make them fail (seconds).
DEFAULT_JOB_LOCK_TIMEOUT_S = 3600.0
DEVICES = ("cuda", "mps", "cpu")
_FALSE = ("0", "false", "no", "")


@dataclass(frozen=True)
class Settings:
    """What the environment says; None where a variable is unset (the caller's default applies).

    Attributes:
        db: the store file (``TASTEBUD_DB``; default ./tastebud.duckdb).
        lock_timeout_s: seconds to wait out another process's store lock (``TASTEBUD_LOCK_TIMEOUT``).
        job_lock_timeout_s: the same for background jobs (``TASTEBUD_JOB_LOCK_TIMEOUT``; default 1 h).
        models_dir: where trained models go instead of models/ beside the store (``TASTEBUD_MODELS_DIR``).
        secrets: the dashboard's accounts/OIDC secrets file (``TASTEBUD_SECRETS``).
        device: "cuda", "mps" or "cpu" to force one (``TASTEBUD_DEVICE``).
        cpu_threads: cap on CPU threads (``TASTEBUD_CPU_THREADS``).
        cpu_bf16: whether the CPU may use bf16 (``TASTEBUD_CPU_BF16``; None: detect).
        compile: torch.compile the scoring model (``TASTEBUD_COMPILE``; off unless 1/true/yes).
        cpu_int8: whether CPU scoring may quantize Linear layers to int8 (``TASTEBUD_CPU_INT8``; None: detect).
        cpu_streams: parallel inference streams on a CPU (``TASTEBUD_CPU_STREAMS``; None: as the device decides).
    """

    db: Path
    lock_timeout_s: float
    job_lock_timeout_s: float
    models_dir: Path | None
    secrets: Path | None
    device: str | None
    cpu_threads: int | None
    cpu_bf16: bool | None
    compile: bool
    cpu_int8: bool | None = None
    cpu_streams: int | None = None


def current_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and check the environment (``os.environ`` unless given).

    Raises:
        TastebudError: a variable holds a value that cannot work, naming it and what it expects.

    Example:
        >>> current_settings({"TASTEBUD_LOCK_TIMEOUT": "5"}).lock_timeout_s
        5.0
    """
    env = os.environ if environ is None else environ
    return Settings(
        db=Path(env.get(ENV_DB) or DEFAULT_DB_FILENAME),
        lock_timeout_s=_lock_timeout(env.get(ENV_LOCK_TIMEOUT), ENV_LOCK_TIMEOUT, DEFAULT_LOCK_TIMEOUT_S),
        job_lock_timeout_s=_lock_timeout(env.get(ENV_JOB_LOCK_TIMEOUT), ENV_JOB_LOCK_TIMEOUT, DEFAULT_JOB_LOCK_TIMEOUT_S),
        models_dir=_path(env.get(ENV_MODELS_DIR)),
        secrets=_path(env.get(ENV_SECRETS)),
        device=_device(env.get(ENV_DEVICE)),
        cpu_threads=_cpu_threads(env.get(ENV_CPU_THREADS)),
        cpu_bf16=None if env.get(ENV_CPU_BF16) is None else env[ENV_CPU_BF16].strip().lower() not in _FALSE,
        compile=env.get(ENV_COMPILE, "").strip().lower() in ("1", "true", "yes"),
        cpu_int8=None if env.get(ENV_CPU_INT8) is None else env[ENV_CPU_INT8].strip().lower() not in _FALSE,
        cpu_streams=_whole_number(env.get(ENV_CPU_STREAMS), ENV_CPU_STREAMS, "streams"),
    )


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def _lock_timeout(value: str | None, name: str, default: float) -> float:
    if value is None or not value.strip():
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise TastebudError(f"{name} must be a number of seconds (0 or more), got {value!r}")
    return seconds


def _device(value: str | None) -> str | None:
    value = (value or "").strip().lower() or None
    if value is not None and value not in DEVICES:
        raise TastebudError(f"{ENV_DEVICE} must be one of {', '.join(DEVICES)}, got {value!r}")
    return value


def _cpu_threads(value: str | None) -> int | None:
    return _whole_number(value, ENV_CPU_THREADS, "threads")


def _whole_number(value: str | None, name: str, what: str) -> int | None:
    value = (value or "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise TastebudError(f"{name} must be a whole number of {what} (1 or more), got {value!r}")
    return int(value)
