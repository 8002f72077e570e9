"""Display helpers shared by the pages: figures and tidy frames. No store access here."""

from __future__ import annotations

import html
import json
import re

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from store.constants import LABELS

LABEL_COLORS = {"negative": "#d62728", "neutral": "#9e9e9e", "positive": "#2ca02c"}
SHIFT_SYMBOLS = {"spike": "triangle-up", "drop": "triangle-down"}
# Series colours for anything that is not a label: no red and no green, which mean negative and positive.
GROUP_COLORS = ("#1f77b4", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#e377c2", "#393b79", "#7f7f7f")
# The theme's accent (buttons, chips, progress): blue, so red stays negative's.
ACCENT = "#2563eb"


_MARKDOWN_SPECIALS = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:&])")


def md(text) -> str:
    """``text`` with every Markdown-significant character backslash-escaped, for data shown inside
    st.caption / st.error / st.success (names, ids and messages that come from the store or files)."""
    return _MARKDOWN_SPECIALS.sub(r"\\\1", str(text))


def show_message(message: tuple[str, str] | None) -> None:
    """Show a ("error" | "success", text) message left by a button callback; nothing for None.
    Errors are escaped (they quote names and values from the store); success texts are the page's own."""
    if message is None:
        return
    kind, text = message
    if kind == "error":
        st.error(md(text))
    else:
        st.success(text)


def counts_frame(counts: dict, name: str) -> pd.DataFrame:
    """A {key: count} dict as a two-column frame, largest first."""
    frame = pd.DataFrame({name: list(counts), "count": list(counts.values())})
    return frame.sort_values("count", ascending=False, ignore_index=True)


def jobs_frame(jobs: pd.DataFrame) -> pd.DataFrame:
    columns = [c for c in ("job_id", "kind", "status", "actor", "progress", "message", "created_at", "finished_at", "error") if c in jobs]
    return jobs[columns]


# Column headings and formats of a jobs table (views.jobs_frame).
JOB_COLUMNS = {
    "job_id": st.column_config.TextColumn("Job"),
    "kind": st.column_config.TextColumn("Kind"),
    "status": st.column_config.TextColumn("Status"),
    "actor": st.column_config.TextColumn("Started by"),
    "progress": st.column_config.ProgressColumn("Progress", min_value=0.0, max_value=1.0, format="percent"),
    "message": st.column_config.TextColumn("Message", width="medium"),
    "created_at": st.column_config.DatetimeColumn("Started", format="YYYY-MM-DD HH:mm"),
    "finished_at": st.column_config.DatetimeColumn("Finished", format="YYYY-MM-DD HH:mm"),
    "error": st.column_config.TextColumn("Error", width="medium"),
}


def _decode(value):
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def flag_detail(detail) -> str:
    """A flag's detail (JSON object) as ' — key value, key value' for plain-text display."""
    detail = _decode(detail)
    if not detail:
        return ""
    if not isinstance(detail, dict):
        return f" — {detail}"
    parts = [f"{k.replace('_', ' ')} {v:.3g}" if isinstance(v, float) else f"{k.replace('_', ' ')} {v}"
             for k, v in detail.items()]
    return " — " + ", ".join(parts)


def evaluation_metrics(evaluation: dict | None) -> dict:
    """The metrics dict of an evaluation row (decoded when stored as JSON text)."""
    if not evaluation:
        return {}
    metrics = _decode(evaluation.get("metrics", evaluation))
    return metrics if isinstance(metrics, dict) else {}


def model_summary(model: dict, evaluation: dict | None) -> None:
    """Name, id and headline test metrics of one model."""
    name = model.get("name") or model["model_id"]
    st.text(name if name == model["model_id"] else f"{name}  ({model['model_id']})")
    metrics = evaluation_metrics(evaluation)
    cols = st.columns(3)
    for col, key, label in zip(cols, ("accuracy", "macro_f1", "ece"), ("Test accuracy", "Test macro-F1", "Calibration error")):
        value = metrics.get(key)
        col.metric(label, f"{value:.3f}" if isinstance(value, (int, float)) else "—")
    if not metrics:
        st.caption("No test evaluation stored for this model yet.")


