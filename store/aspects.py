"""Aspects: the store's aspect set, aspect labels (append-only) and aspect predictions.

An aspect is something a review speaks of: the food, the service, the price, the place. The set is
the store's own (``aspects`` table; SemEval-2014's five categories to start, migration 130), and a
store may add more ("wait", "crowds").

Labels follow the review labels' rules: rows are appended, never changed; the current polarity of
(review, aspect) is the newest human row, else the newest imported one. A review with any current
aspect label is *aspect-annotated*, and its annotation is complete: an aspect it has no label for is
absent from it (SemEval's convention: a sentence lists every category it mentions). ``conflict``
(praised and criticised at once) counts as a mention and is left out of polarity training and metrics.

Predictions hold, per (model, review, aspect), the probability that the review speaks of the aspect
(``p_present``) and the polarity probabilities given that it does, with the character span of the
sentence that carried the aspect most (``evidence_start``, ``evidence_end``).
"""

from __future__ import annotations

import re
from datetime import datetime

import duckdb
import pandas as pd
import pyarrow as pa

from store.actors import Actor, audit, require
from store.errors import TastebudError

# SemEval-2014 Task 4's restaurant categories (migration 130 seeds them).
DEFAULT_ASPECTS: tuple[str, ...] = ("food", "service", "price", "ambience", "anecdotes/miscellaneous")
POLARITIES: tuple[str, ...] = ("negative", "neutral", "positive")
# What an aspect label may say: the three polarities, "absent" (not spoken of) and "conflict" (both ways).
ASPECT_LABEL_VALUES: tuple[str, ...] = ("absent", *POLARITIES, "conflict")
# Accepted polarity spellings (lower-cased, trimmed) -> stored polarity: what files and people may write.
POLARITY_SPELLINGS: dict[str, str] = {
    **{value: value for value in ASPECT_LABEL_VALUES},
    "pos": "positive",
    "neg": "negative",
    "neu": "neutral",
}
ASPECT_LABEL_SOURCES: tuple[str, ...] = ("import", "human")
# A review "mentions" an aspect in the predictions when p_present reaches this.
MENTION_THRESHOLD = 0.5
_NAME = re.compile(r"^[a-z0-9][a-z0-9 /&_-]{0,39}$")
PREDICTION_COLUMNS: tuple[str, ...] = (
    "review_id", "aspect", "p_present", "p_negative", "p_neutral", "p_positive", "evidence_start", "evidence_end",
)


# ---------------------------------------------------------------- the aspect set


def normalize_aspect_name(name: str) -> str:
    """The stored spelling of an aspect name: trimmed, lower case, inner spaces collapsed.

    Raises:
        TastebudError: the name is empty, longer than 40 characters, or uses characters other than
            letters, digits, spaces and ``/ & _ -``.

    Example:
        >>> normalize_aspect_name("  Wait  Time ")
        'wait time'
    """
    if not isinstance(name, str):
        raise TastebudError(f"an aspect name must be text, got {type(name).__name__}")
    clean = " ".join(name.strip().lower().split())
    if not _NAME.match(clean):
        shown = clean[:60] + ("…" if len(clean) > 60 else "")
        raise TastebudError(
            f"aspect name {shown!r} is not allowed: use 1-40 letters, digits, spaces or / & _ - (e.g. 'wait')"
        )
    return clean


