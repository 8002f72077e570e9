"""Evaluation on the test split (stored, with slices), on an external file (store untouched), and baselines."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.models.baselines import TFIDF_ID, VADER_ID, ZEROSHOT_ID, fit_scale, infer_label_map, parse_label_map, register_baselines
from pipeline.evaluation.evaluator import compute_slices, evaluate_file, evaluate_model
from pipeline.models.predictors import VADER_THRESHOLD, VaderPredictor, load_predictor, map_label_probabilities
from store import evaluations as evaluation_store
from store import models as model_store
from store.actors import Actor, cli_actor
from store.db import connect, transaction
from store.labels import append_labels
from store.errors import PermissionDeniedError, TastebudError
from training_helpers import fill_store, make_tiny_bert, single_thread  # noqa: F401
from pipeline.data.importer import ColumnMapping
from conftest import cli_cmd
from training_helpers import SUBPROCESS_ENV


@pytest.fixture
def vader_store(store_path: Path) -> Path:
    fill_store(store_path, rows=600)
    register_baselines(store_path, actor=cli_actor(), include=("vader",), evaluate=False)
    return store_path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_evaluate_model_stores_metrics_and_slices(vader_store):
    # A labeler's correction makes one 5-star test review negative: a sarcasm candidate.
    with transaction(vader_store) as con:
        (review_id,) = con.execute(
            "SELECT review_id FROM reviews JOIN splits USING (review_id) WHERE split = 'test' AND stars = 5 LIMIT 1"
        ).fetchone()
        append_labels(con, pd.DataFrame({"review_id": [review_id], "label": ["negative"], "source": ["human"]}))
    result = evaluate_model(vader_store, VADER_ID, terms=["Krog District", "no such phrase anywhere"])
    assert result["n"] > 0 and 0 <= result["macro_f1"] <= 1 and 0 <= result["ece"] <= 1
    assert sum(map(sum, result["confusion_matrix"])) == result["n"]
    with connect(vader_store, read_only=True) as con:
        stored = evaluation_store.fetch_latest_evaluation(con, VADER_ID)
        slices = evaluation_store.fetch_evaluation_slices(con, VADER_ID)
        listed = model_store.list_models(con).set_index("model_id")
    assert stored["evaluation_id"] == result["evaluation_id"]
    assert stored["macro_f1"] == pytest.approx(result["macro_f1"])
    assert stored["per_class"]["positive"]["support"] == result["per_class"]["positive"]["support"]
    assert listed.loc[VADER_ID, "macro_f1"] == pytest.approx(result["macro_f1"])
    assert listed.loc[VADER_ID, "f1_neutral"] == pytest.approx(result["per_class"]["neutral"]["f1"])
    kinds = set(slices["slice_kind"])
    assert {"restaurant", "stars_agreement", "length", "term", "sarcasm"} <= kinds
    terms = slices[slices["slice_kind"] == "term"].set_index("slice_value")
    assert terms.loc["no such phrase anywhere", "n"] == 0  # a term with no match is still reported
    assert set(terms.index) == {"Krog District", "no such phrase anywhere"}
    sarcasm = slices[slices["slice_kind"] == "sarcasm"].set_index("slice_value")
    assert sarcasm.loc["high stars, negative label", "n"] == 1 and sarcasm.loc["low stars, positive label", "n"] == 0
    agreement = slices[slices["slice_kind"] == "stars_agreement"].set_index("slice_value")
    assert agreement.loc["disagree", "n"] == 1 and agreement["n"].sum() == result["n"]
    length_total = slices.loc[slices["slice_kind"] == "length", "n"].sum()
    assert length_total == result["n"]


def test_compute_slices_on_a_hand_made_frame():
    frame = pd.DataFrame({
        "text": ["Great food at Krog District", "awful", "fine I guess " * 30, "loved it, yeah right", "meh"],
        "label": ["positive", "negative", "neutral", "negative", "positive"],
        "stars": [5, 1, 3, 5, 1],
        "restaurant": ["A", "A", "A", "A", "A"],
    })
    references = frame["label"].map({"negative": 0, "neutral": 1, "positive": 2}).to_numpy()
    probs = np.eye(3)[[2, 0, 1, 2, 2]]  # wrong on the two contradictions
    slices = compute_slices(frame, probs, references, terms=["krog district"]).set_index(["slice_kind", "slice_value"])
    assert slices.loc[("stars_agreement", "agree"), "n"] == 3
    assert slices.loc[("stars_agreement", "agree"), "accuracy"] == 1.0
    assert slices.loc[("stars_agreement", "disagree"), "accuracy"] == 0.5  # "meh" (1 star, positive) is right
    assert slices.loc[("sarcasm", "high stars, negative label"), "n"] == 1
    assert slices.loc[("sarcasm", "low stars, positive label"), "n"] == 1
    assert slices.loc[("sarcasm", "all candidates"), "n"] == 2
    assert slices.loc[("term", "krog district"), "n"] == 1
    assert slices.loc[("length", "long (150+ words)"), "n"] == 0
    assert slices.loc[("length", "medium (50-149 words)"), "n"] == 1
    assert slices.loc[("restaurant", "A"), "n"] == 5


def test_evaluate_file_leaves_the_store_untouched(vader_store, tmp_path):
    data = tmp_path / "outside.csv"
    pd.DataFrame({
        "body": ["Absolutely wonderful dinner!", "Terrible, rude staff.", "It was okay.", "Horrible food", "",
                 "Best tacos ever", "Fine"],
        "sentiment": ["pos", None, "neutral", "negative", "positive", "POSITIVE", "mixed"],
        "rating": [5, 1, 3, 1, 5, None, 3],
    }).to_csv(data, index=False)
    before = _digest(vader_store)
    with connect(vader_store, read_only=True) as con:
        evaluations_before = con.execute("SELECT count(*) FROM evaluations").fetchone()[0]
    result = evaluate_file(vader_store, VADER_ID, data, ColumnMapping(text="body", stars="rating"))
    # The importer's rules: the label column wins over stars; "" text and "mixed" are rejected; no label = skipped.
    assert result["label_source"] == "import"
    assert (result["n"], result["skipped"], result["rejected"]) == (4, 1, 2)
    assert [result["per_class"][k]["support"] for k in ("negative", "neutral", "positive")] == [1, 1, 2]
    assert result["dataset"] == str(data)
    assert _digest(vader_store) == before
    with connect(vader_store, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM evaluations").fetchone()[0] == evaluations_before

    stars_only = tmp_path / "stars.csv"
    pd.DataFrame({"text": ["Loved it", "Awful", "Meh"], "stars": [5, 1, 3]}).to_csv(stars_only, index=False)
    by_stars = evaluate_file(vader_store, VADER_ID, stars_only)
    assert by_stars["label_source"] == "stars" and by_stars["n"] == 3
    assert _digest(vader_store) == before


def test_evaluate_file_refuses_bad_input(vader_store, tmp_path):
    with pytest.raises(TastebudError, match="no such file"):
        evaluate_file(vader_store, VADER_ID, tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"comment_id": ["x"], "label": ["positive"]}).to_csv(bad, index=False)
    with pytest.raises(TastebudError, match="no text column found"):
        evaluate_file(vader_store, VADER_ID, bad)
    unlabeled = tmp_path / "unlabeled.csv"
    pd.DataFrame({"text": ["Great"]}).to_csv(unlabeled, index=False)
    with pytest.raises(TastebudError, match="neither a label nor a stars column"):
        evaluate_file(vader_store, VADER_ID, unlabeled)
    with pytest.raises(TastebudError, match="no model 'nope'"):
        evaluate_model(vader_store, "nope")


def test_vader_probabilities_follow_the_compound_thresholds():
    vader = VaderPredictor(scale=7.0)
    texts = ["I love this place, amazing!", "The food was terrible and cold.", "We ate dinner there.", ""]
    probs = vader.predict_proba(texts)
    compound = vader.compound(texts)
    expected = np.where(compound >= VADER_THRESHOLD, 2, np.where(compound <= -VADER_THRESHOLD, 0, 1))
    assert (probs.argmax(axis=1) == expected).all()
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    assert list(expected) == [2, 0, 1, 1]


def test_fit_scale_minimises_validation_log_loss():
    logits = np.array([[1.0, 0.0, -1.0], [-1.0, 0.0, 1.0], [0.2, 0.0, -0.2]])
    confident = fit_scale(logits, np.array([0, 2, 0]), default=1.0)
    hedged = fit_scale(logits, np.array([0, 2, 2]), default=1.0)
    assert confident > hedged
    assert fit_scale(np.zeros((0, 3)), np.array([], dtype=np.int64), default=3.0) == 3.0


def test_label_maps():
    assert infer_label_map(["NEGATIVE", "neutral", "Positive"]) == {"NEGATIVE": "negative", "neutral": "neutral", "Positive": "positive"}
    assert infer_label_map(["1 star", "2 stars", "3 stars", "4 stars", "5 stars"])["2 stars"] == "negative"
    with pytest.raises(TastebudError, match="cannot tell what the model's label 'LABEL_0' means"):
        infer_label_map(["LABEL_0", "LABEL_1"])
    with pytest.raises(TastebudError, match="entries are NAME=negative"):
        parse_label_map("LABEL_0=bad")
    probs = map_label_probabilities(np.array([[0.1, 0.2, 0.3, 0.4]]), {0: "1", 1: "2", 2: "4", 3: "5"},
                                    {"1": "negative", "2": "negative", "4": "positive", "5": "positive"})
    assert probs[0].tolist() == pytest.approx([0.3, 0.0, 0.7])


@pytest.mark.slow
def test_register_baselines_and_a_user_hf_model(store_path, tmp_path):
    fill_store(store_path, rows=300)
    hf_dir = Path(make_tiny_bert(tmp_path / "hf"))
    # Give the tiny classifier its own label names, as a hub sentiment model would have.
    import json

    cfg = json.loads((hf_dir / "config.json").read_text())
    cfg["id2label"] = {"0": "LABEL_0", "1": "LABEL_1", "2": "LABEL_2"}
    cfg["label2id"] = {"LABEL_0": 0, "LABEL_1": 1, "LABEL_2": 2}
    (hf_dir / "config.json").write_text(json.dumps(cfg))

    with pytest.raises(PermissionDeniedError):
        register_baselines(store_path, actor=Actor("vic", "viewer"))
    with pytest.raises(TastebudError, match="LABEL_0"):
        register_baselines(store_path, actor=cli_actor(), hf_model=str(hf_dir), include=())
    ids = register_baselines(
        store_path, actor=cli_actor(), hf_model=str(hf_dir),
        label_map=parse_label_map("LABEL_0=negative,LABEL_1=neutral,LABEL_2=positive"),
    )
    assert ids == [VADER_ID, ZEROSHOT_ID, TFIDF_ID, "baseline-hf-hf"]  # the default baselines, then the given one
    with connect(store_path, read_only=True) as con:
        listed = model_store.list_models(con).set_index("model_id")
        zeroshot = model_store.get_model(con, ZEROSHOT_ID)
    assert listed.loc[ids, "macro_f1"].notna().all()
    assert zeroshot["params"]["scale"] > 0 and zeroshot["params"]["scale_fitted_on"] > 0
    texts = ["Wonderful service and food", "Cold soup, rude waiter"]
    for model_id in ids:
        probs = load_predictor(store_path, model_id).predict_proba(texts)
        assert probs.shape == (2, 3) and np.allclose(probs.sum(axis=1), 1, atol=1e-4)
    # Registering again refreshes in place instead of duplicating.
    register_baselines(store_path, actor=cli_actor(), evaluate=False)
    with connect(store_path, read_only=True) as con:
        assert len(model_store.list_models(con)) == 4  # vader, zero-shot, TF-IDF and the hf model, once each


@pytest.mark.slow
def test_cli_evaluate_data_json_and_misused_options(vader_store, tmp_path):
    import json
    import subprocess

    data = tmp_path / "held.tsv"
    pd.DataFrame({"review": ["Loved it", "Awful place", "Okay"], "rating": [5, 1, 3]}).to_csv(data, sep="\t", index=False)
    out = subprocess.run(cli_cmd("--db", str(vader_store), "evaluate", VADER_ID, "--data", str(data), "--stars", "rating",
                                 "--json"), capture_output=True, text=True, env=SUBPROCESS_ENV, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["n"] == 3
    bad = subprocess.run(cli_cmd("--db", str(vader_store), "evaluate", VADER_ID, "--stars", "rating"),
                         capture_output=True, text=True, env=SUBPROCESS_ENV, timeout=120)
    assert bad.returncode == 2 and "only apply with --data" in bad.stderr


def test_slice_intervals_curves_and_reliability_bins():
    from pipeline.evaluation.curves import bootstrap_macro_f1_interval, precision_recall_curves, reliability_bins

    rng = np.random.default_rng(3)
    truth = rng.integers(0, 3, 400)
    noisy = np.where(rng.random(400) < 0.7, truth, rng.integers(0, 3, 400))
    low, high = bootstrap_macro_f1_interval(truth, noisy)
    point = macro_f1(truth, noisy)
    assert low < point < high and high - low < 0.2
    assert bootstrap_macro_f1_interval(truth[:9], noisy[:9]) is None  # too few reviews to say anything
    perfect = np.eye(3)[truth] * 0.9 + 0.1 / 3
    bins = reliability_bins(perfect, truth)
    assert bins["n"].sum() == 400 and bins["accuracy"].tolist() == [1.0]
    curves = precision_recall_curves(perfect, truth)
    assert set(curves) == {"negative", "neutral", "positive"} and all(c.attrs["ap"] == 1.0 for c in curves.values())
    frame = pd.DataFrame({"text": ["good food"] * 400, "label": np.array(["negative", "neutral", "positive"])[truth]})
    slices = compute_slices(frame, np.eye(3)[noisy], truth)
    short = slices.set_index("slice_value").loc["short (<50 words)"]
    assert short["f1_ci_low"] < short["macro_f1"] < short["f1_ci_high"]


def macro_f1(truth, predicted):
    from pipeline.evaluation.metrics import macro_f1 as metrics_macro_f1

    return metrics_macro_f1(np.asarray(truth), np.asarray(predicted))
