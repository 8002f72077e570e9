"""Human relabeling: relabel, bulk relabel, dismiss a flag, and undo one's own last action.

Every function checks the actor's role, writes an audit row, and records a relabel action
listing exactly the label rows and flag changes it made. Labels are never deleted: an undo
appends a retraction for the action's label rows (``current_labels`` skips retracted rows,
so the review falls back to its previous human label, else its star/import label) and
puts the flags the action closed back to open when nothing else settled them since.
Human labels outrank star-derived and imported ones in ``current_labels``.

Call these inside a transaction (``store.db.transaction``); ``pipeline.loop.relabel`` does.
"""

from __future__ import annotations

from datetime import datetime

import duckdb
import pandas as pd

from store.actors import Actor, audit, require
from store.constants import LABELS
from store.errors import TastebudError
from store.flags import get_flag, resolve_open_flags, set_flag_status
from store.labels import fetch_current_labels
from store.rounds import next_round_number

# Most review ids one bulk relabel may touch: a guard against relabeling a whole store by mistake.
MAX_BULK_RELABEL = 10_000


def _check_label(label: str) -> None:
    if label not in LABELS:
        raise TastebudError(f"unknown label {label!r}; expected one of {', '.join(LABELS)}")


def _new_action(con: duckdb.DuckDBPyConnection, actor: Actor, kind: str, *, undoes: int | None = None) -> int:
    return con.execute(
        "INSERT INTO relabel_actions (actor, kind, undoes, created_at) VALUES (?, ?, ?, ?) RETURNING action_id",
        [actor.name, kind, undoes, datetime.now()],
    ).fetchone()[0]


def _add_items(con: duckdb.DuckDBPyConnection, action_id: int, items: list[dict]) -> None:
    if not items:
        return
    frame = pd.DataFrame(items, columns=["review_id", "label_id", "flag_id", "previous_status"])
    frame["action_id"] = action_id
    con.register("_action_items", frame)
    try:
        con.execute(
            """
            INSERT INTO relabel_action_items (action_id, review_id, label_id, flag_id, previous_status)
            SELECT action_id, review_id, label_id::BIGINT, flag_id::BIGINT, previous_status::VARCHAR FROM _action_items
            """
        )
    finally:
        con.unregister("_action_items")


def _apply_relabels(con: duckdb.DuckDBPyConnection, actor: Actor, review_ids: list[str], label: str,
                    round_: int | None) -> tuple[int, list[dict], dict]:
    known = {r for (r,) in con.execute(
        "SELECT review_id FROM reviews WHERE review_id IN (SELECT unnest(?::VARCHAR[]))", [review_ids]).fetchall()}
    missing = [r for r in review_ids if r not in known]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise TastebudError(f"no such review: {shown}")
    before = fetch_current_labels(con, review_ids)
    round_ = next_round_number(con) if round_ is None else round_
    now = datetime.now()
    label_rows = con.execute(
        """
        INSERT INTO labels (review_id, label, source, labeler, created_at, round)
        SELECT unnest(?::VARCHAR[]), ?, 'human', ?, ?, ?
        RETURNING label_id, review_id
        """,
        [review_ids, label, actor.name, now, round_],
    ).fetchall()
    resolved = resolve_open_flags(con, review_ids, actor.name)
    action_id = _new_action(con, actor, "relabel")
    items = [{"review_id": r, "label_id": lid, "flag_id": None, "previous_status": None} for lid, r in label_rows]
    items += [{"review_id": r, "label_id": None, "flag_id": fid, "previous_status": "open"} for fid, r in resolved]
    _add_items(con, action_id, items)
    return action_id, [{"flag_id": f, "review_id": r} for f, r in resolved], before