def list_aspects(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """The store's aspects in display order (aspect, description, position, builtin, created_by, created_at)."""
    return con.execute(
        "SELECT aspect, description, position, builtin, created_by, created_at FROM aspects ORDER BY position, aspect"
    ).df()


def aspect_names(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The store's aspect names in display order.

    Example:
        >>> aspect_names(con)[:2]  # doctest: +SKIP
        ['food', 'service']
    """
    return [row[0] for row in con.execute("SELECT aspect FROM aspects ORDER BY position, aspect").fetchall()]


def add_aspect(con: duckdb.DuckDBPyConnection, actor: Actor, name: str, *, description: str | None = None) -> str:
    """Add an aspect to the store's set (after the existing ones). Call inside a transaction.

    Raises:
        PermissionDeniedError: the actor may not change the store's setup ("import").
        TastebudError: a bad name, or an aspect of that name exists already.

    Returns:
        The stored name.
    """
    require(actor, "import")
    clean = normalize_aspect_name(name)
    if con.execute("SELECT 1 FROM aspects WHERE aspect = ?", [clean]).fetchone():
        raise TastebudError(f"aspect {clean!r} exists already")
    position = con.execute("SELECT coalesce(max(position), -1) + 1 FROM aspects").fetchone()[0]
    con.execute(
        "INSERT INTO aspects (aspect, description, position, builtin, created_by, created_at) VALUES (?, ?, ?, false, ?, ?)",
        [clean, (description or "").strip() or None, position, actor.name, datetime.now()],
    )
    audit(con, actor, "aspect.add", target=clean, detail={"description": description})
    return clean


def remove_aspect(con: duckdb.DuckDBPyConnection, actor: Actor, name: str) -> None:
    """Remove an aspect the store added and never labeled. Call inside a transaction.

    Raises:
        TastebudError: unknown aspect, one of the built-in five, or one that has labels (labels are
            never dropped: the aspect stays).
    """
    require(actor, "import")
    clean = normalize_aspect_name(name)
    row = con.execute("SELECT builtin FROM aspects WHERE aspect = ?", [clean]).fetchone()
    if row is None:
        raise TastebudError(f"no aspect {clean!r}; known: {', '.join(aspect_names(con))}")
    if row[0]:
        raise TastebudError(f"{clean!r} is a built-in aspect and stays")
    (labeled,) = con.execute("SELECT count(*) FROM aspect_labels WHERE aspect = ?", [clean]).fetchone()
    if labeled:
        raise TastebudError(f"aspect {clean!r} has {labeled} labels and stays (labels are never dropped)")
    con.execute("DELETE FROM aspects WHERE aspect = ?", [clean])
    audit(con, actor, "aspect.remove", target=clean)


def check_aspects(con: duckdb.DuckDBPyConnection, names) -> list[str]:
    """The names given that are not in the store's set (as normalized where they could be)."""
    known = set(aspect_names(con))
    unknown = []
    for name in names:
        try:
            clean = normalize_aspect_name(name)
        except TastebudError:
            unknown.append(str(name))
            continue
        if clean not in known:
            unknown.append(clean)
    return unknown


# ---------------------------------------------------------------- labels


def append_aspect_labels(con: duckdb.DuckDBPyConnection, batch: pa.Table | pd.DataFrame) -> int:
    """Append aspect labels (see :func:`insert_aspect_labels`); returns how many rows were appended."""
    return len(insert_aspect_labels(con, batch))


def insert_aspect_labels(con: duckdb.DuckDBPyConnection, batch: pa.Table | pd.DataFrame) -> list[int]:
    """Append aspect labels (columns review_id, aspect, polarity, source; optional labeler, round).

    A row is skipped when the newest stored label of the same review, aspect and source already says
    the same, so re-importing a file adds no history. Retracted (undone) rows do not count: after an
    undo the same correction is written again. Every aspect must be in the store's set and every
    polarity one of :data:`ASPECT_LABEL_VALUES`: callers that read files check rows first and keep the
    bad ones as rejects; here a bad row is a programming error. Call inside a transaction.

    Raises:
        ValueError: a missing column, an unknown aspect, polarity or source, or a repeated
            (review, aspect, source) in the batch.

    Returns:
        The ids of the label rows appended (an undoable action lists them).
    """
    frame = batch.to_pandas() if isinstance(batch, pa.Table) else batch.copy()
    missing = {"review_id", "aspect", "polarity", "source"} - set(frame.columns)
    if missing:
        raise ValueError(f"aspect label batch lacks columns: {sorted(missing)}")
    if frame.empty:
        return []
    for optional in ("labeler", "round"):
        if optional not in frame.columns:
            frame[optional] = None
    unknown = sorted(set(frame["aspect"]) - set(aspect_names(con)))
    if unknown:
        raise ValueError(f"unknown aspects {unknown}; add them first (tastebud aspects add NAME)")
    bad = sorted(set(frame["polarity"]) - set(ASPECT_LABEL_VALUES))
    if bad:
        raise ValueError(f"unknown aspect polarities {bad}; expected one of {', '.join(ASPECT_LABEL_VALUES)}")
    bad = sorted(set(frame["source"]) - set(ASPECT_LABEL_SOURCES))
    if bad:
        raise ValueError(f"unknown aspect label sources {bad}")
    if frame.duplicated(["review_id", "aspect", "source"]).any():
        raise ValueError("aspect label batch repeats a (review_id, aspect, source)")
    frame = frame[["review_id", "aspect", "polarity", "source", "labeler", "round"]]
    frame["labeler"] = frame["labeler"].astype("object")
    frame["round"] = pd.to_numeric(frame["round"], errors="coerce").astype("Int32")
    con.register("_aspect_label_batch", frame)
    try:
        added = con.execute(
            """
            INSERT INTO aspect_labels (review_id, aspect, polarity, source, labeler, created_at, round)
            WITH newest AS (
                SELECT review_id, aspect, source, polarity FROM aspect_labels l
                WHERE review_id IN (SELECT review_id FROM _aspect_label_batch)
                  AND NOT EXISTS (SELECT 1 FROM aspect_label_retractions x WHERE x.aspect_label_id = l.aspect_label_id)
                QUALIFY row_number() OVER (
                    PARTITION BY review_id, aspect, source ORDER BY created_at DESC, aspect_label_id DESC
                ) = 1
            )
            SELECT b.review_id, b.aspect, b.polarity, b.source, b.labeler, ?, coalesce(b.round::INTEGER, 0)
            FROM _aspect_label_batch b
            LEFT JOIN newest n ON n.review_id = b.review_id AND n.aspect = b.aspect AND n.source = b.source
            WHERE n.polarity IS DISTINCT FROM b.polarity
            RETURNING aspect_label_id
            """,
            [datetime.now()],
        ).fetchall()
        return sorted(i for (i,) in added)
    finally:
        con.unregister("_aspect_label_batch")


def retract_aspect_labels(con: duckdb.DuckDBPyConnection, review_ids, *, reason: str, by: str) -> list[str]:
    """Retract every standing aspect label (human and imported) of ``review_ids``: aspect labels belong to
    the text they were given for, so when a review's text changes they stop counting (history is kept,
    ``current_aspect_labels`` skips them) and the review reads as not aspect-annotated until someone
    annotates the new text. Call inside a transaction.

    Returns:
        The reviews that had standing aspect labels, sorted.

    Example:
        >>> retract_aspect_labels(con, ["r1"], reason="text_changed", by="import")  # doctest: +SKIP
        ['r1']
    """
    ids = [str(r) for r in review_ids]
    if not ids:
        return []
    rows = con.execute(
        """
        INSERT INTO aspect_label_retractions (aspect_label_id, action_id, retracted_by, retracted_at, reason)
        SELECT l.aspect_label_id, NULL, ?, ?, ? FROM aspect_labels l
        WHERE l.review_id IN (SELECT unnest(?::VARCHAR[]))
          AND NOT EXISTS (SELECT 1 FROM aspect_label_retractions x WHERE x.aspect_label_id = l.aspect_label_id)
        RETURNING aspect_label_id
        """,
        [by, datetime.now(), reason, ids],
    ).fetchall()
    if not rows:
        return []
    return [r for (r,) in con.execute(
        "SELECT DISTINCT review_id FROM aspect_labels WHERE aspect_label_id IN (SELECT unnest(?::BIGINT[])) ORDER BY 1",
        [[i for (i,) in rows]],
    ).fetchall()]


def set_review_aspects(
    con: duckdb.DuckDBPyConnection, actor: Actor, review_id: str, polarities: dict[str, str], *, round: int = 0
) -> list[int]:
    """A person's aspect annotation of one review: every aspect's polarity, "absent" for those it does not
    speak of. Aspects not given keep what they had (absent when the review had no annotation). Call inside
    a transaction.

    Raises:
        PermissionDeniedError: the actor may not relabel.
        TastebudError: unknown review, aspect or polarity.

    Returns:
        The ids of the label rows appended (none when the person confirmed what was there).
    """
    require(actor, "relabel")
    if not con.execute("SELECT 1 FROM reviews WHERE review_id = ?", [review_id]).fetchone():
        raise TastebudError(f"no review {review_id!r}")
    unknown = check_aspects(con, polarities)
    if unknown:
        raise TastebudError(f"unknown aspects: {', '.join(unknown)}; known: {', '.join(aspect_names(con))}")
    clean = {normalize_aspect_name(a): POLARITY_SPELLINGS.get(str(p).strip().lower(), p) for a, p in polarities.items()}
    bad = sorted({p for p in clean.values() if p not in ASPECT_LABEL_VALUES})
    if bad:
        raise TastebudError(f"unknown aspect polarities {bad}; expected one of {', '.join(ASPECT_LABEL_VALUES)}")
    current = current_review_aspects(con, review_id)
    rows = [
        {"review_id": review_id, "aspect": a, "polarity": p, "source": "human", "labeler": actor.name, "round": round}
        for a, p in clean.items()
        # A person's confirmation of an imported label is recorded (human rows outrank imports).
        if current.get(a, ("absent", None)) != (p, "human")
    ]
    added = insert_aspect_labels(con, pd.DataFrame(rows)) if rows else []
    if added:
        audit(con, actor, "aspect.relabel", target=review_id, detail=clean)
    return added


def current_review_aspects(con: duckdb.DuckDBPyConnection, review_id: str) -> dict[str, tuple[str, str]]:
    """aspect -> (polarity, source) of one review's current aspect labels, in the aspects' display order
    (empty when not annotated)."""
    rows = con.execute(
        "SELECT l.aspect, l.polarity, l.source FROM current_aspect_labels l LEFT JOIN aspects a USING (aspect) "
        "WHERE l.review_id = ? ORDER BY a.position NULLS LAST, l.aspect", [review_id]
    ).fetchall()
    return {aspect: (polarity, source) for aspect, polarity, source in rows}


def fetch_aspect_label_history(con: duckdb.DuckDBPyConnection, review_id: str) -> pd.DataFrame:
    """Every aspect label row of a review, oldest first; a retracted row (undone, or its text changed) has
    ``retracted_at``, ``retracted_by`` and ``retraction_reason`` ("undo", "text_changed")."""
    return con.execute(
        """
        SELECT l.aspect_label_id, l.aspect, l.polarity, l.source, l.labeler, l.created_at, l.round,
               x.retracted_at, x.retracted_by, x.reason AS retraction_reason
        FROM aspect_labels l LEFT JOIN aspect_label_retractions x USING (aspect_label_id)
        WHERE l.review_id = ? ORDER BY l.created_at, l.aspect_label_id
        """,
        [review_id],
    ).df()


def fetch_aspect_split(
    con: duckdb.DuckDBPyConnection, split: str | None, *, aspects: list[str] | None = None
) -> pd.DataFrame:
    """Aspect-annotated reviews of a split (None: all), one row per review, for training and evaluation.

    Columns: review_id, text, then one column per aspect holding its current polarity ("absent" where
    the review has no label for it, see the module's note on complete annotations).

    Example:
        >>> fetch_aspect_split(con, "train").columns[:3].tolist()  # doctest: +SKIP
        ['review_id', 'text', 'food']
    """
    names = aspects or aspect_names(con)
    long = con.execute(
        """
        SELECT r.review_id, r.text, l.aspect, l.polarity
        FROM current_aspect_labels l
        JOIN reviews r USING (review_id)
        LEFT JOIN splits s USING (review_id)
        WHERE ?::VARCHAR IS NULL OR s.split = ?
        ORDER BY r.review_id
        """,
        [split, split],
    ).df()
    return wide_labels(long, names)


def wide_labels(long: pd.DataFrame, aspects: list[str]) -> pd.DataFrame:
    """Long aspect labels (review_id, text, aspect, polarity) as one row per review with a column per aspect;
    an aspect a review has no row for is "absent" (annotations are complete), one outside ``aspects`` is dropped.
    """
    if long.empty:
        return pd.DataFrame(columns=["review_id", "text", *aspects])
    wide = long.pivot_table(index=["review_id", "text"], columns="aspect", values="polarity", aggfunc="first")
    wide = wide.reindex(columns=list(aspects)).astype(object).fillna("absent").reset_index()
    wide.columns.name = None
    return wide


def aspect_label_counts(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Current aspect labels per aspect and polarity (aspect, polarity, n), and per split (split column)."""
    return con.execute(
        """
        SELECT l.aspect, l.polarity, coalesce(s.split, 'none') AS split, count(*) AS n
        FROM current_aspect_labels l LEFT JOIN splits s USING (review_id)
        GROUP BY ALL ORDER BY 1, 2, 3
        """
    ).df()


def fetch_current_aspect_labels(con: duckdb.DuckDBPyConnection, *, split: str | None = None) -> pd.DataFrame:
    """Every current aspect label (``absent`` corrections included), one row per review and aspect, ordered by
    review and the aspects' display order: review_id, aspect, polarity, text, labeler, source, labeled_at,
    split. The first five are the columns aspect import reads back.
    """
    return con.execute(
        """
        SELECT l.review_id, l.aspect, l.polarity, r.text, l.labeler, l.source, l.created_at AS labeled_at, s.split
        FROM current_aspect_labels l
        JOIN reviews r USING (review_id)
        LEFT JOIN splits s USING (review_id)
        LEFT JOIN aspects a USING (aspect)
        WHERE ?::VARCHAR IS NULL OR s.split = ?
        ORDER BY l.review_id, a.position NULLS LAST, l.aspect
        """,
        [split, split],
    ).df()


def count_annotated_reviews(con: duckdb.DuckDBPyConnection) -> int:
    """How many reviews have at least one current aspect label."""
    return con.execute("SELECT count(DISTINCT review_id) FROM current_aspect_labels").fetchone()[0]


# ---------------------------------------------------------------- predictions


_PENDING_SQL = """
    FROM reviews r
    WHERE NOT EXISTS (
        SELECT 1 FROM aspect_predictions p
        WHERE p.model_id = ? AND p.review_id = r.review_id
          AND (r.updated_at IS NULL OR r.updated_at <= p.scored_at)
          AND (?::TIMESTAMP IS NULL OR p.scored_at >= ?::TIMESTAMP)
    )
      AND (?::BIGINT IS NULL OR ('0x' || left(md5(r.review_id), 15))::BIGINT % ?::BIGINT = ?::BIGINT)
"""


def write_aspect_predictions(con: duckdb.DuckDBPyConnection, model_id: str, frame: pd.DataFrame | pa.Table) -> int:
    """Store one chunk of an aspect model's predictions, replacing older ones for the same (review, aspect).

    Args:
        frame: columns review_id, aspect, p_present, p_negative, p_neutral, p_positive, evidence_start,
            evidence_end (the last two may be null); one row per (review, aspect).

    Returns:
        How many rows were written.
    """
    table = frame.to_pandas() if isinstance(frame, pa.Table) else frame
    missing = set(PREDICTION_COLUMNS) - set(table.columns)
    if missing:
        raise ValueError(f"aspect prediction frame lacks columns: {sorted(missing)}")
    if table.empty:
        return 0
    table = table[list(PREDICTION_COLUMNS)]
    if table.duplicated(["review_id", "aspect"]).any():
        raise ValueError("aspect prediction frame repeats a (review_id, aspect)")
    con.register("_aspect_pred_chunk", table)
    try:
        con.execute(
            f"""
            INSERT OR REPLACE INTO aspect_predictions
                (model_id, review_id, aspect, p_present, p_negative, p_neutral, p_positive, polarity,
                 evidence_start, evidence_end, scored_at)
            SELECT ?, review_id::VARCHAR, aspect::VARCHAR, p_present::REAL, p_negative::REAL, p_neutral::REAL,
                   p_positive::REAL,
                   CASE WHEN p_present < {MENTION_THRESHOLD} THEN 'absent'
                        WHEN p_negative >= p_neutral AND p_negative >= p_positive THEN 'negative'
                        WHEN p_neutral >= p_positive THEN 'neutral'
                        ELSE 'positive' END,
                   evidence_start::INTEGER, evidence_end::INTEGER, ?
            FROM _aspect_pred_chunk
            """,
            [model_id, datetime.now()],
        )
    finally:
        con.unregister("_aspect_pred_chunk")
    return len(table)


def fetch_aspect_pending_chunk(
    con: duckdb.DuckDBPyConnection,
    model_id: str,
    *,
    limit: int,
    after: str | None = None,
    shard: tuple[int, int] | None = None,
    since: datetime | None = None,
) -> pa.Table:
    """The next reviews (review_id, text) an aspect model has not scored, in review_id order after ``after``.

    A review is pending when the model has no prediction for it, its text changed after it was scored, or
    (``since``, a forced rescore) its predictions are older than ``since``.
    """
    shard_bind = [None, None, None] if shard is None else [shard[1], shard[1], shard[0]]
    result = con.execute(
        f"""
        SELECT r.review_id, r.text {_PENDING_SQL}
          AND (?::VARCHAR IS NULL OR r.review_id > ?)
        ORDER BY r.review_id LIMIT ?
        """,
        [model_id, since, since, *shard_bind, after, after, int(limit)],
    )
    # to_arrow_table is DuckDB 1.5's name for fetch_arrow_table
    return result.to_arrow_table() if hasattr(result, "to_arrow_table") else result.fetch_arrow_table()


def count_aspect_pending(
    con: duckdb.DuckDBPyConnection, model_id: str, *, shard: tuple[int, int] | None = None,
    since: datetime | None = None,
) -> int:
    """How many reviews an aspect model still has to score."""
    shard_bind = [None, None, None] if shard is None else [shard[1], shard[1], shard[0]]
    return con.execute(f"SELECT count(*) {_PENDING_SQL}", [model_id, since, since, *shard_bind]).fetchone()[0]


def count_aspect_predictions(con: duckdb.DuckDBPyConnection, model_id: str) -> int:
    """How many reviews an aspect model has predictions for."""
    return con.execute(
        "SELECT count(DISTINCT review_id) FROM aspect_predictions WHERE model_id = ?", [model_id]
    ).fetchone()[0]


def fetch_aspect_predictions(
    con: duckdb.DuckDBPyConnection, model_id: str, review_ids: list[str] | None = None
) -> pd.DataFrame:
    """An aspect model's predictions (review_id, aspect, p_present, p_negative, p_neutral, p_positive,
    polarity, evidence_start, evidence_end, evidence: the sentence itself, scored_at), of some reviews or all."""
    ids = None if review_ids is None else pa.table({"review_id": pa.array(list(review_ids), pa.string())})
    if ids is not None:
        con.register("_aspect_ids", ids)
    try:
        return con.execute(
            f"""
            SELECT p.review_id, p.aspect, p.p_present, p.p_negative, p.p_neutral, p.p_positive, p.polarity,
                   p.evidence_start, p.evidence_end,
                   CASE WHEN p.evidence_start IS NOT NULL
                        THEN substr(r.text, p.evidence_start + 1, p.evidence_end - p.evidence_start) END AS evidence,
                   p.scored_at
            FROM aspect_predictions p JOIN reviews r USING (review_id)
            {"JOIN _aspect_ids i ON i.review_id = p.review_id" if ids is not None else ""}
            WHERE p.model_id = ?
            ORDER BY p.review_id, p.aspect
            """,
            [model_id],
        ).df()
    finally:
        if ids is not None:
            con.unregister("_aspect_ids")


def aspect_scored_model_ids(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Models that have aspect predictions in the store."""
    return [r[0] for r in con.execute("SELECT DISTINCT model_id FROM aspect_predictions ORDER BY 1").fetchall()]
