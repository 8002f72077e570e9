"""Figures and tidy frames for the data scientist's pages (Training, Model comparison). No store access here.

Colours: red and green belong to negative and positive only (views.LABEL_COLORS); models and
series use the neutral palette below.
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard.views import LABEL_COLORS
from store.constants import LABELS

# Series colours that are never red or green (those mean negative/positive).
SERIES_COLORS = ("#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#17becf", "#7f7f7f")
# Slices with fewer test reviews than this say too little: greyed out and left out of charts.
MIN_SLICE_N = 30
_MARGIN = dict(l=10, r=10, t=40, b=10)


def format_duration(seconds) -> str:
    """Seconds as ``42 s``, ``3 min 05 s`` or ``2 h 04 min``; ``—`` when unknown."""
    if seconds is None or pd.isna(seconds):
        return "—"
    seconds = int(round(float(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def progress_text(progress) -> str:
    """A job's progress as the page shows it everywhere (bar, metric and jobs table agree)."""
    return f"{float(progress or 0.0):.0%}"


def jobs_table(jobs: pd.DataFrame) -> pd.DataFrame:
    """Recent jobs with human column names; progress in the same words as the live panel."""
    frame = pd.DataFrame({
        "Job": jobs["job_id"],
        "Kind": jobs["kind"],
        "Status": [_status_words(r) for r in jobs.to_dict("records")],
        "Progress": [progress_text(p) for p in jobs["progress"]],
        "Elapsed": [format_duration(s) for s in jobs.get("elapsed_s", pd.Series([None] * len(jobs)))],
        "ETA": [format_duration(s) for s in jobs.get("eta_s", pd.Series([None] * len(jobs)))],
        "Started by": jobs["actor"],
        "Message": jobs["message"].fillna(""),
        "Created": jobs["created_at"],
    })
    return frame


def _status_words(job: dict) -> str:
    if job.get("status") == "cancelled" and job.get("cancelled_by"):
        return f"cancelled by {job['cancelled_by']}"
    return str(job.get("status"))


def loss_figure(losses: pd.DataFrame, *, title: str = "Training loss per logged step") -> go.Figure:
    """Training loss at each logged step, one line per run (a sweep trains several)."""
    fig = go.Figure()
    runs = list(dict.fromkeys(losses["run_id"]))
    for i, run in enumerate(runs):
        part = losses[losses["run_id"] == run]
        name = "loss" if len(runs) == 1 else f"trial {i + 1}"
        fig.add_trace(go.Scatter(
            x=part["step"], y=part["loss"], mode="lines+markers", name=name, marker=dict(size=5),
            line=dict(color=SERIES_COLORS[i % len(SERIES_COLORS)]),
            hovertemplate="step %{x}: loss %{y:.4f}<extra>" + name + "</extra>",
        ))
    fig.update_layout(title=title, height=260, margin=_MARGIN, showlegend=len(runs) > 1,
                      legend=dict(orientation="h", y=-0.3))
    fig.update_xaxes(title_text="optimizer step", tickformat="d")
    fig.update_yaxes(title_text="training loss (cross-entropy)", rangemode="tozero")
    return fig


def trials_table(trials: pd.DataFrame, swept: list[str]) -> pd.DataFrame:
    """One row per sweep trial: its swept settings, validation macro-F1, time and the winner marked."""
    rows = []
    for i, trial in enumerate(trials.to_dict("records"), 1):
        config = trial["config"] or {}
        settings = {name.replace("_", " ").capitalize(): config.get(name) for name in swept}
        rows.append({
            "Trial": i,
            **settings,
            "Validation macro-F1": trial["val_macro_f1"],
            "Time": format_duration(trial["duration_s"]),
            "Status": trial["status"],
            "Winner": "★ registered" if trial["winner"] else "",
        })
    return pd.DataFrame(rows)


def confusion_figure(matrix, title: str) -> go.Figure:
    """Confusion matrix: each cell shows its count and its share of the true class (row-normalised);
    colour follows the share so classes of different sizes read alike."""
    counts = np.asarray(matrix, dtype=float)
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    text = [[f"{int(c):,}<br>{s:.0%}" for c, s in zip(cr, sr)] for cr, sr in zip(counts, shares)]
    fig = go.Figure(go.Heatmap(
        z=shares, x=list(LABELS), y=list(LABELS), text=text, texttemplate="%{text}", colorscale="Blues",
        zmin=0, zmax=1, colorbar=dict(title="share of row", tickformat=".0%"),
        hovertemplate="true %{y}, predicted %{x}: %{text}<extra></extra>",
    ))
    fig.update_layout(title=html.escape(title), height=340, margin=_MARGIN)
    fig.update_xaxes(title_text="predicted label")
    fig.update_yaxes(title_text="true label", autorange="reversed")
    return fig


