"""Form widgets built from TrainConfig's fields and their metadata (label, help, choices, bounds).

The Training page draws these inside its ``st.form``; a field's metadata decides its widget:
choices become a select box, switches a checkbox, numbers a number input with the field's
bounds, text a text input. Fields marked ``advanced`` fold into an expander. A new TrainConfig field thus appears
in the form, the CLI's ``train`` and ``retrain`` (:mod:`pipeline.cli.options`) at once.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import streamlit as st

from dashboard.limits import MAX_FIELD_CHARS

from pipeline.train.config import TrainConfig, config_fields, field_type

# Smallest step a float input offers (learning rates live around 1e-5..1e-3).
_FLOAT_STEP = {"learning_rate": 1e-5}
AUTO = "(automatic)"


def train_config_inputs(defaults: TrainConfig | None = None, *, key: str = "train-config") -> dict[str, Any]:
    """Draw one widget per TrainConfig field; returns field name -> the raw widget value.

    Call inside an ``st.form``; hand the result to :func:`config_from_inputs` on submit.
    """
    defaults = defaults or TrainConfig()
    values: dict[str, Any] = {}
    common = [f for f in config_fields() if not f.metadata["advanced"]]
    advanced = [f for f in config_fields() if f.metadata["advanced"]]
    for f in common:
        values[f.name] = _widget(f, getattr(defaults, f.name), key)
    with st.expander("More training options"):
        for f in advanced:
            values[f.name] = _widget(f, getattr(defaults, f.name), key)
    return values


def config_from_inputs(values: dict[str, Any]) -> TrainConfig:
    """Turn :func:`train_config_inputs`' widget values into a validated TrainConfig.

    Raises:
        ValueError: a value TrainConfig refuses (the message names the field).
    """
    cleaned = {}
    for f in config_fields():
        value = values.get(f.name)
        if isinstance(value, str):
            value = value.strip()
        if f.default is None and value in ("", AUTO, 0, None):
            value = None  # empty text, "(automatic)" and 0 mean "not set" for an optional field
        cleaned[f.name] = value
    return TrainConfig.from_dict(cleaned)


def _widget(f: dataclasses.Field, default: Any, key: str) -> Any:
    meta, kind = f.metadata, field_type(f)
    label, help_text, widget_key = meta["label"], meta["help"], f"{key}-{f.name}"
    if meta["choices"]:
        options = ([AUTO] if f.default is None else []) + list(meta["choices"])
        return st.selectbox(label, options, index=options.index(AUTO if default is None else default), help=help_text,
                            key=widget_key)
    if kind is bool:
        return st.checkbox(label, value=bool(default), help=help_text, key=widget_key)
    if kind is str:
        return st.text_input(label, value=default or "", help=help_text, key=widget_key, max_chars=MAX_FIELD_CHARS)
    if kind is int:
        low = 0 if f.default is None else int(meta["min"] if meta["min"] is not None else 0)
        high = None if meta["max"] is None else int(meta["max"])
        return st.number_input(label, value=int(default or low), min_value=low, max_value=high, step=1, help=help_text,
                               key=widget_key)
    low = float(meta["min"]) if meta["min"] is not None and not meta["open_min"] else None
    high = float(meta["max"]) if meta["max"] is not None and not meta["open_max"] else None
    return st.number_input(label, value=float(default), min_value=low, max_value=high, step=_FLOAT_STEP.get(f.name, 0.01),
                           format=meta["fmt"] or "%.4f", help=help_text, key=widget_key)
