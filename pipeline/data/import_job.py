"""Job kind "import": import a file in a background process, then optionally score and flag what came in.

The Data page saves an upload beside the store and starts this job, so a large file never
blocks the page; scoring and flagging afterwards use the champion (skipped, and said so,
when there is none).
"""

from __future__ import annotations

from pipeline.data.importer import ColumnMapping, import_reviews
from pipeline.jobs import JobReporter, SpanReporter
from store import models as model_store
from store.actors import Actor
from store.db import connect
from store.errors import TastebudError
from store.jobs import get_job


def run_job(db, params: dict, reporter: JobReporter) -> dict:
    """Import ``params["path"]`` (with "columns", "fmt", "source", "numeric_labels"), then score and flag the
    new reviews when "score_after" is true.

    Returns:
        The import report (as ``ImportReport.to_dict()``) plus "scored" and "flagged" (None when skipped)
        and "after" (what happened after the import, in words).
    """
    params = dict(params or {})
    if not params.get("path"):
        raise TastebudError("an import job needs a file path")
    try:
        columns = ColumnMapping(**(params.get("columns") or {}))
    except TypeError as exc:
        raise TastebudError(f"bad column mapping: {exc}") from exc
    reporter.progress(0.02, "reading and checking the file", force=True)
    report = import_reviews(db, params["path"], fmt=params.get("fmt"), columns=columns, source=params.get("source"),
                            numeric_labels=params.get("numeric_labels"), actor=_actor(db, reporter.job_id))
    result = {**report.to_dict(), "scored": None, "flagged": None}
    reporter.log(f"import {report.import_id}: {report.accepted} new, {report.updated} updated, {report.rejected} rejected")
    changed = report.accepted + report.updated
    if not params.get("score_after"):
        result["after"] = "not scored (not asked)"
    elif not changed:
        result["after"] = "nothing new to score"
    elif not _has_champion(db):
        result["after"] = "not scored: there is no champion yet (promote a model first)"
    else:
        from pipeline.loop.flagging import flag
        from pipeline.loop.scoring import score

        reporter.progress(0.5, f"scoring {changed:,} new or changed reviews", force=True)
        try:
            scored = score(db, reporter=SpanReporter(reporter, 0.5, 0.9))
            reporter.progress(0.9, "flagging hard cases", force=True)
            flagged = flag(db, reporter=SpanReporter(reporter, 0.9, 1.0))
        except TastebudError as exc:
            # The import is committed and stays; what failed is the step after it, and the report says so
            # (the reviews are scored by the next `tastebud score`) instead of hiding the import behind a failure.
            result["after"] = f"imported, but scoring afterwards failed: {exc}"
            result["warning"] = str(exc)
        else:
            result.update(scored=scored.get("scored"), flagged=sum((flagged.get("inserted") or {}).values()),
                          after=f"scored {scored.get('scored', 0):,} reviews and queued "
                                f"{sum((flagged.get('inserted') or {}).values()):,} flags")
    reporter.log(result["after"])
    reporter.progress(1.0, f"import {report.import_id} done; {result['after']}", force=True)
    return result


def _has_champion(db) -> bool:
    with connect(db, read_only=True) as con:
        return model_store.get_champion(con) is not None


def _actor(db, job_id: str | None) -> Actor:
    """The person who started the job (start_job already checked their "import" permission)."""
    name = "job"
    if job_id:
        with connect(db, read_only=True) as con:
            name = (get_job(con, job_id) or {}).get("actor") or name
    return Actor(name=name, role="data_scientist")
