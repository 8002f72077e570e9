"""General-purpose baselines a fine-tuned model has to beat, registered and evaluated like any model.

- VADER: the rule-based lexicon, compound thresholds ±0.05.
- Zero-shot: the packaged sentence encoder, no fine-tuning; a review goes to the label whose
  description embeddings ("a negative restaurant review", ...) it is closest to.
- TF-IDF + logistic regression (:mod:`pipeline.models.tfidf`): the cheap *learned* reference,
  trained on the train split with C chosen on the validation split. Fine-tuning has to beat it
  to be worth its cost.
- Optionally a user-supplied Hugging Face sentiment classifier with a label mapping.

VADER, zero-shot and HF models do not learn from the store's labels: only a single softmax
scale (temperature) is fitted on the validation split, which leaves every prediction unchanged
and makes the probabilities usable for calibration error and confidence-based flagging.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from pipeline.models.loading import default_base_model, models_dir
from pipeline.models.predictors import (
    VADER_DEFAULT_SCALE,
    ZEROSHOT_DEFAULT_SCALE,
    ZEROSHOT_DESCRIPTIONS,
    VaderPredictor,
    ZeroShotPredictor,
    load_hf_classifier,
)
from store import models as model_store
from store.actors import Actor, audit, require
from store.constants import LABEL_TO_ID, LABELS
from store.db import connect, transaction
from store.errors import TastebudError
from store.reviews import fetch_labeled_split

VADER_ID = "baseline-vader"
ZEROSHOT_ID = "baseline-zeroshot-minilm"
TFIDF_ID = "baseline-tfidf-lr"
DEFAULT_BASELINES = ("vader", "zeroshot", "tfidf")
# Candidate softmax scales tried when fitting the temperature on the val split (log-spaced).
SCALE_GRID = np.logspace(-1, 3, 81)


def register_baselines(
    db,
    *,
    actor: Actor,
    hf_model: str | None = None,
    label_map: dict[str, str] | None = None,
    include: Sequence[str] = DEFAULT_BASELINES,
    evaluate: bool = True,
    reporter=None,
) -> list[str]:
    """Register (or refresh) the baselines and evaluate each on the test split.

    Args:
        db: store path.
        actor: needs the "train" permission.
        hf_model: optional HF model id or local path of a sentiment classifier to add.
        label_map: its label name -> negative/neutral/positive (inferred from names like
            "NEGATIVE", "neutral", "5 stars" when omitted).
        include: which built-in baselines to register: "vader", "zeroshot", "tfidf" (default all).
        evaluate: evaluate each on the test split right away.
        reporter: optional :class:`pipeline.jobs.JobReporter` for log lines.

    Returns:
        The registered model ids.

    Example:
        >>> register_baselines("store.duckdb", actor=cli_actor())  # doctest: +SKIP
        ['baseline-vader', 'baseline-zeroshot-minilm', 'baseline-tfidf-lr']
    """
    require(actor, "train")
    unknown = sorted(set(include) - set(DEFAULT_BASELINES))
    if unknown:
        raise TastebudError(f"unknown baselines {unknown}; built-in ones are {', '.join(DEFAULT_BASELINES)}")
    if not include and not hf_model:
        raise TastebudError("nothing to register: give --hf-model or keep the built-in baselines")
    log = reporter.log if reporter else (lambda message: None)
    with connect(db, read_only=True) as con:
        val = fetch_labeled_split(con, "val")
        train = fetch_labeled_split(con, "train") if "tfidf" in include else None
    texts, labels = val["text"].tolist(), val["label"].map(LABEL_TO_ID).to_numpy(dtype=np.int64)
    rows = []
    if "vader" in include:
        rows.append(_vader_row(texts, labels))
        log(f"VADER: scale {rows[-1]['params']['scale']:.3g} fitted on {len(texts)} val reviews")
    if "zeroshot" in include:
        rows.append(_zeroshot_row(texts, labels))
        log(f"zero-shot: scale {rows[-1]['params']['scale']:.3g} fitted on {len(texts)} val reviews")
    if "tfidf" in include:
        rows.append(tfidf_row(models_dir(db) / TFIDF_ID, train, val))
        log(f"TF-IDF + LR: C={rows[-1]['params']['C']:g} chosen on {len(texts)} val reviews, trained on {len(train)}")
    if hf_model:
        rows.append(_hf_row(hf_model, label_map, texts, labels))
        log(f"{hf_model}: label map {rows[-1]['params']['label_map']}")
    with transaction(db) as con:
        for row in rows:
            model_store.register_model(con, kind="baseline", status="ready", **row)
            audit(con, actor, "model.register", target=row["model_id"], detail={"kind": "baseline", "name": row["name"]})
    ids = [row["model_id"] for row in rows]
    if evaluate:
        from pipeline.evaluation.evaluator import evaluate_model

        for model_id in ids:
            result = evaluate_model(db, model_id)
            log(f"{model_id}: test accuracy {result['accuracy']:.4f}, macro-F1 {result['macro_f1']:.4f}")
    return ids


def fit_scale(logits: np.ndarray, labels: np.ndarray, *, default: float) -> float:
    """The softmax scale (inverse temperature) minimising validation log-loss; ``default`` without data.

    Example:
        >>> fit_scale(np.array([[1.0, 0, -1], [-1, 0, 1]]), np.array([0, 2]), default=1.0) > 10
        True
    """
    if len(labels) == 0:
        return default
    best, best_loss = default, np.inf
    for scale in SCALE_GRID:
        z = scale * logits
        z = z - z.max(axis=1, keepdims=True)
        log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        loss = -log_probs[np.arange(len(labels)), labels].mean()
        if loss < best_loss - 1e-12:
            best, best_loss = float(scale), loss
    return best


def _vader_row(texts: Sequence[str], labels: np.ndarray) -> dict:
    vader = VaderPredictor(VADER_ID)
    logits = vader.logits(vader.compound(texts)) if texts else np.zeros((0, 3))
    scale = fit_scale(logits, labels, default=VADER_DEFAULT_SCALE)
    return {
        "model_id": VADER_ID, "name": "VADER", "base_model": "vaderSentiment", "path": None,
        "params": {"predictor": "vader", "scale": scale, "threshold": 0.05, "scale_fitted_on": len(texts)},
    }


def _zeroshot_row(texts: Sequence[str], labels: np.ndarray) -> dict:
    encoder = default_base_model()
    predictor = ZeroShotPredictor(ZEROSHOT_ID, encoder)
    logits = predictor.similarities(texts) if texts else np.zeros((0, 3))
    scale = fit_scale(logits, labels, default=ZEROSHOT_DEFAULT_SCALE)
    return {
        "model_id": ZEROSHOT_ID, "name": "zero-shot MiniLM embeddings", "base_model": encoder, "path": encoder,
        "params": {"predictor": "zeroshot", "scale": scale, "descriptions": {k: list(v) for k, v in ZEROSHOT_DESCRIPTIONS.items()},
                   "max_length": 256, "scale_fitted_on": len(texts)},
    }


def tfidf_row(out_dir, train, val, *, model_id: str = TFIDF_ID, name: str = "TF-IDF + LR") -> dict:
    """Fit TF-IDF + LR on ``train`` (C chosen on ``val``), save it to ``out_dir``; the registry row to insert.

    Raises:
        TastebudError: an empty train split or fewer than two classes.
    """
    from pipeline.models.tfidf import fit_tfidf

    if train is None or train.empty:
        raise TastebudError("TF-IDF + LR needs labeled reviews in the train split: import or label reviews first")
    ids = {k: f["label"].map(LABEL_TO_ID).to_numpy(dtype=np.int64) for k, f in (("train", train), ("val", val))}
    model = fit_tfidf(train["text"].tolist(), ids["train"], val["text"].tolist(), ids["val"])
    model.save(out_dir)
    return {
        "model_id": model_id, "name": name, "base_model": "scikit-learn", "path": str(out_dir),
        "params": {"predictor": "tfidf", "C": model.c, "ngram_range": [1, 2], "class_weight": "balanced",
                   "val_macro_f1": model.val_macro_f1, "n_train": len(train), "n_val": len(val)},
    }


def _hf_row(path_or_id: str, label_map: dict[str, str] | None, texts, labels) -> dict:
    model, _ = load_hf_classifier(path_or_id)
    id2label = {int(k): str(v) for k, v in model.config.id2label.items()}
    mapping = dict(label_map) if label_map else infer_label_map(list(id2label.values()))
    unknown = sorted(set(id2label.values()) - set(mapping))
    if unknown:
        raise TastebudError(f"labels {unknown} of {path_or_id} have no mapping; give --label-map NAME=negative|neutral|positive,...")
    bad = sorted({v for v in mapping.values() if v not in LABELS})
    if bad:
        raise TastebudError(f"--label-map targets must be {', '.join(LABELS)}; got {bad}")
    slug = re.sub(r"[^a-z0-9]+", "-", path_or_id.lower().rstrip("/").split("/")[-1]).strip("-")
    return {
        "model_id": f"baseline-hf-{slug}", "name": f"HF {path_or_id}", "base_model": path_or_id, "path": path_or_id,
        "params": {"predictor": "hf", "label_map": mapping, "max_length": 256},
    }


def infer_label_map(names: Sequence[str]) -> dict[str, str]:
    """Guess a mapping from a model's label names: neg/neu/pos words, or "N star(s)" ratings.

    Raises:
        TastebudError: a name matches no rule (give --label-map).

    Example:
        >>> infer_label_map(["NEGATIVE", "POSITIVE"])
        {'NEGATIVE': 'negative', 'POSITIVE': 'positive'}
        >>> infer_label_map(["1 star", "3 stars", "5 stars"])
        {'1 star': 'negative', '3 stars': 'neutral', '5 stars': 'positive'}
    """
    mapping = {}
    for name in names:
        lower = name.lower()
        stars = re.fullmatch(r"\s*([1-5])\s*stars?\s*", lower)
        if stars:
            n = int(stars.group(1))
            mapping[name] = "negative" if n <= 2 else "neutral" if n == 3 else "positive"
        elif lower.startswith("neg"):
            mapping[name] = "negative"
        elif lower.startswith("neu"):
            mapping[name] = "neutral"
        elif lower.startswith("pos"):
            mapping[name] = "positive"
        else:
            raise TastebudError(
                f"cannot tell what the model's label {name!r} means; give --label-map {name}=negative|neutral|positive,..."
            )
    return mapping


def parse_label_map(text: str | None) -> dict[str, str] | None:
    """Parse ``"LABEL_0=negative,LABEL_1=neutral,LABEL_2=positive"``.

    Example:
        >>> parse_label_map("NEG=negative,POS=positive")
        {'NEG': 'negative', 'POS': 'positive'}
    """
    if not text:
        return None
    mapping = {}
    for part in text.split(","):
        name, sep, target = part.partition("=")
        if not sep or not name.strip() or target.strip() not in LABELS:
            raise TastebudError(f"--label-map entries are NAME=negative|neutral|positive, got {part!r}")
        mapping[name.strip()] = target.strip()
    return mapping

