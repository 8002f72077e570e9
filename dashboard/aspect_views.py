"""Aspects for the pages: cached reads (each one short read-only connection), the aspect table as the
page shows it, and its figures. Red and green mean negative and positive only (views.LABEL_COLORS)."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from dashboard import model_views, views
from dashboard.reads import _cached
from store import aspect_trends
from store import aspects as aspect_store
from store import evaluations as evaluation_store
from store import models as model_store
from store import trends as trend_store
from store.db import connect
from store.trends import ReviewFilter

# Restaurants shown at most in the all-restaurants matrix (the busiest first).
MATRIX_RESTAURANTS = 30
# Open aspect alerts listed at most.
ALERTS_SHOWN = 50
POLARITY_WORDS = {"negative": "Negative", "neutral": "Neutral", "positive": "Positive"}


@_cached
def choices(db: Path) -> dict:
    """The aspects champion, the aspect models with predictions, restaurants and the review date range."""
    with connect(db, read_only=True) as con:
        champion = model_store.get_champion(con, "aspects")
        scored = aspect_store.aspect_scored_model_ids(con)
        models = model_store.list_models(con, task="aspects")
        options = trend_store.fetch_filter_options(con)
    aspect_models = set(models["model_id"])
    return {**options, "champion_id": champion["model_id"] if champion else None,
            "scored": [m for m in scored if m in aspect_models], "n_models": len(models)}


@_cached
def summary(db: Path, model_id: str, flt: ReviewFilter, grain: str, restaurant: str | None) -> dict:
    """The aspect table of the selection, the per-restaurant matrix (all restaurants only), the trend per
    aspect and period, and the open aspect alerts (of the restaurant, when one is chosen), in one connection."""
    with connect(db, read_only=True) as con:
        data = aspect_trends.fetch_aspect_summary(con, model_id, flt, grain=grain, by_restaurant=restaurant is None)
        data["alerts"] = aspect_trends.list_aspect_alerts(con, restaurant=restaurant, limit=ALERTS_SHOWN)
        store_aspects = aspect_store.aspect_names(con)
    # The model's aspects and the store's set part ways when a store adds or removes one after training.
    predicted = set(data["table"]["aspect"])
    data["unpredicted"] = [a for a in store_aspects if a not in predicted]
    data["removed"] = [a for a in data["table"]["aspect"] if a not in set(store_aspects)]
    return data


@_cached
def evidence(db: Path, model_id: str, aspect: str, flt: ReviewFilter, polarity: str | None, order: str,
             limit: int) -> pd.DataFrame:
    """The review sentences behind one cell."""
    with connect(db, read_only=True) as con:
        return aspect_trends.fetch_aspect_evidence(con, model_id, aspect, flt, polarity=polarity, order=order,
                                                   limit=limit)


@_cached
def aspect_models(db: Path) -> dict:
    """Aspect models with their newest test evaluation (metrics dict) and the aspects champion."""
    with connect(db, read_only=True) as con:
        models = model_store.list_models(con, task="aspects")
        evaluations = {m: evaluation_store.fetch_latest_evaluation(con, m) for m in models["model_id"]}
    return {"models": models, "evaluations": evaluations}


# --- the aspect table -------------------------------------------------------------------------


def interval_text(low, high) -> str:
    """A share's 95% interval as ``12–31%`` (``—`` when there is none)."""
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return "—"
    return f"{low:.0%}–{high:.0%}"


def display_table(table: pd.DataFrame) -> pd.DataFrame:
    """The aspect table as the page shows it: counts, shares and 95% intervals side by side."""
    return pd.DataFrame({
        "Aspect": table["aspect"],
        "Mentions": table["mentions"],
        "Share of reviews": table["mention_share"],
        "Share 95% CI": [interval_text(lo, hi) for lo, hi in zip(table["mention_low"], table["mention_high"])],
        "Negative": table["negative"],
        "Neutral": table["neutral"],
        "Positive": table["positive"],
        "Negative share": table["negative_share"],
        "Negative 95% CI": [interval_text(lo, hi) for lo, hi in zip(table["negative_low"], table["negative_high"])],
        "Positive share": table["positive_share"],
        "Positive 95% CI": [interval_text(lo, hi) for lo, hi in zip(table["positive_low"], table["positive_high"])],
    })


