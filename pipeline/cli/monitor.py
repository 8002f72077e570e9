"""Monitoring on the command line: `tastebud monitor` (health + shifts -> alerts), `tastebud alerts`."""

from __future__ import annotations

import typer

from pipeline.cli.app import app, db_path, emit_json
from store.actors import cli_actor
from store.db import connect, transaction


@app.command("monitor")
def monitor_cmd(
    model: str = typer.Option(None, "--model", help="Model whose predictions are checked (default: the champion)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Recompute the champion's weekly health and the week-grain shifts (per aspect too, with an aspect
    champion); raise alerts for new crossings."""
    from pipeline.monitor.health import run_monitor

    result = run_monitor(db_path(), model_id=model)
    if as_json:
        emit_json(result)
        return
    found = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in sorted(result["alerts_found"].items())) or "nothing"
    if result["model_id"] is None:
        typer.echo(f"no review champion: checked the current labels for shifts: {found} found, "
                   f"{result['alerts_new']} new alerts")
    else:
        typer.echo(f"checked {result['weeks']} weeks of {result['model_id']}: {found} found, "
                   f"{result['alerts_new']} new alerts")
    aspects = result.get("aspects")
    if aspects:
        found = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in sorted(aspects["alerts_found"].items())) or "nothing"
        typer.echo(f"aspects of {aspects['model_id']}: {found} found, {aspects['alerts_new']} new alerts")


@app.command("alerts")
def alerts_cmd(
    show_all: bool = typer.Option(False, "--all", help="Also list acknowledged alerts."),
    kind: str = typer.Option(None, "--kind", help="Only this kind: model_health, sentiment_shift, volume_shift."),
    aspect: str = typer.Option(None, "--aspect", help="Only aspect alerts about this aspect (e.g. service)."),
    ack: list[int] = typer.Option(None, "--ack", help="Acknowledge this alert id (repeatable)."),
    limit: int = typer.Option(50, "--limit", min=1, help="List at most this many."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List alerts newest first (open ones unless --all), or acknowledge some with --ack."""
    from store.alerts import acknowledge_alerts, list_alerts

    if ack:
        try:
            with transaction(db_path()) as con:
                changed = acknowledge_alerts(con, list(ack), cli_actor())
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--ack") from None
        emit_json({"acknowledged": changed}) if as_json else typer.echo(f"acknowledged {changed} alerts")
        return
    try:
        with connect(db_path(), read_only=True) as con:
            if aspect is None:
                alerts = list_alerts(con, status=None if show_all else "open", kind=kind, limit=limit)
            else:
                alerts = _aspect_alerts(con, aspect, status=None if show_all else "open", kind=kind, limit=limit)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--kind") from None
    if as_json:
        emit_json(alerts.drop(columns=["detail"]).to_dict(orient="records"))
        return
    if alerts.empty:
        typer.echo("no open alerts" if not show_all else "no alerts")
        return
    for row in alerts.itertuples(index=False):
        status = "" if row.status == "open" else f" [{row.status}]"
        typer.echo(f"#{row.alert_id:<5} {row.kind:<16} {row.message}{status}")


def _aspect_alerts(con, aspect: str, *, status: str | None, kind: str | None, limit: int):
    """The aspect monitor's alerts about one aspect (of one kind when given)."""
    from store.alerts import ALERT_KINDS
    from store.aspect_trends import list_aspect_alerts
    from store.aspects import aspect_names, check_aspects, normalize_aspect_name

    if kind is not None and kind not in ALERT_KINDS:
        raise typer.BadParameter(f"unknown alert kind {kind!r}; expected one of {', '.join(ALERT_KINDS)}",
                                 param_hint="--kind")
    if check_aspects(con, [aspect]):
        raise typer.BadParameter(f"unknown aspect {aspect.strip().lower()!r}; known: {', '.join(aspect_names(con))}",
                                 param_hint="--aspect")
    alerts = list_aspect_alerts(con, aspect=normalize_aspect_name(aspect), status=status, limit=limit)
    return alerts if kind is None else alerts[alerts["kind"] == kind]
