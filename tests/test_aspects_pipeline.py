"""The aspect model end to end: sentences, pooling, metrics, train --task aspects, score, evaluate, models."""

from __future__ import annotations

import json
import random
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.aspects.metrics import aspect_metrics
from pipeline.aspects.model import aspect_loss, pool_reviews, targets_from_frame
from pipeline.aspects.sentences import split_sentences
from store import aspects as aspect_store
from store import models as model_store
from store import training_runs as run_store
from store.db import connect, transaction
from store.evaluations import fetch_latest_evaluation
from tests.conftest import cli_cmd, seed_reviews
from tests.tiny_model import save_tiny_classifier

FOOD = {"positive": ["The food was delicious.", "Amazing tacos, great flavor."],
        "negative": ["The food was awful and cold.", "Terrible bland noodles."]}
SERVICE = {"positive": ["Our server was friendly and quick.", "Great attentive staff."],
           "negative": ["The service was slow and rude.", "We waited an hour for the waiter."]}


@pytest.mark.parametrize("text", [
    "Great tacos! The service, though... slow. Dr. Li agreed.",
    "one\n\ntwo. three!!  four?\n",
    "no punctuation at all",
    "   leading and trailing   ",
    "A. B. C.",
])
def test_sentences_cover_every_character_once(text):
    spans = split_sentences(text)
    covered = [False] * len(text)
    for start, end in spans:
        assert text[start:end] == text[start:end].strip() and start < end
        for i in range(start, end):
            assert not covered[i]
            covered[i] = True
    assert all(covered[i] or text[i].isspace() for i in range(len(text)))
    review = "Great tacos! Slow service. Dr. Li agreed."
    assert [review[a:b] for a, b in split_sentences(review)] == ["Great tacos!", "Slow service.", "Dr. Li agreed."]


def test_pooling_takes_the_sentence_that_speaks_of_the_aspect():
    # Two reviews, one aspect: review 0 has a neutral-ish sentence and a sentence that mentions the aspect
    # negatively; review 1 one sentence.
    logits = torch.tensor([
        [-4.0, 0.0, 0.0, 3.0],   # r0 s0: not mentioned, (positive)
        [5.0, 4.0, 0.0, 0.0],    # r0 s1: mentioned, negative
        [1.0, 0.0, 2.0, 0.0],    # r1 s0: mentioned, neutral
    ])
    mentioned, polarity, evidence = pool_reviews(logits, torch.tensor([0, 0, 1]), 2)
    assert mentioned[:, 0].tolist() == [5.0, 1.0]
    assert evidence[:, 0].tolist() == [1, 2]
    assert polarity[0, 0].argmax().item() == 0  # negative: the mentioning sentence dominates the average
    assert polarity[1, 0].tolist() == [0.0, 2.0, 0.0]
    # The loss trains polarity only where a polarity is labeled, detection wherever a label is known.
    targets = torch.tensor([[1], [4]])  # negative; conflict
    loss = aspect_loss(mentioned, polarity, targets)
    assert torch.isfinite(loss) and loss > 0
    unknown = aspect_loss(mentioned, polarity, torch.tensor([[-100], [-100]]))
    assert unknown.item() == 0.0


def test_metrics_follow_semeval_rules():
    aspects = ["food", "service"]
    targets = np.array([[3, 0], [1, 4], [0, 2], [-100, 1]])  # pos/absent, neg/conflict, absent/neutral, ?/neg
    p_m = np.array([[0.9, 0.1], [0.8, 0.7], [0.6, 0.2], [0.9, 0.9]])
    p_pol = np.zeros((4, 2, 3))
    p_pol[0, 0, 2] = p_pol[1, 0, 0] = p_pol[2, 1, 1] = p_pol[3, 1, 2] = 1  # the last polarity is wrong
    m = aspect_metrics(targets, p_m, p_pol, aspects)
    det = m["detection"]
    # known pairs: 7; gold mentioned: (0f),(1f),(1s conflict),(2s),(3s) = 5; predicted: (0f),(1f),(1s),(2f),(3s) = 5
    assert (det["micro_precision"], det["micro_recall"]) == (pytest.approx(4 / 5), pytest.approx(4 / 5))
    # polarity: conflict set aside -> (0f pos ok), (1f neg ok), (2s neu, predicted from p_pol even though
    # detection missed it: ok), (3s neg, predicted pos: wrong)
    assert m["polarity"]["n"] == 4 and m["polarity"]["accuracy"] == pytest.approx(0.75)
    assert m["polarity"]["per_aspect"]["service"]["n"] == 2


