import re
from datetime import datetime

import streamlit as st

from dashboard import model_views, reads, views
from dashboard.page_setup import setup_page
from pipeline import jobs
from pipeline.loop import relabel as relabeling
from pipeline.data.export import (
    ASPECT_EXPORT_FORMATS,
    MAX_DOWNLOAD_ROWS,
    aspect_labels_bytes,
    aspect_labels_table,
    export_bytes,
    export_rows,
    export_table,
    export_to_file,
)
from pipeline.data.importer import ColumnMapping
from pipeline.data.preview import PREVIEW_LINES, dry_run
from store.constants import LABELS
from store.errors import TastebudError
from store.guidelines import MAX_GUIDELINES_CHARS
from store.trends import ReviewFilter

# What the guidelines editor starts from before anyone has written guidelines.
GUIDELINES_TEMPLATE = """# Labeling guidelines

Label what the review's text says about the visit, not the stars.

- **Negative**: the reviewer would not come back, or the main point is a complaint.
- **Neutral**: mixed or factual; praise and complaints weigh about the same.
- **Positive**: the reviewer liked it overall, even with a small complaint.

Sarcasm counts as what it means ("great, another 45-minute wait" is negative).
Add a comment when a case was hard to decide.
"""


FORMATS = ["csv", "tsv", "jsonl", "json", "parquet"]
AUTO = "(auto-detect)"
FIELDS = {"text": "Review text", "stars": "Stars (1-5)", "label": "Label", "created_at": "Date",
          "review_id": "Review id", "restaurant_id": "Restaurant id", "restaurant_name": "Restaurant name",
          "neighborhood": "Neighborhood"}

ctx = setup_page("Data", "import")


@st.cache_data(max_entries=32, show_spinner=False)
def _dry_run(path: str, mapping: ColumnMapping, head_only: bool):
    return dry_run(path, columns=mapping, head_only=head_only)


def _save_upload(upload) -> str:
    """Keep the upload beside the store (the import job reads it there, and the import record names it)."""
    saved = st.session_state.get("import-upload")
    if saved and saved["id"] == upload.file_id:
        return saved["path"]
    safe_name = re.sub(r"[^A-Za-z0-9._-]+", "_", upload.name)[-100:] or "upload"
    target = jobs.runs_dir(ctx.db) / "uploads" / f"{datetime.now():%Y%m%d-%H%M%S}-{safe_name}"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(upload.getvalue())
    st.session_state["import-upload"] = {"id": upload.file_id, "path": str(target), "name": safe_name}
    st.session_state.pop("import-dry-run", None)
    for field in FIELDS:  # a new file: the mapping widgets start again from what is detected in it
        st.session_state.pop(f"map-{field}", None)
    return str(target)


def _start_import(path: str, name: str, mapping: ColumnMapping, score_after: bool) -> None:
    columns = {k: v for k, v in vars(mapping).items() if v is not None}
    try:
        job_id = jobs.start_job(ctx.db, "import", {"path": path, "source": name, "columns": columns,
                                                   "score_after": score_after}, ctx.actor)
    except TastebudError as exc:
        st.session_state["import-message"] = str(exc)
        return
    st.session_state["import-job"] = job_id


st.subheader("Import reviews")
st.caption("The same rules as `tastebud import`: good rows go in, bad rows are kept with their row number and reason. "
           "The import runs as a background job; this page stays usable meanwhile.")
