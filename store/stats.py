"""Store-wide counts for `tastebud stats` and the dashboard's overview."""

from __future__ import annotations

import duckdb
import pandas as pd

from store.constants import DATED_REVIEWS_SQL, LABEL_SOURCES, LABELS, SPLITS


def store_stats(con: duckdb.DuckDBPyConnection) -> dict:
    """Counts of reviews, current labels by class and source, splits, and labels per split.

    Example:
        >>> store_stats(con)["reviews"]  # doctest: +SKIP
        3000
    """
    reviews = con.execute("SELECT count(*) FROM reviews").fetchone()[0]
    by_label = dict(con.execute("SELECT label, count(*) FROM current_labels GROUP BY 1").fetchall())
    by_source = dict(con.execute("SELECT source, count(*) FROM current_labels GROUP BY 1").fetchall())
    history_by_source = dict(con.execute("SELECT source, count(*) FROM labels GROUP BY 1").fetchall())
    by_split = dict(con.execute("SELECT split, count(*) FROM splits GROUP BY 1").fetchall())
    split_label = con.execute(
        "SELECT s.split, l.label, count(*) FROM splits s JOIN current_labels l USING (review_id) GROUP BY 1, 2"
    ).fetchall()
    per_split = {s: dict.fromkeys(LABELS, 0) for s in SPLITS}
    for split, label, n in split_label:
        per_split[split][label] = n
    return {
        "reviews": reviews,
        "labeled": sum(by_label.values()),
        "unlabeled": reviews - sum(by_label.values()),
        "labels": {label: by_label.get(label, 0) for label in LABELS},
        "label_sources": {source: by_source.get(source, 0) for source in LABEL_SOURCES},
        "label_history_rows": {source: history_by_source.get(source, 0) for source in LABEL_SOURCES},
        "splits": {s: by_split.get(s, 0) for s in SPLITS},
        "labels_by_split": per_split,
    }


def fetch_overview(con: duckdb.DuckDBPyConnection) -> dict:
    """Store-wide counts for the overview page.

    Returns:
        reviews, first_review_at, last_review_at, labeled, labels_by_source (current labels),
        human_label_rows, predictions (DataFrame: model_id, n, last_scored_at), last_scored_at,
        open_flags (dict reason -> count), resolved_flags, models.

    Example:
        >>> fetch_overview(con)["reviews"]  # doctest: +SKIP
        3000
    """
    reviews, first, last = con.execute(f"SELECT count(*), min(created_at), max(created_at) FROM {DATED_REVIEWS_SQL}").fetchone()
    by_source = dict(con.execute("SELECT source, count(*) FROM current_labels GROUP BY 1").fetchall())
    human_rows = con.execute("SELECT count(*) FROM labels WHERE source = 'human'").fetchone()[0]
    predictions = con.execute(
        "SELECT model_id, count(*) AS n, max(scored_at) AS last_scored_at FROM predictions GROUP BY 1 ORDER BY 3 DESC"
    ).df()
    open_flags = dict(
        con.execute("SELECT reason, count(*) FROM flags WHERE status = 'open' GROUP BY 1 ORDER BY 2 DESC").fetchall()
    )
    resolved = con.execute("SELECT count(*) FROM flags WHERE status <> 'open'").fetchone()[0]
    models = con.execute("SELECT count(*) FROM models").fetchone()[0]
    return {
        "reviews": reviews,
        "first_review_at": first,
        "last_review_at": last,
        "labeled": sum(by_source.values()),
        "labels_by_source": by_source,
        "human_label_rows": human_rows,
        "predictions": predictions,
        "last_scored_at": predictions["last_scored_at"].max() if len(predictions) else None,
        "open_flags": open_flags,
        "resolved_flags": resolved,
        "models": models,
    }


def fetch_store_counts(con: duckdb.DuckDBPyConnection) -> dict:
    """Reviews, current labels by class and by source, and reviews per split.

    The data page's subset of ``store.stats.store_stats`` (same keys and values), with the
    current-labels view evaluated once instead of three times and no join to the splits.

    Example:
        >>> fetch_store_counts(con)["labels"]["negative"]  # doctest: +SKIP
        412
    """
    reviews = con.execute("SELECT count(*) FROM reviews").fetchone()[0]
    splits = dict.fromkeys(SPLITS, 0) | dict(con.execute("SELECT split, count(*) FROM splits GROUP BY 1").fetchall())
    labels, sources = dict.fromkeys(LABELS, 0), dict.fromkeys(LABEL_SOURCES, 0)
    for label, source, n in con.execute("SELECT label, source, count(*) FROM current_labels GROUP BY ALL").fetchall():
        labels[label] += n
        sources[source] = sources.get(source, 0) + n
    labeled = sum(labels.values())
    return {
        "reviews": reviews,
        "labeled": labeled,
        "unlabeled": reviews - labeled,
        "labels": labels,
        "label_sources": sources,
        "splits": splits,
    }


def fetch_review_volume(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Reviews per month and review source: month (date), source, n.

    Example:
        >>> fetch_review_volume(con).head(1)  # doctest: +SKIP
    """
    return con.execute(
        f"""
        SELECT date_trunc('month', created_at)::DATE AS month, source, count(*) AS n
        FROM {DATED_REVIEWS_SQL} WHERE created_at IS NOT NULL GROUP BY ALL ORDER BY 1, 2
        """
    ).df()
