"""Aspect corrections in the labeler's queue: the store verb, its starting choices, and the hard-cases page."""

from __future__ import annotations

import pandas as pd
import pytest

from dashboard_seed import CHAMPION, private_copy, seed_dashboard_store, signed_in
from pipeline.loop import relabel as rl
from store import aspects as aspect_store
from store import models as model_store
from store.actors import Actor
from store.db import connect, transaction
from store.errors import PermissionDeniedError, TastebudError
from store.flags import insert_flags
from store.labels import current_label
from store.relabeling import aspect_choices, fetch_review_aspects
from store.rounds import next_round_number
from store.schema import init_store
from tests.conftest import seed_reviews

ADMIN = Actor("ana", "admin")
LENA = Actor("lena", "labeler")
ASPECT_MODEL = "aspects-seed"


def _predict(con, review_id: str, text: str) -> None:
    """The aspect model hears good food (first sentence) and a negative service (the rest) in ``text``."""
    cut = text.find(". ") + 1 or len(text)
    aspect_store.write_aspect_predictions(con, ASPECT_MODEL, pd.DataFrame([
        {"review_id": review_id, "aspect": "food", "p_present": 0.95, "p_negative": 0.05, "p_neutral": 0.05,
         "p_positive": 0.9, "evidence_start": 0, "evidence_end": cut},
        {"review_id": review_id, "aspect": "service", "p_present": 0.9, "p_negative": 0.8, "p_neutral": 0.1,
         "p_positive": 0.1, "evidence_start": min(cut + 1, len(text)), "evidence_end": len(text)},
        {"review_id": review_id, "aspect": "price", "p_present": 0.1, "p_negative": 0.3, "p_neutral": 0.4,
         "p_positive": 0.3, "evidence_start": None, "evidence_end": None},
    ]))


# --- the store verb ------------------------------------------------------------------------------


@pytest.fixture
def db(store_path):
    seed_reviews(store_path, pd.DataFrame({
        "review_id": ["r1", "r2"], "stars": [5, 4], "label": ["positive", "positive"],
        "text": ["The brisket was perfect. Our server forgot us twice.", "Lovely patio."],
    }))
    with transaction(store_path) as con:
        model_store.register_model(con, model_id=ASPECT_MODEL, kind="finetuned", name=ASPECT_MODEL,
                                   status="ready", task="aspects")
        model_store.promote_model(con, ADMIN, ASPECT_MODEL)
        _predict(con, "r1", "The brisket was perfect. Our server forgot us twice.")
    return store_path


def test_choices_start_from_the_predictions_then_from_the_labels(db):
    with connect(db, read_only=True) as con:
        view = fetch_review_aspects(con, "r1")
        unscored = fetch_review_aspects(con, "r2")
    assert view["model_id"] == ASPECT_MODEL and view["labels"] == {}
    evidence = view["predictions"].set_index("aspect")["evidence"].to_dict()
    assert evidence["food"] == "The brisket was perfect." and evidence["service"] == "Our server forgot us twice."
    assert aspect_choices(view) == {"food": "positive", "service": "negative", "price": "absent", "ambience": "absent",
                                    "anecdotes/miscellaneous": "absent"}
    assert unscored["predictions"].empty and set(aspect_choices(unscored).values()) == {"absent"}

    result = rl.relabel_aspects(db, LENA, "r1", {"food": "positive", "service": "negative", "Price": "neutral"})
    assert result["written"] == 3 and result["previous"] == {}
    assert result["aspects"] == {"food": "positive", "service": "negative", "price": "neutral"}
    with connect(db, read_only=True) as con:
        view = fetch_review_aspects(con, "r1")
        history = aspect_store.fetch_aspect_label_history(con, "r1")
        audit = con.execute("SELECT actor, action, target FROM audit_log WHERE action = 'aspect.relabel'").fetchall()
        split = aspect_store.fetch_aspect_split(con, None)
        round_now = next_round_number(con)
    # Once annotated, the labels decide every choice (an aspect without one is absent, not the model's).
    assert aspect_choices(view)["price"] == "neutral" and aspect_choices(view)["ambience"] == "absent"
    assert set(history["labeler"]) == {"lena"} and set(history["round"]) == {round_now}
    assert audit == [("lena", "aspect.relabel", "r1")]
    # they are labels the next aspect training reads
    assert split.set_index("review_id").loc["r1", ["food", "service", "price", "ambience"]].tolist() == [
        "positive", "negative", "neutral", "absent"]