TABLE_CONFIG = {
    "Mentions": st.column_config.NumberColumn("Mentions", format="%d", help="Reviews that speak of the aspect"),
    "Share of reviews": st.column_config.NumberColumn("Share of reviews", format="percent",
                                                      help="Mentions / reviews scored in the selection"),
    "Negative": st.column_config.NumberColumn("Negative", format="%d"),
    "Neutral": st.column_config.NumberColumn("Neutral", format="%d"),
    "Positive": st.column_config.NumberColumn("Positive", format="%d"),
    "Negative share": st.column_config.NumberColumn("Negative share", format="percent", help="Among the mentions"),
    "Positive share": st.column_config.NumberColumn("Positive share", format="percent", help="Among the mentions"),
}


def cell_choice(column: str) -> str | None:
    """The polarity a clicked column of :func:`display_table` stands for (None: every mention)."""
    for polarity, word in POLARITY_WORDS.items():
        if column.startswith(word):
            return polarity
    return None


def matrix_table(matrix: pd.DataFrame, restaurants: list[str]) -> pd.DataFrame:
    """Negative share among mentions per restaurant (rows, busiest first) and aspect (columns), as
    ``34% of 120``; cells without mentions empty."""
    shown = [r for r in restaurants if r in set(matrix["restaurant"])][:MATRIX_RESTAURANTS]
    cells = matrix.assign(cell=[f"{s:.0%} of {n:,}" if n else "" for s, n in zip(matrix["negative_share"],
                                                                              matrix["mentions"])])
    wide = cells.pivot(index="restaurant", columns="aspect", values="cell")
    order = list(dict.fromkeys(matrix["aspect"]))
    wide = wide.reindex(index=shown, columns=order).fillna("")
    return wide.rename_axis(index="Restaurant", columns=None).reset_index()


# --- figures ----------------------------------------------------------------------------------


def aspect_figure(table: pd.DataFrame) -> go.Figure:
    """Per aspect: share of reviews mentioning it (left) and negative / positive share of its mentions
    (right), each with its Wilson 95% interval."""
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=("Share of reviews that mention it", "Opinion among its mentions"))
    names = [html.escape(a) for a in table["aspect"]]
    fig.add_trace(go.Bar(
        y=names, x=table["mention_share"], orientation="h", name="mentioned", marker_color=views.GROUP_COLORS[0],
        error_x=dict(type="data", symmetric=False, array=table["mention_high"] - table["mention_share"],
                     arrayminus=table["mention_share"] - table["mention_low"]),
        customdata=np.stack([table["mentions"], table["reviews"]], axis=1),
        hovertemplate="%{y}: %{x:.0%} (%{customdata[0]} of %{customdata[1]} reviews)<extra></extra>",
    ), row=1, col=1)
    for polarity in ("negative", "positive"):
        share = table[f"{polarity}_share"]
        fig.add_trace(go.Scatter(
            y=names, x=share, mode="markers", name=polarity, marker=dict(size=11, color=views.LABEL_COLORS[polarity]),
            error_x=dict(type="data", symmetric=False, array=table[f"{polarity}_high"] - share,
                         arrayminus=share - table[f"{polarity}_low"]),
            customdata=np.stack([table[polarity], table["mentions"]], axis=1),
            hovertemplate="%{y}: %{x:.0%} " + polarity
                          + " (%{customdata[0]} of %{customdata[1]} mentions)<extra></extra>",
        ), row=1, col=2)
    fig.update_layout(height=90 + 42 * max(len(table), 1), margin=dict(l=10, r=10, t=40, b=10),
                      legend=dict(orientation="h", y=-0.2))
    fig.update_xaxes(tickformat=".0%", range=[0, 1.02])
    fig.update_yaxes(autorange="reversed")
    return fig


