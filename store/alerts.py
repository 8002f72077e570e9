"""Alerts: a monitored number crossed its threshold (model health) or a group shifted (sentiment, volume).

An alert is identified by (kind, metric, subject, period): raising the same one again is a
no-op, so the monitor can run after every scoring. Alerts are acknowledged, never deleted.
"""

from __future__ import annotations

import json
from datetime import datetime

import duckdb
import pandas as pd

from store.actors import Actor, audit, require

ALERT_KINDS: tuple[str, ...] = ("model_health", "sentiment_shift", "volume_shift")
ALERT_STATUSES: tuple[str, ...] = ("open", "acknowledged")
_COLUMNS = ("kind", "metric", "subject", "period", "value", "threshold", "message", "detail")


def raise_alerts(con: duckdb.DuckDBPyConnection, alerts: list[dict]) -> int:
    """Insert the alerts not raised before (same kind, metric, subject and period).

    Args:
        alerts: dicts with kind, metric, subject, message, and optionally period (date),
            value, threshold, detail (JSON-serialisable).

    Returns:
        How many were new.

    Example:
        >>> raise_alerts(con, [{"kind": "model_health", "metric": "class_mix_js", "subject": "m1",
        ...                     "period": date(2025, 8, 25), "value": 0.3, "threshold": 0.2,
        ...                     "message": "class mix drifted"}])  # doctest: +SKIP
        1
    """
    rows = []
    for alert in alerts:
        missing = {"kind", "metric", "subject", "message"} - set(alert)
        if missing:
            raise ValueError(f"alert lacks {sorted(missing)}: {alert}")
        if alert["kind"] not in ALERT_KINDS:
            raise ValueError(f"unknown alert kind {alert['kind']!r}; expected one of {', '.join(ALERT_KINDS)}")
        row = [alert.get(c) for c in _COLUMNS]
        row[-1] = json.dumps(row[-1], default=str) if row[-1] is not None else None
        rows.append(row)
    if not rows:
        return 0
    frame = pd.DataFrame(rows, columns=list(_COLUMNS))
    frame["period"] = pd.to_datetime(frame["period"]).dt.date
    before = con.execute("SELECT count(*) FROM alerts").fetchone()[0]
    con.register("_new_alerts", frame)
    try:
        con.execute(
            """
            INSERT INTO alerts (kind, metric, subject, period, value, threshold, message, detail, created_at)
            SELECT DISTINCT ON (kind, metric, subject, period) kind, metric, subject, period, value, threshold,
                   message, detail::JSON, ?
            FROM _new_alerts n
            WHERE NOT EXISTS (SELECT 1 FROM alerts a WHERE a.kind = n.kind AND a.metric = n.metric
                              AND a.subject = n.subject AND a.period IS NOT DISTINCT FROM n.period)
            """,
            [datetime.now()],
        )
    finally:
        con.unregister("_new_alerts")
    return con.execute("SELECT count(*) FROM alerts").fetchone()[0] - before


def list_alerts(
    con: duckdb.DuckDBPyConnection, *, status: str | None = "open", kind: str | None = None, limit: int = 100
) -> pd.DataFrame:
    """Alerts newest first (by period, then when raised).

    Args:
        status: "open", "acknowledged" or None for both.
        kind: one of ALERT_KINDS, or None for all.

    Returns:
        alert_id, kind, metric, subject, period, value, threshold, message, detail, status,
        created_at, acknowledged_at, acknowledged_by.
    """
    if status is not None and status not in ALERT_STATUSES:
        raise ValueError(f"unknown alert status {status!r}; expected one of {', '.join(ALERT_STATUSES)}")
    if kind is not None and kind not in ALERT_KINDS:
        raise ValueError(f"unknown alert kind {kind!r}; expected one of {', '.join(ALERT_KINDS)}")
    return con.execute(
        """
        SELECT alert_id, kind, metric, subject, period, value, threshold, message, detail, status,
               created_at, acknowledged_at, acknowledged_by
        FROM alerts
        WHERE (?::VARCHAR IS NULL OR status = ?) AND (?::VARCHAR IS NULL OR kind = ?)
        ORDER BY period DESC NULLS LAST, created_at DESC, alert_id DESC
        LIMIT ?
        """,
        [status, status, kind, kind, int(limit)],
    ).df()


def count_open_alerts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Open alerts per kind."""
    return dict(con.execute("SELECT kind, count(*) FROM alerts WHERE status = 'open' GROUP BY 1").fetchall())


def acknowledge_alerts(con: duckdb.DuckDBPyConnection, alert_ids: list[int], actor: Actor) -> int:
    """Mark open alerts acknowledged (data scientists and admins); returns how many changed.

    Raises:
        ValueError: an id that is not an alert.
    """
    require(actor, "train")
    ids = [int(i) for i in alert_ids]
    known = {i for (i,) in con.execute("SELECT alert_id FROM alerts WHERE alert_id IN (SELECT unnest(?::BIGINT[]))", [ids]).fetchall()}
    unknown = sorted(set(ids) - known)
    if unknown:
        raise ValueError(f"no alert with id {', '.join(map(str, unknown))}")
    changed = con.execute(
        """
        UPDATE alerts SET status = 'acknowledged', acknowledged_at = ?, acknowledged_by = ?
        WHERE alert_id IN (SELECT unnest(?::BIGINT[])) AND status = 'open'
        RETURNING alert_id
        """,
        [datetime.now(), actor.name, ids],
    ).fetchall()
    if changed:
        audit(con, actor, "alert.acknowledge", target=",".join(str(i) for (i,) in changed))
    return len(changed)
