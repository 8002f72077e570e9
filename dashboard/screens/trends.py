import dataclasses

import pandas as pd
import streamlit as st

from dashboard import monitoring, reads, views
from pipeline.monitor.shifts import marked_shifts
from dashboard.page_setup import setup_page
from store.trends import GRAINS, ReviewFilter, period_bounds
from store.constants import LABELS

LABELS_CHOICE = "Current labels (no model)"
ALL_PERIODS = "all"  # the period choice meaning no period (a keyed selectbox set to None shows no choice at all)
# How many groups the comparison chart preselects (those with shifts or newly opened first).
DEFAULT_COMPARED_GROUPS = 5

ctx = setup_page("Sentiment trends", "read")
choices = reads.trend_choices(ctx.db)
if choices["first"] is None:
    st.info("The store has no dated reviews yet.")
    st.stop()

# --- filters (a link from Overview's movers preselects a restaurant or neighbourhood) ---
monitoring.apply_trend_query_params("trend-restaurants", "trend-neighborhoods", choices)
scored = choices["scored_models"]
champion_id = choices["champion_id"]
model_options = ([champion_id] if champion_id else []) + [m for m in scored["model_id"] if m != champion_id]
model_options.append(LABELS_CHOICE)
f1, f2, f3, f4 = st.columns([3, 3, 3, 3])
dates = f1.date_input("Dates", value=(choices["first"], choices["last"]), min_value=choices["first"],
                      max_value=choices["last"], key="trend-dates")
restaurants = f2.multiselect("Restaurants", choices["restaurants"], key="trend-restaurants")
neighborhoods = f3.multiselect("Neighborhoods", choices["neighborhoods"], key="trend-neighborhoods")
model_choice = f4.selectbox(
    "Sentiment from", model_options, key="trend-model",
    format_func=lambda m: f"{m} (champion)" if m == champion_id else m,
)
g1, g2, _ = st.columns([3, 4, 5])
grain = g1.segmented_control("Period", GRAINS, default="week", key="trend-grain") or "week"
by = g2.segmented_control("Group by", ["restaurant", "neighborhood"], default="restaurant", key="trend-by") or "restaurant"

start, end = (dates[0], dates[1]) if len(dates) == 2 else (dates[0], dates[0])
# The whole range is no filter at all (and lets DuckDB skip the date comparison).
flt = ReviewFilter(start=None if start <= choices["first"] else start, end=None if end >= choices["last"] else end,
                   restaurants=tuple(restaurants), neighborhoods=tuple(neighborhoods))
model_id = None if model_choice == LABELS_CHOICE else model_choice
source, summary, main_terms = reads.trends(ctx.db, model_id, flt, grain, by)

if source.kind == "predictions":
    note = " (champion)" if source.model_id == champion_id else ""
    st.caption(f"Sentiment from the predictions of model {views.md(source.model_id)}{note}. Stars are the reviewers' own.")
elif model_id is None and champion_id is None:
    st.warning("No champion model yet, so these trends use the current labels (human relabels, imports, or stars).")
elif model_id is None:
    st.caption("Sentiment from the current labels (human relabels, imports, or stars).")
else:
    st.warning(f"Model {views.md(model_id)} has no stored predictions, so these trends use the current labels instead. "
               "Score it from the Training page or with `tastebud score`.")

trend = summary.trend
if trend.empty:
    st.info("No reviews match these filters.")
    st.stop()

# --- overall trend ---
event = st.plotly_chart(
    views.share_trend_figure(trend, title=f"Sentiment share per {grain}", grain=grain),
    on_select="rerun", selection_mode="points", key="trend-chart",
)
st.plotly_chart(views.count_trend_figure(trend, grain=grain), key="count-chart")
st.download_button("Download the trend (CSV)", trend.to_csv(index=False), "sentiment_trend.csv", "text/csv")

# --- sudden shifts ---
detected = monitoring.shifts(ctx.db, model_id, flt, grain)
marked = marked_shifts(detected)
st.subheader("Sudden shifts by restaurant and neighbourhood")
st.caption(f"Each group's {grain} against its own previous {monitoring.T.SHIFT_BASELINE_PERIODS[grain]} {grain}s: "
           "beta-binomial test of the negative share, negative-binomial test of the volume, Benjamini-Hochberg "
           f"FDR {monitoring.T.SHIFT_FDR:.0%} over every group and period; a sentiment shift must also move "
           f"{monitoring.T.SHIFT_MIN_DELTA:.0%} and a volume shift at least double or halve.")
if marked.empty:
    st.write("None in this selection.")
else:
    marked = marked.assign(shift=marked["sentiment_shift"].fillna(marked["volume_shift"]))
    views.table(
        marked[["period", "by", "grp", "shift", "n", "negative_share", "baseline_share", "baseline_mean_n", "q"]],
        column_config={"grp": "Group", "baseline_mean_n": st.column_config.NumberColumn("Usual reviews", format="%.1f"),
                       "q": st.column_config.NumberColumn("q (FDR)", format="%.2g")},
    )

