import streamlit as st

from dashboard import forms, limits, model_views, monitoring, reads, views
from dashboard.page_setup import setup_page
from pipeline import jobs
from pipeline.loop import registry
from pipeline.aspects.train import ASPECT_DEFAULTS
from pipeline.train.config import TrainConfig
from pipeline.train.state import resumable_run
from store.errors import TastebudError

# Seconds between refreshes of the live job panel while a job runs.
LIVE_REFRESH_S = 2.0
# Seconds between refreshes of "Recent jobs" while nothing runs (a job may start from the CLI).
IDLE_REFRESH_S = 15.0
RETRAIN, TRAIN = "Retraining round (adds the new human labels, compares with the champion)", "Training run or sweep"
WATCH = "training-job-select"

ctx = setup_page("Training", "train")
monitoring.retrain_banner(ctx.db, ctx.actor)
defaults = TrainConfig()


def _start(kind: str, params: dict) -> None:
    try:
        job_id = jobs.start_job(ctx.db, kind, params, ctx.actor)
    except (TastebudError, ValueError) as exc:
        st.session_state["training-message"] = ("error", str(exc))
        return
    # Follow the new job: the selectbox is keyed, so it moves only through its session state.
    st.session_state["training-follow"] = job_id
    st.session_state["training-message"] = ("success", f"Started {kind} job {job_id}.")


def _act(action, success: str) -> None:
    try:
        action()
    except TastebudError as exc:
        st.session_state["training-message"] = ("error", str(exc))
    else:
        st.session_state["training-message"] = ("success", success)
        for key in ("promote-reason", "promote-confirm"):
            st.session_state.pop(key, None)


views.show_message(st.session_state.pop("training-message", None))

form_col, side_col = st.columns([3, 2])
with form_col, st.form("train-form"):
    st.subheader("Train")
    mode = st.radio("What to run", [RETRAIN, TRAIN])
    inputs = forms.train_config_inputs(defaults)
    sweep_lrs = limits.text_input("Sweep learning rates (comma-separated; training runs only)", value="")
    submitted = st.form_submit_button("Start retraining", type="primary")
if submitted:
    try:
        params = forms.config_from_inputs(inputs).to_dict()
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
    stack = reads.champion_stack(ctx.db)
    st.subheader("Champion")
    st.text(f"{champion['name']}  ({champion['model_id']})" if champion else "none yet")
    st.button("Roll back to the previous champion", disabled=len(stack) < 2, key="rollback",
              help=f"Returns to {stack[-2]}." if len(stack) >= 2 else "Nothing to roll back to: only one champion so far.",
              on_click=_act, args=(lambda: registry.rollback(ctx.db, ctx.actor, reason="rolled back from the Training page"),
                                   "Rolled back."))
    st.subheader("Aspect model")
    st.caption("Which aspects (food, service, price, place…) a review speaks of, and how: trained on the aspect "
               "labels (imported with `tastebud aspects import`, or corrected on the Hard cases page).")
    aspect_champion = reads.champion(ctx.db, "aspects")
    aspect_stack = reads.champion_stack(ctx.db, "aspects")
    st.text(f"{aspect_champion['name']}  ({aspect_champion['model_id']})" if aspect_champion else "none yet")
    with st.form("aspect-train-form"):
        a_left, a_right = st.columns(2)
        aspect_epochs = a_left.number_input("Epochs", min_value=1, max_value=50, value=ASPECT_DEFAULTS["epochs"])
        aspect_lr = a_right.number_input("Learning rate", min_value=1e-6, max_value=1e-2,
                                         value=ASPECT_DEFAULTS["learning_rate"], format="%.1e")
        aspect_promote = st.checkbox("Promote if it beats the aspect champion on the test split", value=True,
                                     help="A paired bootstrap on the test split must back the gain. The store's "
                                          "first aspect model is promoted regardless.")
        if st.form_submit_button("Train an aspect model"):
            _start("train_aspects", {"epochs": int(aspect_epochs), "learning_rate": float(aspect_lr),
                                     "promote_if_better": aspect_promote})
            st.rerun()
    st.button("Score aspects of new reviews", key="start-score-aspects", disabled=aspect_champion is None,
              on_click=_start, args=("score_aspects", {}),
              help=None if aspect_champion else "Train an aspect model first.")
    st.button("Roll back the aspect champion", disabled=len(aspect_stack) < 2, key="rollback-aspects",
              on_click=_act, args=(lambda: registry.rollback(ctx.db, ctx.actor, task="aspects",
                                                             reason="rolled back from the Training page"),
                                   "Rolled back the aspect champion."))

recent = reads.recent_jobs(ctx.db)
active = recent[recent["status"].isin(["queued", "running"])]
choices = recent["job_id"].tolist()
if not choices:
    st.info("No jobs yet.")
    st.stop()
