import pandas as pd
import streamlit as st

from dashboard import limits, monitoring, reads, views
from dashboard.page_setup import setup_page
from pipeline import jobs
from pipeline.loop import registry
from pipeline.train.config import TrainConfig
from store.errors import TastebudError

# Seconds between refreshes of the live job panel while a job runs.
LIVE_REFRESH_S = 2.0
# Seconds between refreshes of "Recent jobs" while nothing runs (a job may start from the CLI).
IDLE_REFRESH_S = 15.0
RETRAIN, TRAIN = "Retraining round (adds the new human labels, compares with the champion)", "Training run or sweep"

ctx = setup_page("Training", "train")
jobs.reap_dead_jobs(ctx.db)
monitoring.retrain_banner(ctx.db, ctx.actor)
defaults = TrainConfig()


def _start(kind: str, params: dict) -> None:
    try:
        job_id = jobs.start_job(ctx.db, kind, params, ctx.actor)
    except (TastebudError, ValueError) as exc:
        st.session_state["training-message"] = ("error", str(exc))
        return
    st.session_state["training-watch"] = job_id
    st.session_state["training-message"] = ("success", f"Started {kind} job {job_id}.")


def _act(action, success: str) -> None:
    try:
        action()
    except TastebudError as exc:
        st.session_state["training-message"] = ("error", str(exc))
    else:
        st.session_state["training-message"] = ("success", success)


views.show_message(st.session_state.pop("training-message", None))

form_col, side_col = st.columns([3, 2])
with form_col, st.form("train-form"):
    st.subheader("Train")
    mode = st.radio("What to run", [RETRAIN, TRAIN])
    base_model = limits.text_input("Base model (empty: the packaged MiniLM encoder)", value=defaults.base_model or "")
    c1, c2 = st.columns(2)
    learning_rate = c1.number_input("Learning rate", value=defaults.learning_rate, format="%.1e", step=1e-5, min_value=1e-7)
    sweep_lrs = limits.text_input("Sweep learning rates (comma-separated; training runs only)", value="", where=c2)
    c3, c4, c5 = st.columns(3)
    batch_size = c3.number_input("Batch size", value=defaults.batch_size, min_value=1, step=1)
    epochs = c4.number_input("Epochs", value=defaults.epochs, min_value=1, step=1)
    max_length = c5.number_input("Max length (tokens)", value=defaults.max_length, min_value=8, step=8)
    max_examples = st.number_input("Train on at most this many examples (0: all)", value=0, min_value=0, step=500)
    submitted = st.form_submit_button("Start retraining", type="primary")
if submitted:
    try:
        config = TrainConfig.from_dict({
            "base_model": base_model.strip() or None, "learning_rate": learning_rate, "batch_size": int(batch_size),
            "epochs": int(epochs), "max_length": int(max_length), "max_train_examples": int(max_examples) or None,
        })
        params = config.to_dict()
        grid = [float(x) for x in sweep_lrs.replace(" ", "").split(",") if x]
    except ValueError as exc:
        st.error(f"Bad training settings: {views.md(exc)}")
    else:
        if mode == TRAIN and grid:
            params["sweep"] = {"learning_rate": grid}
        _start("retrain" if mode == RETRAIN else "train", params)
        st.rerun()

with side_col:
    st.subheader("Score and flag")
    st.caption("Score the reviews a model has no prediction for yet (the champion by default; score a "
               "second model to compare them), then queue hard cases for labelers.")
    ready = reads.models(ctx.db)
    ready = ready[ready["status"] == "ready"]["model_id"].tolist() if not ready.empty else []
    score_model = st.selectbox("Model to score with", [None, *ready], key="score-model",
                               format_func=lambda m: "the champion" if m is None else m)
    st.button("Score new reviews", on_click=_start, args=("score", {"model_id": score_model}), key="start-score")
    st.button("Flag hard cases", on_click=_start, args=("flag", {}), key="start-flag")
    progress = reads.relabel_progress(ctx.db)
    st.caption(f"{progress['next_round_labels']:,} human labels are waiting for retraining round "
               f"{progress['next_round']} ({progress['human_labels']:,} human labels in all).")
    champion = reads.champion(ctx.db)
    st.subheader("Champion")
    st.text(champion["model_id"] if champion else "none yet")
    st.button("Roll back to the previous champion", disabled=champion is None, key="rollback",
              on_click=_act, args=(lambda: registry.rollback(ctx.db, ctx.actor), "Rolled back."))