def confusion_figure(matrix, title: str) -> go.Figure:
    """Heatmap of a 3x3 confusion matrix (rows = true label, columns = predicted)."""
    frame = pd.DataFrame(matrix, index=list(LABELS), columns=list(LABELS))
    fig = go.Figure(
        go.Heatmap(
            z=frame.values,
            x=[f"pred {c}" for c in frame.columns],
            y=[f"true {r}" for r in frame.index],
            text=frame.values,
            texttemplate="%{text}",
            colorscale="Blues",
            showscale=False,
        )
    )
    fig.update_layout(title=title, height=320, margin=dict(l=10, r=10, t=40, b=10), yaxis=dict(autorange="reversed"))
    fig.update_xaxes(title_text="predicted label")
    fig.update_yaxes(title_text="true label (test reviews)")
    return fig


def share_trend_figure(trend: pd.DataFrame, *, title: str, grain: str = "period") -> go.Figure:
    """Stacked label shares per period (bars, clickable), average stars on a second axis, shifts marked."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    for label in LABELS:
        fig.add_trace(
            go.Bar(
                x=trend["period"],
                y=trend[f"{label}_share"],
                name=label,
                marker_color=LABEL_COLORS[label],
                customdata=trend[label],
                hovertemplate="%{x|%Y-%m-%d}: %{y:.0%} (%{customdata})<extra>" + label + "</extra>",
            ),
            secondary_y=False,
        )
    fig.add_trace(
        go.Scatter(
            x=trend["period"], y=trend["avg_stars"], name="avg stars", mode="lines",
            line=dict(color="#1f2937", width=2), hovertemplate="%{y:.2f} stars<extra></extra>",
        ),
        secondary_y=True,
    )
    shifts = trend[trend["shift"].notna()]
    for kind, symbol in SHIFT_SYMBOLS.items():
        marked = shifts[shifts["shift"] == kind]
        if len(marked):
            fig.add_trace(
                go.Scatter(
                    x=marked["period"], y=[1.04] * len(marked), mode="markers", name=f"negative {kind}",
                    marker=dict(symbol=symbol, size=13, color="#111827"),
                    hovertemplate="negative share %{customdata:.0%}<extra>" + kind + "</extra>",
                    customdata=marked["negative_share"],
                ),
                secondary_y=False,
            )
    fig.update_layout(
        title=title, barmode="stack", height=380, margin=dict(l=10, r=10, t=40, b=10),
        legend=dict(orientation="h", y=-0.15), clickmode="event+select",
    )
    fig.update_yaxes(title_text="share of reviews", tickformat=".0%", range=[0, 1.08], secondary_y=False)
    fig.update_yaxes(title_text="average stars (1-5)", range=[1, 5], tick0=1, dtick=1, secondary_y=True)
    fig.update_xaxes(title_text=f"{grain} starting")
    return fig


def count_trend_figure(trend: pd.DataFrame, *, grain: str = "period") -> go.Figure:
    """Stacked review counts per period by label."""
    fig = go.Figure()
    for label in LABELS:
        fig.add_trace(go.Bar(x=trend["period"], y=trend[label], name=label, marker_color=LABEL_COLORS[label]))
    fig.update_layout(barmode="stack", height=260, margin=dict(l=10, r=10, t=30, b=10), title=f"Reviews per {grain}",
                      showlegend=False)
    fig.update_xaxes(title_text=f"{grain} starting")
    fig.update_yaxes(title_text="reviews")
    return fig


def group_trend_figure(group_trend: pd.DataFrame, groups: list[str], *, grain: str = "period") -> go.Figure:
    """Negative share over time of the chosen groups, their shifts marked (colours that are never red or green)."""
    fig = go.Figure()
    for i, name in enumerate(groups):
        color = GROUP_COLORS[i % len(GROUP_COLORS)]
        series = group_trend[group_trend["grp"] == name]
        name = html.escape(name)  # plotly renders a few HTML tags in names
        fig.add_trace(go.Scatter(x=series["period"], y=series["negative_share"], name=name, mode="lines+markers",
                                 marker=dict(size=4), customdata=series["n"], line=dict(color=color),
                                 hovertemplate="%{x|%Y-%m-%d}: %{y:.0%} of %{customdata}<extra>" + name + "</extra>"))
        marked = series[series["shift"].notna()]
        if len(marked):
            fig.add_trace(go.Scatter(
                x=marked["period"], y=marked["negative_share"], mode="markers", showlegend=False,
                marker=dict(symbol=[SHIFT_SYMBOLS[k] for k in marked["shift"]], size=12, color="#111827"),
                hovertemplate="%{x|%Y-%m-%d}: negative %{y:.0%}<extra>" + name + " shift</extra>",
            ))
    fig.update_layout(height=360, margin=dict(l=10, r=10, t=40, b=10), title="Negative share by group",
                      legend=dict(orientation="h", y=-0.25))
    fig.update_yaxes(title_text="negative share of reviews", tickformat=".0%", range=[0, 1])
    fig.update_xaxes(title_text=f"{grain} starting")
    return fig


def epoch_figure(epochs: pd.DataFrame, *, title: str) -> go.Figure:
    """Train/val loss and val macro-F1 per epoch (one line per run when a job trained several)."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    runs = epochs["run_id"].unique() if "run_id" in epochs else [None]
    for i, run in enumerate(runs):
        part = epochs if run is None else epochs[epochs["run_id"] == run]
        loss_color, f1_color = GROUP_COLORS[(2 * i) % len(GROUP_COLORS)], GROUP_COLORS[(2 * i + 1) % len(GROUP_COLORS)]
        suffix = "" if len(runs) == 1 else f" {str(run)[-6:]}"
        for column, dash in (("train_loss", "dot"), ("val_loss", "solid")):
            if column in part and part[column].notna().any():
                fig.add_trace(go.Scatter(x=part["epoch"], y=part[column], name=column_name(column).lower() + suffix,
                                         mode="lines+markers", line=dict(dash=dash, color=loss_color)),
                              secondary_y=False)
        if "val_macro_f1" in part and part["val_macro_f1"].notna().any():
            fig.add_trace(go.Scatter(x=part["epoch"], y=part["val_macro_f1"], name="validation macro-F1" + suffix,
                                     mode="lines+markers", line=dict(color=f1_color)), secondary_y=True)
    fig.update_layout(title=title, height=320, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.2))
    fig.update_xaxes(title_text="epoch", tick0=1, dtick=1, tickformat="d")
    fig.update_yaxes(title_text="loss (cross-entropy)", rangemode="tozero", secondary_y=False)
    fig.update_yaxes(title_text="validation macro-F1", range=[0, 1], secondary_y=True)
    return fig


