"""Model quality: recipes, mean-pool head, calibration / class offsets, TF-IDF baseline, ensemble, readiness,
learning curves, and the benchmark's summary and recommendation."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.evaluation.calibration import fit_adjustment, fit_class_bias, fit_temperature
from pipeline.models.heads import HEAD_FILE, MeanPoolClassifier, bake_adjustment
from pipeline.models.loading import load_classifier, read_metadata
from pipeline.train.config import DEFAULT_RECIPE, RECIPES, TrainConfig
from pipeline.train.run import train
from store import evaluations as evaluation_store
from store import models as model_store
from store.actors import Actor, cli_actor
from store.db import connect, transaction
from store.errors import PermissionDeniedError, TastebudError
from test_training import RecordingReporter
from training_helpers import fill_store, make_tiny_bert, single_thread, tiny_config  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> str:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny") / "bert")


@pytest.fixture
def filled_store(store_path: Path) -> Path:
    fill_store(store_path, rows=300)
    return store_path


# ---------------------------------------------------------------- config


def test_every_recipe_is_a_valid_config_and_the_default_is_one_line():
    for name in RECIPES:
        config = TrainConfig.from_recipe(name)
        for key, value in RECIPES[name].items():
            assert getattr(config, key) == value
    default = TrainConfig()
    recipe = TrainConfig.from_recipe(DEFAULT_RECIPE)
    assert default.to_dict() == recipe.to_dict()
    assert TrainConfig.from_recipe("mean", epochs=1).epochs == 1
    with pytest.raises(ValueError, match="unknown recipe 'nope'"):
        TrainConfig.from_recipe("nope")


def test_new_options_are_validated_and_coerced():
    with pytest.raises(ValueError, match="head must be one of cls, mean"):
        TrainConfig(head="max")
    with pytest.raises(ValueError, match=r"layer_lr_decay must be in \(0, 1\]"):
        TrainConfig(layer_lr_decay=1.5)
    with pytest.raises(ValueError, match=r"head_lr_multiplier must be in \[1, 1000\]"):
        TrainConfig(head_lr_multiplier=0.5)
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        TrainConfig(lr_schedule="step")
    with pytest.raises(ValueError, match="prior_adjust must be true or false"):
        TrainConfig.from_dict({"prior_adjust": "maybe"})
    config = TrainConfig.from_dict({"prior_adjust": "yes", "ensemble": "false", "layer_lr_decay": "0.8"})
    assert config.prior_adjust is True and config.ensemble is False and config.layer_lr_decay == 0.8
    # A config stored before these options existed still loads.
    old = {k: v for k, v in TrainConfig().to_dict().items() if k not in ("head", "prior_adjust", "ensemble")}
    assert TrainConfig.from_dict(old).head == TrainConfig().head


# ---------------------------------------------------------------- calibration


def test_temperature_softens_overconfident_logits_and_offsets_restore_a_shifted_class():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 600)
    clean = np.eye(3)[labels] * 2.0 + rng.normal(0, 1.0, (600, 3))
    overconfident = clean * 6
    assert fit_temperature(overconfident, labels) > 2
    assert fit_temperature(np.zeros((0, 3)), np.zeros(0)) == 1.0
    shifted = clean.copy()
    shifted[:, 1] -= 1.5  # the model under-predicts neutral
    bias = fit_class_bias(shifted, labels)
    assert bias[0] == 0 and bias[1] > 0.8
    adj = fit_adjustment(shifted, labels, calibrate=True, prior_adjust=True)
    assert adj.bias_applied and adj.val_macro_f1_after > adj.val_macro_f1_before + 0.05
    assert np.allclose(adj.apply(shifted), shifted / adj.temperature + np.array(adj.class_bias))
    # Without a gain, no offsets are applied.
    unshifted = fit_adjustment(clean, labels, calibrate=False, prior_adjust=True)
    assert not unshifted.bias_applied and unshifted.class_bias == [0.0, 0.0, 0.0] and unshifted.temperature == 1.0


def test_bake_adjustment_makes_the_model_compute_scaled_and_shifted_logits(tiny_base):
    model, tokenizer = load_classifier(tiny_base)
    batch = tokenizer(["great tacos", "cold fries and rude staff"], return_tensors="pt", padding=True)
    with torch.no_grad():
        before = model(**batch).logits.numpy()
        bake_adjustment(model, 2.0, [0.0, 0.5, -0.25])
        after = model(**batch).logits.numpy()
    assert np.allclose(after, before / 2.0 + np.array([0.0, 0.5, -0.25]), atol=1e-5)
    with pytest.raises(ValueError, match="temperature must be positive"):
        bake_adjustment(model, 0.0, [0, 0, 0])


# ---------------------------------------------------------------- mean-pool head


def test_mean_pool_head_round_trips_and_load_classifier_dispatches_on_metadata(tiny_base, tmp_path):
    model, tokenizer = load_classifier(tiny_base, head="mean")
    assert isinstance(model, MeanPoolClassifier)
    model.eval()
    batch = tokenizer(["great tacos", "the soup was fine I guess"], return_tensors="pt", padding=True)
    with torch.no_grad():
        expected = model(**batch).logits
        # Padding must not change a text's pooled embedding.
        alone = model(**tokenizer(["great tacos"], return_tensors="pt")).logits
    assert torch.allclose(expected[0], alone[0], atol=1e-5)
    out = tmp_path / "saved"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    assert (out / HEAD_FILE).is_file()
    reloaded, _ = load_classifier(str(out))  # the head file alone says "mean"
    assert isinstance(reloaded, MeanPoolClassifier)
    with torch.no_grad():
        assert torch.allclose(reloaded(**batch).logits, expected, atol=1e-5)
    (out / "tastebud.json").write_text(json.dumps({"head": "lstm"}))
    with pytest.raises(TastebudError, match="unknown head 'lstm'"):
        load_classifier(str(out))
    (out / "tastebud.json").write_text(json.dumps({"head": "attention"}))
    with pytest.raises(TastebudError, match="for aspect models"):
        load_classifier(str(out))


def test_layerwise_groups_give_lower_layers_smaller_learning_rates(tiny_base):
    from pipeline.train.loop import layerwise_param_groups

    model, _ = load_classifier(tiny_base, head="mean")
    groups = layerwise_param_groups(model, 1e-3, 0.5, 0.01, head_lr_multiplier=10)
    lr_of = {}
    for group in groups:
        for param in group["params"]:
            lr_of[id(param)] = group["lr"]
    named = dict(model.named_parameters())
    assert lr_of[id(named["classifier.weight"])] == pytest.approx(1e-2)
    assert lr_of[id(named["encoder.encoder.layer.1.attention.self.query.weight"])] == pytest.approx(5e-4)
    assert lr_of[id(named["encoder.encoder.layer.0.attention.self.query.weight"])] == pytest.approx(2.5e-4)
    assert lr_of[id(named["encoder.embeddings.word_embeddings.weight"])] == pytest.approx(1.25e-4)
    assert sum(len(g["params"]) for g in groups) == len([p for p in model.parameters() if p.requires_grad])


# ---------------------------------------------------------------- TF-IDF + LR


def _words(n: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    vocab = {0: ["awful", "cold", "rude"], 1: ["okay", "average", "fine"], 2: ["delicious", "great", "friendly"]}
    labels = rng.integers(0, 3, n)
    texts = [" ".join(rng.choice(vocab[int(y)], 3)) + " food" for y in labels]
    return texts, labels


def test_tfidf_learns_saves_without_pickle_and_reloads_identically(tmp_path):
    from pipeline.models.tfidf import ARRAYS_FILE, CONFIG_FILE, TfidfModel, fit_tfidf

    texts, labels = _words(120)
    val_texts, val_labels = _words(30, seed=1)
    model = fit_tfidf(texts, labels, val_texts, val_labels)
    assert model.val_macro_f1 == 1.0
    assert model.predict_proba(["great friendly food", "rude cold food"]).argmax(axis=1).tolist() == [2, 0]
    model.save(tmp_path / "m")
    assert {p.name for p in (tmp_path / "m").iterdir()} == {ARRAYS_FILE, CONFIG_FILE}
    again = TfidfModel.load(tmp_path / "m")
    assert np.allclose(again.predict_proba(val_texts), model.predict_proba(val_texts))
    # Two classes only: the missing one is never predicted.
    binary = fit_tfidf(texts, np.where(labels == 1, 2, labels), val_texts, val_labels)
    assert (binary.predict_proba(val_texts)[:, 1] < 1e-6).all()
    with pytest.raises(TastebudError, match="at least two classes"):
        fit_tfidf(texts, np.zeros(len(texts), dtype=int), val_texts, val_labels)
    with pytest.raises(TastebudError, match="no TF-IDF model"):
        TfidfModel.load(tmp_path / "missing")


def test_tfidf_is_a_registered_baseline(filled_store):
    from pipeline.models.baselines import TFIDF_ID, register_baselines
    from pipeline.models.predictors import load_predictor

    ids = register_baselines(filled_store, actor=cli_actor(), include=("tfidf",))
    assert ids == [TFIDF_ID]
    with connect(filled_store, read_only=True) as con:
        row = model_store.get_model(con, TFIDF_ID)
        evaluation = evaluation_store.fetch_latest_evaluation(con, TFIDF_ID)
    assert row["kind"] == "baseline" and row["params"]["predictor"] == "tfidf" and row["params"]["C"] > 0
    assert evaluation["n"] > 0 and evaluation["macro_f1"] > 0.5  # demo reviews are easy for word counts
    probs = load_predictor(filled_store, TFIDF_ID).predict_proba(["Amazing food, friendly staff", "Cold and rude"])
    assert probs.shape == (2, 3) and np.allclose(probs.sum(axis=1), 1)


# ---------------------------------------------------------------- training with the new recipe options


def test_mean_head_recipe_trains_calibrates_builds_an_ensemble_and_compares(filled_store, tiny_base):
    from pipeline.models.baselines import register_baselines
    from pipeline.models.ensemble import ensemble_id_for, finetuned_member
    from pipeline.models.predictors import load_predictor

    register_baselines(filled_store, actor=cli_actor(), include=("vader", "tfidf"))
    reporter = RecordingReporter(filled_store)
    config = tiny_config(tiny_base, head="mean", class_weighting="sqrt", prior_adjust=True, ensemble=True,
                         layer_lr_decay=0.8, lr_schedule="cosine", epochs=1)
    ens_id = train(filled_store, config, reporter=reporter)  # the run's product is the ensemble
    with connect(filled_store, read_only=True) as con:
        ensemble = model_store.get_model(con, ens_id)
        model_id = finetuned_member(ensemble)
        model = model_store.get_model(con, model_id)
        ens_eval = evaluation_store.fetch_latest_evaluation(con, ens_id)
    meta = read_metadata(model["path"])
    assert meta["head"] == "mean" and (Path(model["path"]) / HEAD_FILE).is_file()
    calibration = meta["calibration"]
    assert calibration["n_val"] > 0 and calibration["val_ece_before"] is not None
    # Fitted on the validation logits in the Trainer's (length-grouped) order with their own labels:
    # before adjusting, the fit sees exactly the best epoch's validation macro-F1.
    assert calibration["val_macro_f1_before"] == pytest.approx(model["val_metrics"]["macro_f1"], abs=1e-6)
    assert calibration == model["params"]["calibration"]
    assert ensemble["kind"] == "ensemble" and ens_eval["n"] > 0 and ens_id == ensemble_id_for(model_id)
    assert model["kind"] == "finetuned" and ensemble["duration_s"] >= model["duration_s"]
    ens_calibration = ensemble["params"]["calibration"]
    assert ens_calibration["n_val"] > 0 and ens_calibration["val_ece_after"] <= ens_calibration["val_ece_before"]
    assert load_predictor(filled_store, ens_id).temperature == ens_calibration["temperature"]
    weights = [m["weight"] for m in ensemble["params"]["members"]]
    assert sum(weights) == pytest.approx(1.0) and ensemble["params"]["members"][0]["model_id"] == model_id
    probs = load_predictor(filled_store, ens_id).predict_proba(["Amazing tacos", "Rude waiter, cold soup"])
    assert probs.shape == (2, 3) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    assert isinstance(load_predictor(filled_store, model_id).model, MeanPoolClassifier)
    lines = "\n".join(reporter.lines)
    assert "warning: only" in lines and "(at least 500 recommended" in lines  # 300 demo reviews: every class is short
    assert f"{model_id} " in lines and "the best baseline" in lines and "on the same" in lines
    assert f"{ens_id} " in lines and "validation ECE" in lines


def test_cli_train_with_the_ensemble_recipe_reports_and_promotes_the_ensemble(filled_store, tiny_base):
    import subprocess

    from conftest import cli_cmd
    from training_helpers import SUBPROCESS_ENV

    done = subprocess.run(
        cli_cmd("--db", str(filled_store), "train", "--recipe", "ensemble", "--base-model", tiny_base, "--epochs", "1",
                "--batch-size", "8", "--max-length", "32", "--precision", "fp32", "--promote-if-better", "--json"),
        capture_output=True, text=True, env=SUBPROCESS_ENV, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    ens_id, ft_id = result["model_id"], result["finetuned_id"]
    assert ens_id.startswith("ens-") and ft_id.startswith("ft-")
    assert result["metrics"]["n"] > 0 and result["throughput"]["examples"] > 0  # the member's training figures
    with connect(filled_store, read_only=True) as con:
        champion = model_store.get_champion(con)
        kinds = dict(con.execute("SELECT model_id, kind FROM models").fetchall())
    # The first model of a store becomes champion: the run's product, not its member.
    assert champion["model_id"] == ens_id and kinds == {ft_id: "finetuned", ens_id: "ensemble"}
    assert f"{ens_id}: promoted: first model" in done.stderr


def test_a_product_that_cannot_be_judged_stays_registered_and_says_why(filled_store, tiny_base):
    from pipeline.loop.registry import promote
    from pipeline.models.baselines import register_baselines
    from pipeline.models.ensemble import finetuned_member

    register_baselines(filled_store, actor=cli_actor(), include=("vader",), evaluate=False)
    promote(filled_store, "baseline-vader", cli_actor())
    with transaction(filled_store) as con:  # no labeled test review: the promotion rule cannot judge
        con.execute("DELETE FROM labels WHERE review_id IN (SELECT review_id FROM splits WHERE split = 'test')")
    reporter = RecordingReporter(filled_store)
    ens_id = train(filled_store, tiny_config(tiny_base, ensemble=True, epochs=1), reporter=reporter, promote_if_better=True)
    with connect(filled_store, read_only=True) as con:
        ensemble = model_store.get_model(con, ens_id)
        champion = model_store.get_champion(con)["model_id"]
    assert ensemble["kind"] == "ensemble" and ensemble["status"] == "ready" and finetuned_member(ensemble)
    assert champion == "baseline-vader"
    lines = "\n".join(reporter.lines)
    assert "was not evaluated" in lines and f"{ens_id} was not promoted: " in lines


def test_the_ensemble_temperature_changes_confidence_never_the_label():
    from pipeline.models.ensemble import calibrate_mixture
    from pipeline.models.predictors import EnsemblePredictor

    class Fixed:
        def __init__(self, probs):
            self.probs = np.array(probs, dtype=np.float64)

        def predict_proba(self, texts):
            return np.repeat(self.probs[None, :], len(texts), axis=0)

    members = [(Fixed([0.6, 0.3, 0.1]), 0.5), (Fixed([0.3, 0.5, 0.2]), 0.5)]
    plain = EnsemblePredictor("e", members).predict_proba(["a", "b"])
    sharp = EnsemblePredictor("e", members, temperature=0.5).predict_proba(["a", "b"])
    assert np.allclose(plain[0], [0.45, 0.4, 0.15], atol=1e-6)
    assert sharp[0].argmax() == plain[0].argmax() == 0 and sharp[0].max() > plain[0].max()
    assert np.allclose(sharp.sum(axis=1), 1, atol=1e-5)
    with pytest.raises(TastebudError, match="invalid temperature"):
        EnsemblePredictor("e", members, temperature=0.0)
    # Under-confident mixtures (right 90% of the time at ~0.5 confidence) are sharpened on validation.
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 600)
    guess = np.where(rng.random(600) < 0.9, labels, (labels + 1) % 3)
    mixed = np.full((600, 3), 0.25)
    mixed[np.arange(600), guess] = 0.5
    fitted = calibrate_mixture(mixed, labels)
    assert fitted["temperature_applied"] and fitted["temperature"] < 1
    assert fitted["val_ece_after"] < fitted["val_ece_before"] / 3


def test_comparison_uses_only_baselines_on_the_same_test_snapshot(filled_store):
    from pipeline.evaluation.comparison import compare_with_best_baseline
    from pipeline.models.baselines import register_baselines
    from store.evaluations import insert_evaluation

    def evaluated(model_id, kind, f1, snapshot):
        with transaction(filled_store) as con:
            model_store.register_model(con, model_id=model_id, kind=kind, name=model_id)
            insert_evaluation(con, model_id, "test", {"n": 30, "macro_f1": f1, "accuracy": 0.8, "test_snapshot": snapshot})

    evaluated("ft-new", "finetuned", 0.70, "snap-now")
    result = compare_with_best_baseline(filled_store, "ft-new")
    assert result["baseline_id"] is None and "run `tastebud baselines`" in result["line"]
    evaluated("baseline-old", "baseline", 0.95, "snap-before-relabel")
    assert compare_with_best_baseline(filled_store, "ft-new", refresh=False)["baseline_id"] is None
    evaluated("baseline-good", "baseline", 0.65, "snap-now")
    result = compare_with_best_baseline(filled_store, "ft-new", refresh=False)
    assert result["baseline_id"] == "baseline-good" and result["delta_macro_f1"] == pytest.approx(0.05)
    assert result["line"].startswith("ft-new beats the best baseline baseline-good (baseline-good) on the same 30 test reviews")
    # refresh re-evaluates a stale baseline on today's test split (a real one: VADER).
    register_baselines(filled_store, actor=cli_actor(), include=("vader",), evaluate=False)
    with connect(filled_store, read_only=True) as con:
        assert evaluation_store.fetch_latest_evaluation(con, "baseline-vader") is None
    compare_with_best_baseline(filled_store, "ft-new")
    with connect(filled_store, read_only=True) as con:
        assert evaluation_store.fetch_latest_evaluation(con, "baseline-vader")["n"] > 0
    with pytest.raises(TastebudError, match="has no test evaluation"):
        compare_with_best_baseline(filled_store, "nothing-here")


# ---------------------------------------------------------------- readiness and learning curves


def test_data_readiness_counts_training_labels_per_class(filled_store):
    from pipeline.train.readiness import check_data_readiness, readiness_warnings
    from store.quality import fetch_class_counts, fetch_data_readiness

    with connect(filled_store, read_only=True) as con:
        counts = fetch_class_counts(con)
        frame = fetch_data_readiness(con, minimum=50)
        total = con.execute("SELECT count(*) FROM splits WHERE split = 'train'").fetchone()[0]
    assert sum(counts.values()) == total and set(counts) == {"negative", "neutral", "positive"}
    assert list(frame.columns) == ["label", "n_train", "minimum", "ready", "missing"]
    assert (frame["ready"] == (frame["n_train"] >= 50)).all()
    report = check_data_readiness(filled_store)
    assert report["ready"] is False and len(report["warnings"]) == 3
    assert readiness_warnings({"negative": 500, "neutral": 499, "positive": 900}) == [
        "only 499 labeled training examples of neutral (at least 500 recommended; label 1 more)"]


def test_tfidf_learning_curve_is_stored_and_read_back(filled_store):
    from pipeline.evaluation.learning_curve import default_sizes, learning_curve
    from store.quality import fetch_learning_curves

    with pytest.raises(PermissionDeniedError):
        learning_curve(filled_store, actor=Actor("vic", "viewer"))
    with pytest.raises(TastebudError, match="kind must be one of tfidf, finetuned"):
        learning_curve(filled_store, kind="svm", actor=cli_actor())
    with pytest.raises(TastebudError, match="every size is larger"):
        learning_curve(filled_store, sizes=[100000], actor=cli_actor())
    result = learning_curve(filled_store, sizes=[60, 120, 100000], repeats=2, actor=cli_actor())
    assert [p["n_train"] for p in result["points"]][:4] == [60, 60, 120, 120]
    with connect(filled_store, read_only=True) as con:
        curve = fetch_learning_curves(con)
    assert list(curve["n_train"]) == [60, 120] and (curve["repeats"] == 2).all()
    assert curve["macro_f1"].between(0, 1).all() and (curve["model_kind"] == "tfidf").all()
    assert default_sizes(1800) == [250, 500, 1000, 1800] and default_sizes(100) == [100]


def test_learning_curve_cli_and_train_recipe_errors(filled_store):
    from typer.testing import CliRunner

    from pipeline.cli import app

    done = CliRunner().invoke(app, ["--db", str(filled_store), "learning-curve", "--sizes", "60,120"])
    assert done.exit_code == 0, done.output
    assert "stored curve-" in done.output and "     120 train reviews  macro-F1 " in done.output
    bad = CliRunner().invoke(app, ["--db", str(filled_store), "train", "--recipe", "magic"])
    assert bad.exit_code != 0 and "unknown recipe 'magic'" in str(bad.exception)


# ---------------------------------------------------------------- store schema


def test_migration_101_keeps_models_and_allows_the_ensemble_kind(tmp_path):
    import duckdb

    from store.migrations import migrate

    con = duckdb.connect(str(tmp_path / "old.duckdb"))
    migrate(con, target=100)
    con.execute("INSERT INTO models (model_id, kind, name, status, created_at) VALUES ('m1', 'baseline', 'VADER', 'ready', now())")
    with pytest.raises(duckdb.ConstraintException):
        con.execute("INSERT INTO models (model_id, kind, name, status, created_at) VALUES ('e', 'ensemble', 'x', 'ready', now())")
    assert migrate(con)[:2] == [101, 102]
    assert con.execute("SELECT model_id, kind, name FROM models").fetchall() == [("m1", "baseline", "VADER")]
    model_store.register_model(con, model_id="e1", kind="ensemble", name="ens")
    with pytest.raises(duckdb.ConstraintException):
        con.execute("INSERT INTO models (model_id, kind, name, status, created_at) VALUES ('x', 'magic', 'x', 'ready', now())")
    columns = con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'learning_curves' ORDER BY ordinal_position"
    ).fetchall()
    from store.quality import CURVE_COLUMNS

    assert tuple(c for (c,) in columns) == CURVE_COLUMNS
    con.close()


# ---------------------------------------------------------------- benchmark summary


def test_bench_recommends_a_recipe_only_when_it_wins_by_more_than_the_fold_std(tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    import quality_bench

    def rec(method, fold, f1):
        return {"dataset": "yelp", "fold": fold, "method": method, "macro_f1": f1, "accuracy": 0.8, "ece": 0.05,
                "f1_negative": 0.8, "f1_neutral": 0.4, "f1_positive": 0.9, "precision_neutral": 0.4, "seconds": 10}

    records = ([rec("recipe:baseline", k, f) for k, f in enumerate([0.68, 0.69, 0.70])]
               + [rec("recipe:mean", k, f) for k, f in enumerate([0.75, 0.76, 0.74])]
               + [rec("recipe:mean-none-prior", k, f) for k, f in enumerate([0.60, 0.80, 0.70])]
               + [rec("tfidf", k, 0.71) for k in range(3)])
    lines = quality_bench.recommend(quality_bench.summarise(records), "yelp", default_recipe="baseline")
    assert "best recipe by mean test macro-F1: mean 0.7500" in lines[0]
    assert "WINS: gain +0.0600 > fold std 0.0100; change DEFAULT_RECIPE to 'mean'" in lines[1]
    assert "best recipe beats it by +0.0400" in lines[2]
    noisy = [r for r in records if r["method"] != "recipe:mean"]
    lines = quality_bench.recommend(quality_bench.summarise(noisy), "yelp", default_recipe="baseline")
    assert "not a win: gain +0.0100 <= fold std 0.1000; keep 'baseline'" in lines[1]
    quality_bench.write_summary(tmp_path, records, "header")
    text = (tmp_path / "summary.md").read_text()
    assert "| yelp | recipe:mean | 3 | 0.7500 ± 0.0100 |" in text
    assert json.loads((tmp_path / "summary.json").read_text())["records"][0]["method"] == "recipe:baseline"


def test_bench_folds_are_stratified_and_disjoint():
    sys.path.insert(0, str(ROOT / "bench"))
    import quality_bench

    labels = pd.Series(["negative"] * 30 + ["neutral"] * 20 + ["positive"] * 50)
    for scheme in ("repeated", "kfold"):
        folds = quality_bench.fold_assignments(labels, scheme=scheme, folds=3)
        assert len(folds) == 3
        for split in folds:
            assert set(split) == {"train", "val", "test"}
            assert labels[split == "test"].value_counts()["positive"] >= 4
    kfold = quality_bench.fold_assignments(labels, scheme="kfold", folds=3)
    tests = [set(np.flatnonzero(s == "test")) for s in kfold]
    assert not (tests[0] & tests[1]) and sum(len(t) for t in tests) == 100


def test_posthoc_windows_cover_each_review_and_views_agree_on_short_ones(tiny_base):
    sys.path.insert(0, str(ROOT / "bench"))
    import quality_posthoc

    from pipeline.device import resolve_device
    from pipeline.models.predictors import ClassifierPredictor

    ids = [list(range(100, 100 + n)) for n in (0, 5, 126, 127, 300)]
    windows, owner, heads, lasts = quality_posthoc.review_windows(ids, 1, 2)
    for i, text in enumerate(ids):
        mine = [w[1:-1] for w, o in zip(windows, owner) if o == i]
        assert all(w[0] == 1 and w[-1] == 2 for w in windows)
        assert all(len(w) <= quality_posthoc.WINDOW for w in mine)
        assert sorted(set(t for w in mine for t in w)) == text  # every token of the review is read
        assert mine[0] == text[:quality_posthoc.WINDOW] and mine[-1] == text[-quality_posthoc.WINDOW:]
        assert windows[heads[i]][1:-1] == mine[0] and windows[lasts[i]][1:-1] == mine[-1]
    assert [int((owner == i).sum()) for i in range(len(ids))] == [1, 1, 1, 2, 3]

    predictor = ClassifierPredictor("tiny", tiny_base, max_length=128, truncation="head_tail", device=resolve_device("cpu"))
    texts = ["Great tacos, slow service.", "The food was fine. " * 60]
    views = quality_posthoc.window_views(predictor, texts)
    for probs in views.values():
        assert probs.shape == (2, 3) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    # one window: every way of reading the short review is the same reading
    assert all(np.allclose(views[k][0], views["head"][0], atol=1e-5) for k in ("winmean", "winlogit", "win2"))


def test_posthoc_ordinal_thresholds_recover_ordered_classes():
    sys.path.insert(0, str(ROOT / "bench"))
    import quality_posthoc

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    score = labels + rng.normal(0, 0.1, 300)
    assert (quality_posthoc.ordinal_thresholds(score, labels, score) == labels).mean() > 0.99


def test_posthoc_nb_lr_and_mixing_rules_read_validation_only():
    sys.path.insert(0, str(ROOT / "bench"))
    import quality_posthoc

    rng = np.random.default_rng(0)
    words = {0: "awful cold rude", 1: "okay fine average", 2: "delicious friendly great"}
    labels = rng.integers(0, 3, 240)
    texts = np.array([f"{words[k]} {' '.join(rng.choice(['the', 'food', 'service', 'we', 'table'], 6))}" for k in labels])
    p_va, p_te = quality_posthoc.nb_lr(texts[:160], labels[:160], texts[160:200], labels[160:200], texts[200:])
    assert p_va.shape == (40, 3) and np.allclose(p_te.sum(axis=1), 1.0)
    assert (p_te.argmax(axis=1) == labels[200:]).mean() > 0.95

    # member a is right on validation and wrong on test, b the other way round: every rule fitted on validation
    # must lean to a, so the test score shows that the test labels were never read when choosing
    y = np.array([0, 1, 2] * 20)
    is_val = np.arange(60) < 30
    right, wrong = np.eye(3)[y] * 0.8 + 0.2 / 3, np.eye(3)[(y + 1) % 3] * 0.8 + 0.2 / 3
    a = np.where(is_val[:, None], right, wrong)
    b = np.where(is_val[:, None], wrong, right)
    rules = quality_posthoc.mixing_rules(a, b, is_val, y)
    assert set(rules) == {"linear, w by macro-F1", "linear, w by log-loss", "linear, w = 0.5", "geometric, w by log-loss"}
    for rule, (w, f1) in rules.items():
        if rule != "linear, w = 0.5":
            assert w > 0.5 and f1 < 0.5, rule


def test_posthoc_window_stack_uses_window_statistics():
    sys.path.insert(0, str(ROOT / "bench"))
    import quality_posthoc

    # two windows per review, a neutral one has a negative and a positive window; both members are flat (1/3 each),
    # so only what the stacker reads from the windows can tell the classes apart (chance would be ~0.33)
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 400)
    first = np.where(y == 2, 2, 0)
    second = np.where(y == 0, 0, 2)
    window_p = np.eye(3)[np.ravel(np.column_stack([first, second]))] * 0.7 + 0.1
    owner = np.repeat(np.arange(400), 2)
    flat = np.full((400, 3), 1 / 3)
    is_val = np.arange(400) < 200
    assert quality_posthoc.window_stack(window_p, owner, flat, flat, is_val, y) > 0.95
