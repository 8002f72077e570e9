"""Champion and challengers: promote and roll back (promote-if-better: :mod:`pipeline.loop.promotion`).

Each verb opens one short transaction; the role check and the audit row happen inside
the store functions (:func:`store.models.promote_model`, :func:`store.models.rollback_champion`).
"""

from __future__ import annotations

from store import models as model_store
from store.actors import Actor
from store.db import transaction


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


def rollback(db, actor: Actor, *, reason: str | None = None, task: str = "sentiment") -> dict:
    """Return a task's champion to the previous one (undoing the latest promotion still in effect).

    Example:
        >>> rollback("store.duckdb", cli_actor())["model_id"]  # doctest: +SKIP
        'baseline-vader'
    """
    with transaction(db) as con:
        return model_store.rollback_champion(con, actor, reason=reason, task=task)
