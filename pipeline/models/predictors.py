"""One ``predict_proba`` interface for every registered model: fine-tuned, VADER, zero-shot, user HF models.

The registry row says which kind a model is (``params["predictor"]``), and
:func:`load_predictor` builds it. Every predictor returns an (n, 3) float32 array of
probabilities in label order (negative, neutral, positive), so evaluation and scoring
never care what is behind a model id.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from store import models as model_store
from store.constants import LABELS
from store.db import connect
from store.errors import TastebudError

# VADER's documented compound thresholds: >= 0.05 positive, <= -0.05 negative, else neutral.
VADER_THRESHOLD = 0.05
# Scale of VADER's compound score in the 3-way softmax before calibration on the val split.
VADER_DEFAULT_SCALE = 10.0
# Inverse temperature of the zero-shot cosine-similarity softmax before calibration.
ZEROSHOT_DEFAULT_SCALE = 50.0
# Label descriptions for zero-shot classification, several per class (their embeddings are averaged).
ZEROSHOT_DESCRIPTIONS: dict[str, tuple[str, ...]] = {
    "negative": ("a negative restaurant review", "a bad dining experience, disappointing food and poor service"),
    "neutral": ("a neutral restaurant review", "an average restaurant, okay food, nothing special"),
    "positive": ("a positive restaurant review", "a great dining experience, delicious food and friendly service"),
}
PREDICTOR_KINDS = ("finetuned", "vader", "zeroshot", "hf", "tfidf", "ensemble")
# Truncation length of a model whose registry row and tastebud.json do not say.
DEFAULT_MAX_LENGTH = 256


class Predictor(Protocol):
    """Anything that turns texts into (n, 3) class probabilities (negative, neutral, positive)."""

    model_id: str

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray: ...


def load_predictor(db, model_id: str | None = None, *, device=None) -> Predictor:
    """The predictor of a registered model (the champion when ``model_id`` is None).

    Args:
        db: store path.
        model_id: a registered model id.
        device: a :class:`pipeline.device.DeviceInfo` to run on (default: resolved once).

    Returns:
        An object with ``model_id`` and ``predict_proba(texts) -> np.ndarray`` of shape (n, 3).

    Example:
        >>> load_predictor("store.duckdb", "baseline-vader").predict_proba(["Great tacos!"]).argmax()  # doctest: +SKIP
        2
    """
    with connect(db, read_only=True) as con:
        model = model_store.get_model(con, model_id) if model_id else model_store.get_champion(con)
    if model is None:
        raise TastebudError(f"no model {model_id!r}; see `tastebud models`" if model_id else "no champion model yet; promote one")
    if model["status"] != "ready":
        raise TastebudError(f"model {model['model_id']} is {model['status']}, not ready")
    return predictor_from_row(model, device=device)


def predictor_from_row(model: dict, *, device=None) -> Predictor:
    """Build the predictor a model row describes (no store access).

    The one place that dispatches on a model's kind (``params["predictor"]``, else the row's kind):
    a new kind of model gets its branch here and nowhere else.
    """
    params = model.get("params") or {}
    kind = params.get("predictor", "finetuned" if model["kind"] == "finetuned" else None)
    if kind == "finetuned":
        max_length = params.get("max_length")
        # The row says how the model was trained to cut long texts; older rows fall back to tastebud.json.
        return ClassifierPredictor(model["model_id"], model["path"], max_length=int(max_length) if max_length else None,
                                   truncation=params.get("truncation"), device=device)
    if kind == "vader":
        return VaderPredictor(model["model_id"], scale=float(params.get("scale", VADER_DEFAULT_SCALE)))
    if kind == "zeroshot":
        return ZeroShotPredictor(
            model["model_id"], model["path"], scale=float(params.get("scale", ZEROSHOT_DEFAULT_SCALE)),
            descriptions=params.get("descriptions") or ZEROSHOT_DESCRIPTIONS,
            max_length=int(params.get("max_length", 256)), device=device,
        )
    if kind == "hf":
        return HFPredictor(model["model_id"], model["path"], label_map=params["label_map"],
                           max_length=int(params.get("max_length", 256)), device=device)
    if kind == "tfidf":
        return TfidfPredictor(model["model_id"], model["path"])
    if kind == "ensemble":
        # Each member's registry row is kept inside the ensemble's params, so it loads without the store.
        members = [(predictor_from_row(m["row"], device=device), float(m["weight"])) for m in params["members"]]
        temperature = float(((params.get("calibration") or {}).get("temperature")) or 1.0)
        return EnsemblePredictor(model["model_id"], members, temperature=temperature)
    if kind is None:
        raise TastebudError(f"model {model['model_id']} (kind {model['kind']!r}) does not say how to load it: its params "
                            "have no \"predictor\" entry. Register it again with `tastebud baseline` or `tastebud train`.")
    raise TastebudError(f"model {model['model_id']} has unknown predictor kind {kind!r}")


def _quiet_transformers() -> None:
    """Per-file loading bars and head-initialisation reports are noise in CLI output and job logs."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


