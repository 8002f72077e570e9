"""A mistake a user can make in train, score or flag is one line (`error: ...`, exit code 2), never a traceback."""

from __future__ import annotations

import sys

import pytest
from typer.testing import CliRunner

import pipeline.cli
from pipeline.aspects.train import min_max_length
from pipeline.jobs import run_foreground
from pipeline.loop.scoring import score_with
from store.actors import cli_actor
from store.db import connect, transaction
from store.errors import TastebudError
from store.jobs import list_jobs
from tests.aspect_seed import register_aspect_model


def _tastebud(db, *args, monkeypatch, capsys) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of the real entry point (whose TastebudError handling gives exit code 2)."""
    monkeypatch.setenv("TASTEBUD_CPU_THREADS", "1")
    monkeypatch.setattr(sys, "argv", ["tastebud", "--db", str(db), *args])
    with pytest.raises(SystemExit) as end:
        pipeline.cli.main()
    out = capsys.readouterr()
    return end.value.code, out.out, out.err


def _jobs(db):
    with connect(db, read_only=True) as con:
        return list_jobs(con, limit=50)


def _assert_one_line(code: int, out: str, err: str, message: str) -> None:
    assert code == 2, out + err
    assert err == f"error: {message}\n"
    assert "Traceback" not in out + err


def test_a_failed_foreground_job_logs_one_line(store_path, monkeypatch, capsys):
    message = ("aspect training needs at least 20 aspect-annotated reviews in the train split and some in the val "
               "split (have 0 and 0): import aspect labels with `tastebud aspects import FILE` or label aspects on "
               "the Hard cases page")
    code, out, err = _tastebud(store_path, "train", "--task", "aspects", "--epochs", "1",
                               monkeypatch=monkeypatch, capsys=capsys)
    _assert_one_line(code, out, err, message)
    assert out.rstrip().endswith(f"] failed: {message}")
    no_champion = "there is no champion model yet: train one (`tastebud train`) or pass --model"
    for command in ("score", "flag"):
        code, out, err = _tastebud(store_path, command, monkeypatch=monkeypatch, capsys=capsys)
        _assert_one_line(code, out, err, no_champion)
        assert out.rstrip().endswith(f"] failed: {no_champion}")
    jobs = _jobs(store_path)
    assert sorted(jobs["kind"]) == ["flag", "score", "train_aspects"] and set(jobs["status"]) == {"failed"}
    assert set(jobs["error"]) == {f"TastebudError: {message}", f"TastebudError: {no_champion}"}


def test_an_unexpected_failure_keeps_its_traceback(store_path):
    lines: list[str] = []

    def boom(reporter):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        run_foreground(store_path, "score", {}, cli_actor(), boom, echo=lines.append)
    assert "failed:\nTraceback" in "\n".join(lines) and 'raise RuntimeError("boom")' in "\n".join(lines)
    assert _jobs(store_path)["error"].tolist() == ["RuntimeError: boom"]


def test_aspect_max_length_is_checked_before_the_run(store_path, monkeypatch, capsys):
    # 5 aspects in a new store: the tokens head adds 5 aspect tokens and a [SEP] to [CLS], 2 tokens and [SEP].
    assert min_max_length("tokens", 5) == 10 and min_max_length("mean", 5) == 4
    assert min_max_length("tokens", 2) == 7  # what segment_reviews asks for 2 aspects (test_aspect_head)
    for args, message in ((["--max-length", "2"], "max_length must be at least 10 for the tokens head with 5 aspects, got 2"),
                          (["--max-length", "9"], "max_length must be at least 10 for the tokens head with 5 aspects, got 9"),
                          (["--head", "mean", "--max-length", "3"], "max_length must be at least 4 for the mean head with 5 aspects, got 3"),
                          (["--sweep", "max_length=32,3", "--head", "mean"],
                           "max_length must be at least 4 for the mean head with 5 aspects, got 3")):
        code, out, err = _tastebud(store_path, "train", "--task", "aspects", "--epochs", "1", *args,
                                   monkeypatch=monkeypatch, capsys=capsys)
        _assert_one_line(code, out, err, message)
    assert _jobs(store_path).empty  # refused before any job (or training run) started


@pytest.mark.parametrize("task", ["sentiment", "aspects"])
def test_chunk_size_below_one_is_refused(store_path, monkeypatch, capsys, task):
    with transaction(store_path) as con:
        register_aspect_model(con)
    for size in ("0", "-5"):
        code, out, err = _tastebud(store_path, "score", "--task", task, "--chunk-size", size,
                                   monkeypatch=monkeypatch, capsys=capsys)
        _assert_one_line(code, out, err, f"chunk size must be at least 1, got {size}")
        code, out, err = _tastebud(store_path, "score", "--task", task, "--chunk-size", size, "--background",
                                   monkeypatch=monkeypatch, capsys=capsys)
        _assert_one_line(code, out, err, f"chunk size must be at least 1, got {size}")
    assert _jobs(store_path).empty
    with pytest.raises(TastebudError, match="chunk size must be at least 1, got 0"):
        score_with(store_path, object(), "m1", chunk_size=0)  # what jobs and the aspect scorer call too


def test_cli_runner_sees_the_error_without_a_traceback(store_path):
    run = CliRunner().invoke(pipeline.cli.app, ["--db", str(store_path), "flag"])
    assert isinstance(run.exception, TastebudError) and "no champion model yet" in str(run.exception)
    assert "Traceback" not in run.output and "failed: there is no champion model yet" in run.output
