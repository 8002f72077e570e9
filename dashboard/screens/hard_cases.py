import pandas as pd
import streamlit as st

from dashboard import reads, views
from dashboard.page_setup import setup_page
from pipeline import relabel as relabeling
from store.constants import LABELS
from store.errors import TastebudError
from store.flags import FLAG_REASONS

# Flags fetched per rerun: the current item plus the upcoming ones shown below it.
QUEUE_WINDOW = 50
SHORTCUTS = {"negative": "1", "neutral": "2", "positive": "3"}

ctx = setup_page("Hard cases", "relabel")
skipped: set = st.session_state.setdefault("hard-cases-skipped", set())


def _run(action, success: str) -> None:
    # Button callbacks: they receive the ids shown when the button was drawn, so a queue that
    # changed meanwhile (another labeler) can never redirect a click to a different review.
    try:
        result = action()
    except TastebudError as exc:
        st.session_state["hard-cases-message"] = ("error", str(exc))
        return
    st.session_state["hard-cases-message"] = ("success", success if result is not None else "Nothing to undo.")


def _relabel(review_id: str, flag_id: int, label: str) -> None:
    _run(lambda: relabeling.relabel(ctx.db, ctx.actor, review_id, label, flag_id=flag_id), f"Labeled {label}.")


def _dismiss(flag_id: int) -> None:
    _run(lambda: relabeling.dismiss_flag(ctx.db, ctx.actor, flag_id), "Flag dismissed: the current label stands.")


def _undo() -> None:
    _run(lambda: relabeling.undo_last(ctx.db, ctx.actor), "Undid your last action.")


def _bulk(reasons: tuple[str, ...], label: str) -> None:
    review_ids = reads.open_flag_review_ids(ctx.db, reasons)
    _run(lambda: relabeling.bulk_relabel(ctx.db, ctx.actor, review_ids, label), f"Labeled {len(review_ids):,} reviews {label}.")
    st.session_state["bulk-confirm"] = False


reasons = st.multiselect("Reasons", FLAG_REASONS, key="hard-cases-reasons",
                         format_func=lambda r: r.replace("_", " "))
data = reads.flag_queue(ctx.db, tuple(reasons), QUEUE_WINDOW)
status = data["status"]
done = status["resolved"] + status["dismissed"]
total = done + status["open"]
st.progress(done / total if total else 0.0,
            text=f"{done:,} of {total:,} flags handled ({status['resolved']:,} relabeled, "
                 f"{status['dismissed']:,} dismissed) · {status['open']:,} open")

views.show_message(st.session_state.pop("hard-cases-message", None))

queue = data["queue"]
pending = queue[~queue["flag_id"].isin(skipped)]
if pending.empty:
    st.info("No open flags here." if queue.empty else "You skipped every flag in view; clear skips to see them again.")
    if skipped and st.button("Clear skips"):
        skipped.clear()
        st.rerun()
    st.button("Undo my last action", key="undo-empty", on_click=_undo, shortcut="u")
    st.stop()

item = pending.iloc[0]
st.subheader(f"Flag {item['flag_id']}: {item['reason'].replace('_', ' ')}")
info, probs = st.columns([3, 2])
with info:
    st.text(item["text"])  # plain text: a review can never inject markdown or HTML
    stars = int(item["stars"]) if pd.notna(item["stars"]) else "none"
    st.text(f"Stars: {stars}   ·   current label: {item['current_label']} "
            f"({item['current_label_source']})   ·   restaurant: {item['restaurant_name']}")
    st.text(f"Why flagged: {item['reason'].replace('_', ' ')} (priority {item['priority']:.2f})"
            + (f", term {item['term']!r}" if item["term"] else "") + views.flag_detail(item["detail"]))
with probs:
    if pd.notna(item["model_label"]):
        st.text(f"Model {item['model_id']} says {item['model_label']}")
        for label in LABELS:
            value = float(item[f"p_{label}"])
            st.progress(value, text=f"{label} {value:.0%}")

cols = st.columns(6)
for col, label in zip(cols, LABELS):
    col.button(label.capitalize(), key=f"label-{label}", shortcut=SHORTCUTS[label], type="primary",
               on_click=_relabel, args=(item["review_id"], int(item["flag_id"]), label), width="stretch")
cols[3].button("Skip", key="skip", shortcut="s", on_click=skipped.add, args=(item["flag_id"],), width="stretch")
cols[4].button("Dismiss", key="dismiss", shortcut="d", on_click=_dismiss, args=(int(item["flag_id"]),),
               width="stretch", help="The current label is right; close the flag.")
cols[5].button("Undo", key="undo", shortcut="u", on_click=_undo, width="stretch", help="Undo your last action.")
st.caption("Keys: 1 negative · 2 neutral · 3 positive · S skip · D dismiss · U undo")

with st.expander("Bulk relabel"):
    in_filter = sum(data["by_reason"][r] for r in (reasons or FLAG_REASONS))
    st.write(f"{in_filter:,} open flags match the reason filter.")
    bulk_label = st.radio("Give them all the label", LABELS, horizontal=True, key="bulk-label")
    confirm = st.checkbox(f"Yes, label all {in_filter:,} of them {bulk_label}", key="bulk-confirm")
    st.button("Relabel all", disabled=not confirm or in_filter == 0, key="bulk-go",
              on_click=_bulk, args=(tuple(reasons), bulk_label))

st.subheader("Up next")
st.dataframe(pending[["flag_id", "priority", "reason", "stars", "model_label", "current_label", "text"]].iloc[1:],
             hide_index=True, column_config={"text": st.column_config.TextColumn(width="large")})
