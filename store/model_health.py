"""Model health over time: the weekly numbers behind it, their stored snapshot, and emerging-term scans.

The statistics (drift, thresholds) are computed in :mod:`pipeline.monitor.health`; this
module only reads the counts and texts they need and stores what came out.
"""

from __future__ import annotations

import json
from datetime import datetime

import duckdb
import pandas as pd

from store.constants import DATED_REVIEWS_SQL, LABELS, STARS_LABEL_SQL

HEALTH_COLUMNS: tuple[str, ...] = (
    "period", "n", "star_agreement", "n_human", "human_agreement", "mean_confidence", "low_confidence_share",
    "share_negative", "share_neutral", "share_positive", "class_mix_js", "class_mix_p", "unseen_term_share",
)  # fmt: skip


def fetch_weekly_prediction_stats(
    con: duckdb.DuckDBPyConnection, model_id: str, *, low_confidence_prob: float
) -> pd.DataFrame:
    """Per week of review date: the model's predictions against stars and human labels, and its confidence.

    Returns:
        period (Timestamp), n, n_stars, star_agree (count), n_human, human_agree (count),
        mean_confidence, low_confidence (count of top probability below ``low_confidence_prob``),
        pred_negative, pred_neutral, pred_positive; sorted by period.
    """
    stars_label = STARS_LABEL_SQL.format(col="r.stars")
    return con.execute(
        f"""
        WITH human AS (SELECT review_id, label FROM current_labels WHERE source = 'human')
        SELECT date_trunc('week', r.created_at)::TIMESTAMP AS period, count(*) AS n,
               count(r.stars) AS n_stars,
               count(*) FILTER (WHERE r.stars IS NOT NULL AND p.label = {stars_label}) AS star_agree,
               count(h.label) AS n_human, count(*) FILTER (WHERE p.label = h.label) AS human_agree,
               avg(greatest(p.p_negative, p.p_neutral, p.p_positive)) AS mean_confidence,
               count(*) FILTER (WHERE greatest(p.p_negative, p.p_neutral, p.p_positive) < ?) AS low_confidence,
               count(*) FILTER (WHERE p.label = 'negative') AS pred_negative,
               count(*) FILTER (WHERE p.label = 'neutral') AS pred_neutral,
               count(*) FILTER (WHERE p.label = 'positive') AS pred_positive
        FROM {DATED_REVIEWS_SQL} r JOIN predictions p USING (review_id) LEFT JOIN human h USING (review_id)
        WHERE p.model_id = ? AND r.created_at IS NOT NULL
        GROUP BY 1 ORDER BY 1
        """,
        [float(low_confidence_prob), model_id],
    ).df()


def fetch_training_label_mix(con: duckdb.DuckDBPyConnection, model_id: str) -> tuple[dict[str, int], str]:
    """The class mix a model's predictions are expected to follow, and where it came from.

    A trained model: the class counts it was trained on (its recorded train label counts, else
    the train split's current labels). A baseline was never trained, and its own bias (VADER
    calls much of everything neutral) is not drift: its reference is its own predicted mix on
    the train split.

    Returns:
        ({label: count}, "training labels" | "train-split labels" | "its predictions on the train split").
    """
    row = con.execute("SELECT label_counts, kind FROM models WHERE model_id = ?", [model_id]).fetchone()
    if row and row[1] == "baseline":
        found = dict(con.execute(
            """
            SELECT p.label, count(*) FROM splits s JOIN predictions p USING (review_id)
            WHERE s.split = 'train' AND p.model_id = ? GROUP BY 1
            """,
            [model_id],
        ).fetchall())
        return {label: int(found.get(label, 0)) for label in LABELS}, "its predictions on the train split"
    counts = json.loads(row[0]) if row and row[0] else {}
    train = counts.get("train") if isinstance(counts, dict) else None
    if train and all(label in train for label in LABELS):
        return {label: int(train[label]) for label in LABELS}, "training labels"
    found = dict(
        con.execute(
            "SELECT l.label, count(*) FROM splits s JOIN current_labels l USING (review_id) WHERE s.split = 'train' GROUP BY 1"
        ).fetchall()
    )
    return {label: int(found.get(label, 0)) for label in LABELS}, "train-split labels"


def fetch_training_texts(con: duckdb.DuckDBPyConnection, *, limit: int) -> list[str]:
    """Texts of (a deterministic sample of at most ``limit``) train-split reviews."""
    rows = con.execute(
        """
        SELECT r.text FROM reviews r JOIN splits s USING (review_id)
        WHERE s.split = 'train' ORDER BY hash(r.review_id) LIMIT ?
        """,
        [int(limit)],
    ).fetchall()
    return [t for (t,) in rows]


