"""The relabel loop on the command line: score, flag, flags, relabel, dismiss, undo, retrain, rounds."""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.cli.app import LOCAL_RAY, app, db_path, emit_json
from pipeline.cli.options import with_train_config
from pipeline.train.config import TrainConfig
from store.actors import Actor, cli_actor
from store.db import connect
from store.errors import TastebudError


def _foreground(kind: str, params: dict, as_json: bool, body, actor: Actor | None = None) -> dict:
    """Run ``body(reporter)`` here, recorded as a job row (``tastebud jobs`` and the dashboard see it)."""
    from pipeline.jobs import run_foreground

    # With --json, stdout carries only the JSON document; progress lines go to stderr.
    return run_foreground(db_path(), kind, params, actor or cli_actor(), body,
                          echo=lambda line: typer.echo(line, err=as_json))


def _background(kind: str, params: dict, as_json: bool) -> None:
    from pipeline.jobs import start_job

    job_id = start_job(db_path(), kind, params, cli_actor())
    emit_json({"job_id": job_id}) if as_json else typer.echo(job_id)


def _person(name: str | None) -> Actor:
    """The CLI operator, or a named labeler when --as is given (so the audit says who)."""
    return Actor(name=name, role="labeler") if name else cli_actor()


@app.command("score")
def score_cmd(
    model: str = typer.Option(None, "--model", help="Model id to score with (default: the champion)."),
    rescore_all: bool = typer.Option(False, "--all", help="Rescore every review, not only unscored or changed ones."),
    shard: str = typer.Option(None, "--shard", help="i/N: score only shard i of N (run N processes to split the work)."),
    chunk_size: int = typer.Option(None, "--chunk-size", help="Reviews per read/compute/write cycle."),
    ray: str = typer.Option(None, "--ray", metavar="[ADDRESS]",
                            help="Score on a Ray cluster (HOST:PORT, ray://HOST:PORT or auto); "
                                 "without an address, on a local Ray instance sized to this machine."),
    storage: str = typer.Option(None, "--storage", metavar="PATH_OR_URI",
                                help="With --ray: where the review shards go, reachable from every node (an NFS path, "
                                     "s3://..., gs://...; default: a temporary directory on this machine)."),
    task: str = typer.Option(None, "--task",
                             help="sentiment, aspects or all (default: all: the review champion, then the aspect "
                                  "champion when there is one; with --model, that model's task)."),
    background: bool = typer.Option(False, "--background", help="Run as a background job and print its id."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Score the reviews the champion (or --model) has not scored yet, and fill the aspect champion's aspect
    predictions; resumable and idempotent."""
    from pipeline.loop.scoring import check_chunk_size, parse_shard

    parse_shard(shard)  # reject a bad --shard or --chunk-size before starting anything
    check_chunk_size(chunk_size)
    if ray and shard:
        raise TastebudError("--ray and --shard do not mix: Ray splits the work across its workers itself")
    if storage and not ray:
        raise TastebudError("--storage needs --ray [ADDRESS]")
    tasks = _score_tasks(task, model)
    if background:
        for one in tasks:  # a job per task: each has its own progress, log and cancel
            if ray:
                _background("score-ray", {"model_id": model, "rescore_all": rescore_all, "address": ray,
                                          "storage": storage, "task": one}, as_json)
            else:
                _background("score" if one == "sentiment" else "score_aspects",
                            {"model_id": model, "rescore_all": rescore_all, "shard": shard, "chunk_size": chunk_size},
                            as_json)
        return
    results = {one: _score_one(one, model, rescore_all, shard, chunk_size, ray, storage, as_json) for one in tasks}
    # One JSON object: the review scoring's result with the aspect scoring's under "aspects" (or the aspect
    # scoring's alone when only aspects were scored).
    result = results.get("sentiment") or results["aspects"]
    if "sentiment" in results and "aspects" in results:
        result = {**result, "aspects": results["aspects"]}
    if as_json:
        emit_json(result)
        return
    if "sentiment" in results:
        r = results["sentiment"]
        typer.echo(f"scored {r['scored']:,} reviews with {r['model_id']} in {r['seconds']:.1f}s")
    if "aspects" in results:
        a = results["aspects"]
        typer.echo(f"aspects: scored {a['scored']:,} reviews with {a['model_id']} in {a['seconds']:.1f}s")


def _score_one(task: str, model: str | None, rescore_all: bool, shard: str | None, chunk_size: int | None,
               ray: str | None, storage: str | None, as_json: bool) -> dict:
    """Score one task in the foreground (a job row of its own), locally or on Ray."""
    params = {"model_id": model, "rescore_all": rescore_all, "shard": shard, "chunk_size": chunk_size}
    if ray:
        from pipeline.scale.ray_score import score_on_ray

        params = {**params, "ray": ray, "storage": storage, "task": task}
        body = lambda reporter: score_on_ray(db_path(), model_id=model, address=None if ray == LOCAL_RAY else ray,  # noqa: E731
                                             rescore_all=rescore_all, reporter=reporter, storage=storage, task=task)
    elif task == "aspects":
        from pipeline.aspects.scoring import score_aspects

        body = lambda reporter: score_aspects(db_path(), model_id=model, rescore_all=rescore_all, shard=shard,  # noqa: E731
                                              reporter=reporter, chunk_size=chunk_size)
    else:
        from pipeline.loop.scoring import score

        body = lambda reporter: score(db_path(), model_id=model, rescore_all=rescore_all, shard=shard,  # noqa: E731
                                      reporter=reporter, chunk_size=chunk_size)
    return _foreground("score" if task == "sentiment" else "score_aspects", params, as_json, body)


def _score_tasks(task: str | None, model: str | None) -> list[str]:
    """Which tasks `score` runs: the one asked for, the given model's, or both (aspects only when there is an
    aspect champion)."""
    from store.models import get_champion, get_model

    if task not in (None, "sentiment", "aspects", "all"):
        raise TastebudError(f"--task must be sentiment, aspects or all, got {task!r}")
    with connect(db_path(), read_only=True) as con:
        if model is not None:
            row = get_model(con, model)
            if row is None:
                raise TastebudError(f"no model {model!r} in the store (see `tastebud models`)")
            own = row.get("task") or "sentiment"
            if task not in (None, "all", own):
                raise TastebudError(f"{model} is a {own} model; --task {task} does not apply to it")
            return [own]
        has_sentiment = get_champion(con) is not None
        has_aspects = get_champion(con, "aspects") is not None
    if task == "aspects" and not has_aspects:
        raise TastebudError("there is no aspect champion yet: train one with `tastebud train --task aspects`")
    if task in ("sentiment", "aspects"):
        return [task]
    # "all": what has a champion; with neither, review scoring says what to do.
    return [t for t, has in (("sentiment", has_sentiment), ("aspects", has_aspects)) if has] or ["sentiment"]


@app.command("flag")
def flag_cmd(
    model: str = typer.Option(None, "--model", help="Model whose predictions drive flagging (default: champion)."),
    reason: list[str] = typer.Option(None, "--reason", help="Only these reasons (repeatable)."),
    background: bool = typer.Option(False, "--background", help="Run as a background job and print its id."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Flag hard cases for relabeling: low confidence, disagreement, rating vs text, label issues, new terms."""
    from pipeline.loop.flagging import flag

    if background:
        _background("flag", {"model_id": model, "reasons": reason or None}, as_json)
        return
    result = _foreground("flag", {"model_id": model, "reasons": reason or None}, as_json,
                         lambda reporter: flag(db_path(), model_id=model, reasons=reason or None, reporter=reporter))
    if as_json:
        emit_json(result)
        return
    typer.echo(f"new flags from {result['model_id']}: " + ", ".join(f"{k} {v}" for k, v in result["inserted"].items()))
    if result["notes"].get("skipped"):
        typer.echo(f"  {result['notes']['skipped']}")
    for term in result["terms"]:
        typer.echo(f"  emerging term {term['term']!r}: {term['recent_count']} recent vs {term['prior_count']} before, "
                   f"lift {term['lift']}, model uncertainty {term['mean_uncertainty']:.2f}")


@app.command("flags")
def flags_cmd(
    reason: list[str] = typer.Option(None, "--reason", help="Only these reasons (repeatable)."),
    status: str = typer.Option("open", "--status", help="open, resolved, dismissed or all."),
    limit: int = typer.Option(50, "--limit", min=1),
    offset: int = typer.Option(0, "--offset", min=0),
    as_json: bool = typer.Option(False, "--json", help="Print the flags as JSON."),
) -> None:
    """List flags, highest priority first."""
    from store.flags import fetch_flag_queue

    try:
        with connect(db_path(), read_only=True) as con:
            queue = fetch_flag_queue(con, reasons=reason or None, status=None if status == "all" else status,
                                     limit=limit, offset=offset)
    except ValueError as exc:
        raise TastebudError(str(exc)) from exc
    if as_json:
        emit_json(queue.to_dict("records"))
        return
    if queue.empty:
        typer.echo("no flags")
        return
    for row in queue.itertuples():
        text = " ".join(str(row.text).split())
        term = f" [{row.term}]" if isinstance(row.term, str) else ""
        typer.echo(f"#{row.flag_id:<6} {row.priority:.2f} {row.reason}{term}  {row.review_id}  stars={row.stars} "
                   f"label={row.current_label} model={row.model_label}  {text[:90]}")


@app.command("relabel")
def relabel_cmd(
    review_ids: list[str] = typer.Argument(None, help="Review id(s) to relabel."),
    label: str = typer.Option(..., "--label", "-l", help="negative, neutral or positive."),
    flag_id: int = typer.Option(None, "--flag", help="The flag being worked on (single review only)."),
    from_file: Path = typer.Option(None, "--from-file", help="A file of review ids, one per line (bulk)."),
    person: str = typer.Option(None, "--as", help="Record the labels under this labeler's name."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Give reviews a human label; several ids (or --from-file) make one undoable bulk action."""
    from pipeline.loop import relabel as rl

    ids = list(review_ids or [])
    if from_file is not None:
        if not from_file.exists():
            raise TastebudError(f"no such file: {from_file}")
        ids += [line.strip() for line in from_file.read_text().splitlines() if line.strip()]
    if not ids:
        raise TastebudError("give at least one review id (or --from-file)")
    actor = _person(person)
    if len(ids) == 1:
        result = rl.relabel(db_path(), actor, ids[0], label, flag_id=flag_id)
        message = (f"{ids[0]}: {result['previous_label']} ({result['previous_source']}) -> {label}; "
                   f"{len(result['resolved_flags'])} flag(s) resolved")
    else:
        if flag_id is not None:
            raise TastebudError("--flag goes with a single review id")
        result = rl.bulk_relabel(db_path(), actor, ids, label)
        message = f"relabeled {result['relabeled']} reviews as {label}; {result['resolved_flags']} flag(s) resolved"
    emit_json(result) if as_json else typer.echo(message)


@app.command("dismiss")
def dismiss_cmd(
    flag_id: int = typer.Argument(..., help="The flag to dismiss."),
    person: str = typer.Option(None, "--as", help="Record the action under this labeler's name."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Close a flag without relabeling (its current label is right)."""
    from pipeline.loop import relabel as rl

    result = rl.dismiss_flag(db_path(), _person(person), flag_id)
    emit_json(result) if as_json else typer.echo(f"dismissed flag {flag_id} ({result['review_id']})")


@app.command("undo")
def undo_cmd(
    person: str = typer.Option(None, "--as", help="Undo this labeler's last action (default: yours)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Undo your last relabel, bulk relabel, dismissal or aspect correction (history is kept; the labels revert)."""
    from pipeline.loop import relabel as rl

    result = rl.undo_last(db_path(), _person(person))
    if as_json:
        emit_json(result)
    elif result is None:
        typer.echo("nothing to undo")
    else:
        kind = "aspect correction" if result["kind"] == "aspects" else result["kind"]
        typer.echo(f"undid {kind} #{result['undid_action_id']}: {result['retracted_labels']} label(s) "
                   f"retracted, {result['reopened_flags']} flag(s) reopened")


@app.command("retrain")
@with_train_config
def retrain_cmd(
    config: TrainConfig,
    background: bool = typer.Option(False, "--background", help="Run as a background job and print its id."),
    as_json: bool = typer.Option(False, "--json", help="Print the round as JSON."),
) -> None:
    """Train on the current labels (human relabels included) and promote only if the test gain is backed
    by a paired-bootstrap confidence interval."""
    if background:
        _background("retrain", config.to_dict(), as_json)
        return
    from pipeline.loop.rounds import retrain

    result = _foreground("retrain", config.to_dict(), as_json,
                         lambda reporter: retrain(db_path(), config, actor=cli_actor(), reporter=reporter))
    if as_json:
        emit_json(result)
        return
    added = result["human_labels"]
    typer.echo(f"round {result['round_id']}: {result['model_id']} - {result['decision']}")
    typer.echo(f"  human labels added: train {added['train']}, val {added['val']}, test {added['test']}"
               + (f"; gain per train relabel {result['label_efficiency']:+.5f}" if result["label_efficiency"] else ""))


@app.command("rounds")
def rounds_cmd(as_json: bool = typer.Option(False, "--json")) -> None:
    """Past retrain rounds: human labels added, metric change, promotion decision."""
    import pandas as pd

    from store.rounds import list_rounds

    with connect(db_path(), read_only=True) as con:
        rounds = list_rounds(con)
    if as_json:
        emit_json(rounds.to_dict("records"))
        return
    if rounds.empty:
        typer.echo("no rounds yet")
    for row in rounds.itertuples():
        delta = "-" if pd.isna(row.delta_macro_f1) else f"{row.delta_macro_f1:+.4f}"
        efficiency = "-" if pd.isna(row.label_efficiency) else f"{row.label_efficiency:+.5f}"
        typer.echo(f"round {row.round_id} [{row.status}] {row.model_id or '-'} promoted={row.promoted} "
                   f"human labels train/val/test={row.human_labels_train}/{row.human_labels_val}/"
                   f"{row.human_labels_test} macro-F1 change {delta} per train relabel {efficiency}")
        typer.echo(f"    {row.decision}")
