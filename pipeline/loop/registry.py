"""Champion and challengers: promote, roll back, and promote-if-better after training.

Each verb opens one short transaction; the role check and the audit row happen inside
the store functions (:func:`store.models.promote_model`, :func:`store.models.rollback_champion`).
"""

from __future__ import annotations

from store import evaluations as evaluation_store
from store import models as model_store
from store.actors import Actor, require
from store.db import connect, transaction


def promote(db, model_id: str, actor: Actor, *, reason: str | None = None) -> dict:
    """Make ``model_id`` the champion.

    Args:
        db: store path.
        model_id: a registered, ready model.
        actor: needs the "promote" permission (data scientists and admins).
        reason: free text kept in the promotion history.

    Returns:
        The promotion row (promotion_id, model_id, previous_model_id, action, actor, reason, created_at).

    Example:
        >>> promote("store.duckdb", "ft-20261125-101500-1a2b", cli_actor())["previous_model_id"]  # doctest: +SKIP
        'baseline-vader'
    """
    with transaction(db) as con:
        return model_store.promote_model(con, actor, model_id, reason=reason)


def rollback(db, actor: Actor, *, reason: str | None = None) -> dict:
    """Return the champion to the previous one (undoing the latest promotion still in effect).

    Example:
        >>> rollback("store.duckdb", cli_actor())["model_id"]  # doctest: +SKIP
        'baseline-vader'
    """
    with transaction(db) as con:
        return model_store.rollback_champion(con, actor, reason=reason)


def promote_if_better(db, model_id: str, actor: Actor, *, metric: str = "macro_f1") -> dict:
    """Promote ``model_id`` when its stored test ``metric`` beats the champion's (or there is none).

    Returns:
        {"promoted": bool, "model_id", "champion" (before), "score", "champion_score", "message"}.
    """
    require(actor, "promote")
    with connect(db, read_only=True) as con:
        champion = model_store.get_champion(con)
        mine = evaluation_store.fetch_latest_evaluation(con, model_id)
        theirs = evaluation_store.fetch_latest_evaluation(con, champion["model_id"]) if champion else None
    score = (mine or {}).get(metric)
    champion_score = (theirs or {}).get(metric)
    outcome = {"model_id": model_id, "champion": champion["model_id"] if champion else None,
               "score": score, "champion_score": champion_score, "promoted": False}
    if score is None:
        return {**outcome, "message": f"{model_id} has no test evaluation; champion unchanged"}
    if champion is not None and champion_score is not None and score <= champion_score:
        return {**outcome, "message": f"{model_id} test {metric} {score:.4f} does not beat champion "
                f"{champion['model_id']} ({champion_score:.4f}); champion unchanged"}
    promote(db, model_id, actor, reason=f"auto: test {metric} {score:.4f} vs {champion_score if champion_score is not None else 'none'}")
    return {**outcome, "promoted": True, "message": f"promoted {model_id} (test {metric} {score:.4f})"}
