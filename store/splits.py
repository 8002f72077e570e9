"""Frozen train/val/test assignment.

A review is assigned once and never moves, so every model meets the same test set.
New reviews are assigned per label stratum (their current label at assignment time;
unlabeled reviews form their own stratum): each stratum's split counts, old plus new,
are topped up towards the target proportions, and within a stratum the order is a
seeded hash of the review id, so the assignment is deterministic for a given store.
"""

from __future__ import annotations

from datetime import datetime

import duckdb
import pyarrow as pa

from store.constants import DEFAULT_SPLIT_FRACTIONS, SPLITS

SPLIT_SEED = 17


def _quota(existing: dict[str, int], new: int, fractions: tuple[float, float, float]) -> dict[str, int]:
    """How many of ``new`` go to each split so totals approach ``fractions`` (largest deficit first)."""
    total = sum(existing.values()) + new
    deficits = {s: max(0.0, f * total - existing.get(s, 0)) for s, f in zip(SPLITS, fractions)}
    deficit_sum = sum(deficits.values())
    if deficit_sum == 0:
        deficits, deficit_sum = dict(zip(SPLITS, fractions)), 1.0
    raw = {s: new * d / deficit_sum for s, d in deficits.items()}
    quota = {s: int(v) for s, v in raw.items()}
    # Hand out the remainder by largest fractional part; ties favour train, then val.
    for s in sorted(SPLITS, key=lambda s: (-(raw[s] - quota[s]), SPLITS.index(s)))[: new - sum(quota.values())]:
        quota[s] += 1
    return quota


def count_split_strata(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, int]]:
    """Assigned reviews per stratum (current label, '' for unlabeled) and split: one pass over every label.

    A long import reads this once and hands it to each chunk's :func:`assign_splits`.

    Example:
        >>> count_split_strata(con)["positive"]  # doctest: +SKIP
        {'train': 800, 'val': 100, 'test': 100}
    """
    rows = con.execute(
        """
        SELECT coalesce(l.label, '') AS stratum, s.split, count(*)
        FROM splits s LEFT JOIN current_labels l USING (review_id)
        GROUP BY ALL
        """
    ).fetchall()
    strata: dict[str, dict[str, int]] = {}
    for stratum, split, n in rows:
        strata.setdefault(stratum, dict.fromkeys(SPLITS, 0))[split] = n
    return strata


