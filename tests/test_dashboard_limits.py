"""What one dashboard user can make the server do (issue 9, section 4): capped free-text inputs with a
visible note, predictions bounded in time, one in flight and a rate per session."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from dashboard_seed import APP, CHAMPION, account_secrets, private_copy, seed_dashboard_store, signed_in
from streamlit.testing.v1 import AppTest

from dashboard import limits, reads
from pipeline.data.importer import MAX_TEXT_CHARS
from store.schema import init_store

SCREENS = ("overview", "trends", "comparison", "hard_cases", "training", "data")


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> Path:
    db, _ = init_store(tmp_path_factory.mktemp("seeded") / "store.duckdb")
    seed_dashboard_store(db)
    return db


@pytest.fixture
def store(seeded, tmp_path, monkeypatch) -> Path:
    return private_copy(seeded, tmp_path, monkeypatch)


class _SlowModel:
    """Stands in for a loaded model: records what it was given, takes ``seconds`` per call."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds, self.lengths = seconds, []

    def predict_proba(self, texts):
        self.lengths.append(len(texts[0]))
        time.sleep(self.seconds)
        return np.array([[0.1, 0.2, 0.7]])


def _signed_in(screen: str, username: str = "dario") -> AppTest:
    return signed_in(username, screen)


def _predict(at: AppTest, text: str) -> AppTest:
    # set_value sends the text as a hostile client would, past the browser's own max_chars check.
    at.text_area(key="try-text").set_value(text)
    return at.button[[b.label for b in at.button].index("Predict")].click().run()


def test_every_free_text_input_has_a_cap(store):
    login = AppTest.from_file(str(APP), default_timeout=60)
    login.secrets["accounts"] = account_secrets()
    widgets = list(login.run().text_input)
    for screen in SCREENS:
        at = _signed_in(screen)
        widgets += list(at.text_input) + list(at.text_area)
    assert len(widgets) >= 8  # sign-in (2), base model, sweep rates, review text, promotion reason, guidelines...
    uncapped = [w.label for w in widgets if not w.proto.max_chars]
    assert uncapped == []
    assert {w.label: w.proto.max_chars for w in widgets}["Review text"] == MAX_TEXT_CHARS


def test_a_pasted_novel_is_cut_to_the_cap_with_a_visible_note(store, monkeypatch):
    model = _SlowModel()
    monkeypatch.setattr(reads, "predictor", lambda db, model_id: model)
    at = _signed_in("comparison", "vera")
    at.multiselect(key="compare-models").set_value([CHAMPION]).run()
    at = _predict(at, "great grits " * 5_000)  # 60,000 characters
    assert not at.exception
    assert model.lengths == [MAX_TEXT_CHARS]
    assert "Review text is limited to 20,000 characters; anything longer was cut." in [w.value for w in at.warning]


def test_a_slow_prediction_is_given_up_and_cannot_be_queued_behind(store, monkeypatch):
    model = _SlowModel(seconds=3.0)
    monkeypatch.setattr(reads, "predictor", lambda db, model_id: model)
    monkeypatch.setattr(limits, "PREDICT_TIMEOUT_S", 0.5)
    at = _signed_in("comparison", "vera")
    at.multiselect(key="compare-models").set_value([CHAMPION]).run()
    started = time.monotonic()
    at = _predict(at, "slow one")
    assert time.monotonic() - started < 2.5
    assert any("the prediction took longer than 0\\.5 s and was given up" in e.value for e in at.error)
    at = _predict(at, "another one")  # the first is still running: nothing new is started
    assert any("your previous prediction is still running" in e.value for e in at.error)
    assert model.lengths == [len("slow one")]


def test_predictions_per_session_are_rate_limited(store, monkeypatch):
    model = _SlowModel()
    monkeypatch.setattr(reads, "predictor", lambda db, model_id: model)
    monkeypatch.setattr(limits, "PREDICTIONS_PER_MINUTE", 2)
    at = _signed_in("comparison", "vera")
    at.multiselect(key="compare-models").set_value([CHAMPION]).run()
    for _ in range(2):
        at = _predict(at, "fine")
        assert not at.error
    at = _predict(at, "one too many")
    assert any("at most 2 predictions a minute" in e.value for e in at.error)
    assert len(model.lengths) == 2