def test_a_correction_appends_and_keeps_the_history(db):
    rl.relabel_aspects(db, LENA, "r1", {"service": "negative"})
    again = rl.relabel_aspects(db, LENA, "r1", {"service": "negative"})
    assert again["written"] == 0  # confirmed, nothing new
    changed = rl.relabel_aspects(db, LENA, "r1", {"service": "conflict"})
    assert changed["written"] == 1 and changed["previous"]["service"] == "negative"
    with connect(db, read_only=True) as con:
        history = aspect_store.fetch_aspect_label_history(con, "r1")
        label = current_label(con, "r1")
    assert history[history["aspect"] == "service"]["polarity"].tolist() == ["negative", "conflict"]
    assert (label["label"], label["source"]) == ("positive", "stars")  # the overall label is untouched


def test_an_aspect_correction_is_undone_like_a_relabel(db):
    from store.relabeling import fetch_recent_actions

    with transaction(db) as con:  # an imported annotation to fall back to
        aspect_store.append_aspect_labels(con, pd.DataFrame([
            {"review_id": "r1", "aspect": "food", "polarity": "positive", "source": "import"},
            {"review_id": "r1", "aspect": "service", "polarity": "neutral", "source": "import"}]))
    first = rl.relabel_aspects(db, LENA, "r1", {"service": "negative"})
    second = rl.relabel_aspects(db, LENA, "r1", {"food": "negative", "price": "negative"})
    assert first["action_id"] and second["action_id"] and second["written"] == 2
    assert rl.relabel_aspects(db, LENA, "r1", {"food": "negative"})["action_id"] is None  # nothing written
    rl.relabel(db, LENA, "r2", "neutral")  # a review relabel in between
    with connect(db, read_only=True) as con:
        recent = fetch_recent_actions(con, "lena")
    assert recent["kind"].tolist() == ["relabel", "aspects", "aspects"]
    assert recent["label"].tolist() == ["neutral", "food negative, price negative", "service negative"]

    assert rl.undo_last(db, LENA)["kind"] == "relabel"
    undone = rl.undo_last(db, LENA)  # the newest aspect correction: food and price revert
    assert undone["kind"] == "aspects" and undone["undid_action_id"] == second["action_id"]
    assert undone["retracted_labels"] == 2 and undone["review_ids"] == ["r1"]
    with connect(db, read_only=True) as con:
        assert aspect_store.current_review_aspects(con, "r1") == {"food": ("positive", "import"),
                                                                 "service": ("negative", "human")}
    # Someone else cannot undo Lena's; she can undo her older one by id; twice is refused.
    with pytest.raises(TastebudError, match="lena's; you can undo only your own"):
        rl.undo_action(db, Actor("lee", "labeler"), first["action_id"])
    rl.undo_action(db, LENA, first["action_id"])
    with pytest.raises(TastebudError, match="undone already"):
        rl.undo_action(db, LENA, first["action_id"])
    with connect(db, read_only=True) as con:
        assert aspect_store.current_review_aspects(con, "r1") == {"food": ("positive", "import"),
                                                                 "service": ("neutral", "import")}
        history = aspect_store.fetch_aspect_label_history(con, "r1")
        training = aspect_store.fetch_aspect_split(con, None).set_index("review_id")
        recent = fetch_recent_actions(con, "lena")
    assert len(history) == 5  # nothing deleted: the retracted rows stay in the history
    assert training.loc["r1", ["food", "service", "price"]].tolist() == ["positive", "neutral", "absent"]
    assert recent["undone"].tolist() == [True, True, True]
    assert rl.undo_last(db, LENA) is None


def test_bad_corrections_say_why_and_write_nothing(db):
    with pytest.raises(TastebudError, match="unknown aspects: parking; known: food, service"):
        rl.relabel_aspects(db, LENA, "r1", {"parking": "negative"})
    with pytest.raises(TastebudError, match="unknown aspect polarities \\['awful'\\]"):
        rl.relabel_aspects(db, LENA, "r1", {"food": "awful"})
    with pytest.raises(TastebudError, match="no review 'nope'"):
        rl.relabel_aspects(db, LENA, "nope", {"food": "positive"})
    with pytest.raises(TastebudError, match="at least one aspect"):
        rl.relabel_aspects(db, LENA, "r1", {})
    with pytest.raises(PermissionDeniedError):
        rl.relabel_aspects(db, Actor("vic", "viewer"), "r1", {"food": "positive"})
    with connect(db, read_only=True) as con:
        assert aspect_store.count_annotated_reviews(con) == 0


