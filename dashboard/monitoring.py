"""Monitoring for the pages: cached reads (KPIs, movers, shifts, health, alerts) and the small
sections other pages embed (the "Retrain recommended" banner, the local-references slice)."""

from __future__ import annotations

import html
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import views
from dashboard.reads import _cached
from pipeline.monitor import thresholds as T
from pipeline.monitor.kpis import latest_complete_period, period_kpis
from pipeline.monitor.shifts import ShiftSettings, biggest_movers, detect_shifts, period_end
from store import alerts as alert_store
from store import model_health as health_store
from store import models as model_store
from store.db import connect
from store.shifts import fetch_group_period_counts, fetch_period_totals, newest_review_date
from store.trends import ReviewFilter, resolve_sentiment_source

TRENDS_PAGE = "screens/trends.py"
TRAINING_PAGE = "screens/training.py"
SHIFT_SYMBOLS = {"spike": "triangle-up", "drop": "triangle-down", "surge": "diamond", "slump": "diamond-open"}
# Periods in the rolling mean of the smoothed per-group lines.
SMOOTHING_PERIODS = 4


@_cached
def overview(db: Path, movers_grain: str) -> dict:
    """KPIs of the latest complete week and month, the biggest movers, open alerts, and where sentiment came from."""
    with connect(db, read_only=True) as con:
        champion = model_store.get_champion(con)
        source = resolve_sentiment_source(con, champion["model_id"] if champion else None)
        newest = newest_review_date(con)
        totals = {g: fetch_period_totals(con, source, grain=g) for g in ("week", "month")}
        counts = fetch_group_period_counts(con, source, grain=movers_grain)
        alerts = alert_store.list_alerts(con, status="open", limit=200)
        alert_counts = alert_store.count_open_alerts(con)
    kpis = {g: period_kpis(totals[g], newest, g) if newest else None for g in ("week", "month")}
    movers = pd.DataFrame()
    period = latest_complete_period(newest, movers_grain) if newest else None
    if period is not None and not counts.empty:
        result = detect_shifts(counts, ShiftSettings(grain=movers_grain), newest=newest)
        movers = biggest_movers(result, period)
    return {"source": source, "kpis": kpis, "movers": movers, "movers_period": period, "alerts": alerts,
            "alert_counts": alert_counts, "newest": newest}


@_cached
def shifts(db: Path, model_id: str | None, flt: ReviewFilter, grain: str) -> pd.DataFrame:
    """Shift detection on the selection (both groupings) with default settings for ``grain``."""
    with connect(db, read_only=True) as con:
        source = resolve_sentiment_source(con, model_id)
        counts = fetch_group_period_counts(con, source, flt, grain=grain)
        newest = newest_review_date(con)
    return detect_shifts(counts, ShiftSettings(grain=grain), newest=newest)


@_cached
def model_health(db: Path) -> dict:
    """The champion's stored weekly health, its open health alerts, and the latest emerging-term scans."""
    with connect(db, read_only=True) as con:
        champion = model_store.get_champion(con)
        model_id = champion["model_id"] if champion else None
        health = health_store.fetch_model_health(con, model_id) if model_id else pd.DataFrame()
        alerts = alert_store.list_alerts(con, status="open", kind="model_health", limit=200)
        scans = health_store.list_term_scans(con, limit=5)
    if model_id is not None:
        alerts = alerts[alerts["subject"] == model_id]
    return {"model_id": model_id, "health": health, "alerts": alerts, "scans": scans}


def trends_link(container, name: str, by: str, *, label: str | None = None) -> None:
    """A link opening Sentiment trends filtered to one restaurant or neighbourhood."""
    param = "restaurant" if by == "restaurant" else "neighborhood"
    container.page_link(TRENDS_PAGE, label=label or name, icon=":material/trending_up:", query_params={param: name})


def apply_trend_query_params(restaurant_key: str, neighborhood_key: str, choices: dict) -> None:
    """Turn ?restaurant=...&neighborhood=... (links from Overview) into the trends filters, once."""
    params = st.query_params
    for param, key, options in (("restaurant", restaurant_key, choices["restaurants"]),
                                ("neighborhood", neighborhood_key, choices["neighborhoods"])):
        value = params.get(param)
        if value is None:
            continue
        if value in options:
            st.session_state[key] = [value]
        else:
            st.warning(f"No {param} named {views.md(value)} in the store.")
        del st.query_params[param]


def kpi_row(kpi: dict | None, grain: str) -> None:
    """Negative share, average stars and volume of the latest complete period against the one before."""
    if kpi is None:
        st.caption(f"No complete {grain} yet.")
        return
    start, end = kpi["period"], period_end(kpi["period"], grain)
    st.markdown(f"**Latest complete {grain}: {start:%b %d} – {end:%b %d, %Y}** (against the {grain} before)")
    c1, c2, c3 = st.columns(3)

    def delta(value, previous, fmt):
        return None if value is None or previous is None or np.isnan(previous) else fmt(value - previous)

    share, prev_share = kpi["negative_share"], kpi["previous_negative_share"]
    c1.metric("Negative share", "–" if share is None else f"{share:.1%}",
              delta(share, prev_share, lambda d: f"{d * 100:+.1f} pts"), delta_color="inverse")
    stars, prev_stars = kpi["avg_stars"], kpi["previous_avg_stars"]
    c2.metric("Average stars", "–" if stars is None or np.isnan(stars) else f"{stars:.2f}",
              delta(stars, prev_stars, lambda d: f"{d:+.2f}"))
    c3.metric("Reviews", f"{kpi['n']:,}", delta(kpi["n"], kpi["previous_n"], lambda d: f"{int(d):+,}"))


