"""The typer app and what every command shares: the store path, JSON output, error handling.

Command modules (``pipeline/cli_*.py``) import ``app`` from here and register commands;
``pipeline/cli.py`` imports them all and is the console entry point.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import typer

from store.db import resolve_db_path
from store.settings import ENV_DB

app = typer.Typer(
    name="tastebud",
    help="Restaurant-review sentiment: store, fine-tune, score, flag, relabel, retrain.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

_state: dict[str, Any] = {"db": None}

# `--ray` takes an optional address: a bare `--ray` means a local Ray instance.
LOCAL_RAY = "local"
_OPTIONAL_VALUE_FLAGS = ("--ray",)


def normalize_argv(argv: list[str]) -> list[str]:
    """Give a bare optional-value flag (``--ray`` at the end or before another option) its default value.

    Example:
        >>> normalize_argv(["score", "--ray", "--json"])
        ['score', '--ray', 'local', '--json']
    """
    out: list[str] = []
    for i, arg in enumerate(argv):
        out.append(arg)
        if arg in _OPTIONAL_VALUE_FLAGS and (i + 1 == len(argv) or argv[i + 1].startswith("-")):
            out.append(LOCAL_RAY)
    return out


@app.callback()
def _global(
    db: Path = typer.Option(
        None, "--db", envvar=ENV_DB, help=f"Store file (default ./tastebud.duckdb; env {ENV_DB})."
    ),
) -> None:
    _state["db"] = resolve_db_path(db)


def db_path() -> Path:
    """The store path chosen by ``--db`` / ``$TASTEBUD_DB`` / the default."""
    return _state["db"] or resolve_db_path(None)


def emit_json(payload: Any) -> None:
    """Print one JSON document to stdout; missing values (NaN, NaT, pd.NA) become null.

    Python's json writes NaN as a bare ``NaN``, which is not JSON: ``jq`` and strict parsers reject the
    whole document. Frames and metrics carry NaN for "none", so the payload is cleaned here, once, and
    ``allow_nan=False`` makes anything left (an infinity) fail loudly instead of printing invalid JSON.
    """
    sys.stdout.write(json.dumps(json_safe(payload), indent=2, default=str, allow_nan=False) + "\n")


def json_safe(value: Any) -> Any:
    """``value`` with every missing scalar (None, NaN, NaT, pd.NA) inside dicts, lists, tuples and arrays
    as None.

    Example:
        >>> json_safe({"a": float("nan"), "b": [pd.NaT, 1]})
        {'a': None, 'b': [None, 1]}
    """
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if pd.api.types.is_scalar(value) and not isinstance(value, (str, bytes)) and pd.isna(value):
        return None
    return value
