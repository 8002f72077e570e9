"""A seeded store and accounts for the dashboard tests (AppTest and the real browser).

The store is the demo stream plus what the other parts would have written: two models with
predictions, test evaluations and a training curve, a champion, and open flags. Everything
is written through the store functions, never raw SQL.
"""

from __future__ import annotations

from pathlib import Path

import bcrypt
import numpy as np
import pandas as pd

from pipeline.data.demo_data import generate_reviews, load_demo_data
from pipeline.evaluation.metrics import compute_classification_metrics
from store import evaluations as evaluation_store
from store import flags as flag_store
from store import models as model_store
from store import predictions as prediction_store
from store import training_runs as run_store
from store.actors import Actor
from store.constants import LABELS
from store.db import connect, transaction

CHAMPION = "ft-seed-champion"
BASELINE = "baseline-seed"
# name -> (role, password); hashed with bcrypt's cheapest cost so logins in tests stay fast.
ACCOUNTS = {
    "vera": ("viewer", "vera-password"),
    "lena": ("labeler", "lena-password"),
    "dario": ("data_scientist", "dario-password"),
}


def account_secrets() -> dict:
    """The ``[accounts]`` table for :data:`ACCOUNTS`."""
    return {
        name: {"password_hash": bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=4)).decode(), "role": role}
        for name, (role, pw) in ACCOUNTS.items()
    }


APP = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"


def private_copy(seeded: Path, tmp_path: Path, monkeypatch) -> Path:
    """A copy of a module's seeded store that this test alone writes to, made the dashboard's store."""
    import shutil

    copy = tmp_path / "store.duckdb"
    shutil.copy(seeded, copy)
    monkeypatch.setenv("TASTEBUD_DB", str(copy))
    return copy


def signed_in(username: str, screen: str | None = None, *, query: dict | None = None):
    """An AppTest of the dashboard with ``username`` signed in (password from ACCOUNTS), on ``screen`` if given."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=60)
    at.secrets["accounts"] = account_secrets()
    at.run()
    at.text_input[0].input(username)
    at.text_input[1].input(ACCOUNTS[username][1])
    at.button[0].click().run()
    for key, value in (query or {}).items():
        at.query_params[key] = value
    if screen:
        at.switch_page(f"screens/{screen}.py").run()
        assert not at.exception, [e.value for e in at.exception]
    return at


def write_secrets(path: Path) -> Path:
    """Write a secrets.toml with :data:`ACCOUNTS` (for a real ``streamlit run``)."""
    lines = []
    for name, entry in account_secrets().items():
        lines += [f'[accounts."{name}"]', f'password_hash = "{entry["password_hash"]}"', f'role = "{entry["role"]}"', ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _probabilities(truth: np.ndarray, accuracy: float, rng: np.random.Generator) -> np.ndarray:
    """Class probabilities whose argmax is the true label with probability ``accuracy``."""
    n = len(truth)
    predicted = np.where(rng.random(n) < accuracy, truth, rng.integers(0, 3, n))
    confidence = rng.uniform(0.4, 0.98, n)
    probs = np.tile(((1 - confidence) / 2)[:, None], (1, 3))
    probs[np.arange(n), predicted] = confidence
    return probs


def _metrics(truth: np.ndarray, probs: np.ndarray) -> dict:
    return compute_classification_metrics(probs, truth)


def seed_dashboard_store(db: Path, *, rows: int = 1500, flags: int = 12) -> dict:
    """Fill ``db`` with demo reviews, two scored and evaluated models, a champion and open flags.

    Returns:
        {"flag_review_ids": [...] highest priority first, "rows": rows}.
    """
    load_demo_data(db, rows=rows)
    truth_table = generate_reviews(rows).select(["review_id", "true_label"]).to_pandas()
    truth = truth_table["true_label"].map({label: i for i, label in enumerate(LABELS)}).to_numpy()
    rng = np.random.default_rng(11)
    admin = Actor("seed-admin", "admin")
    with connect(db, read_only=True) as con:
        test_ids = set(con.execute("SELECT review_id FROM splits WHERE split = 'test'").df()["review_id"])
    is_test = truth_table["review_id"].isin(test_ids).to_numpy()
    from pipeline.evaluation.snapshot import current_test_snapshot

    snapshot = current_test_snapshot(db)["test_snapshot"]
    probs = {CHAMPION: _probabilities(truth, 0.85, rng), BASELINE: _probabilities(truth, 0.6, rng)}
    with transaction(db) as con:
        # The baseline is a real VADER row (as `tastebud baseline` registers it), so a job that scores with it works.
        for model_id, kind, params in ((CHAMPION, "finetuned", None), (BASELINE, "baseline", {"predictor": "vader"})):
            model_store.register_model(con, model_id=model_id, kind=kind, name=model_id, status="ready", params=params)
            frame = pd.DataFrame(probs[model_id], columns=["p_negative", "p_neutral", "p_positive"])
            prediction_store.write_predictions(con, model_id, frame.assign(review_id=truth_table["review_id"]))
            evaluation_store.insert_evaluation(
                con, model_id, "test", {**_metrics(truth[is_test], probs[model_id][is_test]), "test_snapshot": snapshot},
                pd.DataFrame({"slice_kind": ["term"], "slice_value": ["krog district"], "n": [40],
                              "accuracy": [0.7], "macro_f1": [0.6]}),
            )
        run_store.create_run(con, run_id="run-seed", config={"epochs": 3}, checkpoint_dir="/tmp/none",
                             pid=1, host="test", proc_start=None, job_id="train-seed")
        for epoch, (train_loss, val_loss, f1) in enumerate([(0.9, 0.8, 0.6), (0.6, 0.65, 0.72), (0.4, 0.7, 0.74)], 1):
            run_store.record_epoch(con, "run-seed", epoch=float(epoch), step=epoch * 10, train_loss=train_loss,
                                   val_loss=val_loss, val_accuracy=f1 + 0.05, val_macro_f1=f1)
        run_store.finish_run(con, "run-seed", status="succeeded", model_id=CHAMPION)
        model_store.promote_model(con, admin, CHAMPION)
        confidence = probs[CHAMPION].max(axis=1)
        order = np.argsort(confidence)[:flags]
        flag_frame = pd.DataFrame({
            "review_id": truth_table["review_id"].to_numpy()[order],
            "reason": ["low_confidence" if i % 3 else "rating_contradicts_text" for i in range(flags)],
            "priority": 1.0 - confidence[order],
            "model_id": CHAMPION,
        })
        flag_store.insert_flags(con, flag_frame)
    return {"flag_review_ids": flag_frame["review_id"].tolist(), "rows": rows}
