import pandas as pd
import streamlit as st

from dashboard import monitoring, reads, views
from dashboard.page_setup import setup_page

ctx = setup_page("Overview", "read")
# Seconds between refreshes of the background-jobs strip while a job runs.
JOBS_REFRESH_S = 3.0


def _active_jobs() -> pd.DataFrame:
    jobs = reads.recent_jobs(ctx.db, limit=10)
    return jobs[jobs["status"].isin(["queued", "running"])] if not jobs.empty else jobs


@st.fragment(run_every=JOBS_REFRESH_S if len(_active_jobs()) else None)
def jobs_strip() -> None:
    """Background jobs (e.g. the demo's fine-tune) with live progress; the page refreshes when one ends."""
    active = _active_jobs()
    for job in active.itertuples(index=False):
        st.progress(float(job.progress or 0.0), text=f"Background {job.kind} job {job.job_id}: {job.message or job.status}")
    if st.session_state.get("overview-active-jobs") and active.empty:
        st.session_state["overview-active-jobs"] = 0
        st.rerun()
    st.session_state["overview-active-jobs"] = len(active)


jobs_strip()

# --- for the product team: what changed ---
movers_grain = st.session_state.get("overview-movers-grain") or "week"
monitor = monitoring.overview(ctx.db, movers_grain)
source = monitor["source"]
if monitor["newest"] is None:
    st.info("The store has no dated reviews yet: import some (Data page or `tastebud import`).")
else:
    st.caption("Sentiment from " + (f"the champion's predictions ({views.md(source.model_id)})" if source.kind == "predictions"
                                     else "the current labels (no champion predictions yet)")
               + f"; newest review {monitor['newest']:%Y-%m-%d}.")
    week_col, month_col = st.columns(2)
    with week_col:
        monitoring.kpi_row(monitor["kpis"]["week"], "week")
    with month_col:
        monitoring.kpi_row(monitor["kpis"]["month"], "month")

    head, toggle = st.columns([4, 2])
    head.subheader("Biggest movers")
    toggle.segmented_control("Compare the latest complete", ["week", "month"], default="week",
                             key="overview-movers-grain")
    monitoring.movers_section(monitor["movers"], monitor["movers_period"], movers_grain)

counts = monitor["alert_counts"]
st.subheader(f"Open alerts ({sum(counts.values())})")
if counts:
    st.caption(", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in sorted(counts.items())) + ", newest first.")
monitoring.alerts_table(monitor["alerts"])

# --- for ML operations ---
st.divider()
st.subheader("Model operations")
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