upload = st.file_uploader("CSV, TSV, JSON Lines or Parquet", type=FORMATS, key="import-file")
if upload is not None:
    path = _save_upload(upload)
    name = st.session_state["import-upload"]["name"]
    try:
        detected = _dry_run(path, ColumnMapping(), True)
    except TastebudError as exc:
        st.error(views.md(exc))
        detected = None
    if detected is not None:
        st.markdown("**Column mapping** (detected from the file; change any field)")
        options = [AUTO, *detected.file_columns]
        cols = st.columns(4)
        chosen = {}
        for i, (field, title) in enumerate(FIELDS.items()):
            key = f"map-{field}"
            if st.session_state.get(key) not in options:
                st.session_state[key] = detected.mapping[field] or AUTO
            chosen[field] = cols[i % 4].selectbox(title, options, key=key)
        mapping = ColumnMapping(**{f: (None if v == AUTO else v) for f, v in chosen.items()})
        try:
            preview = _dry_run(path, mapping, True)
        except TastebudError as exc:
            st.error(views.md(exc))
            preview = None
        if preview is not None:
            source = {"import": "the label column", "stars": "stars (1-2 negative, 3 neutral, 4-5 positive)",
                      None: "nowhere (no label or stars column): reviews stay unlabeled"}[preview.label_source]
            st.caption(f"Labels come from {source}. First rows as they would be stored "
                       f"(from the first {PREVIEW_LINES} lines):")
            st.dataframe(preview.sample, hide_index=True, width="stretch",
                         column_config={"text": st.column_config.TextColumn("Review text", width="large")})
            if st.button("Dry run: check every row", key="import-dry-run-go"):
                with st.spinner("Checking every row..."):
                    try:
                        st.session_state["import-dry-run"] = (path, mapping, _dry_run(path, mapping, False))
                    except TastebudError as exc:
                        st.error(views.md(exc))
            checked = st.session_state.get("import-dry-run")
            if checked and checked[0] == path and checked[1] == mapping:
                result = checked[2]
                st.info(f"Dry run: {result.accepted:,} of {result.rows:,} rows would be accepted, "
                        f"{result.rejected:,} rejected. Nothing was written.")
                if result.rejected_by_reason:
                    st.dataframe(views.counts_frame(result.rejected_by_reason, "reason").rename(
                        columns={"reason": "Reason", "count": "Rows"}), hide_index=True)
                    st.dataframe(result.first_rejects.rename(columns={
                        "row_number": "Row", "reason": "Reason", "detail": "Detail"}), hide_index=True)
            score_after = st.checkbox("Score and flag the new reviews afterwards (with the champion)", value=True,
                                      key="import-score-after")
            st.button("Import", type="primary", key="import-go", on_click=_start_import,
                      args=(path, name, mapping, score_after))

message = st.session_state.pop("import-message", None)
if message:
    st.error(views.md(message))


@st.fragment(run_every=2.0 if st.session_state.get("import-job-active") else None)
def import_status(job_id: str) -> None:
    job = jobs.get_job(ctx.db, job_id)
    if job is None:
        return
    active = job["status"] in ("queued", "running")
    if active != st.session_state.get("import-job-active", False):
        st.session_state["import-job-active"] = active
        st.rerun()  # start or stop the periodic refresh
    st.progress(float(job["progress"] or 0), text=f"Import job {job_id}: {job['status']}, "
                f"{model_views.progress_text(job['progress'])} · {job['message'] or ''}")
    if job["status"] == "failed":
        st.error(views.md(job["error"]))
    elif job["status"] == "cancelled":
        st.info(f"Cancelled by {job['cancelled_by']}." if job["cancelled_by"] else "Cancelled.")
    elif job["status"] == "succeeded":
        report = job["result"]
        st.success(f"Import {report['import_id']}: {report['accepted']:,} new, {report['updated']:,} updated, "
                   f"{report['unchanged']:,} unchanged, {report['rejected']:,} rejected, "
                   f"{report['labels_added']:,} labels added; {report['after']}.")
        if report.get("warning"):
            st.warning(views.md(f"The reviews are in the store but were not scored: {report['warning']}"))
        if report["rejected_by_reason"]:
            st.dataframe(views.counts_frame(report["rejected_by_reason"], "reason").rename(
                columns={"reason": "Reason", "count": "Rows"}), hide_index=True)


if st.session_state.get("import-job"):
    import_status(st.session_state["import-job"])

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
    st.bar_chart(data["volume"], x="month", y="n", color="source", x_label="month", y_label="reviews")

st.subheader("Export reviews")
st.caption("Reviews with their current label (and who gave it) and the champion's prediction and probabilities.")
choices = reads.trend_choices(ctx.db)
f1, f2, f3 = st.columns(3)
restaurants = f1.multiselect("Restaurants (all when empty)", choices["restaurants"], key="export-restaurants")
neighborhoods = f2.multiselect("Neighborhoods (all when empty)", choices["neighborhoods"], key="export-neighborhoods")
labels = f3.multiselect("Current labels (all when empty)", list(LABELS), key="export-labels")
g1, g2 = st.columns(2)
dates = g1.date_input("Review dates", value=(choices["first"], choices["last"]) if choices["first"] else (),
                      key="export-dates")
