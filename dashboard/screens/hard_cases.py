import hashlib
from functools import partial

import pandas as pd
import streamlit as st

from dashboard import limits, reads, views
from dashboard.page_setup import setup_page
from pipeline.loop import relabel as relabeling
from pipeline.models.attribution import WordAttribution
from store.constants import LABELS
from store.errors import TastebudError
from store.flags import FLAG_REASONS, QueueFilter
from store.aspects import ASPECT_LABEL_VALUES
from store.relabeling import MAX_COMMENT_CHARS, aspect_choices

# Flags fetched per rerun: the current item plus the upcoming ones shown below it.
QUEUE_WINDOW = 50
# Upcoming reviews whose word highlights are computed ahead, while the labeler reads the current one.
PREFETCH = 3
# Seconds between checks for the current review's word highlights while they are computed.
HIGHLIGHT_POLL_S = 1.0
RECENT_LABELS = 10
SHORTCUTS = {"negative": "1", "neutral": "2", "positive": "3"}

ctx = setup_page("Hard cases", "relabel")
skipped: set = st.session_state.setdefault("hard-cases-skipped", set())
# Labels given but not yet written: (review_id, flag_id, label, comment), oldest first (see _relabel).
pending_writes: list = st.session_state.setdefault("hard-cases-pending", [])
if "hard-cases-restore-comment" in st.session_state:
    st.session_state["relabel-comment"] = st.session_state.pop("hard-cases-restore-comment")


def _run(action, success) -> None:
    # Button callbacks: they receive the ids shown when the button was drawn, so a queue that
    # changed meanwhile (another labeler) can never redirect a click to a different review.
    try:
        result = action()
    except TastebudError as exc:
        st.session_state["hard-cases-message"] = ("error", str(exc))
        return
    text = success(result) if callable(success) else success
    st.session_state["hard-cases-message"] = ("success", text if result is not None else "Nothing to undo.")


def _relabel(review_id: str, flag_id: int, label: str) -> None:
    # Queued, not written: the page draws the next review first and writes right after it (the labeler's
    # key press must not wait for the store). Several quick presses queue several labels, written in order.
    if any(queued[1] == flag_id for queued in pending_writes):
        return  # a second press on a review already queued (the page had not redrawn yet)
    pending_writes.append((review_id, flag_id, label, st.session_state.get("relabel-comment") or None))
    st.session_state["relabel-comment"] = ""


def _write_pending() -> None:
    """Write the queued labels, oldest first; the last outcome becomes the page's message.

    Each label leaves the queue before its write, and nothing between the two can stop the script, so a
    rerun that interrupts this page never writes a label twice; one it interrupts before the write finds
    the label still queued and writes it. Every other action writes the queue first, so undo never
    overtakes a label the labeler already gave.
    """
    while pending_writes:
        review_id, flag_id, label, comment = pending_writes.pop(0)
        _run(partial(relabeling.relabel, ctx.db, ctx.actor, review_id, label, flag_id=flag_id, comment=comment),
             f"Labeled {label}." + (" Comment saved." if comment else ""))
        if comment and st.session_state["hard-cases-message"][0] == "error":
            st.session_state["hard-cases-restore-comment"] = comment  # given back on the next run


def _write_pending_and_redraw() -> None:
    if pending_writes:
        _write_pending()
        st.rerun()  # counts, recent labels and the queue as the store now has them


def _dismiss(flag_id: int) -> None:
    _write_pending()
    _run(lambda: relabeling.dismiss_flag(ctx.db, ctx.actor, flag_id), "Flag dismissed: the current label stands.")


def _undo() -> None:
    _write_pending()
    _run(lambda: relabeling.undo_last(ctx.db, ctx.actor), "Undid your last action.")


def _undo_action(action_id: int) -> None:
    _write_pending()
    _run(lambda: relabeling.undo_action(ctx.db, ctx.actor, action_id),
         lambda r: f"Undid it: {r['retracted_labels']:,} label(s) taken back, {r['reopened_flags']:,} flag(s) reopened.")
    st.session_state.pop("hard-cases-batch", None)


def _bulk(review_ids: tuple[str, ...], label: str, confirm_key: str) -> None:
    _write_pending()

    def run():
        result = relabeling.bulk_relabel(ctx.db, ctx.actor, list(review_ids), label)
        st.session_state["hard-cases-batch"] = (result["action_id"], result["relabeled"], label)
        return result

    _run(run, lambda r: f"Labeled {r['relabeled']:,} reviews {label}.")
    st.session_state[confirm_key] = False


def _bulk_matching(flt: QueueFilter, label: str) -> None:
    _bulk(tuple(reads.matching_review_ids(ctx.db, flt)), label, "bulk-confirm")


