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
from store.aspects import aspect_names, current_review_aspects, fetch_aspect_predictions, set_review_aspects
from store.constants import LABELS
from store.errors import TastebudError
from store.flags import get_flag, resolve_open_flags, set_flag_status
from store.labels import fetch_current_labels
from store.models import get_champion
from store.rounds import next_round_number

# Most review ids one bulk relabel may touch: a guard against relabeling a whole store by mistake.
MAX_BULK_RELABEL = 10_000
# Up to this many ids are bound one placeholder each (a scan filter); more go through a list join.
_PLACEHOLDER_IDS = 500
# Longest comment a labeler may attach to a relabel (characters).
MAX_COMMENT_CHARS = 2_000


def _clean_comment(comment: str | None) -> str | None:
    if comment is None:
        return None
    if not isinstance(comment, str):
        raise TastebudError("a label comment must be text")
    comment = comment.strip()
    if len(comment) > MAX_COMMENT_CHARS:
        raise TastebudError(f"a label comment is limited to {MAX_COMMENT_CHARS:,} characters, got {len(comment):,}")
    return comment or None


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
    frame = pd.DataFrame(items, columns=["review_id", "label_id", "flag_id", "previous_status", "aspect_label_id"])
    frame["action_id"] = action_id
    con.register("_action_items", frame)
    try:
        con.execute(
            """
            INSERT INTO relabel_action_items (action_id, review_id, label_id, flag_id, previous_status, aspect_label_id)
            SELECT action_id, review_id, label_id::BIGINT, flag_id::BIGINT, previous_status::VARCHAR,
                   aspect_label_id::BIGINT
            FROM _action_items
            """
        )
    finally:
        con.unregister("_action_items")


def _apply_relabels(con: duckdb.DuckDBPyConnection, actor: Actor, review_ids: list[str], label: str,
                    round_: int | None) -> tuple[int, list[dict], dict]:
    if len(review_ids) <= _PLACEHOLDER_IDS:  # filtered in the scan, not hashed against every review
        marks = ", ".join("?" * len(review_ids))
        known = {r for (r,) in con.execute(
            f"SELECT review_id FROM reviews WHERE review_id IN ({marks})", list(review_ids)).fetchall()}
    else:
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
    comment: str | None = None,
) -> dict:
    """Give ``review_id`` a human label and resolve its open flags.

    Args:
        con: connection inside a transaction.
        actor: who relabels (labeler role or above).
        review_id: the review.
        label: negative, neutral or positive.
        flag_id: the flag being worked on, if any (must belong to the review).
        round: the round the label feeds (default: the next retrain round).
        comment: the labeler's note, stored with the label (at most :data:`MAX_COMMENT_CHARS`).

    Returns:
        {"action_id", "review_id", "label", "previous_label", "previous_source", "resolved_flags"}.

    Example:
        >>> relabel(con, Actor("ana", "labeler"), "r1", "negative")["label"]  # doctest: +SKIP
        'negative'
    """
    require(actor, "relabel")
    _check_label(label)
    comment = _clean_comment(comment)
    if flag_id is not None:
        flag = get_flag(con, flag_id)
        if flag is None or flag["review_id"] != review_id:
            raise TastebudError(f"flag {flag_id} is not a flag of review {review_id}")
    action_id, resolved, before = _apply_relabels(con, actor, [review_id], label, round)
    if comment:
        con.execute(
            """
            INSERT INTO label_comments (label_id, comment, created_at)
            SELECT label_id, ?, ? FROM relabel_action_items WHERE action_id = ? AND label_id IS NOT NULL
            """,
            [comment, datetime.now(), action_id],
        )
    previous = before.get(review_id, (None, None))
    result = {
        "action_id": action_id,
        "review_id": review_id,
        "label": label,
        "previous_label": previous[0],
        "previous_source": previous[1],
        "resolved_flags": [r["flag_id"] for r in resolved],
    }
    audit(con, actor, "relabel", target=review_id, detail={**result, "flag_id": flag_id, "comment": comment})
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
    """Reverse ``actor``'s most recent relabel, bulk relabel, dismissal or aspect correction not undone yet.

    Label rows (review or aspect labels) get a retraction (history is kept); flags the action closed
    are reopened unless they changed since or their review still has a human label from someone else.
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
        WHERE a.actor = ? AND a.kind IN ('relabel', 'dismiss', 'aspects')
          AND NOT EXISTS (SELECT 1 FROM relabel_actions u WHERE u.kind = 'undo' AND u.undoes = a.action_id)
        ORDER BY a.action_id DESC LIMIT 1
        """,
        [actor.name],
    ).fetchone()
    if row is None:
        return None
    return _undo(con, actor, *row)