class ClassifierPredictor:
    """A fine-tuned sequence classifier directory (weights, tokenizer, tastebud.json), cut the way it was trained.

    The one predictor of tastebud's own models, for scoring, evaluation and the dashboard alike.
    Loads on first use its own copy of the model, prepared for fast inference (on the device,
    weights cast to bf16 where the device runs bf16 natively), so nothing else is touched.
    The truncation length and strategy ("head" or "head_tail", see
    :mod:`pipeline.models.truncation`) come from the registry row, else from the model's
    ``tastebud.json``, so texts are cut the way training cut them. Batch sizes and token
    budgets come from :func:`pipeline.device.device_defaults` unless given.

    Example:
        >>> ClassifierPredictor("m1", "models/m1").predict_proba(["Great tacos"]).shape  # doctest: +SKIP
        (1, 3)
    """

    def __init__(self, model_id: str, path: str, *, max_length: int | None = None, truncation: str | None = None,
                 batch_size: int | None = None, device=None, cast_weights: bool = True):
        from pipeline.device import resolve_device
        from pipeline.models.loading import read_metadata
        from pipeline.models.truncation import TRUNCATIONS

        if not path or not Path(path).exists():
            raise TastebudError(f"the files of model {model_id} are missing at {path}")
        meta = read_metadata(path)
        trained = meta.get("config") or {}
        self.model_id, self.path = model_id, str(path)
        self.truncation = truncation or meta.get("truncation") or trained.get("truncation") or "head"
        if self.truncation not in TRUNCATIONS:
            raise TastebudError(f"truncation must be one of {', '.join(TRUNCATIONS)}, got {self.truncation!r}")
        self.max_length = int(max_length or meta.get("max_length") or trained.get("max_length") or DEFAULT_MAX_LENGTH)
        self.batch_size, self.cast_weights = batch_size, cast_weights
        self.device = device or resolve_device()
        self._loaded = None
        self._load_lock = threading.Lock()  # scoring tokenizes in a reader thread while the main thread computes

    @property
    def model(self):
        return self._load()[0]

    @property
    def tokenizer(self):
        return self._load()[1]

    def _load(self):
        with self._load_lock:
            if self._loaded is None:
                from pipeline.models.inference import prepare_for_inference
                from pipeline.models.loading import load_classifier
                from pipeline.models.truncation import HeadTailTokenizer

                _quiet_transformers()
                model, tokenizer = load_classifier(self.path)
                model = prepare_for_inference(model, self.device, cast_weights=self.cast_weights)
                self._loaded = (model, HeadTailTokenizer(tokenizer) if self.truncation == "head_tail" else tokenizer)
        return self._loaded

    def encode(self, texts: Sequence[str]):
        """Tokenize ``texts`` as this model was trained to see them (no model work; thread-safe)."""
        from pipeline.models.inference import encode_texts

        return encode_texts(self.tokenizer, texts, max_length=self.max_length)

    def predict_encoded(self, encoded) -> np.ndarray:
        """(n, 3) probabilities of texts tokenized by :meth:`encode`."""
        from pipeline.models.inference import predict_encoded

        return predict_encoded(self.model, encoded, batch_size=self.batch_size, device=self.device)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """(n, 3) probabilities for ``texts``."""
        return self.predict_encoded(self.encode(texts))