def assign_splits(
    con: duckdb.DuckDBPyConnection,
    *,
    fractions: tuple[float, float, float] = DEFAULT_SPLIT_FRACTIONS,
    strata: dict[str, dict[str, int]] | None = None,
    review_ids: pa.Array | pa.ChunkedArray | None = None,
) -> dict[str, int]:
    """Assign every review that has no split yet. Call inside a transaction.

    Args:
        fractions: target (train, val, test) proportions.
        strata: assigned counts per stratum from :func:`count_split_strata`, kept by a caller
            that assigns in several transactions (updated in place here). It saves the pass
            over every current label; without it the counts are read from the store.
        review_ids: with ``strata``, only these reviews are considered (one import chunk's),
            so the cost follows the chunk, not the store.

    Returns:
        How many reviews went to each split in this call.
    """
    if abs(sum(fractions) - 1.0) > 1e-9 or min(fractions) < 0:
        raise ValueError(f"split fractions must be non-negative and sum to 1, got {fractions}")
    if review_ids is not None and strata is None:
        raise ValueError("review_ids needs strata (see count_split_strata)")
    # Cheap exit for the common re-import case: computing strata reads every current label.
    if review_ids is None and not con.execute(
        "SELECT EXISTS (SELECT 1 FROM reviews r ANTI JOIN splits s USING (review_id))"
    ).fetchone()[0]:
        return {s: 0 for s in SPLITS}
    if strata is None:
        # The current label of every review is computed once (a window over all labels) and
        # serves both the per-stratum counts and the pending rows below.
        con.execute(
            """
            CREATE OR REPLACE TEMP TABLE _stratum AS
            SELECT r.review_id, coalesce(l.label, '') AS stratum, s.split
            FROM reviews r LEFT JOIN current_labels l USING (review_id) LEFT JOIN splits s USING (review_id)
            """
        )
        counts = con.execute(
            """
            SELECT stratum, count(*) FILTER (WHERE split IS NULL) AS new,
                   count(*) FILTER (WHERE split = 'train') AS train,
                   count(*) FILTER (WHERE split = 'val') AS val,
                   count(*) FILTER (WHERE split = 'test') AS test
            FROM _stratum
            GROUP BY 1
            """
        ).fetchall()
    else:
        # Only the pending reviews' labels are read (their ids first, so the window stays small).
        # Joins, not IN/ANTI JOIN: DuckDB then hashes the small side (the chunk), not the store.
        if review_ids is None:
            pending = "SELECT r.review_id FROM reviews r ANTI JOIN splits s USING (review_id)"
        else:
            con.register("_split_ids", pa.table({"review_id": review_ids}))
            pending = (
                "SELECT i.review_id::VARCHAR AS review_id FROM _split_ids i "
                "LEFT JOIN splits s ON s.review_id = i.review_id::VARCHAR WHERE s.review_id IS NULL"
            )
        try:
            con.execute(
                f"""
                CREATE OR REPLACE TEMP TABLE _stratum AS
                WITH pending AS ({pending}),
                newest AS (
                    SELECT l.review_id, l.label FROM labels l JOIN pending p ON p.review_id = l.review_id
                    WHERE NOT EXISTS (SELECT 1 FROM label_retractions x WHERE x.label_id = l.label_id)
                    QUALIFY row_number() OVER (
                        PARTITION BY l.review_id ORDER BY (l.source = 'human') DESC, l.created_at DESC, l.label_id DESC
                    ) = 1
                )
                SELECT p.review_id, coalesce(n.label, '') AS stratum, NULL::VARCHAR AS split
                FROM pending p LEFT JOIN newest n USING (review_id)
                """
            )
        finally:
            if review_ids is not None:
                con.unregister("_split_ids")
        new_by_stratum = dict(con.execute("SELECT stratum, count(*) FROM _stratum GROUP BY 1").fetchall())
        counts = [
            (stratum, new, *(strata.get(stratum, {}).get(s, 0) for s in SPLITS))
            for stratum, new in new_by_stratum.items()
        ]
    quotas = []
    for stratum, new, train, val, test in counts:
        if new:
            q = _quota({"train": train, "val": val, "test": test}, new, fractions)
            quotas.append((stratum, q["train"], q["val"], q["test"]))
    if not quotas:
        con.execute("DROP TABLE _stratum")
        return {s: 0 for s in SPLITS}
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _quota (stratum VARCHAR, n_train BIGINT, n_val BIGINT)"
    )
    con.executemany("INSERT INTO _quota VALUES (?, ?, ?)", [q[:3] for q in quotas])
    con.execute(
        """
        INSERT INTO splits (review_id, split, assigned_at)
        WITH pending AS (
            SELECT review_id, stratum,
                   row_number() OVER (PARTITION BY stratum ORDER BY hash(review_id || ?), review_id) AS k
            FROM _stratum WHERE split IS NULL
        )
        SELECT p.review_id,
               CASE WHEN p.k <= q.n_train THEN 'train' WHEN p.k <= q.n_train + q.n_val THEN 'val' ELSE 'test' END,
               ?
        FROM pending p JOIN _quota q USING (stratum)
        """,
        [str(SPLIT_SEED), datetime.now()],
    )
    con.execute("DROP TABLE _quota")
    con.execute("DROP TABLE _stratum")
    assigned = dict.fromkeys(SPLITS, 0)
    for stratum, n_train, n_val, n_test in quotas:
        for split, n in zip(SPLITS, (n_train, n_val, n_test)):
            assigned[split] += n
            if strata is not None:
                strata.setdefault(stratum, dict.fromkeys(SPLITS, 0))[split] += n
    return assigned


def split_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Reviews per split."""
    rows = dict(con.execute("SELECT split, count(*) FROM splits GROUP BY 1").fetchall())
    return {s: rows.get(s, 0) for s in SPLITS}


def insert_splits(con: duckdb.DuckDBPyConnection, assignments) -> int:
    """Assign given reviews to given splits (a frame with review_id, split), for benchmarks that
    cross-validate with their own folds. Reviews that already have a split keep it. Call inside a transaction.

    Returns:
        How many reviews were assigned.

    Example:
        >>> insert_splits(con, pd.DataFrame({"review_id": ["r1"], "split": ["test"]}))  # doctest: +SKIP
        1
    """
    bad = sorted(set(assignments["split"]) - set(SPLITS))
    if bad:
        raise ValueError(f"splits must be one of {', '.join(SPLITS)}, got {bad}")
    before = con.execute("SELECT count(*) FROM splits").fetchone()[0]
    con.register("_assign", assignments[["review_id", "split"]])
    try:
        con.execute(
            """
            INSERT INTO splits (review_id, split, assigned_at)
            SELECT a.review_id, a.split, ? FROM _assign a
            WHERE a.review_id NOT IN (SELECT review_id FROM splits)
            """,
            [datetime.now()],
        )
    finally:
        con.unregister("_assign")
    return con.execute("SELECT count(*) FROM splits").fetchone()[0] - before
