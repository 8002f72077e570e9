"""`tastebud jobs`: list jobs (status, progress, elapsed, ETA), cancel one, show its log."""

from __future__ import annotations

import math

import typer

from pipeline.cli.app import app, db_path, emit_json
from store.actors import cli_actor
from store.errors import TastebudError

jobs_app = typer.Typer(help="Background and foreground jobs: list, cancel, log.", no_args_is_help=False)
app.add_typer(jobs_app, name="jobs")


def format_duration(seconds: float | None) -> str:
    """Seconds as ``42s``, ``3m05s`` or ``2h04m``; ``-`` when unknown.

    Example:
        >>> format_duration(185)
        '3m05s'
    """
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "-"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


@jobs_app.callback(invoke_without_command=True)
def jobs_cmd(
    ctx: typer.Context,
    limit: int = typer.Option(20, "--limit", min=1, help="At most this many jobs, newest first."),
    active: bool = typer.Option(False, "--active", help="Only queued and running jobs."),
    as_json: bool = typer.Option(False, "--json", help="Print the jobs as JSON."),
) -> None:
    """List jobs, newest first: a job whose process died is shown (and recorded) as failed."""
    if ctx.invoked_subcommand is not None:
        return
    from pipeline.jobs import list_jobs

    frame = list_jobs(db_path(), limit=limit, active_only=active)
    columns = ["job_id", "kind", "status", "actor", "progress", "elapsed_s", "eta_s", "message", "error",
               "cancelled_by", "created_at", "started_at", "finished_at", "pid", "log_path", "waiting_since"]
    rows = frame[columns].to_dict("records")
    if as_json:
        emit_json([{k: (None if _missing(v) else v) for k, v in row.items()} for row in rows])
        return
    if not rows:
        typer.echo("no jobs yet")
        return
    header = f"{'JOB':<36} {'KIND':<8} {'STATUS':<10} {'PROGRESS':>8} {'ELAPSED':>8} {'ETA':>8}  MESSAGE"
    typer.echo(header)
    for row in rows:
        status = row["status"]
        note = row["message"] or ""
        if status == "failed" and row["error"]:
            note = row["error"]
        elif status == "cancelled":
            note = f"cancelled by {row['cancelled_by']}" if row["cancelled_by"] else "cancelled"
        typer.echo(
            f"{row['job_id']:<36} {row['kind']:<8} {status:<10} {float(row['progress'] or 0):>8.0%} "
            f"{format_duration(row['elapsed_s']):>8} {format_duration(row['eta_s']):>8}  {_one_line(note)}"
        )


@jobs_app.command("cancel")
def cancel_cmd(job_id: str = typer.Argument(..., help="The job to stop (see `tastebud jobs`).")) -> None:
    """Ask a queued or running job to stop (its process gets SIGTERM and records itself cancelled)."""
    from pipeline.jobs import cancel_job

    cancel_job(db_path(), job_id, cli_actor())
    typer.echo(f"asked job {job_id} to stop")


@jobs_app.command("log")
def log_cmd(
    job_id: str = typer.Argument(..., help="The job whose log to show."),
    lines: int = typer.Option(40, "--lines", "-n", min=1, help="Show the last N lines."),
) -> None:
    """Show the end of a job's log file (background jobs write one under runs/jobs/)."""
    from pipeline.jobs import get_job, tail_log

    job = get_job(db_path(), job_id)
    if job is None:
        raise TastebudError(f"no job {job_id}; see `tastebud jobs`")
    if not job.get("log_path"):
        raise TastebudError(f"job {job_id} ran in the foreground and has no log file; its output went to its terminal")
    text = tail_log(job["log_path"], lines=lines)
    typer.echo(text if text else f"(the log {job['log_path']} is empty or gone)")


def _missing(value) -> bool:
    try:
        return value is None or (isinstance(value, float) and math.isnan(value)) or str(value) == "NaT"
    except TypeError:
        return False


def _one_line(text: str, limit: int = 80) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
