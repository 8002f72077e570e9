import re
from datetime import datetime

import streamlit as st

from dashboard import limits, reads, views
from dashboard.page_setup import setup_page
from pipeline.data.importer import ColumnMapping, import_reviews
from pipeline.jobs import runs_dir
from store.errors import TastebudError

FORMATS = ["csv", "tsv", "jsonl", "json", "parquet"]

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
    if report["rejected_by_reason"]:
        st.dataframe({"reason": list(report["rejected_by_reason"]), "rows": list(report["rejected_by_reason"].values())},
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
left.dataframe({"label": list(stats["labels"]), "count": list(stats["labels"].values())}, hide_index=True)
right.markdown("**Current labels by source**")
right.dataframe({"source": list(stats["label_sources"]), "count": list(stats["label_sources"].values())}, hide_index=True)
if not data["volume"].empty:
    st.bar_chart(data["volume"], x="month", y="n", color="source")

st.subheader("Imports")
imports = data["imports"]
if imports.empty:
    st.caption("Nothing imported yet.")
else:
    st.dataframe(imports, hide_index=True)
    with_rejects = imports[imports["rejected"] > 0]["import_id"].tolist()
    if with_rejects:
        chosen = st.selectbox("Rejected rows of import", with_rejects, key="rejects-import")
        st.dataframe(reads.import_rejects(ctx.db, int(chosen)), hide_index=True)
