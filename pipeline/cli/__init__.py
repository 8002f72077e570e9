"""``tastebud`` console entry point."""

from __future__ import annotations

import sys

import typer

from pipeline.cli.app import app, db_path, emit_json, normalize_argv
from store.errors import TastebudError
from store.printable import printable_message

# Command modules register themselves on ``app`` when imported.
from pipeline.cli import data as cli_data  # noqa: E402,F401
from pipeline.cli import demo as cli_demo  # noqa: E402,F401
from pipeline.cli import imports as cli_import  # noqa: E402,F401
from pipeline.cli import dashboard as cli_dashboard  # noqa: E402,F401
from pipeline.cli import models as cli_models  # noqa: E402,F401
from pipeline.cli import loop as cli_loop  # noqa: E402,F401
from pipeline.cli import jobs as cli_jobs  # noqa: E402,F401
from pipeline.cli import monitor as cli_monitor  # noqa: E402,F401
from pipeline.cli import aspects as cli_aspects  # noqa: E402,F401


@app.command("job-run", hidden=True)
def job_run(job_id: str = typer.Argument(..., help="Job to run in this process.")) -> None:
    """Run a queued background job (started by the dashboard or `--background`)."""
    from pipeline.jobs import JobCancelled, run_job

    try:
        run_job(db_path(), job_id)
    except JobCancelled:
        raise typer.Exit(3)


def main() -> None:
    """Run the CLI; a :class:`TastebudError` becomes one line on stderr and exit code 2."""
    try:
        app(args=normalize_argv(sys.argv[1:]))
    except TastebudError as exc:
        # Messages may quote a user's file or path: escaped, so no control byte reaches the terminal.
        print(f"error: {printable_message(str(exc))}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()

__all__ = ["app", "main", "emit_json"]
