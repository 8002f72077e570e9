import time

import pandas as pd
import streamlit as st

from dashboard import aspect_views, limits, model_views, monitoring, reads, views
from dashboard.page_setup import setup_page
from pipeline import jobs
from store.constants import LABELS
from store.errors import TastebudError

# At most this many models side by side (confusion matrices get too small beyond it).
MAX_COMPARED = 4

ctx = setup_page("Model comparison", "read")
models = reads.models(ctx.db)
if models.empty:
    st.info("No review-sentiment models yet. Train one on the Training page, or register the baselines with "
            "`tastebud baselines`.")
    aspect_views.aspect_models_section(ctx.db)  # aspect models have their own champion and test set
    st.stop()
names = model_views.display_names(models)

st.subheader("Every model on the frozen test set")
summary = pd.DataFrame({
    "Model": [names[m] for m in models["model_id"]],
    "Champion": ["★" if c else "" for c in models["is_champion"]],
    "Kind": models["kind"],
    "Round": models["round"],
    "Test reviews (n)": models["test_n"],
    "Accuracy": models["accuracy"],
    "Macro-F1": models["macro_f1"],
    "Validation macro-F1": models["val_macro_f1"],
    "Calibration error (ECE)": models["ece"],
})
st.dataframe(summary, hide_index=True, width="stretch", column_config={
    c: st.column_config.NumberColumn(c, format="%.3f") for c in ("Accuracy", "Macro-F1", "Validation macro-F1", "Calibration error (ECE)")})

ranked = models.sort_values(["is_champion", "macro_f1"], ascending=[False, False], na_position="last")
chosen = st.multiselect(
    "Compare", models["model_id"].tolist(), default=ranked["model_id"].head(3).tolist(),
    max_selections=MAX_COMPARED, key="compare-models", format_func=lambda m: names.get(m, m),
)
data = reads.comparison(ctx.db, tuple(chosen))
details = data["details"]
by_id = models.set_index("model_id")

if chosen:
    # Same-test-snapshot check: a model evaluated before the test split changed is not comparable.
    current = reads.test_snapshot(ctx.db)
    stale = [m for m in chosen if not pd.isna(by_id.loc[m, "macro_f1"])
             and by_id.loc[m, "test_snapshot"] != current["test_snapshot"]]
    if stale:
        listed = ", ".join(f"{names[m]} (n = {int(by_id.loc[m, 'test_n']):,})" for m in stale)
        st.warning(views.md(f"The test set has changed since some models were evaluated (new imports or relabels): it "
                            f"now holds {current['n']:,} labeled reviews. Evaluated on an older test set: {listed}. "
                            "Their scores are not comparable with the others until re-evaluated."))
        if ctx.actor.can("train"):
            st.button("Re-evaluate them on the current test set", key="reevaluate", on_click=lambda: st.session_state.update(
                {"compare-job": jobs.start_job(ctx.db, "evaluate", {"model_ids": stale}, ctx.actor)}))
    if st.session_state.get("compare-job"):
        job = jobs.get_job(ctx.db, st.session_state["compare-job"])
        st.caption(f"Re-evaluation job {job['job_id']}: {job['status']}, {model_views.progress_text(job['progress'])}"
                   " (reload to see the new scores)." if job else "")

    st.subheader("Per-class precision, recall and F1 (test set)")
    st.plotly_chart(model_views.per_class_figure(by_id.loc[chosen].reset_index(), names), key="per-class")

    st.subheader("Confusion matrices (test set)")
    st.caption("Each cell: the number of test reviews, and its share of the true class (row).")
    for col, model_id in zip(st.columns(len(chosen)), chosen):
        matrix = views.evaluation_metrics(details[model_id]["evaluation"]).get("confusion_matrix")
        if matrix:
            col.plotly_chart(model_views.confusion_figure(matrix, names[model_id]), key=f"cm-{model_id}")
        else:
            col.caption(f"{views.md(names[model_id])}: not evaluated yet")

    st.subheader("Calibration and precision-recall (stored test predictions)")
    curves = {m: reads.model_curves(ctx.db, m) for m in chosen}
    missing = [names[m] for m, c in curves.items() if c is None]
    if missing:
        st.caption(views.md(f"No stored test-split predictions for {', '.join(missing)}: score the model on the Training "
                            "page to draw its curves."))
    drawn = {m: c for m, c in curves.items() if c is not None}
    if drawn:
        st.plotly_chart(model_views.reliability_figure({m: c["reliability"] for m, c in drawn.items()}, names),
                        key="reliability")
        for col, (model_id, c) in zip(st.columns(len(drawn)), drawn.items()):
            col.plotly_chart(model_views.pr_figure(c["pr"], model_id, f"{names[model_id]}: precision-recall by class"),
                             key=f"pr-{model_id}")

    st.subheader("Training curves")
    epoch_curves = [(m, details[m]["epochs"]) for m in chosen if not details[m]["epochs"].empty]
    if not epoch_curves:
        st.caption("None of the chosen models has per-epoch metrics (baselines are not trained).")
    for col, (model_id, epochs) in zip(st.columns(max(len(epoch_curves), 1)), epoch_curves):
        col.plotly_chart(views.epoch_figure(epochs, title=names[model_id]), key=f"curve-{model_id}")

    st.subheader("Slices")
    slices = pd.concat([details[m]["slices"].assign(model_id=m) for m in chosen], ignore_index=True)
    if slices.empty:
        st.caption("No slice metrics stored for these models.")
    else:
        st.caption(f"Macro-F1 per slice with its bootstrap 95% interval. Slices under {model_views.MIN_SLICE_N} "
                   "test reviews are greyed out: too small to say anything.")
        show_small = st.toggle("Show small slices", value=False, key="compare-small-slices")
        table = model_views.slices_table(slices, names)
        if not show_small:
            table = table[table["Test reviews (n)"] >= model_views.MIN_SLICE_N]
        st.dataframe(model_views.grey_small_slices(table), hide_index=True, width="stretch")
    monitoring.local_reference_section(ctx.db, chosen)