def per_class_figure(models: pd.DataFrame, names: dict[str, str]) -> go.Figure:
    """Precision, recall and F1 per class for each model: one panel per metric, grouped bars by class."""
    from plotly.subplots import make_subplots

    metrics = ("precision", "recall", "f1")
    fig = make_subplots(rows=1, cols=3, subplot_titles=[m.capitalize() if m != "f1" else "F1" for m in metrics],
                        shared_yaxes=True)
    for i, row in enumerate(models.to_dict("records")):
        color = SERIES_COLORS[i % len(SERIES_COLORS)]
        name = html.escape(names.get(row["model_id"], row["model_id"]))
        for j, metric in enumerate(metrics, 1):
            fig.add_trace(go.Bar(
                x=list(LABELS), y=[row.get(f"{metric}_{label}") for label in LABELS], name=name,
                marker_color=color, showlegend=j == 1, legendgroup=name,
                hovertemplate="%{x}: %{y:.3f}<extra>" + name + "</extra>",
            ), row=1, col=j)
    fig.update_layout(barmode="group", height=320, margin=dict(l=10, r=10, t=50, b=10), legend=dict(orientation="h", y=-0.25))
    fig.update_yaxes(range=[0, 1], title_text="score (test set)", row=1, col=1)
    fig.update_xaxes(title_text="true class")
    return fig


def reliability_figure(curves: dict[str, pd.DataFrame], names: dict[str, str]) -> go.Figure:
    """Reliability diagram: mean confidence vs accuracy per confidence bin, one line per model, the
    diagonal is perfect calibration; marker size follows the bin's review count."""
    fig = go.Figure(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfectly calibrated",
                               line=dict(color="#9e9e9e", dash="dot"), hoverinfo="skip"))
    for i, (model_id, bins) in enumerate(curves.items()):
        name = html.escape(names.get(model_id, model_id))
        sizes = 6 + 14 * np.sqrt(bins["n"] / max(bins["n"].max(), 1))
        fig.add_trace(go.Scatter(
            x=bins["confidence"], y=bins["accuracy"], mode="lines+markers", name=name, customdata=bins["n"],
            marker=dict(size=sizes, color=SERIES_COLORS[i % len(SERIES_COLORS)]),
            line=dict(color=SERIES_COLORS[i % len(SERIES_COLORS)]),
            hovertemplate="confidence %{x:.2f}: accuracy %{y:.2f} (%{customdata} reviews)<extra>" + name + "</extra>",
        ))
    fig.update_layout(title="Reliability (calibration) on the test set", height=360, margin=_MARGIN,
                      legend=dict(orientation="h", y=-0.2))
    fig.update_xaxes(title_text="mean predicted confidence", range=[0, 1])
    fig.update_yaxes(title_text="share correct", range=[0, 1])
    return fig


def pr_figure(curves: dict[str, dict[str, pd.DataFrame]], model_id: str, name: str) -> go.Figure:
    """Precision-recall curve per class of one model (class colours: negative red, neutral grey, positive green)."""
    fig = go.Figure()
    for label in LABELS:
        curve = curves.get(label)
        if curve is None or curve.empty:
            continue
        fig.add_trace(go.Scatter(
            x=curve["recall"], y=curve["precision"], mode="lines", name=f"{label} (AP {curve.attrs.get('ap', 0):.2f})",
            line=dict(color=LABEL_COLORS[label], shape="hv"),
            hovertemplate="recall %{x:.2f}, precision %{y:.2f}<extra>" + label + "</extra>",
        ))
    fig.update_layout(title=html.escape(name), height=320, margin=_MARGIN, legend=dict(orientation="h", y=-0.25))
    fig.update_xaxes(title_text="recall", range=[0, 1])
    fig.update_yaxes(title_text="precision", range=[0, 1.02])
    return fig