fmt = g2.radio("Format", ["csv", "parquet"], horizontal=True, key="export-format",
               format_func=lambda f: {"csv": "CSV", "parquet": "Parquet"}[f])
start, end = (tuple(dates) + (None, None))[:2] if isinstance(dates, (tuple, list)) else (dates, None)
flt = ReviewFilter(start=start, end=end, restaurants=tuple(restaurants), neighborhoods=tuple(neighborhoods))
n_rows = export_rows(ctx.db, flt=flt, labels=tuple(labels))
st.caption(f"{n_rows:,} reviews match.")
if n_rows > MAX_DOWNLOAD_ROWS:
    if st.button(f"Write the export beside the store (over {MAX_DOWNLOAD_ROWS:,} rows)", key="export-file"):
        with st.spinner("Writing the export..."):
            target, written = export_to_file(ctx.db, fmt, flt=flt, labels=tuple(labels))
        st.success(f"Wrote {written:,} reviews to {views.md(target)}")
elif n_rows and st.button("Prepare the download", key="export-prepare"):
    table, model_id = export_table(ctx.db, flt=flt, labels=tuple(labels))
    st.session_state["export-ready"] = ((flt, tuple(labels), fmt), export_bytes(table, fmt), table.num_rows, model_id)
ready = st.session_state.get("export-ready")
if ready and ready[0] == (flt, tuple(labels), fmt):  # a download never carries an older filter's rows
    _, payload, rows, model_id = ready
    ready_fmt = fmt
    st.download_button(f"Download {rows:,} reviews ({ready_fmt.upper()})", payload, key="export-download",
                       file_name=f"tastebud-reviews.{ready_fmt}",
                       mime="text/csv" if ready_fmt == "csv" else "application/vnd.apache.parquet")
    st.caption(f"Predictions from {views.md(model_id)} (the champion)." if model_id else "No champion yet: no predictions.")

st.subheader("Export aspect labels")
if not data["aspect_annotated"]:
    st.caption("No aspect labels yet: `tastebud aspects import FILE` imports them (CSV, JSON Lines or SemEval XML).")
else:
    st.caption(f"The current aspect labels of {data['aspect_annotated']:,} reviews, one row per review and aspect, "
               "with the review's text, labeler and split: `tastebud aspects import` reads the file back, into "
               "this store or another.")
    a1, a2 = st.columns(2)
    aspect_split = a1.selectbox("Split", ["all", "train", "val", "test"], key="aspect-export-split")
    aspect_fmt = a2.radio("Format", list(ASPECT_EXPORT_FORMATS), horizontal=True, key="aspect-export-format",
                          format_func=lambda f: {"csv": "CSV", "jsonl": "JSON Lines"}[f])
    chosen = (aspect_split, aspect_fmt)
    if st.button("Prepare the aspect labels", key="aspect-export-prepare"):
        labels_frame = aspect_labels_table(ctx.db, split=None if aspect_split == "all" else aspect_split)
        st.session_state["aspect-export-ready"] = (chosen, aspect_labels_bytes(labels_frame, aspect_fmt),
                                                   len(labels_frame), labels_frame["review_id"].nunique())
    aspect_ready = st.session_state.get("aspect-export-ready")
    if aspect_ready and aspect_ready[0] == chosen:  # never an older choice's rows
        _, payload, rows, reviews = aspect_ready
        if rows:
            st.download_button(f"Download {rows:,} aspect labels of {reviews:,} reviews", payload,
                               key="aspect-export-download", file_name=f"tastebud-aspect-labels.{aspect_fmt}",
                               mime="text/csv" if aspect_fmt == "csv" else "application/x-ndjson")
        else:
            st.caption(f"No aspect labels in the {aspect_split} split.")

st.subheader("Imports")
imports = data["imports"]
if imports.empty:
    st.caption("Nothing imported yet.")
else:
    views.table(imports)
    with_rejects = imports[imports["rejected"] > 0]["import_id"].tolist()
    if with_rejects:
        chosen_import = st.selectbox("Rejected rows of import", with_rejects, key="rejects-import")
        st.dataframe(reads.import_rejects(ctx.db, int(chosen_import)), hide_index=True)

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
