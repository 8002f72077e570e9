"""The settings object: every environment variable read in one place, bad values refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.models.loading import models_dir
from store.db import connect, resolve_db_path
from store.errors import TastebudError
from store.settings import DEFAULT_JOB_LOCK_TIMEOUT_S, DEFAULT_LOCK_TIMEOUT_S, Settings, current_settings


def test_defaults_when_nothing_is_set():
    assert current_settings({}) == Settings(
        db=Path("tastebud.duckdb"), lock_timeout_s=DEFAULT_LOCK_TIMEOUT_S, job_lock_timeout_s=DEFAULT_JOB_LOCK_TIMEOUT_S, models_dir=None, secrets=None,
        device=None, cpu_threads=None, cpu_bf16=None, compile=False,
    )


def test_every_variable_is_read():
    settings = current_settings({
        "TASTEBUD_DB": "/data/s.duckdb", "TASTEBUD_LOCK_TIMEOUT": "2.5", "TASTEBUD_MODELS_DIR": "/m",
        "TASTEBUD_SECRETS": "/s.toml", "TASTEBUD_DEVICE": "CPU", "TASTEBUD_CPU_THREADS": "3", "TASTEBUD_CPU_BF16": "no",
        "TASTEBUD_COMPILE": "yes", "TASTEBUD_JOB_LOCK_TIMEOUT": "90",
    })
    assert settings == Settings(db=Path("/data/s.duckdb"), lock_timeout_s=2.5, job_lock_timeout_s=90.0, models_dir=Path("/m"),
                                secrets=Path("/s.toml"), device="cpu", cpu_threads=3, cpu_bf16=False,
                                compile=True)
    assert current_settings({"TASTEBUD_CPU_BF16": "1"}).cpu_bf16 is True


@pytest.mark.parametrize(("name", "value", "message"), [
    ("TASTEBUD_LOCK_TIMEOUT", "soon", "TASTEBUD_LOCK_TIMEOUT must be a number of seconds (0 or more), got 'soon'"),
    ("TASTEBUD_LOCK_TIMEOUT", "-1", "TASTEBUD_LOCK_TIMEOUT must be a number of seconds (0 or more), got '-1'"),
    ("TASTEBUD_DEVICE", "tpu", "TASTEBUD_DEVICE must be one of cuda, mps, cpu, got 'tpu'"),
    ("TASTEBUD_CPU_THREADS", "0", "TASTEBUD_CPU_THREADS must be a whole number of threads (1 or more), got '0'"),
])
def test_bad_values_are_refused_by_name(name, value, message):
    with pytest.raises(TastebudError) as caught:
        current_settings({name: value})
    assert str(caught.value) == message


def test_the_store_and_models_follow_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("TASTEBUD_DB", str(tmp_path / "env.duckdb"))
    monkeypatch.setenv("TASTEBUD_MODELS_DIR", str(tmp_path / "weights"))
    assert resolve_db_path(None) == tmp_path / "env.duckdb"
    assert models_dir(None) == tmp_path / "weights"
    monkeypatch.setenv("TASTEBUD_LOCK_TIMEOUT", "later")
    with pytest.raises(TastebudError, match="TASTEBUD_LOCK_TIMEOUT must be a number"):
        with connect(tmp_path / "x.duckdb"):
            pass
