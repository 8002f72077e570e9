"""Did fine-tuning pay? The new model against the best registered baseline, on the same test snapshot."""

from __future__ import annotations

from store import models as model_store
from store.db import connect
from store.errors import TastebudError


def compare_with_best_baseline(db, model_id: str, *, refresh: bool = True) -> dict:
    """Compare ``model_id``'s newest test evaluation with the best baseline's on the same test snapshot.

    A baseline last evaluated on another snapshot (labels changed since) is evaluated again
    first when ``refresh`` is set, otherwise left out.

    Args:
        db: store path.
        model_id: an evaluated model.
        refresh: re-evaluate baselines whose newest evaluation is on another test snapshot.

    Returns:
        {"model_id", "macro_f1", "accuracy", "baseline_id", "baseline_name", "baseline_macro_f1",
        "baseline_accuracy", "delta_macro_f1", "delta_accuracy", "test_snapshot", "line"}; the baseline
        fields are None when no baseline could be compared.

    Example:
        >>> compare_with_best_baseline("store.duckdb", "ft-20261126-1")["line"]  # doctest: +SKIP
        'vs best baseline TF-IDF + LR (baseline-tfidf-lr), same 800 test reviews: macro-F1 0.7420 vs 0.7100 (+0.0320) ...'
    """
    with connect(db, read_only=True) as con:
        mine = model_store.fetch_latest_evaluation(con, model_id)
        baselines = model_store.list_models(con, kind="baseline")
    if mine is None:
        raise TastebudError(f"model {model_id} has no test evaluation to compare")
    snapshot = mine.get("test_snapshot")
    candidates = []
    for row in baselines.to_dict("records"):
        if row["status"] != "ready":
            continue
        with connect(db, read_only=True) as con:
            theirs = model_store.fetch_latest_evaluation(con, row["model_id"])
        if theirs is None or theirs.get("test_snapshot") != snapshot:
            if not refresh:
                continue
            from pipeline.evaluation.evaluator import evaluate_model

            try:
                theirs = evaluate_model(db, row["model_id"])
            except TastebudError:
                continue
            if theirs.get("test_snapshot") != snapshot:
                continue
        candidates.append((theirs["macro_f1"], theirs["accuracy"], row["model_id"], row["name"]))
    result = {"model_id": model_id, "macro_f1": mine["macro_f1"], "accuracy": mine["accuracy"], "test_snapshot": snapshot,
              "baseline_id": None, "baseline_name": None, "baseline_macro_f1": None, "baseline_accuracy": None,
              "delta_macro_f1": None, "delta_accuracy": None}
    if not candidates:
        result["line"] = f"{model_id}: no registered baseline evaluated on this test split to compare with (run `tastebud baselines`)"
        return result
    f1, accuracy, baseline_id, name = max(candidates)
    delta_f1, delta_acc = mine["macro_f1"] - f1, mine["accuracy"] - accuracy
    verdict = "beats" if delta_f1 > 0 else "does NOT beat"
    result.update(baseline_id=baseline_id, baseline_name=name, baseline_macro_f1=f1, baseline_accuracy=accuracy,
                  delta_macro_f1=delta_f1, delta_accuracy=delta_acc)
    result["line"] = (
        f"{model_id} {verdict} the best baseline {name} ({baseline_id}) on the same {mine['n']} test reviews: "
        f"macro-F1 {mine['macro_f1']:.4f} vs {f1:.4f} ({delta_f1:+.4f}), accuracy {mine['accuracy']:.4f} vs {accuracy:.4f} ({delta_acc:+.4f})"
    )
    return result