def _aspect_store(db, n=240, seed=0):
    """Reviews whose food / service sentences decide their aspect labels; every review aspect-annotated."""
    rng = random.Random(seed)
    rows, labels = [], []
    for i in range(n):
        parts, polarity = [], {}
        for aspect, phrases in (("food", FOOD), ("service", SERVICE)):
            choice = rng.choice(["absent", "positive", "negative"])
            if choice != "absent":
                parts.append(rng.choice(phrases[choice]))
                polarity[aspect] = choice
        parts.append(rng.choice(["We came on a Tuesday.", "It was my birthday.", "Parking was easy to find."]))
        rng.shuffle(parts)
        rows.append({"review_id": f"r{i:03d}", "text": " ".join(parts), "stars": 3})
        labels += [{"review_id": f"r{i:03d}", "aspect": a, "polarity": p, "source": "import"} for a, p in polarity.items()]
        if not polarity:  # an annotated review that mentions neither aspect
            labels.append({"review_id": f"r{i:03d}", "aspect": "food", "polarity": "absent", "source": "import"})
    seed_reviews(db, pd.DataFrame(rows))
    with transaction(db) as con:
        aspect_store.append_aspect_labels(con, pd.DataFrame(labels))
    return rows


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    return str(save_tiny_classifier(tmp_path_factory.mktemp("tiny") / "base"))


def _run(*args, check=True):
    done = subprocess.run(cli_cmd(*args), capture_output=True, text=True, timeout=600)
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.mark.slow
def test_train_score_evaluate_an_aspect_model(store_path, tiny_base, tmp_path):
    _aspect_store(store_path)
    db = str(store_path)
    trained = json.loads(_run("--db", db, "train", "--task", "aspects", "--base-model", tiny_base, "--epochs", "25",
                              "--lr", "2e-3", "--batch-size", "16", "--max-length", "32", "--patience", "0",
                              "--json").stdout)
    model_id = trained["model_id"]
    assert trained["task"] == "aspects" and trained["champion"], "the store's first aspect model is promoted"
    with connect(store_path, read_only=True) as con:
        model = model_store.get_model(con, model_id)
        assert model["task"] == "aspects" and model["params"]["aspects"] == list(aspect_store.DEFAULT_ASPECTS)
        assert model_store.get_champion(con)  is None  # review sentiment untouched
        evaluation = fetch_latest_evaluation(con, model_id)
        epochs = con.execute("SELECT count(*) FROM epoch_metrics e JOIN training_runs r USING (run_id) "
                             "WHERE r.model_id = ?", [model_id]).fetchone()[0]
    assert epochs == 25
    # The keyword task is easy: a model that learned nothing would sit near chance.
    assert evaluation["detection"]["micro_f1"] > 0.8, evaluation["detection"]
    assert evaluation["polarity"]["accuracy"] > 0.8, evaluation["polarity"]

    scored = json.loads(_run("--db", db, "score", "--json").stdout)
    assert scored["model_id"] == model_id and scored["scored"] == 240 and scored["aspects"] == list(aspect_store.DEFAULT_ASPECTS)
    again = json.loads(_run("--db", db, "score", "--task", "aspects", "--json").stdout)
    assert again["scored"] == 0  # idempotent: nothing pending
    with connect(store_path, read_only=True) as con:
        predictions = aspect_store.fetch_aspect_predictions(con, model_id)
        truth = aspect_store.fetch_aspect_split(con, None)
    assert len(predictions) == 240 * len(aspect_store.DEFAULT_ASPECTS)
    food = predictions[predictions["aspect"] == "food"].merge(truth[["review_id", "food"]], on="review_id")
    mentioned = food[food["food"] != "absent"]
    # The evidence of a detected food mention is the food sentence, not the filler.
    hits = mentioned[mentioned["polarity"] != "absent"]
    assert len(hits) > 0.8 * len(mentioned)
    phrases = {p for v in FOOD.values() for p in v}
    assert (hits["evidence"].isin(phrases)).mean() > 0.8

    text = _run("--db", db, "evaluate", model_id).stdout
    assert "detection  micro P" in text and "polarity   accuracy" in text and "service" in text
    # On a file: rows the importer would reject are left out and counted, by reason.
    data = tmp_path / "eval.csv"
    data.write_text("review_id,text,aspect,polarity\n"
                    "e1,The pasta was great.,food,positive\ne2,Meh.,food,mixed\ne3,Nice patio.,parking,positive\n")
    on_file = json.loads(_run("--db", db, "evaluate", model_id, "--data", str(data), "--json").stdout)
    assert on_file["n"] == 1 and on_file["left_out"] == {"unknown_aspect": 1, "unknown_polarity": 1}
    assert "left out: 1 unknown_aspect, 1 unknown_polarity row(s)" in _run("--db", db, "evaluate", model_id, "--data",
                                                                   str(data)).stdout
    textless = tmp_path / "textless.csv"
    textless.write_text("review_id,aspect,polarity\ne1,food,positive\n")
    refused = _run("--db", db, "evaluate", model_id, "--data", str(textless), check=False)
    assert refused.returncode == 2 and "gives no review text" in refused.stderr and "text column" in refused.stderr
    listing = _run("--db", db, "models", "--task", "aspects").stdout
    assert model_id in listing and "* " + model_id in listing
    assert model_id not in _run("--db", db, "models").stdout