recent = reads.recent_jobs(ctx.db)
active = recent[recent["status"].isin(["queued", "running"])]
choices = recent["job_id"].tolist()
# Which job to watch: the one just started here, else the one picked, else an active one (from the
# jobs table, so it survives reloads and restarts). A keyed selectbox ignores index= once drawn,
# so the choice is moved through its state before it is drawn.
watch = st.session_state.get("training-watch")
if watch not in choices:
    watch = st.session_state.get("training-job-select")
if watch not in choices:
    watch = active["job_id"].iloc[0] if len(active) else (choices[0] if choices else None)
if watch is None:
    st.info("No jobs yet.")
    st.stop()
st.session_state["training-job-select"] = watch
watched = st.selectbox("Job", choices, key="training-job-select",
                       on_change=lambda: st.session_state.update({"training-watch": st.session_state["training-job-select"]}))


@st.fragment(run_every=LIVE_REFRESH_S if len(active) else None)
def live_panel(job_id: str) -> None:
    panel = reads.job_panel(ctx.db, job_id)
    if panel is None:
        st.warning(f"Job {job_id} is gone.")
        return
    job = panel["job"]
    st.subheader(f"{job['kind']} job {job_id}: {job['status']}")
    st.progress(float(job["progress"] or 0.0), text=job["message"] or "")
    if job["status"] in ("queued", "running"):
        st.button("Cancel", key=f"cancel-{job_id}", on_click=_act,
                  args=(lambda: jobs.cancel_job(ctx.db, job_id, ctx.actor), f"Asked job {job_id} to stop."))
    elif job_id in active["job_id"].tolist():
        st.rerun()  # it just finished: redraw the whole page so the result and promotion buttons show
    if job["error"]:
        st.error(views.md(job["error"]))
    if not panel["epochs"].empty:
        st.plotly_chart(views.epoch_figure(panel["epochs"], title="Per-epoch metrics"), key=f"live-epochs-{job_id}")
        views.table(panel["epochs"])
    st.code(panel["log"] or "(no log output yet)", language=None)


live_panel(watched)

job = reads.job_panel(ctx.db, watched)["job"]
result = job.get("result") or {}
new_model = result.get("model_id") if job["status"] == "succeeded" and job["kind"] in ("train", "retrain") else None
if new_model:
    st.subheader("New model against the champion")
    if result.get("decision"):
        st.info(f"Retraining round {result.get('round_id')}: {views.md(result['decision'])}")
    models = reads.models(ctx.db)
    champion_id = champion["model_id"] if champion else None
    compared = models[models["model_id"].isin([new_model, champion_id])]
    columns = ["model_id", "name", "is_champion", "accuracy", "macro_f1", "f1_negative", "f1_neutral", "f1_positive", "ece"]
    views.table(compared[[c for c in columns if c in compared]])
    if new_model != champion_id:
        st.button(f"Promote {new_model}", type="primary", key="promote",
                  on_click=_act, args=(lambda: registry.promote(ctx.db, new_model, ctx.actor), f"Promoted {new_model}."))

if not pd.isna(job.get("finished_at")):
    st.caption(f"Job {watched} finished {pd.Timestamp(job['finished_at']):%Y-%m-%d %H:%M:%S}.")


@st.fragment(run_every=LIVE_REFRESH_S if len(active) else IDLE_REFRESH_S)
def recent_jobs_table() -> None:
    st.subheader("Recent jobs")
    st.dataframe(views.jobs_frame(reads.recent_jobs(ctx.db)), hide_index=True, width="stretch",
                 column_config=views.JOB_COLUMNS)


recent_jobs_table()
