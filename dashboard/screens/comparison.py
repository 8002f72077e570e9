import pandas as pd
import streamlit as st

from dashboard import limits, monitoring, reads, views
from dashboard.page_setup import setup_page
from store.constants import LABELS
from store.errors import TastebudError

# At most this many models side by side (confusion matrices get too small beyond it).
MAX_COMPARED = 4

ctx = setup_page("Model comparison", "read")
models = reads.models(ctx.db)
if models.empty:
    st.info("No models yet. Train one on the Training page, or register the baselines with `tastebud baselines`.")
    st.stop()

# Per-class precision and recall would push the table past the page; F1 per class stays.
metric_columns = ["accuracy", "macro_f1", *(f"f1_{label}" for label in LABELS)]
shown = ["name", "kind", "is_champion", "test_n", *metric_columns, "ece", "round", "created_at"]
st.subheader("Every model on the frozen test set")
views.table(models[[c for c in shown if c in models]],
            column_config={c: st.column_config.NumberColumn(views.column_name(c), format="%.3f") for c in metric_columns})

ranked = models.sort_values(["is_champion", "macro_f1"], ascending=[False, False], na_position="last")
chosen = st.multiselect(
    "Compare", models["model_id"].tolist(), default=ranked["model_id"].head(3).tolist(),
    max_selections=MAX_COMPARED, key="compare-models",
)
data = reads.comparison(ctx.db, tuple(chosen))
details = data["details"]

if chosen:
    st.subheader("Confusion matrices (test set)")
    for col, model_id in zip(st.columns(len(chosen)), chosen):
        matrix = views.evaluation_metrics(details[model_id]["evaluation"]).get("confusion_matrix")
        if matrix:
            col.plotly_chart(views.confusion_figure(matrix, model_id), key=f"cm-{model_id}")
        else:
            col.caption(f"{views.md(model_id)}: not evaluated yet")

    st.subheader("Training curves")
    curves = [(m, details[m]["epochs"]) for m in chosen if not details[m]["epochs"].empty]
    if not curves:
        st.caption("None of the chosen models has per-epoch metrics (baselines are not trained).")
    for col, (model_id, epochs) in zip(st.columns(max(len(curves), 1)), curves):
        col.plotly_chart(views.epoch_figure(epochs, title=model_id), key=f"curve-{model_id}")

    st.subheader("Slices")
    slices = pd.concat([details[m]["slices"].assign(model_id=m) for m in chosen], ignore_index=True)
    if slices.empty:
        st.caption("No slice metrics stored for these models.")
    else:
        table = slices.pivot_table(index=["slice_kind", "slice_value", "n"], columns="model_id", values="macro_f1")
        views.table(table.reset_index(), column_config={"slice_kind": "Slice by", "slice_value": "Slice", "n": "Test reviews"})
    monitoring.local_reference_section(ctx.db, chosen)

with st.expander("Try a review on the chosen models"), st.form("try-form"):
    text = limits.text_area("Review text", key="try-text", placeholder="Oh great, another 45-minute wait for lukewarm grits.")
    if st.form_submit_button("Predict") and text.strip() and chosen:
        rows = []
        for model_id in chosen:
            try:
                probs = limits.bounded_prediction(reads.predictor(ctx.db, model_id).predict_proba, [text])[0]
            except TastebudError as exc:
                st.error(f"{views.md(model_id)}: {views.md(exc)}")
                continue
            rows.append({"model_id": model_id, "label": LABELS[int(probs.argmax())],
                         **{label: float(p) for label, p in zip(LABELS, probs)}})
        if rows:
            views.table(pd.DataFrame(rows), column_config={**views.percent_columns(list(LABELS)), "label": "Predicted"})

st.subheader("Where two models disagree")
scored = data["scored"]["model_id"].tolist()
scored.sort(key=lambda m: m != data["champion_id"])  # the champion first
if len(scored) < 2:
    st.caption("Needs stored predictions of two models; score a second model from the Training page.")
else:
    a_col, b_col, scope_col = st.columns(3)
    model_a = a_col.selectbox("Model A", scored, index=0, key="disagree-a")
    model_b = b_col.selectbox("Model B", [m for m in scored if m != model_a], key="disagree-b")
    scope = scope_col.radio("Reviews", ["test split", "every scored review"], horizontal=True, key="disagree-scope")
    agreement, disagreements = reads.disagreement(ctx.db, model_a, model_b, "test" if scope == "test split" else None, 100)
    total = int(agreement.values.sum())
    agreed = int(sum(agreement.loc[label, label] for label in LABELS))
    st.caption(f"{views.md(model_a)} (rows) and {views.md(model_b)} (columns) agree on {agreed:,} of {total:,} reviews.")
    views.table(agreement.rename(index=lambda r: f"A: {r}", columns=lambda c: f"B: {c}"), hide_index=False)
    views.table(disagreements, texts=True)

st.subheader("Retraining rounds")
rounds = data["rounds"]
if rounds.empty:
    st.caption("No retraining rounds yet.")
else:
    round_columns = ["round_id", "status", "model_id", "promoted", "human_labels_train", "test_n", "champion_macro_f1",
                     "challenger_macro_f1", "delta_macro_f1", "label_efficiency", "started_at"]
    views.table(rounds[[c for c in round_columns if c in rounds]])
    ordered = rounds.sort_values("round_id")
    st.line_chart(ordered.rename(columns=views.column_name), x="Round", y=["Challenger macro-F1", "Champion macro-F1"],
                  x_label="retraining round", y_label="test macro-F1", color=[views.GROUP_COLORS[0], views.GROUP_COLORS[2]])
    st.caption("Label efficiency = test macro-F1 gained per human label added to training.")
    st.bar_chart(ordered, x="round_id", y="label_efficiency", x_label="retraining round",
                 y_label="macro-F1 gain per human label", color=views.GROUP_COLORS[0])

st.subheader("Promotions")
views.table(data["promotions"])
