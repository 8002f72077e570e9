"""Limits on what one dashboard user can make the server do (issue 9, section 4).

- Every free-text input has a length cap: review text the importer's ``MAX_TEXT_CHARS``
  (20,000), short fields (column names, model paths, lists) ``MAX_FIELD_CHARS``. Streamlit
  enforces ``max_chars`` in the browser and cuts longer values on the server, so a hostile
  client cannot send more; a value at the cap gets a visible note that it was cut.
- Interactive predictions run on a small shared pool of worker threads and each is waited
  for at most ``PREDICT_TIMEOUT_S``; a session may have one prediction in flight and at most
  ``PREDICTIONS_PER_MINUTE`` per minute, so clicking again and again queues nothing.

Pages call :func:`text_area` / :func:`text_input` instead of Streamlit's and wrap the model
call in :func:`bounded_prediction`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import streamlit as st

from pipeline.data.importer import MAX_TEXT_CHARS
from store.errors import TastebudError

# Longest value of a short free-text field (a column name, a model path, a list of numbers).
MAX_FIELD_CHARS = 1_000
# Longest wait for one interactive prediction, in seconds.
PREDICT_TIMEOUT_S = 20.0
# Predictions one session may start per minute.
PREDICTIONS_PER_MINUTE = 30
# Predictions running at once for all sessions together (each already uses several CPU threads).
PREDICT_WORKERS = 2

_pool = ThreadPoolExecutor(max_workers=PREDICT_WORKERS, thread_name_prefix="tastebud-predict")
_STATE_KEY = "_tastebud_predictions"
_state_lock = threading.Lock()


class LimitError(TastebudError):
    """A request refused or abandoned by a limit; the message says which and what to do."""


def _note_if_cut(where, value: str | None, label: str, cap: int) -> str | None:
    if value is not None and len(value) >= cap:
        where.warning(f"{label} is limited to {cap:,} characters; anything longer was cut.")
    return value


def text_area(label: str, *, max_chars: int = MAX_TEXT_CHARS, where=None, **kwargs) -> str | None:
    """``st.text_area`` (in container ``where``) capped at ``max_chars`` (default: the importer's review
    length), with a note when the value reaches the cap."""
    where = where or st
    return _note_if_cut(where, where.text_area(label, max_chars=max_chars, **kwargs), label, max_chars)


def text_input(label: str, *, max_chars: int = MAX_FIELD_CHARS, where=None, **kwargs) -> str | None:
    """``st.text_input`` (in container ``where``) capped at ``max_chars`` (default ``MAX_FIELD_CHARS``),
    with a note when the value reaches the cap."""
    where = where or st
    return _note_if_cut(where, where.text_input(label, max_chars=max_chars, **kwargs), label, max_chars)


def _session_record() -> dict:
    with _state_lock:
        return st.session_state.setdefault(_STATE_KEY, {"future": None, "started": deque()})


def bounded_prediction(fn: Callable[..., Any], *args: Any, timeout_s: float | None = None) -> Any:
    """Run ``fn(*args)`` on the shared prediction pool and wait at most ``timeout_s`` (default
    ``PREDICT_TIMEOUT_S``) for it.

    Raises:
        LimitError: this session already has a prediction running, has started too many in the
            last minute, or the prediction took longer than ``timeout_s`` (its result is dropped).
    """
    timeout_s = PREDICT_TIMEOUT_S if timeout_s is None else timeout_s
    record = _session_record()
    now = time.monotonic()
    previous: Future | None = record["future"]
    if previous is not None and not previous.done():
        raise LimitError("your previous prediction is still running; wait a moment and try again")
    started: deque = record["started"]
    while started and now - started[0] > 60:
        started.popleft()
    if len(started) >= PREDICTIONS_PER_MINUTE:
        raise LimitError(f"at most {PREDICTIONS_PER_MINUTE} predictions a minute; try again in {60 - (now - started[0]):.0f} s")
    started.append(now)
    future = _pool.submit(fn, *args)
    record["future"] = future
    try:
        return future.result(timeout=timeout_s)
    except FutureTimeout:
        raise LimitError(f"the prediction took longer than {timeout_s:g} s and was given up") from None