def movers_section(movers: pd.DataFrame, period: date | None, grain: str) -> None:
    """The groups whose negative share moved most against their own baseline, each a link to its trend."""
    if period is None or movers.empty:
        st.caption(f"No restaurant or neighbourhood had {T.MOVERS_MIN_REVIEWS}+ reviews and a baseline in the latest "
                   f"complete {grain}.")
        return
    st.caption(f"{grain.capitalize()} of {period:%Y-%m-%d} against each group's previous "
               f"{T.SHIFT_BASELINE_PERIODS[grain]} {grain}s; ▲ marks a significant shift (FDR {T.SHIFT_FDR:.0%}).")
    for col, by in zip(st.columns(2), ("restaurant", "neighborhood")):
        col.markdown(f"**{by.capitalize()}s**")
        part = movers[movers["by"] == by]
        if part.empty:
            col.caption("None with enough reviews.")
        for row in part.itertuples(index=False):
            mark = " ▲ shift" if row.sentiment_shift else ""
            label = (f"{row.grp}: {row.negative_share:.0%} negative vs {row.baseline_share:.0%} usual "
                     f"({row.delta * 100:+.0f} pts, {row.n} reviews){mark}")
            trends_link(col, row.grp, by, label=label)


def alerts_table(alerts: pd.DataFrame, *, limit: int = 15) -> None:
    if alerts.empty:
        st.caption("No open alerts.")
        return
    shown = alerts.head(limit)[["period", "kind", "message", "created_at"]]
    views.table(shown, column_config={
        "period": st.column_config.DateColumn("week", format="YYYY-MM-DD"),
        "message": st.column_config.TextColumn("alert", width="large"),
        "created_at": st.column_config.DatetimeColumn("raised", format="YYYY-MM-DD HH:mm")})
    if len(alerts) > limit:
        st.caption(f"{len(alerts) - limit} more: `tastebud alerts` lists them all.")


def group_shift_figure(result: pd.DataFrame, by: str, groups: list[str], *, grain: str) -> go.Figure:
    """Smoothed negative share per group (rolling mean over SMOOTHING_PERIODS, weighted by reviews),
    raw points faint, sentiment and volume shifts marked."""
    fig = go.Figure()
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]
    part = result[(result["by"] == by) & result["grp"].isin(groups)].sort_values(["grp", "period"])
    for i, name in enumerate(groups):
        s = part[part["grp"] == name]
        if s.empty:
            continue
        color = palette[i % len(palette)]
        neg = s["negative"].rolling(SMOOTHING_PERIODS, min_periods=1).sum()
        n = s["n"].rolling(SMOOTHING_PERIODS, min_periods=1).sum()
        smooth = (neg / n.where(n > 0)).to_numpy()
        label = html.escape(name)
        fig.add_trace(go.Scatter(x=s["period"], y=s["negative_share"], mode="markers", showlegend=False,
                                 marker=dict(size=5, color=color, opacity=0.25), customdata=s["n"],
                                 hovertemplate="%{x|%Y-%m-%d}: %{y:.0%} of %{customdata}<extra>" + label + "</extra>"))
        fig.add_trace(go.Scatter(x=s["period"], y=smooth, mode="lines", name=label, line=dict(color=color, width=2.5),
                                 hovertemplate=f"%{{x|%Y-%m-%d}}: %{{y:.0%}} ({SMOOTHING_PERIODS}-{grain} mean)"
                                               f"<extra>{label}</extra>"))
        for column, y in (("sentiment_shift", s["negative_share"]), ("volume_shift", pd.Series(1.02, index=s.index))):
            marked = s[s[column].notna()]
            if len(marked):
                fig.add_trace(go.Scatter(
                    x=marked["period"], y=y[marked.index], mode="markers", showlegend=False,
                    marker=dict(symbol=[SHIFT_SYMBOLS[k] for k in marked[column]], size=13, color=color,
                                line=dict(color="#111827", width=1)),
                    customdata=marked[column], hovertemplate="%{x|%Y-%m-%d}: %{customdata}<extra>" + label + "</extra>"))
    fig.update_layout(height=380, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.15),
                      title=f"Negative share by {by} (line: {SMOOTHING_PERIODS}-{grain} rolling mean; ▲▼ sentiment "
                            "shift, ◆ volume shift)")
    fig.update_yaxes(tickformat=".0%", range=[0, 1.06])
    return fig