def relabel(
    con: duckdb.DuckDBPyConnection,
    actor: Actor,
    review_id: str,
    label: str,
    *,
    flag_id: int | None = None,
    round: int | None = None,
) -> dict:
    """Give ``review_id`` a human label and resolve its open flags.

    Args:
        con: connection inside a transaction.
        actor: who relabels (labeler role or above).
        review_id: the review.
        label: negative, neutral or positive.
        flag_id: the flag being worked on, if any (must belong to the review).
        round: the round the label feeds (default: the next retrain round).

    Returns:
        {"action_id", "review_id", "label", "previous_label", "previous_source", "resolved_flags"}.

    Example:
        >>> relabel(con, Actor("ana", "labeler"), "r1", "negative")["label"]  # doctest: +SKIP
        'negative'
    """
    require(actor, "relabel")
    _check_label(label)
    if flag_id is not None:
        flag = get_flag(con, flag_id)
        if flag is None or flag["review_id"] != review_id:
            raise TastebudError(f"flag {flag_id} is not a flag of review {review_id}")
    action_id, resolved, before = _apply_relabels(con, actor, [review_id], label, round)
    previous = before.get(review_id, (None, None))
    result = {
        "action_id": action_id,
        "review_id": review_id,
        "label": label,
        "previous_label": previous[0],
        "previous_source": previous[1],
        "resolved_flags": [r["flag_id"] for r in resolved],
    }
    audit(con, actor, "relabel", target=review_id, detail={**result, "flag_id": flag_id})
    return result


def bulk_relabel(con: duckdb.DuckDBPyConnection, actor: Actor, review_ids: list[str], label: str) -> dict:
    """Give every review in ``review_ids`` the same human label, as one undoable action.

    Returns:
        {"action_id", "label", "relabeled": n, "resolved_flags": n}.

    Example:
        >>> bulk_relabel(con, actor, ["r1", "r2"], "neutral")["relabeled"]  # doctest: +SKIP
        2
    """
    require(actor, "relabel")
    _check_label(label)
    ids = list(dict.fromkeys(str(r) for r in review_ids))
    if not ids:
        raise TastebudError("bulk relabel needs at least one review id")
    if len(ids) > MAX_BULK_RELABEL:
        raise TastebudError(f"bulk relabel takes at most {MAX_BULK_RELABEL:,} reviews at once, got {len(ids):,}")
    action_id, resolved, _ = _apply_relabels(con, actor, ids, label, None)
    result = {"action_id": action_id, "label": label, "relabeled": len(ids), "resolved_flags": len(resolved)}
    audit(con, actor, "relabel.bulk", target=f"{len(ids)} reviews", detail={**result, "review_ids": ids[:100]})
    return result


def dismiss_flag(con: duckdb.DuckDBPyConnection, actor: Actor, flag_id: int) -> dict:
    """Close an open flag without relabeling (the current label is right).

    Returns:
        {"action_id", "flag_id", "review_id"}.

    Example:
        >>> dismiss_flag(con, Actor("ana", "labeler"), 12)["flag_id"]  # doctest: +SKIP
        12
    """
    require(actor, "flag.dismiss")
    flag = get_flag(con, flag_id)
    if flag is None:
        raise TastebudError(f"no flag {flag_id}")
    if flag["status"] != "open":
        raise TastebudError(f"flag {flag_id} is already {flag['status']}")
    set_flag_status(con, [flag_id], "dismissed", actor.name)
    action_id = _new_action(con, actor, "dismiss")
    _add_items(con, action_id, [{"review_id": flag["review_id"], "label_id": None, "flag_id": flag_id,
                                 "previous_status": "open"}])
    result = {"action_id": action_id, "flag_id": flag_id, "review_id": flag["review_id"]}
    audit(con, actor, "flag.dismiss", target=str(flag_id), detail=result)
    return result