# --- the hard-cases page -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    db, _ = init_store(tmp_path_factory.mktemp("aspect-queue") / "store.duckdb")
    seed_dashboard_store(db, rows=600, flags=4)
    with transaction(db) as con:
        review_id, text = con.execute(
            "SELECT review_id, text FROM reviews WHERE review_id NOT IN (SELECT review_id FROM flags) "
            "AND review_id NOT IN (SELECT review_id FROM aspect_labels) ORDER BY review_id LIMIT 1").fetchone()
        model_store.register_model(con, model_id=ASPECT_MODEL, kind="finetuned", name=ASPECT_MODEL,
                                   status="ready", task="aspects")
        model_store.promote_model(con, ADMIN, ASPECT_MODEL)
        _predict(con, review_id, text)
        detail = {"aspect_model_id": ASPECT_MODEL, "overall": "positive", "overall_from": "stars",
                  "against": [{"aspect": "service", "polarity": "negative", "confidence": 0.72}],
                  "aspects": {"food": "positive", "service": "negative"}}
        insert_flags(con, pd.DataFrame({"review_id": [review_id], "reason": ["aspect_disagreement"], "priority": [5.0],
                                        "model_id": [CHAMPION], "detail": [detail]}))
    return db, review_id, text


def _aspect_flag_status(db, review_id) -> str:
    with connect(db, read_only=True) as con:
        return con.execute("SELECT status FROM flags WHERE review_id = ? AND reason = 'aspect_disagreement'",
                           [review_id]).fetchone()[0]


def test_the_queue_shows_the_aspects_and_takes_a_correction(seeded, tmp_path, monkeypatch):
    db = private_copy(seeded[0], tmp_path, monkeypatch)
    _, review_id, text = seeded
    at = signed_in("lena", "hard_cases")
    assert at.text[0].value == text  # the aspect flag comes first, its review shown as before
    why = next(m.value for m in at.markdown if m.value.startswith("**Why flagged:**"))
    assert "positive overall" in why and "hears service negative" in why
    expander = next(e for e in at.expander if e.label.startswith("Aspects"))
    assert expander.label == "Aspects: the aspect model hears food positive, service negative"
    assert expander.proto.expanded  # open for an aspect flag
    body = next(h.proto.body for h in at.get("html") if "aspect-evidence" in h.proto.body)
    assert ">service</b>" in body and "72%" in body  # 0.9 present x 0.8 negative
    first_sentence = text[: text.find(". ") + 1]
    assert first_sentence.replace("'", "&#x27;") in body
    # the choices start from the model's reading
    assert _choices(at, review_id) == {"food": "positive", "service": "negative", "price": "absent", "ambience": "absent",
                                       "anecdotes/miscellaneous": "absent"}

    _radio(at, review_id, "food").set_value("neutral")
    _radio(at, review_id, "ambience").set_value("negative")
    at.button(key="save-aspects").click().run()
    assert not at.exception, [e.stack_trace for e in at.exception]
    # three aspects changed; price and misc confirmed absent, as the model read them
    assert [s.value for s in at.success] == ["Saved the aspects: 3 changed, 2 confirmed (U undoes)."]
    with connect(db, read_only=True) as con:
        labels = aspect_store.current_review_aspects(con, review_id)
    assert labels == {"food": ("neutral", "human"), "service": ("negative", "human"), "price": ("absent", "human"),
                      "ambience": ("negative", "human"), "anecdotes/miscellaneous": ("absent", "human")}
    # The review stays for its overall label; that flow is the same as before and closes the flag.
    assert at.text[0].value == text and _aspect_flag_status(db, review_id) == "open"
    at.button(key="label-positive").click().run()
    assert not at.exception
    with connect(db, read_only=True) as con:
        label = current_label(con, review_id)
    assert (label["label"], label["source"], label["labeler"]) == ("positive", "human", "lena")
    assert _aspect_flag_status(db, review_id) == "resolved"
    # The aspect correction is in "My recent labels" and its own Undo button reverts just it.
    with connect(db, read_only=True) as con:
        action = con.execute("SELECT max(action_id) FROM relabel_actions WHERE kind = 'aspects'").fetchone()[0]
    shown = [t.value for t in at.text if t.value.startswith("set aspects: ")]
    assert shown and shown[0].startswith("set aspects: food neutral, service negative, price absent, ambience negative, "
                                         "anecdotes/miscellaneous absent at ")
    at.button(key=f"undo-action-{action}").click().run()
    assert not at.exception
    with connect(db, read_only=True) as con:
        assert aspect_store.current_review_aspects(con, review_id) == {}  # it had no aspect labels before
        assert current_label(con, review_id)["label"] == "positive"  # the overall label stands