# --- by restaurant / neighborhood ---
st.subheader(f"By {by}")
breakdown = summary.breakdown
new_groups = breakdown.loc[breakdown["is_new"] == True, "grp"].tolist()  # noqa: E712 (nullable column)
if new_groups:
    st.caption("New since the store's first reviews: " + ", ".join(views.md(g) for g in new_groups))
shifted = marked.loc[marked["by"] == by, "grp"].drop_duplicates().tolist() if len(marked) else []
default_compare = list(dict.fromkeys(shifted + new_groups + breakdown["grp"].tolist()))[:DEFAULT_COMPARED_GROUPS]
compared = st.multiselect(f"Compare {by}s over time", breakdown["grp"].tolist(), default=default_compare,
                          key=f"trend-compare-{by}")
if compared:
    st.plotly_chart(monitoring.group_shift_figure(detected, by, compared, grain=grain), key="group-chart")
table = views.table(
    breakdown, on_select="rerun", selection_mode="single-row", key=f"trend-breakdown-{by}",
    column_config={"grp": by.capitalize(), "avg_stars": st.column_config.NumberColumn("Avg stars", format="%.2f ★"),
                   "is_new": st.column_config.CheckboxColumn("New", help="First reviewed after the store's first week"),
                   "negative": "Negative", "neutral": "Neutral", "positive": "Positive"},
)
st.download_button(f"Download the {by} breakdown (CSV)", breakdown.to_csv(index=False), f"sentiment_by_{by}.csv", "text/csv")

# --- the reviews behind a period or group ---
st.subheader("Reviews behind the numbers")
periods = [p.date() for p in pd.to_datetime(trend["period"])]
clicked = [pd.Timestamp(p["x"]).date() for p in (event.selection.points if event else []) if p.get("x")]
# A keyed selectbox ignores index= once drawn, so a new click on a bar moves it through its state;
# only a click that changed since the last run does, so picking a period by hand sticks.
click = clicked[0] if clicked else None
if click != st.session_state.get("trend-period-click"):
    st.session_state["trend-period-click"] = click
    if click in periods:
        st.session_state["trend-period"] = click
if st.session_state.get("trend-period") not in periods:
    st.session_state["trend-period"] = ALL_PERIODS  # another grain or date range: the old period is gone
period_choice = st.selectbox(
    "Period", [ALL_PERIODS, *periods], key="trend-period",
    format_func=lambda p: "All periods (click a bar to pick one)" if p == ALL_PERIODS else f"{grain} of {p:%Y-%m-%d}",
)
period_choice = None if period_choice == ALL_PERIODS else period_choice
selected_rows = table.selection.rows if table else []
group_choice = breakdown["grp"].iloc[selected_rows[0]] if selected_rows else None
label_choice = st.segmented_control("Label", LABELS, key="trend-label")
drill = flt
if period_choice is not None:
    p_start, p_end = period_bounds(period_choice, grain)
    drill = dataclasses.replace(drill, start=max(p_start, start), end=min(p_end, end))  # within the chosen dates
if group_choice is not None:
    drill = dataclasses.replace(drill, **{"restaurants" if by == "restaurant" else "neighborhoods": (group_choice,)})
if drill == flt and label_choice is None:
    st.caption(f"Pick a period (click a bar), a {by} (select a row above) or a label to see its reviews.")
else:
    parts = [f"{grain} of {period_choice:%Y-%m-%d}" if period_choice else None, group_choice, label_choice]
    st.caption("Showing the newest 200 reviews for: " + ", ".join(views.md(p) for p in parts if p))
    reviews = reads.selection_reviews(ctx.db, source, drill, label_choice, 200)
    views.table(reviews, texts=True)
    st.download_button("Download these reviews (CSV)", reviews.to_csv(index=False), "reviews.csv", "text/csv")

# --- distinguishing terms ---
st.subheader("Words that separate negative from positive reviews")
terms = main_terms if drill == flt else reads.terms(
    ctx.db, source, drill, summary.class_counts(period=period_choice, group=group_choice))
if terms.empty:
    st.write("Not enough negative and positive reviews in this selection.")
else:
    st.caption(f"Log-odds z-scores over a sample of {terms['n_negative'].iloc[0]:,} negative and "
               f"{terms['n_positive'].iloc[0]:,} positive reviews of the selection.")
    neg_col, pos_col = st.columns(2)
    columns = ["term", "negative_count", "positive_count", "z"]
    neg_col.markdown("**Negative-leaning**")
    with neg_col:
        views.table(terms[terms["side"] == "negative"][columns])
    pos_col.markdown("**Positive-leaning**")
    with pos_col:
        views.table(terms[terms["side"] == "positive"].sort_values("z")[columns])

# --- for data scientists: is the model still fit for this data? ---
st.divider()
monitoring.health_section(ctx.db)
