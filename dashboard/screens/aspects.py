import streamlit as st

from dashboard import aspect_views, views
from dashboard.page_setup import setup_page
from store.aspects import MENTION_THRESHOLD
from store.trends import ReviewFilter

ALL = "All restaurants"
ALL_MENTIONS = "every mention"
ORDERS = {"newest": "Newest first", "confident": "Most confident first"}
EVIDENCE_ROWS = 100
# Aspects the trend chart preselects (those with open alerts first, then the most mentioned).
DEFAULT_TREND_ASPECTS = 3

ctx = setup_page("Aspects", "read")
choices = aspect_views.choices(ctx.db)
champion_id = choices["champion_id"]
if not choices["scored"]:
    if champion_id:
        st.info(f"The aspects champion {views.md(champion_id)} has not scored any reviews yet. Run `tastebud score` "
                "(it fills aspect predictions for the aspects champion), then reload.")
    elif choices["n_models"]:
        st.info("There are aspect models but none is champion or has scored reviews. Promote one on the Training page "
                "(or `tastebud promote MODEL`), then run `tastebud score`.")
    else:
        st.info("No aspect model yet, so there is nothing to show about food, service, price or place. Train one with "
                "`tastebud train --task aspects` or on the Training page, promote it, then run `tastebud score`.")
    st.stop()

# --- filters (?restaurant=NAME opens one restaurant, e.g. from an alert) ---
if "aspect-restaurant" not in st.session_state and st.query_params.get("restaurant") in choices["restaurants"]:
    st.session_state["aspect-restaurant"] = st.query_params["restaurant"]
models = [m for m in [champion_id] if m in choices["scored"]] + [m for m in choices["scored"] if m != champion_id]
f1, f2, f3, f4 = st.columns([4, 3, 2, 3])
restaurant = f1.selectbox("Restaurant", [ALL, *choices["restaurants"]], key="aspect-restaurant")
# Reviews without a date (SemEval sentences, a label file's reviews) count in the table and the sentences;
# only the trend needs dates.
dated = choices["first"] is not None
if dated:
    dates = f2.date_input("Dates", value=(choices["first"], choices["last"]), min_value=choices["first"],
                          max_value=choices["last"], key="aspect-dates")
    start, end = (dates[0], dates[1]) if len(dates) == 2 else (dates[0], dates[0])
else:
    f2.caption("No review has a date: the table counts every review, and there is no trend over time.")
    start = end = None
grain = f3.segmented_control("Period", ["week", "month"], default="week", key="aspect-grain") or "week"
model_id = f4.selectbox("Aspect model", models, key="aspect-model",
                        format_func=lambda m: f"{m} (champion)" if m == champion_id else m)
chosen = None if restaurant == ALL else restaurant
flt = ReviewFilter(start=start if dated and start > choices["first"] else None,
                   end=end if dated and end < choices["last"] else None,
                   restaurants=() if chosen is None else (chosen,))
data = aspect_views.summary(ctx.db, model_id, flt, grain, chosen)
table, trend, alerts = data["table"], data["trend"], data["alerts"]
if table.empty or int(table["reviews"].max()) == 0:
    st.info("No scored reviews match these filters.")
    st.stop()
if champion_id and model_id != champion_id:
    unscored = (f" The champion {views.md(champion_id)} has not scored any review yet: run `tastebud score` to "
                "fill its aspect predictions." if champion_id not in choices["scored"] else "")
    st.caption(f"Aspects from model {views.md(model_id)}, which is not the aspects champion.{unscored}")
missing, removed = data["unpredicted"], data["removed"]
if missing:
    st.caption(f"Not predicted by {views.md(model_id)}: {views.md(', '.join(missing))} (added to the store after "
               "it was trained; the next aspect training learns from their labels).")
if removed:
    st.caption(f"{views.md(', '.join(removed))}: predicted by {views.md(model_id)} but since removed from the store's "
               "aspects; the next aspect model leaves it out.")
if champion_id is None:
    st.warning("No aspect model is champion: these aspects come from a model nobody promoted.")

# --- the aspect table ---
where = views.md(chosen) if chosen else "all restaurants"
st.subheader(f"What reviews say about each aspect: {where}")
st.caption(f"{int(table['reviews'].max()):,} reviews scored by {views.md(model_id)}. A review mentions an aspect when "
           f"the model is at least {MENTION_THRESHOLD:.0%} sure it speaks of it; opinion shares are among the "
           "mentions. "
           "Intervals are Wilson 95%: a share of a few mentions is uncertain.")
st.plotly_chart(aspect_views.aspect_figure(table), key="aspect-figure")
event = st.dataframe(aspect_views.display_table(table), hide_index=True, width="stretch", key="aspect-table",
                     on_select="rerun", selection_mode="single-cell", column_config=aspect_views.TABLE_CONFIG)