def _radio(at, review_id: str, aspect: str):
    return next(r for r in at.radio if r.key and r.key.startswith(f"aspect-{review_id}-{aspect}-"))


def _choices(at, review_id: str) -> dict:
    return {r.label: r.value for r in at.radio if r.key and r.key.startswith(f"aspect-{review_id}-")}


def test_after_an_undo_the_choices_start_from_the_labels_again_and_the_same_save_writes_again(
        seeded, tmp_path, monkeypatch):
    db = private_copy(seeded[0], tmp_path, monkeypatch)
    _, review_id, _ = seeded
    at = signed_in("lena", "hard_cases")
    _radio(at, review_id, "service").set_value("conflict")
    at.button(key="save-aspects").click().run()
    assert _choices(at, review_id)["service"] == "conflict"
    at.button(key="undo").click().run()
    assert not at.exception, [e.stack_trace for e in at.exception]
    with connect(db, read_only=True) as con:
        assert aspect_store.current_review_aspects(con, review_id) == {}
    # the radios no longer show the undone choices: they start from the model's reading again
    assert _choices(at, review_id) == {"food": "positive", "service": "negative", "price": "absent",
                                       "ambience": "absent", "anecdotes/miscellaneous": "absent"}
    _radio(at, review_id, "service").set_value("conflict")
    at.button(key="save-aspects").click().run()
    assert [s.value for s in at.success] == ["Saved the aspects: 2 changed, 3 confirmed (U undoes)."]
    with connect(db, read_only=True) as con:
        assert aspect_store.current_review_aspects(con, review_id)["service"] == ("conflict", "human")


def test_other_flags_keep_the_aspects_folded_and_start_from_the_labels(seeded, tmp_path, monkeypatch):
    db = private_copy(seeded[0], tmp_path, monkeypatch)
    _, review_id, _ = seeded
    at = signed_in("lena", "hard_cases")
    at.button(key="skip").click().run()  # past the aspect flag, to a review no aspect model scored
    assert not at.exception
    assert at.text[0].value != seeded[2]
    expander = next(e for e in at.expander if e.label.startswith("Aspects"))
    assert expander.label == "Aspects" and not expander.proto.expanded
    assert any("has not scored this review yet" in c.value for c in at.caption)
    shown = {r.label: r.value for r in at.radio
             if r.key and r.key.startswith("aspect-") and not r.key.startswith(f"aspect-{review_id}-")}
    with connect(db, read_only=True) as con:
        other = con.execute("SELECT review_id FROM reviews WHERE text = ?", [at.text[0].value]).fetchone()[0]
        view = fetch_review_aspects(con, other)
    # the demo imported aspect labels for half its reviews: an annotated one starts from them, the others from absent
    expected = aspect_choices(view)
    assert shown == expected and len(shown) == 5
    assert set(expected.values()) != {"absent"} if view["labels"] else set(expected.values()) == {"absent"}


# --- the command line --------------------------------------------------------------------------


def test_aspects_set_from_the_command_line(db, monkeypatch):
    from typer.testing import CliRunner

    from pipeline.cli import app

    monkeypatch.setenv("TASTEBUD_DB", str(db))
    run = CliRunner().invoke(app, ["aspects", "set", "r1", "Food=positive", "service=negative", "--as", "lee"])
    assert run.exit_code == 0, run.output
    assert run.output.strip() == ("r1: food absent -> positive, service absent -> negative; 2 aspect label(s) written; "
                                  "`tastebud undo` reverts it")
    again = CliRunner().invoke(app, ["aspects", "set", "r1", "service=conflict", "--json"])
    assert again.exit_code == 0, again.output
    assert '"previous": {' in again.output and '"service": "conflict"' in again.output
    with connect(db, read_only=True) as con:
        labels = aspect_store.current_review_aspects(con, "r1")
        labelers = set(aspect_store.fetch_aspect_label_history(con, "r1")["labeler"])
    assert labels == {"food": ("positive", "human"), "service": ("conflict", "human")}
    assert "lee" in labelers
    for args, message in ((["r1", "food"], "give ASPECT=POLARITY"), (["r1", "food=good"], "unknown aspect polarities"),
                          (["r1", "food=positive", "FOOD=negative"], "is given twice"),
                          (["r1", "parking=negative"], "unknown aspects: parking")):
        bad = CliRunner().invoke(app, ["aspects", "set", *args])
        assert bad.exit_code != 0 and message in f"{bad.output}{bad.exception}", bad.output