class VaderPredictor:
    """VADER (rule-based lexicon): label by the compound-score thresholds ±0.05.

    Probabilities are a softmax over ``scale * [-c - t, 0, c - t]`` (c the compound score,
    t the threshold): its argmax is exactly the threshold rule, and ``scale`` is fitted on
    the validation split (temperature scaling), so confidence means something.
    """

    def __init__(self, model_id: str = "baseline-vader", *, scale: float = VADER_DEFAULT_SCALE):
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self.model_id, self.scale = model_id, scale
        self._analyzer = SentimentIntensityAnalyzer()

    def compound(self, texts: Sequence[str]) -> np.ndarray:
        return np.array([self._analyzer.polarity_scores(t)["compound"] for t in texts], dtype=np.float64)

    @staticmethod
    def logits(compound: np.ndarray) -> np.ndarray:
        c = compound.reshape(-1, 1)
        return np.hstack([-c - VADER_THRESHOLD, np.zeros_like(c), c - VADER_THRESHOLD])

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, len(LABELS)), dtype=np.float32)
        return _softmax(self.scale * self.logits(self.compound(texts)))


class ZeroShotPredictor:
    """No fine-tuning: cosine similarity of a review's mean-pooled sentence embedding to each
    label's description embeddings, softmaxed with a scale fitted on the validation split."""

    def __init__(self, model_id: str, encoder_path: str, *, scale: float = ZEROSHOT_DEFAULT_SCALE,
                 descriptions: dict[str, Sequence[str]] = ZEROSHOT_DESCRIPTIONS, max_length: int = 256,
                 batch_size: int = 64, device=None):
        missing = set(LABELS) - set(descriptions)
        if missing:
            raise TastebudError(f"zero-shot descriptions lack labels: {sorted(missing)}")
        self.model_id, self.encoder_path, self.scale = model_id, encoder_path, scale
        self.descriptions, self.max_length, self.batch_size, self.device = descriptions, max_length, batch_size, device
        self._loaded = None
        self._label_vectors = None

    def _load(self):
        if self._loaded is None:
            from transformers import AutoModel

            from pipeline.models.loading import load_tokenizer

            _quiet_transformers()
            try:
                model = AutoModel.from_pretrained(self.encoder_path)
            except (OSError, ValueError) as exc:
                raise TastebudError(f"cannot load encoder {self.encoder_path!r}: {exc}") from exc
            self._loaded = (model.eval(), load_tokenizer(self.encoder_path))
        return self._loaded

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised mean-pooled token embeddings (the sentence-transformers recipe of this encoder)."""
        import torch

        from pipeline.device import resolve_device

        model, tokenizer = self._load()
        info = self.device or resolve_device()
        model = model.to(info.torch_device)
        encoded = tokenizer(list(texts), truncation=True, max_length=self.max_length, padding=False)
        order = np.argsort([len(ids) for ids in encoded["input_ids"]], kind="stable")
        out = np.empty((len(texts), model.config.hidden_size), dtype=np.float32)
        dtype = info.autocast_dtype
        with torch.inference_mode(), torch.autocast(info.device, dtype=dtype or torch.float32, enabled=dtype is not None):
            for start in range(0, len(texts), self.batch_size):
                idx = order[start : start + self.batch_size]
                batch = tokenizer.pad([{k: encoded[k][i] for k in encoded.keys()} for i in idx], return_tensors="pt")
                batch = {k: v.to(info.torch_device) for k, v in batch.items()}
                hidden = model(**batch).last_hidden_state.float()
                mask = batch["attention_mask"].unsqueeze(-1).float()
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out[idx] = torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy()
        return out

    def similarities(self, texts: Sequence[str]) -> np.ndarray:
        """(n, 3) cosine similarities of each text to each label's description centroid."""
        if self._label_vectors is None:
            rows = []
            for label in LABELS:
                centroid = self.embed(list(self.descriptions[label])).mean(axis=0)
                rows.append(centroid / np.linalg.norm(centroid))
            self._label_vectors = np.stack(rows)
        return self.embed(texts) @ self._label_vectors.T

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, len(LABELS)), dtype=np.float32)
        return _softmax(self.scale * self.similarities(texts))