def trend_figure(trend: pd.DataFrame, aspects: list[str], alerts: pd.DataFrame, *, grain: str) -> go.Figure:
    """Negative share of each chosen aspect's mentions per period with its 95% band (top), mentions per
    period (bottom); periods with an aspect alert marked."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.65, 0.35], vertical_spacing=0.06)
    for i, aspect in enumerate(aspects):
        color = views.GROUP_COLORS[i % len(views.GROUP_COLORS)]
        series = trend[trend["aspect"] == aspect]
        name = html.escape(aspect)
        band = series[series["mentions"] > 0]
        fig.add_trace(go.Scatter(
            x=list(band["period"]) + list(band["period"])[::-1],
            y=list(band["negative_high"]) + list(band["negative_low"])[::-1],
            fill="toself", fillcolor=_alpha(color, 0.15), line=dict(width=0), hoverinfo="skip", showlegend=False,
            legendgroup=name,
        ), row=1, col=1)
        fig.add_trace(go.Scatter(
            x=band["period"], y=band["negative_share"], mode="lines+markers", name=name, legendgroup=name,
            line=dict(color=color), marker=dict(size=5),
            customdata=np.stack([band[c] for c in ("negative", "mentions", "negative_low", "negative_high")], axis=1),
            hovertemplate="%{x|%Y-%m-%d}: %{y:.0%} negative (%{customdata[0]} of %{customdata[1]} mentions; "
                          "95% CI %{customdata[2]:.0%}–%{customdata[3]:.0%})<extra>" + name + "</extra>",
        ), row=1, col=1)
        fig.add_trace(go.Bar(x=series["period"], y=series["mentions"], name=name, legendgroup=name, showlegend=False,
                             marker_color=color,
                             hovertemplate="%{x|%Y-%m-%d}: %{y} mentions<extra>" + name + "</extra>"),
                      row=2, col=1)
        marked = alerts[(alerts["aspect"] == aspect) & (alerts["metric"] == "aspect_negative_share")]
        if len(marked):
            periods = pd.to_datetime(marked["period"])  # alerts are weekly: a month marks the month it falls in
            if grain == "month":
                periods = periods.dt.to_period("M").dt.to_timestamp()
            shares = band.set_index("period")["negative_share"].reindex(periods)
            fig.add_trace(go.Scatter(
                x=periods, y=shares, mode="markers", showlegend=False, legendgroup=name,
                marker=dict(symbol="triangle-up", size=13, color="#111827"),
                hovertext=[html.escape(m) for m in marked["message"]], hoverinfo="text",
            ), row=1, col=1)
    fig.update_layout(height=460, margin=dict(l=10, r=10, t=40, b=10), barmode="group",
                      title=f"Negative share of each aspect's mentions per {grain} (band: 95% interval)",
                      legend=dict(orientation="h", y=-0.12))
    fig.update_yaxes(title_text="negative share", tickformat=".0%", range=[0, 1], row=1, col=1)
    fig.update_yaxes(title_text="mentions", rangemode="tozero", row=2, col=1)
    fig.update_xaxes(title_text=f"{grain} starting", row=2, col=1)
    return fig


def _alpha(color: str, alpha: float) -> str:
    color = color.lstrip("#")
    r, g, b = (int(color[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


# --- the comparison page's aspect section -----------------------------------------------------


def aspect_models_section(db: Path) -> None:
    """Aspect models on their test set (detection micro-F1, polarity accuracy, per aspect), champion marked."""
    st.subheader("Aspect models on their test set")
    data = aspect_models(db)
    models, evaluations = data["models"], data["evaluations"]
    if models.empty:
        st.caption("No aspect models yet: train one with `tastebud train --task aspects` or on the Training page.")
        return
    st.caption("Detection: does the review speak of the aspect (micro-F1 over every review and aspect). Polarity: "
               "negative / neutral / positive of the aspects a review does speak of (conflict set aside).")
    names = model_views.display_names(models)
    snapshots = {(e or {}).get("test_snapshot") for e in evaluations.values() if e}
    if len(snapshots) > 1:
        sizes = sorted({int(e["n"]) for e in evaluations.values() if e and e.get("n") is not None})
        st.warning("These aspect models were evaluated on different test sets"
                   + (f" (n = {', '.join(f'{n:,}' for n in sizes)})" if sizes else "")
                   + ": the test split's aspect labels changed in between. Compare them after re-evaluating each on "
                   "the current test set (`tastebud evaluate MODEL`).")
    st.dataframe(model_views.aspect_models_table(models, evaluations, names), hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(c, format="%.3f") for c in model_views.ASPECT_SCORES})
    ranked = models.sort_values("is_champion", ascending=False)["model_id"].tolist()
    chosen = st.selectbox("Per aspect", ranked, key="compare-aspect-model", format_func=lambda m: names.get(m, m))
    metrics = views.evaluation_metrics(evaluations.get(chosen))
    per_aspect = model_views.aspect_metrics_table(metrics)
    if per_aspect.empty:
        st.caption(f"{views.md(names.get(chosen, chosen))} has no test evaluation yet "
                   f"(`tastebud evaluate {views.md(chosen)}`).")
        return
    left, right = st.columns([3, 2])
    with left:
        st.dataframe(per_aspect, hide_index=True, width="stretch", column_config={
            c: st.column_config.NumberColumn(c, format="%.3f") for c in per_aspect.columns
            if c not in ("Aspect", "Support", "Polarity n")})
    confusion = (metrics.get("polarity") or {}).get("confusion") or {}
    if confusion.get("matrix") and list(confusion.get("labels") or []) == list(POLARITY_WORDS):
        right.plotly_chart(model_views.confusion_figure(confusion["matrix"], f"{names.get(chosen, chosen)}: polarity"),
                           key=f"aspect-cm-{chosen}")