st.download_button("Download the aspect table (CSV)", table.to_csv(index=False), "aspects.csv", "text/csv")

# --- the sentences behind a cell (a clicked cell moves the choices below; only a new click does) ---
st.subheader("The review sentences behind a cell")
aspects = table["aspect"].tolist()
cells = list(event.selection.cells) if event and event.selection else []
click = tuple(cells[0]) if cells else None
if click != st.session_state.get("aspect-cell-click"):
    st.session_state["aspect-cell-click"] = click
    if click is not None and 0 <= int(click[0]) < len(aspects):
        st.session_state["aspect-cell-aspect"] = aspects[int(click[0])]
        st.session_state["aspect-cell-polarity"] = aspect_views.cell_choice(str(click[1])) or ALL_MENTIONS
if st.session_state.get("aspect-cell-aspect") not in aspects:
    st.session_state["aspect-cell-aspect"] = table.sort_values("mentions", ascending=False)["aspect"].iloc[0]
st.session_state.setdefault("aspect-cell-polarity", ALL_MENTIONS)
c1, c2, c3 = st.columns([3, 4, 3])
cell_aspect = c1.selectbox("Aspect", aspects, key="aspect-cell-aspect")
cell_polarity = c2.segmented_control("Opinion", [ALL_MENTIONS, "negative", "neutral", "positive"],
                                     key="aspect-cell-polarity") or ALL_MENTIONS
order = c3.radio("Order", list(ORDERS), format_func=ORDERS.get, horizontal=True, key="aspect-cell-order")
polarity = None if cell_polarity == ALL_MENTIONS else cell_polarity
sentences = aspect_views.evidence(ctx.db, model_id, cell_aspect, flt, polarity, order, EVIDENCE_ROWS)
what = f"{cell_polarity} mentions" if polarity else "mentions"
if sentences.empty:
    st.write(f"No {views.md(what)} of {views.md(cell_aspect)} in this selection.")
else:
    st.caption(f"{'Newest' if order == 'newest' else 'Most confident'} {len(sentences):,} {views.md(what)} of "
               f"{views.md(cell_aspect)} (click a cell of the table above to pick another).")
    views.table(sentences, texts=False, row_height=views.review_row_height(sentences["evidence"]),
                column_order=("evidence", "polarity", "created_at", "restaurant", "stars", "p_present", "p_negative",
                              "p_neutral", "p_positive", "text", "review_id"),
                column_config={"evidence": st.column_config.TextColumn("Sentence", width="large"),
                               "restaurant": "Restaurant", "polarity": "Opinion",
                               "p_present": st.column_config.NumberColumn("P(mentioned)", format="percent"),
                               "text": st.column_config.TextColumn("Whole review", width="medium")})

# --- trends per aspect ---
st.subheader(f"Aspects over time: {where}")
open_aspects = alerts["aspect"].dropna().tolist() if len(alerts) else []
ranked = table.sort_values("mentions", ascending=False)["aspect"].tolist()
default = list(dict.fromkeys(open_aspects + ranked))[:DEFAULT_TREND_ASPECTS]
shown = st.multiselect("Aspects", aspects, default=[a for a in default if a in aspects], key="aspect-trend-aspects")
if shown and len(trend):
    # One restaurant's alerts are marked on its lines (all restaurants' lines are not any one's).
    marks = alerts if chosen else alerts.iloc[:0]
    st.plotly_chart(aspect_views.trend_figure(trend, shown, marks, grain=grain), key="aspect-trend")
elif not shown:
    st.caption("Pick an aspect to draw its trend.")
else:
    st.caption("No dated review in this selection, so there is no trend to draw (reviews without a date count in "
               "the table and the sentences above).")

# --- open aspect alerts ---
st.subheader("Open aspect alerts" + (f" for {views.md(chosen)}" if chosen else ""))
if alerts.empty:
    st.write("None: no aspect has turned negative or surged in mentions (`tastebud monitor` looks every week).")
else:
    views.table(alerts[["period", "kind", "aspect", "restaurant", "message"]],
                column_config={"kind": "Kind", "aspect": "Aspect", "restaurant": "Restaurant",
                               "message": st.column_config.TextColumn("Alert", width="large")})

# --- every restaurant at a glance ---
if chosen is None and len(data["matrix"]):
    st.subheader("Negative share of each aspect's mentions by restaurant")
    st.caption(f"The busiest {aspect_views.MATRIX_RESTAURANTS} restaurants at most; pick one above to see its "
               "sentences.")
    views.table(aspect_views.matrix_table(data["matrix"], choices["restaurants"]))