def health_figure(health: pd.DataFrame) -> go.Figure:
    """The champion's weekly health lines with their alert thresholds."""
    fig = go.Figure()
    for column, name in (("star_agreement", "agreement with stars"), ("human_agreement", "agreement with humans"),
                         ("mean_confidence", "mean confidence"), ("low_confidence_share", "low-confidence share"),
                         ("class_mix_js", "class mix drift (JS)"), ("unseen_term_share", "unseen-term share")):
        if column in health and health[column].notna().any():
            fig.add_trace(go.Scatter(x=health["period"], y=health[column], name=name, mode="lines"))
    fig.add_hline(y=T.HEALTH_MAX_CLASS_MIX_JS, line_dash="dot", annotation_text="class mix threshold")
    fig.update_layout(height=360, margin=dict(l=10, r=10, t=30, b=10), legend=dict(orientation="h", y=-0.15))
    fig.update_yaxes(range=[0, 1.02])
    return fig


def health_section(db: Path) -> None:
    """Model health over time for data scientists: the champion's weekly numbers, alerts and term scans."""
    data = model_health(db)
    st.subheader("Model health over time")
    if data["model_id"] is None:
        st.caption("No champion yet.")
        return
    health = data["health"]
    if health.empty:
        st.caption(f"No health computed for {views.md(data['model_id'])} yet: run `tastebud monitor`.")
    else:
        st.caption(f"Champion {views.md(data['model_id'])}, per week of review date; computed "
                   f"{pd.Timestamp(health['computed_at'].iloc[0]):%Y-%m-%d %H:%M}. Thresholds: class-mix JS "
                   f"{T.HEALTH_MAX_CLASS_MIX_JS}, unseen terms {T.HEALTH_MAX_UNSEEN_TERM_SHARE:.0%}, star agreement "
                   f"-{T.HEALTH_MAX_STAR_AGREEMENT_DROP:.0%} and low confidence +{T.HEALTH_MAX_LOW_CONFIDENCE_RISE:.0%} "
                   "against the median week.")
        st.plotly_chart(health_figure(health), key="health-chart")
        views.table(health.drop(columns=["computed_at"]), column_config={
            **views.percent_columns(["star_agreement", "human_agreement", "low_confidence_share", "share_negative",
                                     "share_neutral", "share_positive", "unseen_term_share"]),
            "period": st.column_config.DateColumn("week", format="YYYY-MM-DD")})
    st.markdown(f"**Open health alerts ({len(data['alerts'])})**")
    alerts_table(data["alerts"])
    st.markdown("**Emerging-term scans**")
    scans = data["scans"]
    if scans.empty:
        st.caption("No flagging run has looked for emerging terms yet.")
    else:
        for row in scans.itertuples(index=False):
            st.write(f"{pd.Timestamp(row.created_at):%Y-%m-%d %H:%M} — {row.recent_docs:,} reviews scanned, "
                     f"{row.flagged} flagged: {row.outcome}")


def retrain_banner(db: Path, actor) -> None:
    """On Training: "Retrain recommended" when the champion has open health alerts, with a button that starts a round."""
    data = model_health(db)
    alerts = data["alerts"]
    if data["model_id"] is None or alerts.empty:
        return
    newest = alerts.iloc[0]
    st.warning(f"**Retrain recommended**: {len(alerts)} open health alert(s) for champion "
               f"{views.md(data['model_id'])}, newest: {views.md(newest['message'])}", icon=":material/monitor_heart:")
    st.button("Start a retraining round", key="retrain-recommended", type="primary", on_click=_start_round,
              args=(db, actor))


def _start_round(db: Path, actor) -> None:
    from pipeline.jobs import start_job
    from pipeline.train.config import TrainConfig
    from store.errors import TastebudError

    try:
        job_id = start_job(db, "retrain", TrainConfig().to_dict(), actor)
    except TastebudError as exc:
        st.session_state["training-message"] = ("error", str(exc))
        return
    st.session_state["training-watch"] = job_id
    st.session_state["training-message"] = ("success", f"Started retrain job {job_id} (recommended by the health alerts).")


def local_reference_section(db: Path, model_ids: list[str]) -> None:
    """On Model comparison: the chosen models on test reviews with and without local references."""
    from pipeline.monitor.local_refs import LOCAL_REFERENCES

    st.subheader("Local references")
    if not model_ids:
        st.caption("Choose models above.")
        return
    table = _local_slice(db, tuple(model_ids))
    st.caption("Test reviews naming an Atlanta place (" + ", ".join(LOCAL_REFERENCES[:6]) + ", ...) against the rest, "
               "from each model's stored predictions.")
    views.table(table, column_config={"model_id": "Model", "slice": "Slice", "n": "Test reviews",
                                      "accuracy": st.column_config.NumberColumn("Accuracy", format="percent"),
                                      "macro_f1": st.column_config.NumberColumn("Macro-F1", format="%.3f")})


@_cached
def _local_slice(db: Path, model_ids: tuple[str, ...]) -> pd.DataFrame:
    from pipeline.monitor.local_refs import local_reference_slice

    return local_reference_slice(db, list(model_ids))
