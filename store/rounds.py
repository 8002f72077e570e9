"""Relabel-retrain rounds: what each retrain added in human labels and what it gained.

Round numbers are taken when a retrain starts. A human label records the round that was
next when it was made (``labels.round``), so the labels a successful round consumed are
the current human labels numbered after the previous successful round, up to its own.
"""

from __future__ import annotations

import json
from datetime import datetime

import duckdb
import pandas as pd

# Result columns a finished round may set (see finish_round).
ROUND_RESULT_FIELDS: tuple[str, ...] = (
    "model_id",
    "champion_before",
    "promoted",
    "decision",
    "human_labels_train",
    "human_labels_val",
    "human_labels_test",
    "human_labels_other",
    "test_n",
    "champion_macro_f1",
    "challenger_macro_f1",
    "delta_macro_f1",
    "ci_low",
    "ci_high",
    "label_efficiency",
    "detail",
)


def next_round_number(con: duckdb.DuckDBPyConnection) -> int:
    """The round that human labels made now will feed (1 before any retrain)."""
    return con.execute("SELECT coalesce(max(round_id), 0) + 1 FROM rounds").fetchone()[0]


def start_round(con: duckdb.DuckDBPyConnection, *, actor: str, job_id: str | None = None) -> int:
    """Take the next round number and record it as running; returns it. Call inside a transaction."""
    round_id = next_round_number(con)
    con.execute(
        "INSERT INTO rounds (round_id, status, actor, job_id, started_at) VALUES (?, 'running', ?, ?, ?)",
        [round_id, actor, job_id, datetime.now()],
    )
    return round_id


def finish_round(con: duckdb.DuckDBPyConnection, round_id: int, *, status: str = "succeeded", **fields) -> None:
    """Record how a round ended (``fields`` from ROUND_RESULT_FIELDS)."""
    if status not in ("succeeded", "failed"):
        raise ValueError(f"not a final round status: {status}")
    unknown = set(fields) - set(ROUND_RESULT_FIELDS)
    if unknown:
        raise ValueError(f"unknown round fields: {sorted(unknown)}")
    if "detail" in fields and not isinstance(fields["detail"], str | None):
        fields["detail"] = json.dumps(fields["detail"], default=str)
    # Column names come from the fixed ROUND_RESULT_FIELDS list above, values are bound.
    sets = ", ".join(f"{name} = ?" for name in fields)
    con.execute(
        f"UPDATE rounds SET status = ?, finished_at = ?{', ' + sets if sets else ''} WHERE round_id = ?",
        [status, datetime.now(), *fields.values(), round_id],
    )


def count_round_human_labels(con: duckdb.DuckDBPyConnection, round_id: int) -> dict[str, int]:
    """Reviews whose current label is a human label made for ``round_id`` (or a failed round since the
    last successful one), by split: {"train", "val", "test", "other"} ("other" = no split yet)."""
    rows = dict(
        con.execute(
            """
            WITH prev AS (
                SELECT coalesce(max(round_id), 0) AS r FROM rounds WHERE status = 'succeeded' AND round_id < ?
            )
            SELECT coalesce(s.split, 'other'), count(*)
            FROM current_labels l LEFT JOIN splits s USING (review_id), prev
            WHERE l.source = 'human' AND l.round > prev.r AND l.round <= ?
            GROUP BY 1
            """,
            [round_id, round_id],
        ).fetchall()
    )
    return {key: rows.get(key, 0) for key in ("train", "val", "test", "other")}


def list_rounds(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every round, newest first, with its human labels by split, metric change and label efficiency
    (test macro-F1 gain per human label added to the training split)."""
    return con.execute(
        """
        SELECT round_id, status, actor, model_id, champion_before, promoted, decision,
               human_labels_train, human_labels_val, human_labels_test, human_labels_other, test_n,
               champion_macro_f1, challenger_macro_f1, delta_macro_f1, ci_low, ci_high, label_efficiency,
               started_at, finished_at, detail
        FROM rounds ORDER BY round_id DESC
        """
    ).df()


def get_round(con: duckdb.DuckDBPyConnection, round_id: int) -> dict | None:
    """One round as a dict (detail decoded), or None."""
    cur = con.execute("SELECT * FROM rounds WHERE round_id = ?", [round_id])
    row = cur.fetchone()
    if row is None:
        return None
    record = dict(zip([d[0] for d in cur.description], row))
    record["detail"] = json.loads(record["detail"]) if record["detail"] else None
    return record