def test_an_undone_correction_can_be_made_again(db):
    """Undo, then the same correction: it is written again (the retracted row does not count as the
    newest label), and the review's aspects read the correction once more."""
    with transaction(db) as con:
        aspect_store.append_aspect_labels(con, pd.DataFrame([
            {"review_id": "r1", "aspect": "service", "polarity": "positive", "source": "import"}]))
    rl.relabel_aspects(db, LENA, "r1", {"service": "negative"})
    rl.undo_last(db, LENA)
    with connect(db, read_only=True) as con:
        assert aspect_store.current_review_aspects(con, "r1")["service"] == ("positive", "import")
    again = rl.relabel_aspects(db, LENA, "r1", {"service": "negative"})
    assert again["written"] == 1 and again["action_id"]
    with connect(db, read_only=True) as con:
        assert aspect_store.current_review_aspects(con, "r1")["service"] == ("negative", "human")
    # An undone import row does not block re-importing the same label either.
    with transaction(db) as con:
        assert aspect_store.append_aspect_labels(con, pd.DataFrame([
            {"review_id": "r1", "aspect": "service", "polarity": "positive", "source": "import"}])) == 0


def test_aspects_set_takes_short_spellings_says_what_it_confirmed_and_labels_shows_undos(db, monkeypatch):
    from typer.testing import CliRunner

    from pipeline.cli import app

    monkeypatch.setenv("TASTEBUD_DB", str(db))
    with transaction(db) as con:
        aspect_store.append_aspect_labels(con, pd.DataFrame([
            {"review_id": "r1", "aspect": "food", "polarity": "positive", "source": "import"}]))
    run = CliRunner().invoke(app, ["aspects", "set", "r1", "food=pos", "service=NEG"])
    assert run.exit_code == 0, run.output
    # food was positive already (imported): confirmed, not changed
    assert run.output.strip() == ("r1: service absent -> negative; 1 confirmed as yours; 2 aspect label(s) written; "
                                  "`tastebud undo` reverts it")
    assert CliRunner().invoke(app, ["undo"]).exit_code == 0
    shown = CliRunner().invoke(app, ["aspects", "labels", "r1"]).output
    assert "food                      positive  (import)" in shown
    undone = [line for line in shown.splitlines() if "[retracted: undone" in line]
    assert len(undone) == 2 and all("human" in line for line in undone)
    # a review whose only labels were undone still shows them in its history
    assert CliRunner().invoke(app, ["aspects", "set", "r2", "ambience=neu"]).exit_code == 0
    assert CliRunner().invoke(app, ["undo"]).exit_code == 0
    shown = CliRunner().invoke(app, ["aspects", "labels", "r2"]).output
    assert "no aspect labels (not aspect-annotated)" in shown and "[retracted: undone" in shown
    as_json = CliRunner().invoke(app, ["aspects", "labels", "r2", "--json"])
    assert as_json.exit_code == 0 and '"retracted_at": "' in as_json.output


def test_without_a_review_model_flag_still_compares_aspects_with_the_labels(db, monkeypatch):
    """A store with an aspect champion and no review champion: `tastebud flag` raises aspect disagreements
    against the current labels and says the other reasons need a review model."""
    from typer.testing import CliRunner

    from pipeline.cli import app

    monkeypatch.setenv("TASTEBUD_DB", str(db))
    run = CliRunner().invoke(app, ["flag"])
    assert run.exit_code == 0, run.output
    lines = run.output.strip().splitlines()
    assert lines[-2] == f"new flags from {ASPECT_MODEL}: aspect_disagreement 1"
    assert lines[-1].startswith("  no review champion: low_confidence") and "need one" in lines[-1]
    with connect(db, read_only=True) as con:
        flags = con.execute("SELECT review_id, reason, model_id FROM flags").fetchall()
    assert flags == [("r1", "aspect_disagreement", ASPECT_MODEL)]  # positive by its stars, service heard negative
    again = CliRunner().invoke(app, ["flag"])
    assert again.exit_code == 0 and f"{ASPECT_MODEL}: aspect_disagreement 0" in again.output
