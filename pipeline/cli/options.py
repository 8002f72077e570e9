"""CLI options derived from TrainConfig: one option per field, with its help, choices and bounds.

``train`` and ``retrain`` take the same options, built from the dataclass fields and their
metadata (:func:`pipeline.train.config.config_fields`), so a new training option appears in
both commands (and in the dashboard's Training form) by adding one field.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from typing import Any, get_type_hints

import typer

from pipeline.train.config import TrainConfig, config_fields, field_type
from store.errors import TastebudError


def _help(f: dataclasses.Field) -> str:
    meta = f.metadata
    if meta["choices"]:
        return f"{meta['help']} One of: {', '.join(meta['choices'])}."
    return meta["help"]


def config_parameters() -> list[inspect.Parameter]:
    """One keyword-only typer option per TrainConfig field (defaults from the dataclass)."""
    params = []
    for f in config_fields():
        meta = f.metadata
        flags = meta["flags"] or (f"--{f.name.replace('_', '-')}",)
        kind = field_type(f)
        bounds = {}
        if kind is int and not meta["choices"]:  # typer checks integer bounds; open float bounds stay with TrainConfig
            bounds = {"min": meta["min"], "max": meta["max"]}
        option = typer.Option(f.default, *flags, help=_help(f), show_default=f.default is not None, **bounds)
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind))
    return params


def with_train_config(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give ``command`` one CLI option per TrainConfig field; it receives them as ``config: TrainConfig``.

    A value TrainConfig refuses becomes a one-line CLI error (TastebudError) naming the field.

    Example:
        >>> @app.command("train")  # doctest: +SKIP
        ... @with_train_config
        ... def train_cmd(config: TrainConfig, background: bool = typer.Option(False, "--background")): ...
    """
    own = [p for p in inspect.signature(command).parameters.values() if p.name != "config"]
    derived = config_parameters()
    names = {p.name for p in derived}
    clash = names & {p.name for p in own}
    if clash:
        raise TypeError(f"{command.__name__} repeats TrainConfig options: {sorted(clash)}")

    @functools.wraps(command)
    def run(**kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) for name in names}
        try:
            config = TrainConfig(**values)
        except ValueError as exc:
            raise TastebudError(str(exc)) from exc
        return command(config=config, **kwargs)

    hints = {k: v for k, v in get_type_hints(command).items() if k not in ("config", "return")}
    run.__signature__ = inspect.Signature(  # training options first in --help, then the command's own
        derived + [p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=hints.get(p.name, p.annotation)) for p in own]
    )
    run.__annotations__ = {**hints, **{p.name: p.annotation for p in derived}}
    del run.__wrapped__  # typer must read the new signature, not the wrapped command's
    return run