def percent_columns(columns: list[str]) -> dict:
    """column_config entries showing shares as percentages."""
    return {c: st.column_config.NumberColumn(c.replace("_", " "), format="percent") for c in columns}


# --- the relabel queue -----------------------------------------------------------------------

# Ink on each label's colour, readable on it.
_LABEL_INK = {"negative": "#ffffff", "neutral": "#111827", "positive": "#ffffff"}
REASON_NAMES = {
    "low_confidence": "Model unsure",
    "disagreement": "Models disagree",
    "rating_contradicts_text": "Stars contradict text",
    "label_issue": "Label may be wrong",
    "emerging_term": "New term",
    "sarcasm": "Sarcasm candidate",
    "text_changed": "Text changed after labeling",
    "aspect_disagreement": "Aspects disagree with the label",
}


def reason_name(reason: str) -> str:
    """A flag reason in words (a reason added later than this table still reads, from its id)."""
    return REASON_NAMES.get(reason, str(reason).replace("_", " ").capitalize())


def suggested_label(row) -> str | None:
    """The label the flag suggests: the cross-validated model's for a label issue, else the model's call."""
    detail = _decode(row.get("detail")) or {}
    if isinstance(detail, dict) and detail.get("suggested_label") in LABELS:
        return detail["suggested_label"]
    label = row.get("model_label")
    return label if isinstance(label, str) and label in LABELS else None


def _probabilities(row) -> dict[str, float]:
    return {label: float(row[f"p_{label}"]) for label in LABELS if pd.notna(row.get(f"p_{label}"))}