def undo_action(con: duckdb.DuckDBPyConnection, actor: Actor, action_id: int) -> dict:
    """Reverse one of ``actor``'s own relabels, bulk relabels, dismissals or aspect corrections, however
    old, as :func:`undo_last_action` does for the newest.

    Raises:
        TastebudError: the action does not exist, is someone else's, is an undo, or was undone already.

    Example:
        >>> undo_action(con, Actor("ana", "labeler"), 41)["undid_action_id"]  # doctest: +SKIP
        41
    """
    require(actor, "relabel")
    row = con.execute(
        """
        SELECT a.actor, a.kind,
               EXISTS (SELECT 1 FROM relabel_actions u WHERE u.kind = 'undo' AND u.undoes = a.action_id)
        FROM relabel_actions a WHERE a.action_id = ?
        """,
        [int(action_id)],
    ).fetchone()
    if row is None or row[1] == "undo":
        raise TastebudError(f"no relabel, dismissal or aspect correction {action_id}")
    owner, kind, undone = row
    if owner != actor.name:
        raise TastebudError(f"action {action_id} is {owner}'s; you can undo only your own")
    if undone:
        raise TastebudError(f"action {action_id} was undone already")
    return _undo(con, actor, int(action_id), kind)


def _undo(con: duckdb.DuckDBPyConnection, actor: Actor, target: int, kind: str) -> dict:
    undo_id = _new_action(con, actor, "undo", undoes=target)
    now = datetime.now()
    retracted = []
    # Review labels and aspect labels the action appended: each gets a retraction row (nothing is deleted).
    for table, key in (("label_retractions", "label_id"), ("aspect_label_retractions", "aspect_label_id")):
        retracted += con.execute(
            f"""
            INSERT INTO {table} ({key}, action_id, retracted_by, retracted_at, reason)
            SELECT i.{key}, ?, ?, ?, 'undo' FROM relabel_action_items i
            WHERE i.action_id = ? AND i.{key} IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM {table} x WHERE x.{key} = i.{key})
            RETURNING {key}
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


def relabel_aspects(con: duckdb.DuckDBPyConnection, actor: Actor, review_id: str, polarities: dict[str, str]) -> dict:
    """A labeler's aspect correction of one review (see :func:`store.aspects.set_review_aspects`): the
    aspects given get these polarities, the others keep theirs (absent when the review had no annotation).

    The rows are human aspect labels of the next round (the next aspect training reads them) and the
    change is audited and undoable (:func:`undo_last_action`: the rows get retractions and the review's
    earlier aspect labels are current again). Review-level labels and flags are untouched: the review's
    overall label is a separate decision (relabel or dismiss).

    Raises:
        PermissionDeniedError: the actor may not relabel.
        TastebudError: no aspect given, unknown review, aspect or polarity.

    Returns:
        {"review_id", "written" (label rows appended; 0 when the person confirmed their own labels),
        "changed" (the aspects whose polarity is now another than before: an aspect without a label counts
        as absent; ``written`` also counts imported labels the person confirmed), "aspects" (aspect -> polarity now), "previous" (aspect -> polarity before, annotated aspects only),
        "action_id" (the undoable action, kind "aspects"; None when nothing was written)}.

    Example:
        >>> relabel_aspects(con, Actor("ana", "labeler"), "r1", {"service": "negative"})["written"]  # doctest: +SKIP
        1
    """
    require(actor, "relabel")
    if not polarities:
        raise TastebudError("give at least one aspect and its polarity, e.g. service=negative")
    previous = {a: p for a, (p, _) in current_review_aspects(con, review_id).items()}
    added = set_review_aspects(con, actor, review_id, polarities, round=next_round_number(con))
    now = {a: p for a, (p, _) in current_review_aspects(con, review_id).items()}
    action_id = None
    if added:
        action_id = _new_action(con, actor, "aspects")
        _add_items(con, action_id, [{"review_id": review_id, "label_id": None, "flag_id": None, "previous_status": None,
                                     "aspect_label_id": i} for i in added])
    changed = [a for a, p in now.items() if p != previous.get(a, "absent")]
    return {"review_id": review_id, "written": len(added), "changed": changed, "aspects": now, "previous": previous,
            "action_id": action_id}


def fetch_review_aspects(con: duckdb.DuckDBPyConnection, review_id: str) -> dict:
    """What the labeler's queue shows of one review's aspects: the store's aspects, the review's current
    aspect labels and the aspect champion's predictions with their evidence sentences.

    Returns:
        {"aspects": [names in display order], "labels": {aspect: (polarity, source)} (empty when not
        annotated), "model_id": the aspect champion or None, "predictions": DataFrame (aspect, polarity,
        p_present, p_negative, p_neutral, p_positive, evidence_start, evidence_end, evidence; empty
        without a champion or when it has not scored the review)}.

    Example:
        >>> fetch_review_aspects(con, "r1")["model_id"]  # doctest: +SKIP
        'asp-20261201-0930'
    """
    champion = get_champion(con, task="aspects")
    model_id = champion["model_id"] if champion else None
    predictions = fetch_aspect_predictions(con, model_id, [review_id]) if model_id else pd.DataFrame()
    if predictions.empty:
        predictions = pd.DataFrame(columns=["aspect", "polarity", "p_present", "p_negative", "p_neutral", "p_positive",
                                            "evidence_start", "evidence_end", "evidence"])
    return {"aspects": aspect_names(con), "labels": current_review_aspects(con, review_id), "model_id": model_id,
            "predictions": predictions.drop(columns=["review_id", "scored_at"], errors="ignore")}


def aspect_choices(view: dict) -> dict[str, str]:
    """The polarity each aspect's choice starts at: the review's current aspect labels when it is annotated
    (an aspect without a label is absent), else the aspect model's predictions, else absent.

    Example:
        >>> aspect_choices({"aspects": ["food", "service"], "labels": {},
        ...                 "predictions": pd.DataFrame({"aspect": ["service"], "polarity": ["negative"]})})
        {'food': 'absent', 'service': 'negative'}
    """
    if view["labels"]:
        return {a: view["labels"].get(a, ("absent", None))[0] for a in view["aspects"]}
    predicted = dict(zip(view["predictions"]["aspect"], view["predictions"]["polarity"]))
    return {a: predicted.get(a, "absent") for a in view["aspects"]}


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


def fetch_recent_actions(con: duckdb.DuckDBPyConnection, actor_name: str, *, limit: int = 20) -> pd.DataFrame:
    """``actor_name``'s newest relabels, dismissals and aspect corrections, whether undone or not, newest first.

    Returns:
        action_id, kind ("relabel", "dismiss" or "aspects"), created_at, reviews (how many), label (the
        label given; for an aspect correction the aspects it set, "service negative, food absent"; None for
        a dismissal), comment, review_id and text (of the first review), undone (bool).

    Example:
        >>> fetch_recent_actions(con, "ana", limit=5)["kind"].tolist()  # doctest: +SKIP
        ['relabel', 'dismiss', 'relabel']
    """
    actions = con.execute(
        """
        WITH mine AS (
            SELECT action_id, kind, created_at FROM relabel_actions
            WHERE actor = ? AND kind IN ('relabel', 'dismiss', 'aspects')
            ORDER BY action_id DESC LIMIT ?
        ), items AS (
            SELECT i.action_id, count(DISTINCT i.review_id) AS reviews, min(i.review_id) AS review_id,
                   min(i.label_id) AS label_id,
                   string_agg(a.aspect || ' ' || a.polarity, ', ' ORDER BY p.position, a.aspect) AS aspects
            FROM relabel_action_items i
            LEFT JOIN aspect_labels a ON a.aspect_label_id = i.aspect_label_id
            LEFT JOIN aspects p ON p.aspect = a.aspect
            WHERE i.action_id IN (SELECT action_id FROM mine)
            GROUP BY i.action_id
        )
        SELECT m.action_id, m.kind, m.created_at, i.reviews, i.label_id, i.aspects, c.comment, i.review_id,
               EXISTS (SELECT 1 FROM relabel_actions u WHERE u.kind = 'undo' AND u.undoes = m.action_id) AS undone
        FROM mine m
        JOIN items i USING (action_id)
        LEFT JOIN label_comments c ON c.label_id = i.label_id
        ORDER BY m.action_id DESC
        """,
        [actor_name, int(limit)],
    ).df()
    review_ids = actions["review_id"].drop_duplicates().tolist()
    texts, labels = {}, {}
    if review_ids:
        # One placeholder per id: the reviews and labels scans are then filtered by id (the labels
        # one through its review_id index) rather than joined in full.
        marks = ", ".join("?" * len(review_ids))
        texts = dict(con.execute(f"SELECT review_id, text FROM reviews WHERE review_id IN ({marks})", review_ids).fetchall())
        labels = dict(con.execute(f"SELECT label_id, label FROM labels WHERE review_id IN ({marks})", review_ids).fetchall())
    actions["text"] = actions["review_id"].map(texts)
    actions["label"] = pd.Series(
        [aspects if kind == "aspects" else labels.get(int(i)) if pd.notna(i) else None
         for kind, i, aspects in zip(actions["kind"], actions["label_id"], actions["aspects"])],
        index=actions.index, dtype=object)
    return actions[["action_id", "kind", "created_at", "reviews", "label", "comment", "review_id", "text", "undone"]]