def undo_last_action(con: duckdb.DuckDBPyConnection, actor: Actor) -> dict | None:
    """Reverse ``actor``'s most recent relabel, bulk relabel or dismissal not undone yet.

    Label rows get a retraction (history is kept); flags the action closed are reopened
    unless they changed since or their review still has a human label from someone else.
    Repeated undos walk further back.

    Returns:
        {"undo_action_id", "undid_action_id", "kind", "retracted_labels", "reopened_flags",
        "review_ids"}, or None when the actor has nothing left to undo.

    Example:
        >>> undo_last_action(con, Actor("ana", "labeler"))["kind"]  # doctest: +SKIP
        'relabel'
    """
    require(actor, "relabel")
    row = con.execute(
        """
        SELECT a.action_id, a.kind FROM relabel_actions a
        WHERE a.actor = ? AND a.kind IN ('relabel', 'dismiss')
          AND NOT EXISTS (SELECT 1 FROM relabel_actions u WHERE u.kind = 'undo' AND u.undoes = a.action_id)
        ORDER BY a.action_id DESC LIMIT 1
        """,
        [actor.name],
    ).fetchone()
    if row is None:
        return None
    target, kind = row
    undo_id = _new_action(con, actor, "undo", undoes=target)
    now = datetime.now()
    retracted = con.execute(
        """
        INSERT INTO label_retractions (label_id, action_id, retracted_by, retracted_at)
        SELECT i.label_id, ?, ?, ? FROM relabel_action_items i
        WHERE i.action_id = ? AND i.label_id IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM label_retractions x WHERE x.label_id = i.label_id)
        RETURNING label_id
        """,
        [undo_id, actor.name, now, target],
    ).fetchall()
    # Reopen a closed flag only if this action closed it and it is still as the action left it,
    # and its review has no remaining human label (someone else may have relabeled it too).
    reopen = [f for (f,) in con.execute(
        """
        SELECT i.flag_id FROM relabel_action_items i JOIN flags f USING (flag_id)
        WHERE i.action_id = ? AND i.flag_id IS NOT NULL AND i.previous_status = 'open'
          AND f.status = CASE WHEN ? = 'dismiss' THEN 'dismissed' ELSE 'resolved' END
          AND f.resolved_by = ?
          AND NOT EXISTS (SELECT 1 FROM current_labels l WHERE l.review_id = f.review_id AND l.source = 'human')
        """,
        [target, kind, actor.name],
    ).fetchall()]
    set_flag_status(con, reopen, "open", None)
    review_ids = [r for (r,) in con.execute(
        "SELECT DISTINCT review_id FROM relabel_action_items WHERE action_id = ? ORDER BY 1", [target]).fetchall()]
    result = {
        "undo_action_id": undo_id,
        "undid_action_id": target,
        "kind": kind,
        "retracted_labels": len(retracted),
        "reopened_flags": len(reopen),
        "review_ids": review_ids,
    }
    audit(con, actor, "relabel.undo", target=str(target), detail={**result, "review_ids": review_ids[:100]})
    return result


def fetch_label_history(con: duckdb.DuckDBPyConnection, review_id: str) -> pd.DataFrame:
    """Every label row of a review, oldest first, with whether and by whom it was retracted."""
    return con.execute(
        """
        SELECT l.label_id, l.label, l.source, l.labeler, l.created_at, l.round,
               x.retracted_by, x.retracted_at
        FROM labels l LEFT JOIN label_retractions x USING (label_id)
        WHERE l.review_id = ? ORDER BY l.label_id
        """,
        [review_id],
    ).df()


def relabel_progress(con: duckdb.DuckDBPyConnection) -> dict:
    """Where the relabel queue stands.

    Returns:
        {"open", "resolved", "dismissed"} flag counts, "human_labels" (reviews whose current label is
        human), "next_round", "next_round_labels" (human labels waiting for the next retrain), and
        "by_labeler" (current human labels per person).

    Example:
        >>> relabel_progress(con)["open"]  # doctest: +SKIP
        42
    """
    status = dict(con.execute("SELECT status, count(*) FROM flags GROUP BY 1").fetchall())
    next_round = next_round_number(con)
    by_labeler = dict(
        con.execute(
            "SELECT labeler, count(*) FROM current_labels WHERE source = 'human' GROUP BY 1 ORDER BY 2 DESC"
        ).fetchall()
    )
    waiting = con.execute(
        """
        SELECT count(*) FROM current_labels
        WHERE source = 'human'
          -- a running round already owns the labels made before it started
          AND round > (SELECT coalesce(max(round_id), 0) FROM rounds WHERE status IN ('succeeded', 'running'))
        """
    ).fetchone()[0]
    return {
        "open": status.get("open", 0),
        "resolved": status.get("resolved", 0),
        "dismissed": status.get("dismissed", 0),
        "human_labels": sum(by_labeler.values()),
        "next_round": next_round,
        "next_round_labels": waiting,
        "by_labeler": by_labeler,
    }
