"""JSON columns: how the store writes a Python value into one and reads it back."""

from __future__ import annotations

import json
from typing import Any


def dumps_json(value: Any) -> str | None:
    """``value`` as JSON text for a JSON column (None stays NULL; dates and paths become strings)."""
    return None if value is None else json.dumps(value, default=str)


def decode_json_fields(row: dict, keys: tuple[str, ...]) -> dict:
    """Parse, in place, the JSON text of ``row[key]`` for each key that holds a string; returns ``row``."""
    for key in keys:
        if isinstance(row.get(key), str):
            row[key] = json.loads(row[key])
    return row
