"""Relabel-retrain rounds: train on the current labels, compare with the champion, promote only on evidence.

A round trains a challenger on the current labels (human relabels outrank star labels),
then decides by the one promotion rule (:mod:`pipeline.loop.promotion`): both models scored
on the current test labels, promoted only when a paired bootstrap backs the gain; otherwise
the round says why not. Each round records how many human labels it added per split (test relabels are
counted apart: they sharpen the yardstick, they do not teach the model) and the label
efficiency: macro-F1 gain per human label added to the train split.
"""

from __future__ import annotations

from pipeline.jobs import JobReporter
from pipeline.loop.promotion import judge_challenger
from pipeline.models.loading import check_base_model
from pipeline.train import run as training
from pipeline.train.config import TrainConfig
from store.actors import Actor, audit, require
from store.db import DbPath, connect, transaction
from store.errors import TastebudError
from store.jobs import get_job
from store.models import get_champion, promote_model
from store.rounds import count_round_human_labels, finish_round, start_round


class _SpanReporter(JobReporter):
    """Maps a sub-task's 0-1 progress into a span of the parent job's progress."""

    def __init__(self, parent: JobReporter, start: float, end: float):
        super().__init__(parent.db, parent.job_id, echo=parent._echo, console=parent.console)
        self._start, self._end = start, end

    def progress(self, fraction: float, message: str | None = None, *, force: bool = False) -> None:
        super().progress(self._start + (self._end - self._start) * fraction, message, force=force)


def retrain(db: DbPath, config, *, actor: Actor, reporter: JobReporter | None = None) -> dict:
    """Run one round: train on the current labels, compare with the champion, promote on evidence.

    Args:
        db: the store.
        config: a :class:`pipeline.train.config.TrainConfig`.
        actor: who runs the round (needs "train"; promotion needs "promote").
        reporter: progress and cancellation.

    Returns:
        {"round_id", "model_id", "champion_before", "promoted", "decision", "human_labels"
        {train, val, test, other}, "comparison" (bootstrap result or None), "label_efficiency"}.

    Example:
        >>> retrain("tastebud.duckdb", TrainConfig(epochs=2), actor=cli_actor())["promoted"]  # doctest: +SKIP
        True
    """
    require(actor, "train")
    require(actor, "promote")
    check_base_model(config.base_model)  # a bad --base-model fails before a round row exists
    reporter = reporter or JobReporter(db, None)
    with transaction(db) as con:
        round_id = start_round(con, actor=actor.name, job_id=reporter.job_id)
        champion = get_champion(con)
        audit(con, actor, "round.start", target=str(round_id), detail={"config": config.to_dict()})
    champion_id = champion["model_id"] if champion else None
    try:
        reporter.log(f"round {round_id}: training on the current labels (champion: {champion_id or 'none'})")
        model_id = training.train(db, config, reporter=_SpanReporter(reporter, 0.0, 0.85), actor=actor, round_id=round_id)
        with connect(db, read_only=True) as con:
            added = count_round_human_labels(con, round_id)
        reporter.progress(0.88, "scoring the test split with champion and challenger", force=True)
        promoted, decision, comparison = judge_challenger(db, champion_id, model_id)
        delta = comparison["delta"] if comparison else None
        efficiency = delta / added["train"] if delta is not None and added["train"] else None
        with transaction(db) as con:
            if promoted:
                promote_model(con, actor, model_id, reason=f"round {round_id}: {decision}")
            finish_round(
                con, round_id, status="succeeded", model_id=model_id, champion_before=champion_id,
                promoted=promoted, decision=decision,
                human_labels_train=added["train"], human_labels_val=added["val"],
                human_labels_test=added["test"], human_labels_other=added["other"],
                test_n=comparison["n"] if comparison else None,
                champion_macro_f1=comparison["champion_macro_f1"] if comparison else None,
                challenger_macro_f1=comparison["challenger_macro_f1"] if comparison else None,
                delta_macro_f1=delta, ci_low=comparison["ci_low"] if comparison else None,
                ci_high=comparison["ci_high"] if comparison else None, label_efficiency=efficiency,
                detail={"config": config.to_dict(), "comparison": comparison},
            )
            audit(con, actor, "round.finish", target=str(round_id),
                  detail={"model_id": model_id, "promoted": promoted, "decision": decision})
    except BaseException as exc:
        with transaction(db) as con:
            finish_round(con, round_id, status="failed", champion_before=champion_id,
                         decision=f"failed: {type(exc).__name__}: {exc}")
        raise
    reporter.log(f"round {round_id}: {decision}")
    reporter.progress(1.0, decision, force=True)
    return {
        "round_id": round_id,
        "model_id": model_id,
        "champion_before": champion_id,
        "promoted": promoted,
        "decision": decision,
        "human_labels": added,
        "comparison": comparison,
        "label_efficiency": efficiency,
    }


def run_job(db: DbPath, params: dict, reporter: JobReporter) -> dict:
    """Job kind "retrain": params are ``TrainConfig.to_dict()`` fields (all optional)."""
    try:
        config = TrainConfig.from_dict(dict(params or {}))
    except ValueError as exc:
        raise TastebudError(f"bad training parameters: {exc}") from exc
    name = "job"
    if reporter.job_id:
        with connect(db, read_only=True) as con:
            name = (get_job(con, reporter.job_id) or {}).get("actor") or name
    # start_job already checked that this person may run a retrain (permission "train").
    return retrain(db, config, actor=Actor(name=name, role="data_scientist"), reporter=reporter)