def why_flagged(row) -> tuple[str, str]:
    """(plain-words reason, the numbers behind it) for one queue row (reason, detail, stars, term, p_*)."""
    reason, detail = row["reason"], _decode(row.get("detail")) or {}
    detail = detail if isinstance(detail, dict) else {}
    probs = _probabilities(row)
    ranked = sorted(probs, key=probs.get, reverse=True)
    numbers = ", ".join(f"{label} {p:.0%}" for label, p in sorted(probs.items(), key=lambda kv: -kv[1]))
    numbers = f"Model probabilities: {numbers}." if numbers else ""
    if reason == "low_confidence" and len(ranked) >= 2:
        text = f"The model is unsure between {ranked[0]} and {ranked[1]}."
        if "margin" in detail:
            numbers += f" Margin between them {detail['margin']:.2f}; entropy {detail.get('entropy', float('nan')):.2f}."
    elif reason == "rating_contradicts_text":
        stars = detail.get("stars", row.get("stars"))
        stars = int(stars) if stars is not None and pd.notna(stars) else "?"
        reads = detail.get("predicted") or (ranked[0] if ranked else "otherwise")
        text = f"The stars ({stars}) contradict the text, which reads {reads}."
        if "probability" in detail:
            numbers += f" Probability of {reads}: {detail['probability']:.0%}."
    elif reason == "label_issue":
        quality = detail.get("label_quality")
        confidence = f" with {1 - quality:.0%} confidence" if isinstance(quality, (int, float)) else ""
        given, suggested = detail.get("given_label"), detail.get("suggested_label")
        text = (f"This label may be wrong: a cross-validated model disagrees{confidence}"
                + (f" (given {given}, it suggests {suggested})." if given and suggested else "."))
        if isinstance(quality, (int, float)):
            numbers += f" Label quality {quality:.3f} (cleanlab self-confidence; {detail.get('probabilities', '')})."
    elif reason == "disagreement":
        other = detail.get("other_model_id", "another model")
        text = (f"Two models disagree: this one says {detail.get('model_label', ranked[0] if ranked else '?')}, "
                f"{other} says {detail.get('other_label', '?')}.")
        if "distance" in detail:
            numbers += f" Distance between their probabilities {detail['distance']:.2f} (0 to 1)."
    elif reason == "emerging_term":
        term = row.get("term") or "a new term"
        text = f"The review mentions “{term}”, a term that appeared recently and that the model is unsure about."
        if "lift" in detail:
            numbers += (f" {detail.get('recent_count', '?')} recent vs {detail.get('prior_count', '?')} earlier reviews"
                        f" (lift {detail['lift']}); mean uncertainty {detail.get('mean_uncertainty', float('nan')):.2f}.")
    elif reason == "aspect_disagreement":
        against = [a for a in detail.get("against", []) if isinstance(a, dict)]
        heard = ", ".join(f"{a.get('aspect')} {a.get('polarity')}" for a in against) or "an aspect the other way"
        overall, source = detail.get("overall", "?"), detail.get("overall_from")
        text = (f"The review is {overall} overall"
                + (f" ({'the model says so' if source == 'prediction' else f'{source} label'})" if source else "")
                + f", but the aspect model hears {heard}. Check its aspects below, then its overall label.")
        aspects = detail.get("aspects")
        if isinstance(aspects, dict) and aspects:
            numbers += " Aspects heard: " + ", ".join(f"{a} {p}" for a, p in aspects.items()) + "."
        numbers += "".join(f" {a.get('aspect')}: {float(a['confidence']):.0%} sure." for a in against
                           if isinstance(a.get("confidence"), (int, float)))
    elif reason == "text_changed":
        text = ("A re-import changed this review's text after a person labeled it; that label no longer counts. "
                "Read the new text and label it again.")
    else:
        text = f"Flagged as {reason.replace('_', ' ')}."
    numbers += f" Priority {float(row['priority']):.2f}." if pd.notna(row.get("priority")) else ""
    return text, numbers.strip()


