"""One TrainConfig drives the CLI's train and retrain options and the Training form."""

from __future__ import annotations

import dataclasses

import pytest
import typer.main
from streamlit.testing.v1 import AppTest
from typer.testing import CliRunner

import pipeline.loop.rounds
from pipeline.cli import app
from pipeline.train.config import TrainConfig, config_fields
from store.errors import TastebudError


def _options(command: str) -> dict[str, object]:
    click_command = typer.main.get_command(app).commands[command]
    return {p.name: p for p in click_command.params}


@pytest.mark.parametrize("command", ["train", "retrain"])
def test_every_config_field_is_an_option_with_its_help_and_default(command):
    options = _options(command)
    for f in config_fields():
        option = options[f.name]
        assert option.default is None, f.name  # unset: the recipe's value stays
        assert option.help.startswith(f.metadata["help"]), f.name
        assert f.default is None or option.help.endswith("]") and "[default: " in option.help, f.name
        for choice in f.metadata["choices"] or ():
            assert choice in option.help
    assert set(options["learning_rate"].opts) == {"--lr", "--learning-rate"}
    assert options["early_stopping_patience"].opts == ["--patience"]
    assert options["prior_adjust"].opts == ["--prior-adjust"] and options["prior_adjust"].secondary_opts == ["--no-prior-adjust"]
    assert options["recipe"].opts == ["--recipe"]


def test_cli_values_reach_the_config_and_bad_ones_name_the_field(monkeypatch, store_path):
    # A foreground retrain records a job row, so it needs a store.
    db = ["--db", str(store_path)]
    seen = {}
    monkeypatch.setattr(pipeline.loop.rounds, "retrain", lambda db, config, **_: seen.setdefault("config", config))
    runner = CliRunner()
    result = runner.invoke(app, [*db, "retrain", "--lr", "3e-5", "--truncation", "head", "--patience", "0", "--json"])
    assert seen.pop("config") == TrainConfig(learning_rate=3e-5, truncation="head", early_stopping_patience=0), result.output
    result = runner.invoke(app, [*db, "retrain", "--recipe", "mean-sqrt-prior", "--epochs", "1", "--no-calibrate"])
    assert seen.pop("config") == TrainConfig.from_recipe("mean-sqrt-prior", epochs=1, calibrate=False), result.output
    bad = runner.invoke(app, [*db, "train", "--warmup-ratio", "1.5"])
    assert isinstance(bad.exception, TastebudError) and str(bad.exception) == "warmup_ratio must be in [0, 1)"


def test_form_widgets_follow_the_config_fields():
    def page():
        import streamlit as st

        from dashboard import forms
        from pipeline.train.config import TrainConfig

        with st.form("f"):
            values = forms.train_config_inputs(TrainConfig(epochs=2, device="cpu"))
            if st.form_submit_button("go"):
                st.session_state["config"] = forms.config_from_inputs(values)

    at = AppTest.from_function(page).run()
    widgets = {w.key: w for kind in ("number_input", "text_input", "selectbox", "checkbox") for w in at.get(kind)}
    assert set(widgets) == {f"train-config-{f.name}" for f in config_fields()}
    assert widgets["train-config-epochs"].value == 2 and widgets["train-config-device"].value == "cpu"
    assert widgets["train-config-truncation"].options == ["head", "head_tail"]
    widgets["train-config-learning_rate"].set_value(3e-5)
    widgets["train-config-device"].set_value("(automatic)")
    at.button[0].click().run()
    expected = dataclasses.replace(TrainConfig(epochs=2), learning_rate=3e-5)
    assert at.session_state["config"] == expected


def test_the_cli_starts_without_the_model_stack():
    """Every `tastebud` command pays the CLI's import time: torch, transformers, evaluate and sklearn are
    imported by the commands that use them, not by the command table (`tastebud jobs` must not take 6 s)."""
    import subprocess
    import sys

    heavy = ("torch", "transformers", "evaluate", "sklearn", "streamlit")
    probe = f"import sys, pipeline.cli; print(','.join(m for m in {heavy!r} if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""