with st.expander("Try a review on the chosen models"), st.form("try-form"):
    text = limits.text_area("Review text", key="try-text", placeholder="Oh great, another 45-minute wait for lukewarm grits.")
    if st.form_submit_button("Predict") and text.strip() and chosen:
        rows = []
        started = time.perf_counter()
        with st.spinner("Predicting..."):
            for model_id in chosen:
                try:
                    probs = limits.bounded_prediction(reads.predictor(ctx.db, model_id).predict_proba, [text])[0]
                except TastebudError as exc:
                    st.error(f"{views.md(names[model_id])}: {views.md(exc)}")
                    continue
                rows.append({"Model": names[model_id], "model_id": model_id, "label": LABELS[int(probs.argmax())],
                             **{label: float(p) for label, p in zip(LABELS, probs)}})
        if rows:
            st.dataframe(pd.DataFrame(rows), hide_index=True, column_config={
                "model_id": "Model id", "label": "Predicted label", **views.percent_columns(list(LABELS))})
            st.caption(f"Answered in {time.perf_counter() - started:.2f} s (models stay loaded between requests).")

st.subheader("Where two models disagree")
scored = data["scored"]["model_id"].tolist()
scored.sort(key=lambda m: m != data["champion_id"])  # the champion first
if len(scored) < 2:
    st.caption("Needs stored predictions of two models; score a second model from the Training page.")
else:
    a_col, b_col, scope_col = st.columns(3)
    model_a = a_col.selectbox("Model A", scored, index=0, key="disagree-a", format_func=lambda m: names.get(m, m))
    model_b = b_col.selectbox("Model B", [m for m in scored if m != model_a], key="disagree-b",
                              format_func=lambda m: names.get(m, m))
    scope = scope_col.radio("Reviews", ["test split", "every scored review"], horizontal=True, key="disagree-scope")
    agreement, disagreements = reads.disagreement(ctx.db, model_a, model_b, "test" if scope == "test split" else None, 100)
    total = int(agreement.values.sum())
    agreed = int(sum(agreement.loc[label, label] for label in LABELS))
    st.caption(f"{views.md(names.get(model_a, model_a))} (rows) and {views.md(names.get(model_b, model_b))} (columns) "
               f"agree on {agreed:,} of {total:,} reviews.")
    st.dataframe(agreement.rename_axis(index=f"{names.get(model_a, model_a)} says", columns=f"{names.get(model_b, model_b)} says"))
    st.dataframe(disagreements, hide_index=True, width="stretch", column_order=(
        "text", "stars", "current_label", "label_a", "confidence_a", "label_b", "confidence_b", "review_id"),
        column_config={
            "text": st.column_config.TextColumn("Review text", width="large"),
            "stars": st.column_config.NumberColumn("Stars", format="%d ★"),
            "current_label": "Current label",
            "label_a": f"{names.get(model_a, model_a)} says", "confidence_a": st.column_config.NumberColumn(
                "its confidence", format="percent"),
            "label_b": f"{names.get(model_b, model_b)} says", "confidence_b": st.column_config.NumberColumn(
                "its confidence ", format="percent"),
            "review_id": "Review id"})

st.subheader("Retraining rounds")
rounds = data["rounds"]
if rounds.empty:
    st.caption("No retraining rounds yet.")
else:
    left, right = st.columns(2)
    left.plotly_chart(model_views.rounds_figure(rounds), key="rounds-f1")
    right.plotly_chart(model_views.efficiency_figure(rounds), key="rounds-efficiency")
    st.caption("Label efficiency = test macro-F1 gained per human label added to training.")
    st.dataframe(model_views.rounds_table(rounds), hide_index=True, width="stretch")

st.subheader("Promotions")
promotions = data["promotions"]
st.dataframe(promotions, hide_index=True, width="stretch",
             column_order=("created_at", "action", "model_id", "previous_model_id", "actor", "reason"),
             column_config={"created_at": st.column_config.DatetimeColumn("When", format="YYYY-MM-DD HH:mm"),
                            "action": "Action", "model_id": "Champion after", "previous_model_id": "Champion before",
                            "actor": "By", "reason": st.column_config.TextColumn("Reason", width="large")})

# --- the other task: aspect models (detection and polarity per aspect) ---
aspect_views.aspect_models_section(ctx.db)