def aspect_evidence_html(predictions: pd.DataFrame) -> str:
    """The aspects a model hears in one review as an HTML table: aspect, polarity (in its label's colour),
    how sure (p_present x p_polarity), and the evidence sentence highlighted in the polarity's colour.
    ``predictions``: aspect, polarity, p_present, p_negative, p_neutral, p_positive, evidence. Every piece
    is escaped."""
    heard = predictions[predictions["polarity"].isin(LABELS)]
    heard = heard.assign(sure=[float(r.p_present) * float(getattr(r, f"p_{r.polarity}")) for r in heard.itertuples()])
    rows = []
    for row in heard.sort_values("sure", ascending=False).itertuples():
        rgb = _rgb(LABEL_COLORS[row.polarity])
        evidence = html.escape(row.evidence) if isinstance(row.evidence, str) and row.evidence.strip() else "—"
        rows.append(
            f"<tr><td><b>{html.escape(str(row.aspect))}</b></td>"
            f'<td style="color: {LABEL_COLORS[row.polarity]}; font-weight: 600">{row.polarity}</td>'
            f'<td title="mentioned {float(row.p_present):.0%}">{row.sure:.0%}</td>'
            f'<td><span style="background: rgba({rgb[0]},{rgb[1]},{rgb[2]},0.22); border-radius: 3px; padding: 0 2px">'
            f"{evidence}</span></td></tr>")
    if not rows:
        return '<div data-testid="aspect-evidence">The aspect model hears no aspect in this review.</div>'
    return ('<table data-testid="aspect-evidence" style="border-collapse: collapse; width: 100%">'
            "<tr><th align=left>Aspect</th><th align=left>Model hears</th><th align=left>Sure</th>"
            "<th align=left>Evidence</th></tr>" + "".join(rows) + "</table>")


def highlighted_review_html(attribution) -> str:
    """The review as HTML with each word's background shaded by how much it drove the model's call
    (the call's colour; grey-blue for words that pulled the other way). Every piece is escaped."""
    weights = [abs(w) for _, w in attribution.pieces if w is not None]
    scale = max(weights) if weights and max(weights) > 0 else 1.0
    call_rgb = _rgb(LABEL_COLORS[attribution.label])
    spans = []
    for piece, weight in attribution.pieces:
        text = html.escape(piece)
        if weight is None or abs(weight) / scale < 0.08:
            spans.append(text)
            continue
        alpha = min(abs(weight) / scale, 1.0) * 0.6
        rgb = call_rgb if weight > 0 else (59, 130, 246)
        spans.append(f'<span title="{weight:+.3f}" style="background: rgba({rgb[0]},{rgb[1]},{rgb[2]},{alpha:.2f});'
                     f' border-radius: 3px; padding: 0 1px">{text}</span>')
    return ('<div data-testid="review-text" style="white-space: pre-wrap; line-height: 1.6; font-size: 1.05rem">'
            + "".join(spans) + "</div>")


def _rgb(color: str) -> tuple[int, int, int]:
    color = color.lstrip("#")
    return int(color[0:2], 16), int(color[2:4], 16), int(color[4:6], 16)


def label_button_css(suggested: str | None) -> str:
    """CSS giving the three label buttons (keys label-negative/neutral/positive) their label's colour,
    and a thick outline to the suggested one."""
    rules = []
    for label in LABELS:
        rules.append(f".st-key-label-{label} button {{ background: {LABEL_COLORS[label]}; color: {_LABEL_INK[label]};"
                     f" border-color: {LABEL_COLORS[label]}; }}")
        rules.append(f".st-key-label-{label} button:hover {{ filter: brightness(0.92); color: {_LABEL_INK[label]};"
                     f" border-color: {LABEL_COLORS[label]}; }}")
    if suggested in LABELS:
        rules.append(f".st-key-label-{suggested} button {{ outline: 4px solid #111827; outline-offset: 2px;"
                     " font-weight: 700; }")
    return "<style>" + "\n".join(rules) + "</style>"