def slices_table(slices: pd.DataFrame, names: dict[str, str]) -> pd.DataFrame:
    """Slices as rows, one macro-F1 column per model with its 95% interval; n shown, small slices marked."""
    rows = []
    for (kind, value), part in slices.groupby(["slice_kind", "slice_value"], sort=True):
        n = int(part["n"].max())
        row = {"Slice": kind.replace("_", " "), "Value": value, "Test reviews (n)": n,
               "Enough data": "yes" if n >= MIN_SLICE_N else f"no (n < {MIN_SLICE_N})"}
        for rec in part.to_dict("records"):
            f1, lo, hi = rec.get("macro_f1"), rec.get("f1_ci_low"), rec.get("f1_ci_high")
            label = names.get(rec["model_id"], rec["model_id"])
            if f1 is None or pd.isna(f1):
                row[label] = "—"
            elif lo is None or pd.isna(lo):
                row[label] = f"{f1:.3f}"
            else:
                row[label] = f"{f1:.3f} [{lo:.3f}, {hi:.3f}]"
        rows.append(row)
    return pd.DataFrame(rows)


def grey_small_slices(frame: pd.DataFrame):
    """A Styler that greys the rows of slices too small to say anything."""
    def style(row):
        small = row["Test reviews (n)"] < MIN_SLICE_N
        return ["color: #9e9e9e" if small else "" for _ in row]

    return frame.style.apply(style, axis=1)


def rounds_figure(rounds: pd.DataFrame) -> go.Figure:
    """Test macro-F1 of challenger and champion per round, with the gain's 95% interval; reads with one round."""
    rounds = rounds.sort_values("round_id")
    fig = go.Figure()
    for column, name, color in (("champion_macro_f1", "champion before the round", SERIES_COLORS[0]),
                                ("challenger_macro_f1", "challenger trained in the round", SERIES_COLORS[1])):
        fig.add_trace(go.Scatter(x=rounds["round_id"], y=rounds[column], name=name, mode="lines+markers",
                                 marker=dict(size=11, color=color), line=dict(color=color),
                                 hovertemplate="round %{x}: %{y:.3f}<extra>" + name + "</extra>"))
    fig.update_layout(title="Test macro-F1 per retraining round", height=320, margin=_MARGIN,
                      legend=dict(orientation="h", y=-0.25))
    _round_axis(fig, rounds)
    fig.update_yaxes(title_text="test macro-F1", range=[0, 1])
    return fig


def efficiency_figure(rounds: pd.DataFrame) -> go.Figure:
    """Label efficiency per round (macro-F1 gained per human label added to training), narrow bars."""
    rounds = rounds.sort_values("round_id")
    fig = go.Figure(go.Bar(
        x=rounds["round_id"], y=rounds["label_efficiency"], width=[0.4] * len(rounds), customdata=rounds["human_labels_train"],
        marker_color=SERIES_COLORS[2], hovertemplate="round %{x}: %{y:+.5f} per label (%{customdata} labels)<extra></extra>",
    ))
    fig.update_layout(title="Label efficiency per round", height=300, margin=_MARGIN)
    _round_axis(fig, rounds)
    fig.update_yaxes(title_text="macro-F1 gain per human label", tickformat="+.4f")
    return fig


def _round_axis(fig: go.Figure, rounds: pd.DataFrame) -> None:
    ids = rounds["round_id"].astype(int).tolist()
    lo, hi = (min(ids), max(ids)) if ids else (1, 1)
    # Pad a single round so it sits mid-axis as one narrow point, not a bar across the page.
    fig.update_xaxes(title_text="retraining round", tickmode="array", tickvals=ids, range=[lo - 0.75, hi + 0.75])


def promotion_table(compared: pd.DataFrame, new_model: str) -> pd.DataFrame:
    """The new model and the champion side by side with human column names (fits the page width)."""
    return pd.DataFrame({
        "Role": ["new model" if m == new_model else "champion" for m in compared["model_id"]],
        "Model": compared["name"].fillna(compared["model_id"]),
        "Round": compared["round"],
        "Test n": compared["test_n"],
        "Accuracy": compared["accuracy"],
        "Macro-F1": compared["macro_f1"],
        "F1 negative": compared["f1_negative"],
        "F1 neutral": compared["f1_neutral"],
        "F1 positive": compared["f1_positive"],
        "ECE": compared["ece"],
    })


# Scores shown with three decimals.
SCORE_COLUMNS = {c: st.column_config.NumberColumn(c, format="%.3f")
                 for c in ("Accuracy", "Macro-F1", "F1 negative", "F1 neutral", "F1 positive", "ECE")}


def display_names(models: pd.DataFrame) -> dict[str, str]:
    """model_id -> the name a page shows: the model's name, with its id beside it where two models share the
    name (runs of the same recipe are named alike), the id where it has none."""
    names = {m: (n if isinstance(n, str) and n and n != m else m) for m, n in zip(models["model_id"], models["name"])}
    counts = pd.Series(list(names.values()), dtype=object).value_counts()
    return {m: (f"{n} ({m})" if counts[n] > 1 and n != m else n) for m, n in names.items()}


