"""Store-wide counts for `tastebud stats` and the dashboard's overview."""

from __future__ import annotations

import duckdb

from store.constants import LABEL_SOURCES, LABELS, SPLITS


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
