import re
from datetime import datetime

import streamlit as st

from dashboard import limits, reads, views
from dashboard.page_setup import setup_page
from pipeline.data.importer import ColumnMapping, import_reviews
from pipeline.jobs import runs_dir
from pipeline.loop import relabel as relabeling
from store.errors import TastebudError
from store.guidelines import MAX_GUIDELINES_CHARS

FORMATS = ["csv", "tsv", "jsonl", "json", "parquet"]
# What the guidelines editor starts from before anyone has written guidelines.
GUIDELINES_TEMPLATE = """# Labeling guidelines

Label what the review's text says about the visit, not the stars.

- **Negative**: the reviewer would not come back, or the main point is a complaint.
- **Neutral**: mixed or factual; praise and complaints weigh about the same.
- **Positive**: the reviewer liked it overall, even with a small complaint.

Sarcasm counts as what it means ("great, another 45-minute wait" is negative).
Add a comment when a case was hard to decide.
"""

ctx = setup_page("Data", "import")

st.subheader("Import reviews")
st.caption("The same rules as `tastebud import`: good rows go in, bad rows are kept with their row number and reason.")
upload = st.file_uploader("CSV, TSV, JSON Lines or Parquet", type=FORMATS, key="import-file")
with st.expander("Column names (leave empty to detect text/review, stars/rating, date, review_id, label...)"):
    c1, c2, c3, c4 = st.columns(4)
    mapping = ColumnMapping(
        text=limits.text_input("Text column", where=c1) or None,
        stars=limits.text_input("Stars column", where=c2) or None,
        label=limits.text_input("Label column", where=c3) or None,
        created_at=limits.text_input("Date column", where=c4) or None,
        review_id=limits.text_input("Review id column", where=c1) or None,
        restaurant_name=limits.text_input("Restaurant name column", where=c2) or None,
        neighborhood=limits.text_input("Neighborhood column", where=c3) or None,
    )
if upload is not None and st.button("Import", type="primary", key="import-go"):
    # Keep the upload beside the store so the import record's path stays meaningful.
    safe_name = re.sub(r"[^A-Za-z0-9._-]+", "_", upload.name)[-100:] or "upload"
    target = runs_dir(ctx.db) / "uploads" / f"{datetime.now():%Y%m%d-%H%M%S}-{safe_name}"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(upload.getvalue())
    try:
        with st.spinner("Importing..."):
            report = import_reviews(ctx.db, target, columns=mapping, source=safe_name, actor=ctx.actor)
    except TastebudError as exc:
        st.error(views.md(exc))
    else:
        st.session_state["import-report"] = report.to_dict()
report = st.session_state.get("import-report")
if report:
    st.success(f"Import {report['import_id']}: {report['accepted']:,} new, {report['updated']:,} updated, "
               f"{report['unchanged']:,} unchanged, {report['rejected']:,} rejected, {report['labels_added']:,} labels added.")
    if report.get("relabel_needed"):
        st.warning(f"{report['relabel_needed']:,} updated texts had human labels: retracted and flagged for "
                   "relabeling (Hard cases, reason text_changed).")
    if report["rejected_by_reason"]:
        st.dataframe({"Reason": list(report["rejected_by_reason"]), "Rows": list(report["rejected_by_reason"].values())},
                     hide_index=True)

st.subheader("Store")
data = reads.data_stats(ctx.db)
stats = data["stats"]
cols = st.columns(4)
cols[0].metric("Reviews", f"{stats['reviews']:,}")
cols[1].metric("Labeled", f"{stats['labeled']:,}")
cols[2].metric("Unlabeled", f"{stats['unlabeled']:,}")
cols[3].metric("Splits (train/val/test)", " / ".join(f"{stats['splits'][s]:,}" for s in ("train", "val", "test")))
left, right = st.columns(2)
left.markdown("**Current labels by class**")
left.dataframe({"Label": list(stats["labels"]), "Reviews": list(stats["labels"].values())}, hide_index=True)
right.markdown("**Current labels by source**")
right.dataframe({"Source": list(stats["label_sources"]), "Reviews": list(stats["label_sources"].values())}, hide_index=True)
if not data["volume"].empty:
    volume = data["volume"].pivot_table(index="month", columns="source", values="n", aggfunc="sum", fill_value=0)
    st.bar_chart(volume, x_label="month", y_label="reviews",
                 color=[views.GROUP_COLORS[i % len(views.GROUP_COLORS)] for i in range(volume.shape[1])])

st.subheader("Imports")
imports = data["imports"]
if imports.empty:
    st.caption("Nothing imported yet.")
else:
    views.table(imports)
    with_rejects = imports[imports["rejected"] > 0]["import_id"].tolist()
    if with_rejects:
        chosen = st.selectbox("Rejected rows of import", with_rejects, key="rejects-import")
        views.table(reads.import_rejects(ctx.db, int(chosen)))

st.subheader("Labeling guidelines")
st.caption("Markdown that labelers open from the Hard cases page. Each save keeps the previous versions.")
guide = reads.guidelines(ctx.db)
if guide:
    st.caption(f"Current: version {guide['version']} by {views.md(guide['author'])}, "
               f"{guide['created_at']:%Y-%m-%d %H:%M}.")
edit_tab, preview_tab = st.tabs(["Edit", "Preview"])
body = edit_tab.text_area("Guidelines (markdown)", value=guide["body"] if guide else GUIDELINES_TEMPLATE, height=320,
                          key="guidelines-text", max_chars=MAX_GUIDELINES_CHARS)
preview_tab.markdown(body)
if edit_tab.button("Save the guidelines", key="guidelines-save", type="primary"):
    try:
        version = relabeling.save_guidelines(ctx.db, ctx.actor, body)
    except TastebudError as exc:
        st.error(views.md(exc))
    else:
        st.success(f"Saved as version {version}.")