class TfidfPredictor:
    """TF-IDF + logistic regression saved by :mod:`pipeline.models.tfidf`."""

    def __init__(self, model_id: str, path: str):
        from pipeline.models.tfidf import TfidfModel

        if not path or not Path(path).exists():
            raise TastebudError(f"the files of model {model_id} are missing at {path}")
        self.model_id, self.path = model_id, path
        self._model = TfidfModel.load(path)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return self._model.predict_proba(texts)


class EnsemblePredictor:
    """A weighted average of member predictors' probabilities (weights fitted on validation, summing to 1),
    sharpened or softened by a temperature fitted on validation (``softmax(log p / T)``; 1 leaves it as is)."""

    def __init__(self, model_id: str, members: Sequence[tuple[Predictor, float]], *, temperature: float = 1.0):
        if not members:
            raise TastebudError(f"ensemble {model_id} has no members")
        total = sum(w for _, w in members)
        if total <= 0 or any(w < 0 for _, w in members):
            raise TastebudError(f"ensemble {model_id} has invalid weights {[w for _, w in members]}")
        if not temperature > 0:
            raise TastebudError(f"ensemble {model_id} has an invalid temperature {temperature!r}")
        self.model_id, self.temperature = model_id, float(temperature)
        self.members = [(p, w / total) for p, w in members]

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), len(LABELS)), dtype=np.float64)
        for predictor, weight in self.members:
            if weight > 0:
                out += weight * predictor.predict_proba(texts)
        if self.temperature != 1.0 and len(out):
            out = _softmax(np.log(np.clip(out, 1e-12, 1.0)) / self.temperature)
        return out.astype(np.float32)


class HFPredictor:
    """A user-supplied Hugging Face sentiment classifier whose labels are mapped onto ours.

    ``label_map`` maps each of the model's label names to negative/neutral/positive; the
    probabilities of labels mapped to the same class are added (e.g. 1 and 2 stars -> negative).
    A class no label maps to gets probability 0.
    """

    def __init__(self, model_id: str, path: str, *, label_map: dict[str, str], max_length: int = 256,
                 batch_size: int = 64, device=None):
        self.model_id, self.path, self.label_map = model_id, path, dict(label_map)
        self.max_length, self.batch_size, self.device = max_length, batch_size, device
        self._loaded = None

    def _load(self):
        if self._loaded is None:
            self._loaded = load_hf_classifier(self.path)
        return self._loaded

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        from pipeline.models.inference import predict_proba

        model, tokenizer = self._load()
        source = predict_proba(model, tokenizer, texts, batch_size=self.batch_size, max_length=self.max_length, device=self.device)
        return map_label_probabilities(source, model.config.id2label, self.label_map)


def load_hf_classifier(path_or_id: str):
    """Load a sequence classifier keeping its own labels (not tastebud's 3-label head)."""
    from transformers import AutoModelForSequenceClassification

    from pipeline.models.loading import load_tokenizer

    _quiet_transformers()
    try:
        model = AutoModelForSequenceClassification.from_pretrained(path_or_id)
    except (OSError, ValueError) as exc:
        raise TastebudError(f"cannot load model {path_or_id!r}: {exc}") from exc
    return model.eval(), load_tokenizer(path_or_id)


def map_label_probabilities(source: np.ndarray, id2label: dict, label_map: dict[str, str]) -> np.ndarray:
    """Sum source-label probabilities into tastebud's 3 labels.

    Example:
        >>> map_label_probabilities(np.array([[0.2, 0.8]]), {0: "NEG", 1: "POS"}, {"NEG": "negative", "POS": "positive"})
        array([[0.2, 0. , 0.8]], dtype=float32)
    """
    out = np.zeros((source.shape[0], len(LABELS)), dtype=np.float32)
    for index in range(source.shape[1]):
        name = str(id2label.get(index, id2label.get(str(index), index)))
        target = label_map.get(name)
        if target is None:
            raise TastebudError(f"label {name!r} of the model has no mapping; map it with --label-map {name}=negative|neutral|positive")
        out[:, LABELS.index(target)] += source[:, index]
    return out
