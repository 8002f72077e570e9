"""Model-quality reads and writes: labeled examples per class (data readiness) and learning curves.

The seed's rule is at least ``MIN_EXAMPLES_PER_CLASS`` labeled training examples per class;
:func:`fetch_class_counts` gives the counts the Training page and ``tastebud train`` check.
Learning curves (test macro-F1 against training-set size, from ``tastebud learning-curve``)
are stored one row per point so Model comparison can plot the newest curve of each kind.
"""

from __future__ import annotations

import json
from datetime import datetime

import duckdb
import pandas as pd

from store.constants import LABELS, SPLITS

# The seed's data-readiness rule: fewer labeled training examples than this in a class is a warning.
MIN_EXAMPLES_PER_CLASS = 500

CURVE_COLUMNS = ("curve_id", "model_kind", "n_train", "repeat", "macro_f1", "accuracy", "test_n", "test_snapshot",
                 "params", "created_at")


def fetch_class_counts(con: duckdb.DuckDBPyConnection, split: str = "train") -> dict[str, int]:
    """Labeled reviews per class in ``split`` (current labels; every class present, 0 when absent).

    Example:
        >>> fetch_class_counts(con)  # doctest: +SKIP
        {'negative': 1480, 'neutral': 610, 'positive': 4310}
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    rows = dict(con.execute(
        """
        SELECT l.label, count(*) FROM current_labels l JOIN splits s USING (review_id)
        WHERE s.split = ? GROUP BY 1
        """,
        [split],
    ).fetchall())
    return {label: int(rows.get(label, 0)) for label in LABELS}


def fetch_data_readiness(con: duckdb.DuckDBPyConnection, *, minimum: int = MIN_EXAMPLES_PER_CLASS) -> pd.DataFrame:
    """Per class: labeled training examples, the minimum, whether it is met and how many are missing.

    Columns: label, n_train, minimum, ready, missing.

    Example:
        >>> fetch_data_readiness(con).query("not ready")["label"].tolist()  # doctest: +SKIP
        ['neutral']
    """
    counts = fetch_class_counts(con, "train")
    return pd.DataFrame([
        {"label": label, "n_train": n, "minimum": minimum, "ready": n >= minimum, "missing": max(0, minimum - n)}
        for label, n in counts.items()
    ])


def insert_learning_curve(con: duckdb.DuckDBPyConnection, curve_id: str, model_kind: str, points: list[dict],
                          *, params: dict | None = None) -> int:
    """Store the points of one learning curve (each: n_train, repeat, macro_f1, accuracy, test_n, test_snapshot).

    Call inside a transaction. Returns the number of points stored.
    """
    if not points:
        raise ValueError("a learning curve needs at least one point")
    now = datetime.now()
    con.executemany(
        """
        INSERT INTO learning_curves (curve_id, model_kind, n_train, repeat, macro_f1, accuracy, test_n,
                                     test_snapshot, params, created_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        """,
        [[curve_id, model_kind, int(p["n_train"]), int(p.get("repeat", 0)), float(p["macro_f1"]), float(p["accuracy"]),
          int(p["test_n"]), p.get("test_snapshot"), json.dumps(params or {}, default=str), now] for p in points],
    )
    return len(points)


def fetch_learning_curves(con: duckdb.DuckDBPyConnection, *, latest_only: bool = True) -> pd.DataFrame:
    """Learning-curve points for plotting: test macro-F1 against training-set size.

    Args:
        latest_only: only the newest curve of each model kind.

    Returns:
        Columns curve_id, model_kind, n_train, repeats, macro_f1 (mean over repeats), macro_f1_std,
        accuracy (mean), test_n, created_at; ordered by model kind and size. Empty when none was run.

    Example:
        >>> fetch_learning_curves(con)[["model_kind", "n_train", "macro_f1"]]  # doctest: +SKIP
    """
    latest = """
        AND curve_id IN (
            SELECT curve_id FROM learning_curves
            QUALIFY row_number() OVER (PARTITION BY model_kind ORDER BY created_at DESC, curve_id DESC) = 1
        )""" if latest_only else ""
    return con.execute(
        f"""
        SELECT curve_id, model_kind, n_train, count(*) AS repeats, avg(macro_f1) AS macro_f1,
               coalesce(stddev_samp(macro_f1), 0) AS macro_f1_std, avg(accuracy) AS accuracy,
               max(test_n) AS test_n, max(created_at) AS created_at
        FROM learning_curves WHERE TRUE {latest}
        GROUP BY curve_id, model_kind, n_train
        ORDER BY model_kind, created_at, n_train
        """
    ).df()
