"""Relabeling verbs for the dashboard and CLI: each opens one short write transaction.

The rules (role checks, audit, undo semantics) live in :mod:`store.relabeling`; these
wrappers only give every caller the same transaction boundary.
"""

from __future__ import annotations


from store import guidelines as guideline_store
from store import relabeling
from store.actors import Actor
from store.db import DbPath, transaction


def relabel(db: DbPath, actor: Actor, review_id: str, label: str, *, flag_id: int | None = None,
            comment: str | None = None) -> dict:
    """Give one review a human label (resolving its open flags).

    Args:
        db: the store.
        actor: labeler or above.
        review_id: the review.
        label: negative, neutral or positive.
        flag_id: the flag being worked on, if any.
        comment: the labeler's note, stored with the label.

    Returns:
        See :func:`store.relabeling.relabel`.

    Example:
        >>> relabel("t.duckdb", Actor("ana", "labeler"), "r1", "negative")  # doctest: +SKIP
    """
    with transaction(db) as con:
        return relabeling.relabel(con, actor, review_id, label, flag_id=flag_id, comment=comment)


def relabel_aspects(db: DbPath, actor: Actor, review_id: str, polarities: dict[str, str]) -> dict:
    """Correct one review's aspects (aspect -> absent/negative/neutral/positive/conflict); the aspects not
    given keep theirs.

    Returns:
        See :func:`store.relabeling.relabel_aspects`.

    Example:
        >>> relabel_aspects("t.duckdb", Actor("ana", "labeler"), "r1", {"service": "negative"})  # doctest: +SKIP
    """
    with transaction(db) as con:
        return relabeling.relabel_aspects(con, actor, review_id, polarities)


def bulk_relabel(db: DbPath, actor: Actor, review_ids: list[str], label: str) -> dict:
    """Give many reviews the same human label as one undoable action.

    Example:
        >>> bulk_relabel("t.duckdb", actor, ["r1", "r2"], "neutral")["relabeled"]  # doctest: +SKIP
        2
    """
    with transaction(db) as con:
        return relabeling.bulk_relabel(con, actor, review_ids, label)


def dismiss_flag(db: DbPath, actor: Actor, flag_id: int) -> dict:
    """Close a flag without relabeling.

    Example:
        >>> dismiss_flag("t.duckdb", Actor("ana", "labeler"), 7)  # doctest: +SKIP
    """
    with transaction(db) as con:
        return relabeling.dismiss_flag(con, actor, flag_id)


def undo_last(db: DbPath, actor: Actor) -> dict | None:
    """Undo ``actor``'s last relabel, bulk relabel, dismissal or aspect correction; None when nothing is left.

    Example:
        >>> undo_last("t.duckdb", Actor("ana", "labeler"))  # doctest: +SKIP
    """
    with transaction(db) as con:
        return relabeling.undo_last_action(con, actor)


def undo_action(db: DbPath, actor: Actor, action_id: int) -> dict:
    """Undo one of ``actor``'s own earlier actions (see :func:`store.relabeling.undo_action`).

    Example:
        >>> undo_action("t.duckdb", Actor("ana", "labeler"), 41)  # doctest: +SKIP
    """
    with transaction(db) as con:
        return relabeling.undo_action(con, actor, action_id)


def save_guidelines(db: DbPath, actor: Actor, body: str) -> int:
    """Store new labeling guidelines (markdown) as the current version; returns its version number.

    Example:
        >>> save_guidelines("t.duckdb", Actor("dario", "data_scientist"), "# Rules")  # doctest: +SKIP
        1
    """
    with transaction(db) as con:
        return guideline_store.save_guidelines(con, actor, body)
