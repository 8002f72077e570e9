import pandas as pd
import streamlit as st

from dashboard import reads, views
from dashboard.page_setup import setup_page

ctx = setup_page("Overview", "read")
data = reads.overview(ctx.db)

cols = st.columns(5)
cols[0].metric("Reviews", f"{data['reviews']:,}")
cols[1].metric("Labeled", f"{data['labeled']:,}")
cols[2].metric("Human labels", f"{data['human_label_rows']:,}")
cols[3].metric("Predictions", f"{int(data['predictions']['n'].sum()):,}")
cols[4].metric("Open flags", f"{sum(data['open_flags'].values()):,}")

left, right = st.columns(2)
with left:
    st.subheader("Champion model")
    if data["champion"] is None:
        st.info("No champion yet: train a model and promote it on the Training page (or `tastebud promote`).")
    else:
        views.model_summary(data["champion"], data["champion_eval"])
    st.subheader("Last scoring")
    if data["last_scored_at"] is None:
        st.write("Nothing scored yet.")
    else:
        st.write(f"{pd.Timestamp(data['last_scored_at']):%Y-%m-%d %H:%M}")
        views.table(data["predictions"], column_config={"n": "Predictions"})
with right:
    st.subheader("Labels by source")
    views.table(views.counts_frame(data["labels_by_source"], "source"), column_config={"count": "Reviews"})
    st.subheader("Open flags by reason")
    if data["open_flags"]:
        views.table(views.counts_frame(data["open_flags"], "reason"), column_config={"count": "Open flags"})
    else:
        st.write("No open flags.")

st.subheader("Recent jobs")
if data["jobs"].empty:
    st.write("No jobs have run yet.")
else:
    st.dataframe(views.jobs_frame(data["jobs"]), hide_index=True, width="stretch", column_config=views.JOB_COLUMNS)