def test_bad_aspect_training_requests_are_one_line_errors(store_path, tiny_base):
    db = str(store_path)
    empty = _run("--db", db, "train", "--task", "aspects", "--base-model", tiny_base, check=False)
    assert empty.returncode == 2 and "aspect-annotated reviews" in empty.stderr
    for args, message in ((["--task", "topics"], "--task must be"), (["--task", "aspects", "--recipe", "mean"], "--recipe"),
                          (["--task", "aspects", "--resume"], "--resume"),
                          (["--task", "aspects", "--prior-adjust"], "prior_adjust=True does not apply to aspect models")):
        done = _run("--db", db, "train", *args, check=False)
        assert done.returncode == 2 and message in done.stderr, done.stderr
    nothing = _run("--db", db, "score", "--task", "aspects", check=False)
    assert nothing.returncode == 2 and "no aspect champion" in nothing.stderr


def test_targets_from_a_wide_frame():
    frame = pd.DataFrame({"review_id": ["a", "b"], "text": ["x", "y"], "food": ["positive", "conflict"],
                          "service": ["absent", "negative"]})
    assert targets_from_frame(frame, ["food", "service", "price"]).tolist() == [[3, 0, -100], [4, 1, -100]]


def test_int8_scoring_copy_of_a_mean_pool_model(tiny_base):
    """Where pipeline.device picks int8 (AVX2, no AMX), a mean-pooled model's encoder is quantized too."""
    from pipeline.aspects.fit import load_aspect_model
    from pipeline.models.inference import is_int8_quantized, quantize_linear_int8

    model, _ = load_aspect_model(tiny_base, ["food", "service"], head="mean")
    ids = torch.randint(5, 1000, (3, 12))
    mask = torch.ones_like(ids)
    before = model(input_ids=ids, attention_mask=mask).logits
    quantize_linear_int8(model)
    assert is_int8_quantized(model) and isinstance(model.classifier, torch.nn.Linear)
    after = model(input_ids=ids, attention_mask=mask).logits
    assert after.shape == before.shape == (3, 8) and torch.allclose(before, after, atol=0.2)


@pytest.mark.slow
def test_an_aspect_sweep_checks_every_trial_first_then_keeps_the_best(store_path, tiny_base):
    from pipeline.aspects.train import aspect_train_config, sweep_aspects
    from store.errors import TastebudError

    _aspect_store(store_path, n=120)
    config = aspect_train_config(base_model=tiny_base, learning_rate=2e-3, max_length=32, early_stopping_patience=0,
                                 device="cpu", precision="fp32")
    with pytest.raises(TastebudError, match="calibrate=True does not apply to aspect models"):
        sweep_aspects(store_path, config, {"epochs": ["1"], "calibrate": ["false", "true"]})
    with connect(store_path, read_only=True) as con:
        assert run_store.list_runs(con).empty  # nothing started
    result = sweep_aspects(store_path, config, {"epochs": ["1", "3"]})
    assert [t["params"] for t in result["trials"]] == [{"epochs": "1"}, {"epochs": "3"}]
    best = max(result["trials"], key=lambda t: t["val_score"])
    assert best["best"] and sum(t["best"] for t in result["trials"]) == 1
    with connect(store_path, read_only=True) as con:
        runs = run_store.list_runs(con, sweep_id=result["sweep_id"])
        assert model_store.get_model(con, result["model_id"])["task"] == "aspects"
    assert len(runs) == 2 and set(runs["model_id"].dropna()) == {result["model_id"]}
    assert runs.set_index("run_id").loc[best["run_id"], "model_id"] == result["model_id"]


def test_sparse_aspects_are_warned_about():
    from pipeline.aspects.train import sparse_aspect_warnings

    train = pd.DataFrame({"food": ["positive"] * 30 + ["absent"] * 5, "service": ["negative"] * 3 + ["absent"] * 32,
                          "parking": ["absent"] * 35})
    val = pd.DataFrame({"food": ["positive", "absent"], "service": ["absent", "absent"], "parking": ["absent"] * 2})
    assert sparse_aspect_warnings(train, val, ["food", "service", "parking"]) == [
        "service: 3 train mentions (under 20): its detection will be unreliable",
        "service: no val mention: validation cannot judge it",
        "parking: 0 train mentions: the model cannot learn it yet; label some first",
    ]
