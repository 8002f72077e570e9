"""The local-references slice: how models do on reviews that lean on Atlanta landmarks.

"Worse than the DMV on Memorial Drive" reads negative only to someone who knows the DMV; a
general-purpose model misses it. The slice is the test-split reviews that mention a local
reference (a small gazetteer of Atlanta places and institutions), scored from each model's
stored predictions against the current labels.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pandas as pd

from pipeline.evaluation.metrics import compute_classification_metrics
from store.constants import LABEL_TO_ID
from store.db import connect
from store.model_health import fetch_test_predictions

# Places and institutions a local reader knows; whole-phrase, case-insensitive.
LOCAL_REFERENCES: tuple[str, ...] = (
    "DMV", "Memorial Drive", "Connector", "BeltLine", "Beltline", "Ponce City Market", "MARTA", "Braves",
    "Buford Highway", "I-285", "Perimeter", "Peachtree", "Little Five Points", "Krog Street", "Hartsfield",
    "Spaghetti Junction", "Varsity", "Falcons", "Hawks", "Piedmont Park",
)
_PATTERN = re.compile(r"(?<!\w)(?:" + "|".join(re.escape(t) for t in LOCAL_REFERENCES) + r")(?!\w)", re.IGNORECASE)


def mentions_local_reference(texts: pd.Series) -> np.ndarray:
    """True where a text names a place in :data:`LOCAL_REFERENCES`.

    Example:
        >>> mentions_local_reference(pd.Series(["worse than the DMV on Memorial Drive", "good tacos"])).tolist()
        [True, False]
    """
    return texts.fillna("").str.contains(_PATTERN, regex=True).to_numpy()


def local_reference_slice(db: str | os.PathLike | None, model_ids: list[str]) -> pd.DataFrame:
    """Accuracy and macro-F1 of each model on test reviews with and without a local reference.

    Returns:
        model_id, slice ("local reference" / "no local reference"), n, accuracy, macro_f1 (NaN when a
        model has no stored predictions for the slice).
    """
    rows = []
    with connect(db, read_only=True) as con:
        frames = {m: fetch_test_predictions(con, m) for m in model_ids}
    for model_id, frame in frames.items():
        local = mentions_local_reference(frame["text"]) if len(frame) else np.zeros(0, bool)
        for name, mask in (("local reference", local), ("no local reference", ~local)):
            part = frame[mask]
            if len(part):
                probs = part[["p_negative", "p_neutral", "p_positive"]].to_numpy(dtype=float)
                m = compute_classification_metrics(probs, part["label"].map(LABEL_TO_ID).to_numpy(), average_over="present")
                rows.append({"model_id": model_id, "slice": name, "n": len(part), "accuracy": m["accuracy"],
                             "macro_f1": m["macro_f1"]})
            else:
                rows.append({"model_id": model_id, "slice": name, "n": 0, "accuracy": np.nan, "macro_f1": np.nan})
    return pd.DataFrame(rows, columns=["model_id", "slice", "n", "accuracy", "macro_f1"])
