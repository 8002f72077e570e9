"""CLI options derived from TrainConfig: one option per field, with its help, choices and bounds.

``train`` and ``retrain`` take the same options (plus ``--recipe``), built from the dataclass fields and their
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

from pipeline.train.config import DEFAULT_RECIPE, RECIPES, TrainConfig, config_fields, field_type
from store.errors import TastebudError


def _help(f: dataclasses.Field) -> str:
    meta = f.metadata
    text = meta["help"]
    if meta["choices"]:
        text += f" One of: {', '.join(meta['choices'])}."
    if f.default is not None:
        shown = f"{f.default:g}" if isinstance(f.default, float) else str(f.default).lower() if isinstance(f.default, bool) \
            else f.default
        text += f" [default: {shown}]"
    return text


def config_parameters() -> list[inspect.Parameter]:
    """``--recipe`` and one keyword-only typer option per TrainConfig field.

    Every option defaults to None ("not given"): an unset option keeps the recipe's value, which is
    TrainConfig's default without ``--recipe``; the help shows that default.
    """
    params = [inspect.Parameter("recipe", inspect.Parameter.KEYWORD_ONLY, annotation=str, default=typer.Option(
        None, "--recipe", help=f"A named recipe ({', '.join(RECIPES)}); default {DEFAULT_RECIPE!r}. "
        "The options below override it."))]
    for f in config_fields():
        meta = f.metadata
        kind = field_type(f)
        flag = f"--{f.name.replace('_', '-')}"
        flags = meta["flags"] or ((f"{flag}/--no-{flag[2:]}",) if kind is bool else (flag,))
        bounds = {}
        if kind is int and not meta["choices"]:  # typer checks integer bounds; open float bounds stay with TrainConfig
            bounds = {"min": meta["min"], "max": meta["max"]}
        option = typer.Option(None, *flags, help=_help(f), **bounds)
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind))
    return params


def build_config(given: dict[str, Any], recipe: str | None = None) -> TrainConfig:
    """The recipe's options (TrainConfig's defaults without one) with ``given`` on top; bad values become
    a one-line CLI error naming the field."""
    try:
        return TrainConfig.from_recipe(recipe or DEFAULT_RECIPE, **given)
    except ValueError as exc:
        raise TastebudError(str(exc)) from exc


def with_train_config(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give ``command`` ``--recipe`` and one CLI option per TrainConfig field; it receives the result as
    ``config: TrainConfig``, and, when it has a ``given_options`` parameter, the options the user gave
    (``recipe`` included when given) as a dict, so it can apply other defaults to the rest.

    Example:
        >>> @app.command("train")  # doctest: +SKIP
        ... @with_train_config
        ... def train_cmd(config: TrainConfig, background: bool = typer.Option(False, "--background")): ...
    """
    own = [p for p in inspect.signature(command).parameters.values() if p.name not in ("config", "given_options")]
    wants_given = "given_options" in inspect.signature(command).parameters
    derived = config_parameters()
    names = {p.name for p in derived}
    clash = names & {p.name for p in own}
    if clash:
        raise TypeError(f"{command.__name__} repeats TrainConfig options: {sorted(clash)}")

    @functools.wraps(command)
    def run(**kwargs: Any) -> Any:
        recipe = kwargs.pop("recipe")
        given = {name: value for name in names - {"recipe"} if (value := kwargs.pop(name)) is not None}
        if wants_given:
            kwargs["given_options"] = {**given, **({"recipe": recipe} if recipe else {})}
        return command(config=build_config(given, recipe), **kwargs)

    hints = {k: v for k, v in get_type_hints(command).items() if k not in ("config", "given_options", "return")}
    run.__signature__ = inspect.Signature(  # training options first in --help, then the command's own
        derived + [p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=hints.get(p.name, p.annotation)) for p in own]
    )
    run.__annotations__ = {**hints, **{p.name: p.annotation for p in derived}}
    del run.__wrapped__  # typer must read the new signature, not the wrapped command's
    return run
