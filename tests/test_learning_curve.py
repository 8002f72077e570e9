"""The fine-tuned learning curve end to end (the TF-IDF one is in test_quality.py): a tiny model per size."""

from __future__ import annotations

import pytest

from pipeline.evaluation.learning_curve import learning_curve
from store.actors import cli_actor
from store.db import connect
from store.quality import fetch_learning_curves
from store.schema import init_store
from tests.tiny_model import save_tiny_classifier
from training_helpers import fill_store, single_thread, tiny_config  # noqa: F401


@pytest.mark.slow
def test_finetuned_learning_curve_trains_and_scores_each_size(tmp_path):
    db, _ = init_store(tmp_path / "store.duckdb")
    fill_store(db, rows=200)
    config = tiny_config(str(save_tiny_classifier(tmp_path / "tiny")), epochs=1)
    result = learning_curve(db, kind="finetuned", sizes=[40], config=config, actor=cli_actor())
    with connect(db, read_only=True) as con:
        stored = fetch_learning_curves(con)
        test_n = con.execute("SELECT count(*) FROM splits WHERE split = 'test'").fetchone()[0]
    assert result["kind"] == "finetuned" and [p["n_train"] for p in result["points"]] == [40]
    assert all(0 <= p["macro_f1"] <= 1 and p["test_n"] == test_n for p in result["points"]), (result, test_n)
    assert result["curve_id"] in set(stored["curve_id"])