def review_row_height(texts, *, chars_per_line: int = 95) -> int:
    """Row height (px) that shows the longest of ``texts`` whole in a wide wrapped text column (at most 12 lines)."""
    longest = max((len(str(t)) for t in texts), default=0)
    lines = min(max(1, -(-longest // chars_per_line)), 12)
    return 16 + 21 * max(lines, 3)


# --- human column names -----------------------------------------------------------------------

# Headings of columns that appear across the store's frames; anything else gets its name with
# spaces for underscores and a capital letter.
COLUMN_NAMES = {
    "grp": "Group", "n": "Reviews", "is_new": "New", "shift": "Shift", "shift_z": "Shift (z-score)",
    "avg_stars": "Avg stars", "first_review_at": "First review", "period": "Period",
    "negative_share": "Negative share", "neutral_share": "Neutral share", "positive_share": "Positive share",
    "baseline_negative_share": "Usual negative share",
    "p_negative": "P(negative)", "p_neutral": "P(neutral)", "p_positive": "P(positive)",
    "model_id": "Model", "name": "Name", "kind": "Kind", "is_champion": "Champion", "test_n": "Test reviews",
    "accuracy": "Accuracy", "macro_f1": "Macro-F1", "val_macro_f1": "Validation macro-F1", "ece": "Calibration error",
    "f1_negative": "F1 negative", "f1_neutral": "F1 neutral", "f1_positive": "F1 positive",
    "round": "Round", "round_id": "Round", "created_at": "Created", "finished_at": "Finished", "started_at": "Started",
    "review_id": "Review ID", "text": "Review", "stars": "Stars", "label": "Label", "source": "Source",
    "restaurant_name": "Restaurant", "neighborhood": "Neighbourhood", "count": "Count", "reason": "Reason",
    "epoch": "Epoch", "step": "Step", "train_loss": "Training loss", "val_loss": "Validation loss",
    "val_accuracy": "Validation accuracy", "run_id": "Run", "term": "Term", "z": "z-score",
    "negative_count": "Negative reviews", "positive_count": "Positive reviews",
    "challenger_macro_f1": "Challenger macro-F1", "champion_macro_f1": "Champion macro-F1",
    "delta_macro_f1": "Macro-F1 gain", "label_efficiency": "Macro-F1 gain per label", "actor": "By",
    "import_id": "Import", "accepted": "Accepted", "rejected": "Rejected", "updated": "Updated",
    "model_a_label": "Model A says", "model_b_label": "Model B says", "current_label": "Current label",
}
_SHARES = {"negative_share", "neutral_share", "positive_share", "baseline_negative_share",
           "p_negative", "p_neutral", "p_positive"}
_SCORES = {"accuracy", "macro_f1", "val_macro_f1", "ece", "f1_negative", "f1_neutral", "f1_positive", "val_accuracy",
           "challenger_macro_f1", "champion_macro_f1", "delta_macro_f1", "train_loss", "val_loss"}
_DATES = {"period", "first_review_at"}
_TIMES = {"created_at", "finished_at", "started_at"}


def column_name(column: str) -> str:
    """The heading shown for a frame column."""
    return COLUMN_NAMES.get(column) or column.replace("_", " ").capitalize()


def column_config(frame: pd.DataFrame, **overrides) -> dict:
    """st.column_config for every column of ``frame``: human headings, shares as percentages,
    scores to three decimals, stars and epochs as integers, review text wide; ``overrides``
    (column -> heading or column config) win."""
    config = {}
    for column in frame.columns:
        name = column_name(str(column))
        if column in _SHARES:
            config[column] = st.column_config.NumberColumn(name, format="percent")
        elif column in _SCORES:
            config[column] = st.column_config.NumberColumn(name, format="%.3f")
        elif column in ("stars", "epoch", "n", "test_n", "round", "round_id"):
            config[column] = st.column_config.NumberColumn(name, format="%d")
        elif column in _DATES:
            config[column] = st.column_config.DateColumn(name, format="YYYY-MM-DD")
        elif column in _TIMES:
            config[column] = st.column_config.DatetimeColumn(name, format="YYYY-MM-DD HH:mm")
        elif column == "text":
            config[column] = st.column_config.TextColumn(name, width="large")
        else:
            config[column] = name
    for column, value in overrides.items():
        config[column] = value
    return config


def table(frame: pd.DataFrame, *, texts: bool = False, **kwargs):
    """st.dataframe of ``frame`` that fits the page: human headings (``column_config(frame)`` plus
    any given), no index, page width; ``texts=True`` also puts review text first and wraps it whole."""
    config = column_config(frame, **kwargs.pop("column_config", {}))
    if texts and "text" in frame.columns:
        frame = frame[["text", *[c for c in frame.columns if c != "text"]]]
        kwargs.setdefault("row_height", review_row_height(frame["text"]))
    kwargs.setdefault("hide_index", True)
    kwargs.setdefault("width", "stretch")
    return st.dataframe(frame, column_config=config, **kwargs)