def challenger_verdict(models: pd.DataFrame, new_model: str, champion_id: str | None) -> dict:
    """Whether the new model lost to the champion on the same test snapshot, in words.

    Args:
        models: ``reads.models`` indexed by model_id (macro_f1, test_n, test_snapshot).

    Returns:
        {"lost": bool, "text": str} (text empty when there is nothing to warn about).
    """
    if champion_id is None or champion_id not in models.index or new_model not in models.index:
        return {"lost": False, "text": ""}
    mine, theirs = models.loc[new_model], models.loc[champion_id]
    if pd.isna(mine["macro_f1"]) or pd.isna(theirs["macro_f1"]):
        return {"lost": False, "text": "One of the two models has no test evaluation yet; compare them on Model comparison first."}
    same = (not pd.isna(mine.get("test_snapshot")) and mine.get("test_snapshot") == theirs.get("test_snapshot"))
    if not same:
        return {"lost": False, "text": (
            f"The two models were evaluated on different test snapshots (n = {int(mine['test_n']):,} and "
            f"{int(theirs['test_n']):,}); re-evaluate them on the current test set on Model comparison before deciding.")}
    if mine["macro_f1"] < theirs["macro_f1"]:
        return {"lost": True, "text": (
            f"The new model lost to the champion on the same test snapshot: macro-F1 {mine['macro_f1']:.3f} "
            f"against {theirs['macro_f1']:.3f} (n = {int(mine['test_n']):,}).")}
    return {"lost": False, "text": ""}


def rounds_table(rounds: pd.DataFrame) -> pd.DataFrame:
    """Retraining rounds with human column names, newest first."""
    return pd.DataFrame({
        "Round": rounds["round_id"],
        "Status": rounds["status"],
        "Model": rounds["model_id"],
        "Promoted": rounds["promoted"].map({True: "yes", False: "no"}).fillna("—"),
        "Human labels (train)": rounds["human_labels_train"],
        "Human labels (test)": rounds["human_labels_test"],
        "Macro-F1 change": rounds["delta_macro_f1"],
        "Decision": rounds["decision"],
    })


# --- aspect models (the comparison page's aspect section) -------------------------------------

# Score columns of aspect_models_table (three decimals).
ASPECT_SCORES = ("Detection micro-F1", "Detection precision", "Detection recall", "Polarity accuracy",
                 "Polarity macro-F1")


def aspect_models_table(models: pd.DataFrame, evaluations: dict, names: dict[str, str]) -> pd.DataFrame:
    """One row per aspect model: its test detection and polarity scores (from the evaluation's metrics
    layout: detection.micro_*, polarity.accuracy / macro_f1), champion starred; blank when not evaluated."""
    rows = []
    for model in models.to_dict("records"):
        evaluation = evaluations.get(model["model_id"]) or {}
        detection, polarity = evaluation.get("detection") or {}, evaluation.get("polarity") or {}
        rows.append({
            "Model": names.get(model["model_id"], model["model_id"]),
            "Champion": "★" if model["is_champion"] else "",
            "Kind": model["kind"],
            "Test reviews (n)": evaluation.get("n") or model.get("test_n"),
            "Detection micro-F1": detection.get("micro_f1"),
            "Detection precision": detection.get("micro_precision"),
            "Detection recall": detection.get("micro_recall"),
            "Polarity accuracy": polarity.get("accuracy"),
            "Polarity macro-F1": polarity.get("macro_f1"),
        })
    return pd.DataFrame(rows)


def aspect_metrics_table(metrics: dict) -> pd.DataFrame:
    """Per aspect: detection precision, recall, F1 and support, polarity accuracy, macro-F1 and n (empty
    when the metrics hold no per-aspect scores)."""
    detection = (metrics.get("detection") or {}).get("per_aspect") or {}
    polarity = (metrics.get("polarity") or {}).get("per_aspect") or {}
    rows = []
    for aspect in dict.fromkeys([*detection, *polarity]):
        det, pol = detection.get(aspect) or {}, polarity.get(aspect) or {}
        rows.append({"Aspect": aspect, "Detection precision": det.get("precision"),
                     "Detection recall": det.get("recall"), "Detection F1": det.get("f1"), "Support": det.get("support"),
                     "Polarity accuracy": pol.get("accuracy"), "Polarity macro-F1": pol.get("macro_f1"),
                     "Polarity n": pol.get("n")})
    return pd.DataFrame(rows)