# Which job to watch: a job just started here, else the current choice, else an active job, else the newest.
follow = st.session_state.pop("training-follow", None)
if follow in choices:
    st.session_state[WATCH] = follow
elif st.session_state.get(WATCH) not in choices:
    st.session_state[WATCH] = active["job_id"].iloc[0] if len(active) else choices[0]
watched = st.selectbox("Job", choices, key=WATCH)


def _resume(run_id: str) -> None:
    _start("train", {"resume": run_id})


@st.fragment(run_every=LIVE_REFRESH_S if len(active) else None)
def live_panel(job_id: str, was_active: bool) -> None:
    panel = reads.job_panel(ctx.db, job_id)
    if panel is None:
        st.warning(f"Job {job_id} is gone.")
        return
    job = panel["job"]
    if was_active and job["status"] not in ("queued", "running"):
        st.rerun()  # it just finished: redraw the whole page so the result and promotion buttons show
    st.subheader(f"{job['kind']} job {job_id}: {job['status']}")
    m1, m2, m3 = st.columns(3)
    m1.metric("Progress", model_views.progress_text(job["progress"]))
    m2.metric("Elapsed", model_views.format_duration(job["elapsed_s"]))
    m3.metric("Time left (estimate)", model_views.format_duration(job["eta_s"]))
    st.progress(float(job["progress"] or 0.0),
                text=f"{model_views.progress_text(job['progress'])} · {job['message'] or job['status']}")
    if job["status"] in ("queued", "running"):
        st.button("Cancel", key=f"cancel-{job_id}", on_click=_act,
                  args=(lambda: jobs.cancel_job(ctx.db, job_id, ctx.actor), f"Asked job {job_id} to stop."))
    elif job["status"] == "cancelled":
        st.info(f"Cancelled by {job['cancelled_by']}." if job["cancelled_by"] else "Cancelled (stopped by a signal).")
    elif job["status"] == "failed":
        st.error(views.md(job["error"] or "failed"))
    run_id = resumable_run(panel["trials"]) if job["status"] in ("cancelled", "failed") else None
    if run_id:
        st.button(f"Resume from the last checkpoint (run {run_id})", key=f"resume-{job_id}", on_click=_resume, args=(run_id,))
    swept = list(((job.get("params") or {}).get("sweep") or {}).keys())
    if swept or len(panel["trials"]) > 1:
        st.markdown("**Sweep trials** (the trial with the best validation macro-F1 is registered)")
        st.dataframe(model_views.trials_table(panel["trials"], swept), hide_index=True,
                     column_config={"Validation macro-F1": st.column_config.NumberColumn(format="%.4f")})
    left, right = st.columns(2)
    if not panel["losses"].empty:
        left.plotly_chart(model_views.loss_figure(panel["losses"]), key=f"live-loss-{job_id}")
    if not panel["epochs"].empty:
        right.plotly_chart(views.epoch_figure(panel["epochs"], title="Per-epoch metrics"), key=f"live-epochs-{job_id}")
    with st.expander("Log"):
        st.code(panel["log"] or "(no log output yet)", language=None)
    st.subheader("Recent jobs")
    st.dataframe(model_views.jobs_table(reads.recent_jobs(ctx.db)), hide_index=True)


live_panel(watched, watched in active["job_id"].tolist())

job = reads.job_panel(ctx.db, watched)["job"]
result = job.get("result") or {}
new_model = result.get("model_id") if job["status"] == "succeeded" and job["kind"] in ("train", "retrain") else None
if new_model:
    st.subheader("New model against the champion")
    if result.get("decision"):
        st.info(f"Retraining round {result.get('round_id')}: {views.md(result['decision'])}")
    models = reads.models(ctx.db).set_index("model_id")
    champion_id = champion["model_id"] if champion else None
    shown = list(dict.fromkeys(m for m in (new_model, champion_id) if m in models.index))
    st.dataframe(model_views.promotion_table(models.loc[shown].reset_index(), new_model), hide_index=True,
                 width="stretch", column_config=model_views.SCORE_COLUMNS)
    if new_model == champion_id:
        st.caption(f"{views.md(new_model)} is the champion.")
    else:
        verdict = model_views.challenger_verdict(models, new_model, champion_id)
        if verdict["lost"]:
            st.error(verdict["text"])
        elif verdict["text"]:
            st.warning(verdict["text"])
        reason = limits.text_input("Reason for promoting (kept in the audit log)", key="promote-reason") or ""
        confirmed = st.checkbox(f"I confirm that {new_model} should serve as the champion", key="promote-confirm")
        st.button(f"Promote {new_model}", type="primary", key="promote", disabled=not (reason.strip() and confirmed),
                  on_click=_act, args=(lambda: registry.promote(ctx.db, new_model, ctx.actor, reason=reason.strip()),
                                       f"Promoted {new_model}."))
