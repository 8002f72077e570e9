"""Flags: hard cases queued for a person to relabel, each with a reason and a priority.

A (review, reason, term) gets at most one flag ever: a new flagging run never duplicates
an open flag and never reopens one that was resolved or dismissed, and reviews a person
already labeled are not flagged again. Flags leave the open queue when the review is
relabeled (resolved) or a labeler dismisses them; an undo can put them back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime

import duckdb
import pandas as pd

from store.constants import DATED_REVIEWS_SQL, LABELS
from store.labels import fetch_current_labels

FLAG_REASONS: tuple[str, ...] = (
    "low_confidence",
    "disagreement",
    "rating_contradicts_text",
    "label_issue",
    "emerging_term",
    "sarcasm",
    "text_changed",  # a re-import changed the text of a human-labeled review; its label was retracted
    "aspect_disagreement",  # the aspect model hears an aspect the review's overall label contradicts
)
FLAG_STATUSES: tuple[str, ...] = ("open", "resolved", "dismissed")
FLAG_COLUMNS: tuple[str, ...] = ("review_id", "reason", "priority", "model_id", "term", "detail")


def _prepare(frame: pd.DataFrame) -> pd.DataFrame:
    missing = {"review_id", "reason", "priority"} - set(frame.columns)
    if missing:
        raise ValueError(f"flag frame lacks columns: {sorted(missing)}")
    frame = frame.copy()
    for optional in ("model_id", "term", "detail"):
        if optional not in frame.columns:
            frame[optional] = None
    unknown = set(frame["reason"]) - set(FLAG_REASONS)
    if unknown:
        raise ValueError(f"unknown flag reasons: {sorted(unknown)}; expected {', '.join(FLAG_REASONS)}")
    frame["detail"] = [
        d if d is None or isinstance(d, str) else json.dumps(d, default=str) for d in frame["detail"]
    ]
    frame["term"] = frame["term"].astype(object).where(frame["term"].notna(), None)
    frame["priority"] = frame["priority"].astype(float)
    return frame[list(FLAG_COLUMNS)]


def insert_flags(con: duckdb.DuckDBPyConnection, frame: pd.DataFrame) -> int:
    """Queue new flags, skipping any (review, reason, term) flagged before and human-labeled reviews.

    Within ``frame`` duplicates keep their highest priority. Unknown review ids are skipped.
    Call inside a transaction.

    Args:
        con: connection in the caller's transaction.
        frame: review_id, reason, priority; optional model_id, term, detail (dict or JSON).

    Returns:
        How many flags were inserted.

    Example:
        >>> insert_flags(con, pd.DataFrame({"review_id": ["r1"], "reason": ["low_confidence"],
        ...                                 "priority": [0.9]}))  # doctest: +SKIP
        1
    """
    if frame.empty:
        return 0
    con.register("_flag_batch", _prepare(frame))
    try:
        before = con.execute("SELECT count(*) FROM flags").fetchone()[0]
        con.execute(
            """
            INSERT INTO flags (review_id, reason, priority, model_id, term, detail, status, created_at)
            WITH batch AS (
                SELECT review_id::VARCHAR AS review_id, reason::VARCHAR AS reason, priority::DOUBLE AS priority,
                       model_id::VARCHAR AS model_id, term::VARCHAR AS term, detail::JSON AS detail
                FROM _flag_batch
                QUALIFY row_number() OVER (
                    PARTITION BY review_id, reason, coalesce(term::VARCHAR, '') ORDER BY priority DESC) = 1
            )
            SELECT b.review_id, b.reason, b.priority, b.model_id, b.term, b.detail, 'open', ?
            FROM batch b
            WHERE EXISTS (SELECT 1 FROM reviews r WHERE r.review_id = b.review_id)
              AND NOT EXISTS (
                    SELECT 1 FROM flags f
                    WHERE f.review_id = b.review_id AND f.reason = b.reason
                      AND coalesce(f.term, '') = coalesce(b.term, ''))
              AND NOT EXISTS (
                    SELECT 1 FROM current_labels l WHERE l.review_id = b.review_id AND l.source = 'human')
            ORDER BY b.priority DESC, b.review_id
            """,
            [datetime.now()],
        )
        return con.execute("SELECT count(*) FROM flags").fetchone()[0] - before
    finally:
        con.unregister("_flag_batch")


def fetch_flag_queue(
    con: duckdb.DuckDBPyConnection,
    *,
    reasons: list[str] | tuple[str, ...] | None = None,
    status: str | None = "open",
    limit: int = 50,
    offset: int = 0,
) -> pd.DataFrame:
    """Flags with their review, the flagging model's prediction and the current label, highest priority first.

    The current label is looked up for the page's reviews only, not computed for every review
    in the store (a tenth of the time at a million labels).

    Args:
        reasons: keep only these reasons (default all).
        status: "open", "resolved", "dismissed" or None for all.
        limit, offset: paging.

    Returns:
        DataFrame with flag_id, review_id, reason, priority, term, detail, status, text, stars,
        restaurant_name, created_at (the flag's), model_id, model_label, p_negative, p_neutral,
        p_positive, current_label, current_label_source.

    Example:
        >>> fetch_flag_queue(con, reasons=["low_confidence"], limit=5)["flag_id"].tolist()  # doctest: +SKIP
        [17, 4, 9, 1, 30]
    """
    if status is not None and status not in FLAG_STATUSES:
        raise ValueError(f"unknown flag status {status!r}")
    if reasons is not None:
        unknown = set(reasons) - set(FLAG_REASONS)
        if unknown:
            raise ValueError(f"unknown flag reasons: {sorted(unknown)}")
        reasons = list(reasons)
    frame = con.execute(
        """
        SELECT f.flag_id, f.review_id, f.reason, f.priority, f.term, f.detail, f.status,
               r.text, r.stars, r.restaurant_name, f.created_at, f.model_id,
               p.label AS model_label, p.p_negative, p.p_neutral, p.p_positive
        FROM (SELECT * FROM flags
              WHERE (?::VARCHAR IS NULL OR status = ?::VARCHAR)
                AND (?::VARCHAR[] IS NULL OR reason IN (SELECT unnest(?::VARCHAR[])))
              ORDER BY priority DESC, flag_id LIMIT ? OFFSET ?) f
        JOIN reviews r USING (review_id)
        LEFT JOIN predictions p ON p.model_id = f.model_id AND p.review_id = f.review_id
        ORDER BY f.priority DESC, f.flag_id
        """,
        [status, status, reasons, reasons, int(limit), int(offset)],
    ).df()
    current = fetch_current_labels(con, frame["review_id"].drop_duplicates().tolist())
    frame["current_label"] = frame["review_id"].map(lambda r: current.get(r, (None, None))[0])
    frame["current_label_source"] = frame["review_id"].map(lambda r: current.get(r, (None, None))[1])
    return frame


def count_open_flags_by_reason(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Open flags per reason (every reason present, zero when none)."""
    rows = dict(con.execute("SELECT reason, count(*) FROM flags WHERE status = 'open' GROUP BY 1").fetchall())
    return {reason: rows.get(reason, 0) for reason in FLAG_REASONS}


def get_flag(con: duckdb.DuckDBPyConnection, flag_id: int) -> dict | None:
    """One flag row as a dict, or None."""
    cur = con.execute("SELECT * FROM flags WHERE flag_id = ?", [flag_id])
    row = cur.fetchone()
    return None if row is None else dict(zip([d[0] for d in cur.description], row))


def resolve_open_flags(con: duckdb.DuckDBPyConnection, review_ids: list[str], by: str) -> list[tuple[int, str]]:
    """Mark every open flag of ``review_ids`` resolved; returns (flag_id, review_id) of those changed."""
    return con.execute(
        """
        UPDATE flags SET status = 'resolved', resolved_at = ?, resolved_by = ?
        WHERE status = 'open' AND review_id IN (SELECT unnest(?::VARCHAR[]))
        RETURNING flag_id, review_id
        """,
        [datetime.now(), by, list(review_ids)],
    ).fetchall()


def set_flag_status(con: duckdb.DuckDBPyConnection, flag_ids: list[int], status: str, by: str | None) -> int:
    """Set the status of flags (reopening clears who resolved them); returns how many changed."""
    if status not in FLAG_STATUSES:
        raise ValueError(f"unknown flag status {status!r}")
    reopened = status == "open"
    return len(
        con.execute(
            """
            UPDATE flags SET status = ?,
                   resolved_at = CASE WHEN ? THEN NULL ELSE ? END,
                   resolved_by = CASE WHEN ? THEN NULL ELSE ? END
            WHERE flag_id IN (SELECT unnest(?::BIGINT[])) AND status <> ?
            RETURNING flag_id
            """,
            [status, reopened, datetime.now(), reopened, by, list(flag_ids), status],
        ).fetchall()
    )


def flag_for_relabel(
    con: duckdb.DuckDBPyConnection, review_ids: list[str], *, reason: str, priority: float, detail: dict | None = None
) -> int:
    """Open a flag of ``reason`` on each review that has no open flag of that reason yet.

    Unlike :func:`insert_flags` a review may be flagged again after an earlier such flag was
    closed: each text change of a labeled review needs its own relabel. Call inside a transaction.

    Returns:
        How many flags were opened.

    Example:
        >>> flag_for_relabel(con, ["r1"], reason="text_changed", priority=1.0)  # doctest: +SKIP
        1
    """
    if reason not in FLAG_REASONS:
        raise ValueError(f"unknown flag reason {reason!r}")
    if not review_ids:
        return 0
    return len(con.execute(
        """
        INSERT INTO flags (review_id, reason, priority, detail, status, created_at)
        SELECT r.review_id, ?, ?, ?::JSON, 'open', ? FROM reviews r
        WHERE r.review_id IN (SELECT unnest(?::VARCHAR[]))
          AND NOT EXISTS (SELECT 1 FROM flags f WHERE f.review_id = r.review_id AND f.reason = ? AND f.status = 'open')
        RETURNING flag_id
        """,
        [reason, float(priority), None if detail is None else json.dumps(detail, default=str), datetime.now(),
         list(review_ids), reason],
    ).fetchall())


# --- reads for the flagging run ------------------------------------------------------------


def fetch_flag_inputs(con: duckdb.DuckDBPyConnection, model_id: str) -> pd.DataFrame:
    """Every review ``model_id`` scored, without text: review_id, stars, created_at, split,
    label and label_source (current), p_negative, p_neutral, p_positive."""
    return con.execute(
        f"""
        SELECT r.review_id, r.stars, r.created_at, s.split, l.label, l.source AS label_source,
               p.p_negative, p.p_neutral, p.p_positive
        FROM predictions p
        JOIN {DATED_REVIEWS_SQL} r USING (review_id)
        LEFT JOIN splits s USING (review_id)
        LEFT JOIN current_labels l USING (review_id)
        WHERE p.model_id = ?
        ORDER BY r.review_id
        """,
        [model_id],
    ).df()


def fetch_label_inputs(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """The columns of :func:`fetch_flag_inputs` for every review with a current label, without any model's
    probabilities (NULL): what the labels alone let flagging compare (aspect disagreements)."""
    return con.execute(
        f"""
        SELECT r.review_id, r.stars, r.created_at, s.split, l.label, l.source AS label_source,
               NULL::DOUBLE AS p_negative, NULL::DOUBLE AS p_neutral, NULL::DOUBLE AS p_positive
        FROM current_labels l
        JOIN {DATED_REVIEWS_SQL} r USING (review_id)
        LEFT JOIN splits s USING (review_id)
        ORDER BY r.review_id
        """
    ).df()


def fetch_disagreements(
    con: duckdb.DuckDBPyConnection, model_id: str, other_model_ids: list[str], *, min_distance: float
) -> pd.DataFrame:
    """Reviews where ``model_id`` and another model pick different classes, at least ``min_distance``
    apart in total variation; one row per review (the most distant other model): review_id,
    other_model_id, model_label, other_label, distance."""
    return con.execute(
        """
        SELECT c.review_id, o.model_id AS other_model_id, c.label AS model_label, o.label AS other_label,
               0.5 * (abs(c.p_negative - o.p_negative) + abs(c.p_neutral - o.p_neutral)
                      + abs(c.p_positive - o.p_positive)) AS distance
        FROM predictions c
        JOIN predictions o ON o.review_id = c.review_id AND o.model_id IN (SELECT unnest(?::VARCHAR[]))
        WHERE c.model_id = ? AND o.model_id <> c.model_id AND c.label <> o.label
          AND 0.5 * (abs(c.p_negative - o.p_negative) + abs(c.p_neutral - o.p_neutral)
                     + abs(c.p_positive - o.p_positive)) >= ?
        QUALIFY row_number() OVER (PARTITION BY c.review_id ORDER BY distance DESC, o.model_id) = 1
        ORDER BY c.review_id
        """,
        [list(other_model_ids), model_id, min_distance],
    ).df()


def fetch_aspect_flag_inputs(
    con: duckdb.DuckDBPyConnection, aspect_model_id: str, *, min_p_present: float
) -> pd.DataFrame:
    """An aspect model's predictions with p_present at least ``min_p_present``, leaving out reviews whose
    aspects a person annotated (settled): review_id, aspect, p_present, p_negative, p_neutral,
    p_positive, polarity; ordered by review and the store's aspect order."""
    return con.execute(
        """
        SELECT p.review_id, p.aspect, p.p_present, p.p_negative, p.p_neutral, p.p_positive, p.polarity
        FROM aspect_predictions p JOIN aspects a USING (aspect)
        WHERE p.model_id = ? AND p.p_present >= ?
          AND NOT EXISTS (SELECT 1 FROM current_aspect_labels l WHERE l.review_id = p.review_id AND l.source = 'human')
        ORDER BY p.review_id, a.position, p.aspect
        """,
        [aspect_model_id, float(min_p_present)],
    ).df()


def fetch_flagged_keys(con: duckdb.DuckDBPyConnection, reason: str) -> set[tuple[str, str]]:
    """(review_id, term or '') of every flag ever raised for ``reason``, whatever its status."""
    rows = con.execute("SELECT review_id, coalesce(term, '') FROM flags WHERE reason = ?", [reason]).fetchall()
    return set(rows)


def fetch_review_texts(con: duckdb.DuckDBPyConnection, review_ids: list[str]) -> pd.DataFrame:
    """review_id, text of the given reviews, ordered by id."""
    return con.execute(
        "SELECT review_id, text FROM reviews WHERE review_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY review_id",
        [list(review_ids)],
    ).df()


def fetch_texts_between(
    con: duckdb.DuckDBPyConnection, start: datetime | None, end: datetime | None, *, limit: int, seed: int = 0
) -> pd.DataFrame:
    """review_id, text, created_at of reviews with start <= created_at < end (either bound open),
    at most ``limit`` of them: a deterministic pseudo-random sample (by a seeded hash of the id)."""
    return con.execute(
        f"""
        SELECT review_id, text, created_at FROM {DATED_REVIEWS_SQL}
        WHERE created_at IS NOT NULL
          AND (?::TIMESTAMP IS NULL OR created_at >= ?::TIMESTAMP)
          AND (?::TIMESTAMP IS NULL OR created_at < ?::TIMESTAMP)
        ORDER BY hash(review_id || ?::VARCHAR), review_id
        LIMIT ?
        """,
        [start, start, end, end, str(seed), limit],
    ).df()


def newest_review_time(con: duckdb.DuckDBPyConnection) -> datetime | None:
    """created_at of the newest review (None when no review has a date)."""
    return con.execute(f"SELECT max(created_at) FROM {DATED_REVIEWS_SQL}").fetchone()[0]


# --- the relabel queue with search and filters ---------------------------------------------


@dataclass(frozen=True)
class QueueFilter:
    """What a labeler narrows the open-flag queue to; an empty field does not filter.

    ``text`` matches case-insensitively anywhere in the review; ``label`` is the review's current
    label; ``start``/``end`` bound the review's date (inclusive days).
    """

    reasons: tuple[str, ...] = ()
    text: str = ""
    restaurants: tuple[str, ...] = ()
    neighborhoods: tuple[str, ...] = ()
    term: str = ""
    labels: tuple[str, ...] = ()
    stars: tuple[int, ...] = ()
    start: date | None = None
    end: date | None = None

    def __post_init__(self) -> None:
        unknown = set(self.reasons) - set(FLAG_REASONS)
        if unknown:
            raise ValueError(f"unknown flag reasons: {sorted(unknown)}")
        bad_labels = set(self.labels) - set(LABELS)
        if bad_labels:
            raise ValueError(f"unknown labels: {sorted(bad_labels)}; expected {', '.join(LABELS)}")
        bad_stars = [s for s in self.stars if s not in (1, 2, 3, 4, 5)]
        if bad_stars:
            raise ValueError(f"stars are 1 to 5, got {bad_stars}")
        if self.start and self.end and self.start > self.end:
            raise ValueError(f"the date range starts ({self.start}) after it ends ({self.end})")


_QUEUE_WHERE = """
    f.status = 'open'
    AND (len(?::VARCHAR[]) = 0 OR f.reason IN (SELECT unnest(?::VARCHAR[])))
    AND (?::VARCHAR = '' OR r.text ILIKE '%' || ?::VARCHAR || '%' ESCAPE '\\')
    AND (len(?::VARCHAR[]) = 0 OR r.restaurant_name IN (SELECT unnest(?::VARCHAR[])))
    AND (len(?::VARCHAR[]) = 0 OR r.neighborhood IN (SELECT unnest(?::VARCHAR[])))
    AND (?::VARCHAR = '' OR lower(f.term) = lower(?::VARCHAR))
    AND (len(?::INTEGER[]) = 0 OR r.stars IN (SELECT unnest(?::INTEGER[])))
    AND (?::DATE IS NULL OR r.created_at >= ?::DATE)
    AND (?::DATE IS NULL OR r.created_at < ?::DATE + INTERVAL 1 DAY)
"""


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _queue_params(flt: QueueFilter) -> list:
    reasons, restaurants, neighborhoods = list(flt.reasons), list(flt.restaurants), list(flt.neighborhoods)
    text, term, stars = _like_escape(flt.text.strip()), flt.term.strip(), [int(s) for s in flt.stars]
    return [reasons, reasons, text, text, restaurants, restaurants, neighborhoods, neighborhoods, term, term,
            stars, stars, flt.start, flt.start, flt.end, flt.end]


def _matching_flags(con: duckdb.DuckDBPyConnection, flt: QueueFilter) -> pd.DataFrame:
    """flag_id, review_id, priority of every open flag matching ``flt`` but its label filter."""
    if not (flt.text.strip() or flt.restaurants or flt.neighborhoods or flt.stars or flt.start or flt.end):
        # Nothing asks about the review: the open flags alone answer (no scan of the reviews).
        reasons = list(flt.reasons)
        return con.execute(
            """
            SELECT flag_id, review_id, priority FROM flags
            WHERE status = 'open' AND (len(?::VARCHAR[]) = 0 OR reason IN (SELECT unnest(?::VARCHAR[])))
              AND (?::VARCHAR = '' OR lower(term) = lower(?::VARCHAR))
            """,
            [reasons, reasons, flt.term.strip(), flt.term.strip()],
        ).df()
    return con.execute(
        f"SELECT f.flag_id, f.review_id, f.priority FROM flags f JOIN reviews r USING (review_id) WHERE {_QUEUE_WHERE}",
        _queue_params(flt),
    ).df()


def search_flag_queue(con: duckdb.DuckDBPyConnection, flt: QueueFilter, *, limit: int = 50) -> tuple[pd.DataFrame, int]:
    """The highest-priority open flags matching ``flt``, with their review, the flagging model's
    prediction and the current label, and how many flags match in all.

    Filters run in SQL over the open flags (a few thousand rows, whatever the store size); the
    current label is looked up for the matching reviews only.

    Args:
        con: any connection.
        flt: the labeler's search and filters.
        limit: most rows returned.

    Returns:
        (page, total). The page has flag_id, review_id, reason, priority, term, detail, text, stars,
        restaurant_name, neighborhood, review_created_at, model_id, model_label, p_negative,
        p_neutral, p_positive, current_label, current_label_source; highest priority first.

    Example:
        >>> page, total = search_flag_queue(con, QueueFilter(text="grits", stars=(5,)), limit=10)  # doctest: +SKIP
    """
    matching = _matching_flags(con, flt)
    current: dict[str, tuple[str, str]] = {}
    if flt.labels and not matching.empty:
        current = fetch_current_labels(con, matching["review_id"].drop_duplicates().tolist())
        keep = matching["review_id"].map(lambda r: current.get(r, (None, None))[0]).isin(flt.labels)
        matching = matching[keep]
    total = len(matching)
    chosen = matching.sort_values(["priority", "flag_id"], ascending=[False, True]).head(int(limit))
    flag_ids = chosen["flag_id"].astype(int).tolist()
    review_ids = chosen["review_id"].drop_duplicates().tolist() or [None]
    # One placeholder per id: DuckDB then filters the reviews and predictions scans by id before
    # reading their other columns, instead of hashing every review (1M reviews: ~10x faster).
    marks = ", ".join("?" * len(review_ids))
    page = con.execute(
        f"""
        SELECT f.flag_id, f.review_id, f.reason, f.priority, f.term, f.detail,
               r.text, r.stars, r.restaurant_name, r.neighborhood, r.created_at AS review_created_at, f.model_id,
               p.label AS model_label, p.p_negative, p.p_neutral, p.p_positive
        FROM (SELECT * FROM flags WHERE flag_id IN (SELECT unnest(?::BIGINT[]))) f
        JOIN (SELECT * FROM reviews WHERE review_id IN ({marks})) r ON r.review_id = f.review_id
        LEFT JOIN (SELECT * FROM predictions WHERE review_id IN ({marks})) p
               ON p.model_id = f.model_id AND p.review_id = f.review_id
        ORDER BY f.priority DESC, f.flag_id
        """,
        [flag_ids, *review_ids, *review_ids],
    ).df()
    missing = [r for r in page["review_id"].drop_duplicates() if r not in current]
    current.update(fetch_current_labels(con, missing))
    page["current_label"] = page["review_id"].map(lambda r: current.get(r, (None, None))[0])
    page["current_label_source"] = page["review_id"].map(lambda r: current.get(r, (None, None))[1])
    return page, total


def fetch_queue_filter_options(con: duckdb.DuckDBPyConnection) -> dict:
    """Choices for the queue filters, from the open flags only: {"restaurants", "neighborhoods",
    "terms", "first", "last"} (sorted names; first/last review dates, None without flags).

    Example:
        >>> fetch_queue_filter_options(con)["terms"][:2]  # doctest: +SKIP
        ['krog district', 'oat milk']
    """
    rows = con.execute(
        """
        SELECT list(DISTINCT r.restaurant_name) FILTER (WHERE r.restaurant_name IS NOT NULL),
               list(DISTINCT r.neighborhood) FILTER (WHERE r.neighborhood IS NOT NULL),
               list(DISTINCT f.term) FILTER (WHERE f.term IS NOT NULL),
               min(r.created_at)::DATE, max(r.created_at)::DATE
        FROM flags f JOIN reviews r USING (review_id) WHERE f.status = 'open'
        """
    ).fetchone()
    return {"restaurants": sorted(rows[0] or []), "neighborhoods": sorted(rows[1] or []),
            "terms": sorted(rows[2] or []), "first": rows[3], "last": rows[4]}


def fetch_matching_review_ids(con: duckdb.DuckDBPyConnection, flt: QueueFilter) -> list[str]:
    """Distinct reviews with an open flag matching ``flt``, highest priority first (what a bulk
    relabel of "everything matching" touches).

    Example:
        >>> fetch_matching_review_ids(con, QueueFilter(reasons=("label_issue",)))[:2]  # doctest: +SKIP
        ['r17', 'r4']
    """
    matching = _matching_flags(con, flt)
    if flt.labels and not matching.empty:
        current = fetch_current_labels(con, matching["review_id"].drop_duplicates().tolist())
        matching = matching[matching["review_id"].map(lambda r: current.get(r, (None, None))[0]).isin(flt.labels)]
    ranked = matching.groupby("review_id", as_index=False)["priority"].max()
    return ranked.sort_values(["priority", "review_id"], ascending=[False, True])["review_id"].tolist()


def oldest_review_time(con: duckdb.DuckDBPyConnection) -> datetime | None:
    """created_at of the oldest review (None when no review has a date)."""
    return con.execute(f"SELECT min(created_at) FROM {DATED_REVIEWS_SQL}").fetchone()[0]


def count_flags_by_status(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Flags per status.

    Example:
        >>> count_flags_by_status(con)  # doctest: +SKIP
        {'open': 40, 'resolved': 12, 'dismissed': 3}
    """
    rows = dict(con.execute("SELECT status, count(*) FROM flags GROUP BY 1").fetchall())
    return {status: rows.get(status, 0) for status in ("open", "resolved", "dismissed")}


def fetch_open_flag_review_ids(con: duckdb.DuckDBPyConnection, *, reasons: list[str] | None = None) -> list[str]:
    """Distinct reviews with an open flag of one of ``reasons`` (None: any reason), highest priority first.

    Example:
        >>> fetch_open_flag_review_ids(con, reasons=["low_confidence"])[:2]  # doctest: +SKIP
        ['r17', 'r4']
    """
    rows = con.execute(
        """
        SELECT review_id FROM flags
        WHERE status = 'open' AND (?::VARCHAR[] IS NULL OR reason IN (SELECT unnest(?::VARCHAR[])))
        GROUP BY review_id ORDER BY max(priority) DESC, review_id
        """,
        [reasons, reasons],
    ).fetchall()
    return [r for (r,) in rows]