def _aspect_key(review_id: str, aspect: str, version: str) -> str:
    # Per review, so the next review's choices start from its own labels; per version of its labels, so
    # an undo (or another labeler's save) starts them again from what the store now holds.
    return f"aspect-{review_id}-{aspect}-{version}"


def _labels_version(labels: dict) -> str:
    return hashlib.sha1(repr(sorted(labels.items())).encode()).hexdigest()[:12]


def _saved_message(result: dict) -> str:
    changed, confirmed = len(result["changed"]), result["written"] - len(result["changed"])
    if not result["written"]:
        return "Aspects confirmed: nothing changed."
    parts = ([f"{changed:,} changed"] if changed else []) + ([f"{confirmed:,} confirmed"] if confirmed > 0 else [])
    return f"Saved the aspects: {', '.join(parts)} (U undoes)."


def _save_aspects(review_id: str, aspects: tuple[str, ...], version: str) -> None:
    _write_pending()
    chosen = {aspect: st.session_state[_aspect_key(review_id, aspect, version)] for aspect in aspects}
    _run(lambda: relabeling.relabel_aspects(ctx.db, ctx.actor, review_id, chosen), _saved_message)


def _aspects_panel(item) -> None:
    """The aspect model's reading of the review (evidence highlighted) and a correction per aspect."""
    review_id = item["review_id"]
    view = reads.review_aspects(ctx.db, review_id)
    predictions = view["predictions"]
    heard = predictions[predictions["polarity"] != "absent"]
    summary = ", ".join(f"{a} {p}" for a, p in zip(heard["aspect"], heard["polarity"]))
    with st.expander("Aspects" + (f": the aspect model hears {views.md(summary)}" if summary else ""),
                     expanded=item["reason"] == "aspect_disagreement"):
        if view["model_id"] is None:
            st.caption("No aspect model yet (a data scientist trains one on the Training page); "
                       "your aspect labels train the first one.")
        elif predictions.empty:
            st.caption(f"The aspect model {views.md(view['model_id'])} has not scored this review yet.")
        else:
            st.html(views.aspect_evidence_html(predictions))
            st.caption(f"From the aspect model {views.md(view['model_id'])}. Sure: how sure it is that the review "
                       "speaks of the aspect and of that polarity. Evidence: the sentence that carried the aspect most.")
        start = aspect_choices(view)
        version = _labels_version(view["labels"])
        with st.form(f"aspects-form-{review_id}", border=False):
            for aspect in view["aspects"]:
                st.radio(views.md(aspect), ASPECT_LABEL_VALUES, index=ASPECT_LABEL_VALUES.index(start[aspect]),
                         key=_aspect_key(review_id, aspect, version), horizontal=True)
            st.form_submit_button("Save aspects", key="save-aspects", on_click=_save_aspects,
                                  args=(review_id, tuple(view["aspects"]), version))
        origin = ("its current aspect labels" if view["labels"] else
                  "the aspect model's reading" if not predictions.empty else "absent everywhere")
        st.caption(f"The choices start from {origin}. Saving keeps the review here and leaves its flag open: "
                   "then give its overall label (or dismiss).")


def _queue_filter() -> QueueFilter:
    # From the filter widgets' state, so the page reads the store once, before drawing them.
    state = st.session_state
    dates = tuple(state.get("hq-dates") or ())
    start, end = (dates + (None, None))[:2]
    return QueueFilter(reasons=tuple(state.get("hard-cases-reasons") or ()), text=state.get("hq-text") or "",
                       restaurants=tuple(state.get("hq-restaurants") or ()),
                       neighborhoods=tuple(state.get("hq-neighborhoods") or ()), term=state.get("hq-term") or "",
                       labels=tuple(state.get("hq-labels") or ()), stars=tuple(state.get("hq-stars") or ()),
                       start=start, end=end or start)


flt = _queue_filter()
data = reads.hard_cases(ctx.db, flt, QUEUE_WINDOW, ctx.actor.name, RECENT_LABELS)

# --- guidelines, one click away ---
guide = data["guidelines"]
with st.popover("Labeling guidelines", icon=":material/menu_book:"):
    if guide:
        st.markdown(guide["body"])
        st.caption(f"Version {guide['version']} by {views.md(guide['author'])}, "
                   f"{pd.Timestamp(guide['created_at']):%Y-%m-%d}.")
    else:
        st.info("No guidelines written yet. A data scientist can write them on the Data page.")