def fetch_weekly_texts(con: duckdb.DuckDBPyConnection, model_id: str, *, per_week: int) -> pd.DataFrame:
    """period, text of the reviews ``model_id`` scored: a deterministic sample of at most ``per_week`` per week."""
    return con.execute(
        f"""
        SELECT date_trunc('week', r.created_at)::TIMESTAMP AS period, r.text
        FROM {DATED_REVIEWS_SQL} r JOIN predictions p USING (review_id)
        WHERE p.model_id = ? AND r.created_at IS NOT NULL
        QUALIFY row_number() OVER (PARTITION BY date_trunc('week', r.created_at) ORDER BY hash(r.review_id)) <= ?
        """,
        [model_id, int(per_week)],
    ).df()


def replace_model_health(con: duckdb.DuckDBPyConnection, model_id: str, health: pd.DataFrame) -> int:
    """Replace ``model_id``'s stored weekly health with ``health`` (columns HEALTH_COLUMNS); returns rows written."""
    missing = set(HEALTH_COLUMNS) - set(health.columns)
    if missing:
        raise ValueError(f"health frame lacks columns: {sorted(missing)}")
    frame = health[list(HEALTH_COLUMNS)].assign(model_id=model_id, computed_at=datetime.now())
    frame["period"] = pd.to_datetime(frame["period"]).dt.date
    con.execute("DELETE FROM model_health WHERE model_id = ?", [model_id])
    con.register("_health", frame)
    try:
        cols = ", ".join(["model_id", *HEALTH_COLUMNS, "computed_at"])
        con.execute(f"INSERT INTO model_health ({cols}) SELECT {cols} FROM _health")
    finally:
        con.unregister("_health")
    return len(frame)


def fetch_model_health(con: duckdb.DuckDBPyConnection, model_id: str) -> pd.DataFrame:
    """The stored weekly health of ``model_id`` (HEALTH_COLUMNS plus computed_at), oldest week first."""
    cols = ", ".join([*HEALTH_COLUMNS, "computed_at"])
    return con.execute(f"SELECT {cols} FROM model_health WHERE model_id = ? ORDER BY period", [model_id]).df()


def record_term_scan(con: duckdb.DuckDBPyConnection, scan: dict) -> int:
    """Store what one emerging-term search saw and found; returns its scan_id.

    Args:
        scan: model_id, window_start, window_end, recent_docs, prior_docs, terms (list of dicts),
            flagged (reviews flagged), outcome (one sentence: what was found, or why nothing).
    """
    return con.execute(
        """
        INSERT INTO term_scans (model_id, window_start, window_end, recent_docs, prior_docs, terms, flagged, outcome, created_at)
        VALUES (?, ?, ?, ?, ?, ?::JSON, ?, ?, ?) RETURNING scan_id
        """,
        [scan.get("model_id"), scan.get("window_start"), scan.get("window_end"), int(scan["recent_docs"]),
         int(scan["prior_docs"]), json.dumps(scan.get("terms") or [], default=str), int(scan.get("flagged", 0)),
         scan["outcome"], datetime.now()],
    ).fetchone()[0]


def list_term_scans(con: duckdb.DuckDBPyConnection, *, limit: int = 10) -> pd.DataFrame:
    """Emerging-term scans newest first: scan_id, model_id, window_start, window_end, recent_docs,
    prior_docs, terms (list of dicts), flagged, outcome, created_at."""
    frame = con.execute(
        "SELECT * FROM term_scans ORDER BY created_at DESC, scan_id DESC LIMIT ?", [int(limit)]
    ).df()
    frame["terms"] = [json.loads(t) if isinstance(t, str) else t for t in frame["terms"]]
    return frame


def fetch_test_predictions(con: duckdb.DuckDBPyConnection, model_id: str) -> pd.DataFrame:
    """review_id, text, label (current), p_negative, p_neutral, p_positive of ``model_id`` on the test split."""
    return con.execute(
        """
        SELECT r.review_id, r.text, l.label, p.p_negative, p.p_neutral, p.p_positive
        FROM splits s JOIN reviews r USING (review_id) JOIN current_labels l USING (review_id)
             JOIN predictions p ON p.review_id = r.review_id AND p.model_id = ?
        WHERE s.split = 'test'
        """,
        [model_id],
    ).df()