# --- search and filters (all applied in the store) ---
options = data["options"]
s1, s2 = st.columns([3, 2])
limits.text_input("Text contains", key="hq-text", placeholder="e.g. grits, oat milk, waited", where=s1)
s2.multiselect("Reasons", FLAG_REASONS, key="hard-cases-reasons", format_func=views.reason_name)
with st.expander("More filters: restaurant, neighbourhood, term, label, stars, dates"):
    m1, m2, m3 = st.columns(3)
    m1.multiselect("Restaurant", options["restaurants"], key="hq-restaurants")
    m2.multiselect("Neighbourhood", options["neighborhoods"], key="hq-neighborhoods")
    m3.selectbox("Term", [None, *options["terms"]], key="hq-term", format_func=lambda t: "any" if t is None else t)
    m4, m5, m6 = st.columns(3)
    m4.multiselect("Current label", LABELS, key="hq-labels")
    m5.multiselect("Stars", [1, 2, 3, 4, 5], key="hq-stars")
    m6.date_input("Review dates", value=(), min_value=options["first"], max_value=options["last"], key="hq-dates")
status = data["status"]
done = status["resolved"] + status["dismissed"]
total = done + status["open"]
st.progress(done / total if total else 0.0,
            text=f"{done:,} of {total:,} flags handled ({status['resolved']:,} relabeled, "
                 f"{status['dismissed']:,} dismissed) · {status['open']:,} open · {data['total']:,} match the filters")

views.show_message(st.session_state.pop("hard-cases-message", None))
batch = st.session_state.get("hard-cases-batch")
if batch:
    st.button(f"Undo the batch ({batch[1]:,} reviews labeled {batch[2]})", key="undo-batch",
              on_click=_undo_action, args=(batch[0],), icon=":material/undo:")


def _review_text(model_id, review_id: str, text: str, *, live: bool = False) -> None:
    result = reads.word_attribution(ctx.db, model_id, review_id, text) if model_id else "no model scored it"
    if live and result is not None:
        st.rerun()  # ready: redraw the page once, without this polling fragment
    if isinstance(result, WordAttribution):
        st.html(views.highlighted_review_html(result))
        st.caption(f"Shaded: the words that moved the model toward {result.label} (without them it is less sure; "
                   "hover a word for how much). Blue: words that pulled the other way.")
        return
    st.text(text)  # plain text: a review can never inject markdown or HTML
    if result is None:
        st.caption("Finding the words that drove the model's call...")
    else:
        st.caption(f"No word highlights: {views.md(result)}")


_review_text_live = st.fragment(run_every=HIGHLIGHT_POLL_S)(_review_text)


def _recent_labels() -> None:
    with st.expander("My recent labels"):
        recent = data["recent"]
        if recent.empty:
            st.caption("You have not labeled anything yet.")
        for row in recent.itertuples():
            c1, c2, c3 = st.columns([7, 3, 1.3], vertical_alignment="center")
            c1.text(row.text if row.reviews == 1 else f"{row.reviews:,} reviews, the first: {row.text}")
            what = {"relabel": f"labeled {row.label}", "aspects": f"set aspects: {row.label}"}.get(row.kind,
                                                                                                 "dismissed the flag")
            when = f"{pd.Timestamp(row.created_at):%H:%M}"
            c2.text(f"{what} at {when}" + (f"\n“{row.comment}”" if isinstance(row.comment, str) else "")
                    + ("\n(undone)" if row.undone else ""))
            c3.button("Undo", key=f"undo-action-{row.action_id}", disabled=bool(row.undone),
                      on_click=_undo_action, args=(int(row.action_id),))


queue = data["queue"]
pending = queue[~queue["flag_id"].isin(skipped | {queued[1] for queued in pending_writes})]
if pending.empty:
    _write_pending_and_redraw()
    st.info("No open flags here." if queue.empty else "You skipped every flag in view; clear skips to see them again.")
    if skipped and st.button("Clear skips"):
        skipped.clear()
        st.rerun()
    st.button("Undo my last action", key="undo-empty", on_click=_undo, shortcut="u")
    _recent_labels()
    st.stop()

item = pending.iloc[0]
suggested = views.suggested_label(item)
st.html(views.label_button_css(suggested))
st.subheader(f"{views.reason_name(item['reason'])} · flag {item['flag_id']}")
info, probs = st.columns([3, 2])
model_id = item["model_id"] if isinstance(item["model_id"], str) else None
with info:
    ready = model_id is None or reads.word_attribution(ctx.db, model_id, item["review_id"], item["text"]) is not None
    if ready:
        _review_text(model_id, item["review_id"], item["text"])
    else:
        _review_text_live(model_id, item["review_id"], item["text"], live=True)
    stars = int(item["stars"]) if pd.notna(item["stars"]) else "none"
    st.text(f"Stars: {stars}   ·   current label: {item['current_label']} ({item['current_label_source']})"
            f"   ·   restaurant: {item['restaurant_name']}"
            + (f"   ·   {pd.Timestamp(item['review_created_at']):%Y-%m-%d}" if pd.notna(item["review_created_at"]) else ""))
    why, numbers = views.why_flagged(item)
    st.markdown(f"**Why flagged:** {views.md(why)}", help=views.md(numbers) if numbers else None)
with probs:
    if pd.notna(item["model_label"]):
        st.text(f"Model {item['model_id']} says {item['model_label']}")
        for label in LABELS:
            value = float(item[f"p_{label}"])
            st.progress(value, text=f"{label} {value:.0%}")
    if suggested:
        st.markdown(f"Suggested label: **{suggested}** (outlined below)")
reads.prefetch_attributions(ctx.db, [(r.model_id, r.review_id, r.text) for r in pending.iloc[1:1 + PREFETCH].itertuples()
                                     if isinstance(r.model_id, str)])

st.text_input("Comment (optional, saved with your label)", key="relabel-comment", max_chars=MAX_COMMENT_CHARS,
              placeholder="e.g. sarcastic; mixed: food great, service slow")
cols = st.columns(6)
for col, label in zip(cols, LABELS):
    col.button(label.capitalize(), key=f"label-{label}", shortcut=SHORTCUTS[label],
               on_click=_relabel, args=(item["review_id"], int(item["flag_id"]), label), width="stretch")
cols[3].button("Skip", key="skip", shortcut="s", on_click=skipped.add, args=(item["flag_id"],), width="stretch")
cols[4].button("Dismiss", key="dismiss", shortcut="d", on_click=_dismiss, args=(int(item["flag_id"]),),
               width="stretch", help="The current label is right; close the flag.")
cols[5].button("Undo", key="undo", shortcut="u", on_click=_undo, width="stretch", help="Undo your last action.")
st.caption("Keys: 1 negative · 2 neutral · 3 positive · S skip · D dismiss · U undo")
_write_pending_and_redraw()  # the next review is on screen: now write the label that brought it

_aspects_panel(item)
_recent_labels()

st.subheader("Up next")
upcoming = pending.iloc[1:].reset_index(drop=True)
if upcoming.empty:
    st.caption("Nothing else matches the filters.")
else:
    table = pd.DataFrame({
        "pick": False, "text": upcoming["text"], "reason": upcoming["reason"].map(views.reason_name),
        "stars": upcoming["stars"], "model_label": upcoming["model_label"], "current_label": upcoming["current_label"],
        "priority": upcoming["priority"], "review_id": upcoming["review_id"],
    })
    # Ticks belong to the rows shown: a queue that changed gets a fresh editor (no tick lands on another review).
    editor_key = f"up-next-{hash(tuple(upcoming['flag_id']))}"
    edited = st.data_editor(
        table, hide_index=True, key=editor_key, width="stretch", row_height=views.review_row_height(table["text"]),
        disabled=["text", "reason", "stars", "model_label", "current_label", "priority"],
        column_order=["pick", "text", "reason", "stars", "model_label", "current_label", "priority"],
        column_config={
            "pick": st.column_config.CheckboxColumn("Tick", width="small"),
            "text": st.column_config.TextColumn("Review", width="large"),
            "reason": st.column_config.TextColumn("Why flagged", width="small"),
            "stars": st.column_config.NumberColumn("Stars", format="%d ★", width="small"),
            "model_label": st.column_config.TextColumn("Model says", width="small"),
            "current_label": st.column_config.TextColumn("Current label", width="small"),
            "priority": st.column_config.ProgressColumn("Priority", min_value=0.0, max_value=1.0, format="%.2f",
                                                        width="small"),
        },
    )
    ticked = tuple(dict.fromkeys(edited.loc[edited["pick"], "review_id"]))
    with st.container(border=True):
        t1, t2, t3 = st.columns([3, 4, 2], vertical_alignment="bottom")
        tick_label = t1.radio("Label the ticked reviews", LABELS, horizontal=True, key="tick-label")
        tick_confirm = t2.checkbox(f"Yes, label the {len(ticked):,} ticked review(s) {tick_label}", key="tick-confirm",
                                   disabled=not ticked)
        t3.button(f"Relabel {len(ticked):,} ticked", key="tick-go", disabled=not (tick_confirm and ticked),
                  on_click=_bulk, args=(ticked, tick_label, "tick-confirm"), width="stretch")

with st.expander("Bulk relabel everything matching the filters"):
    st.write(f"{data['total']:,} open flags match the filters.")
    bulk_label = st.radio("Give them all the label", LABELS, horizontal=True, key="bulk-label")
    confirm = st.checkbox(f"Yes, label all {data['total']:,} of them {bulk_label}", key="bulk-confirm")
    st.button("Relabel all", disabled=not confirm or data["total"] == 0, key="bulk-go",
              on_click=_bulk_matching, args=(flt, bulk_label))
