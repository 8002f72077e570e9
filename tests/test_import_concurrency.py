"""A long import shares the store: it commits in chunks, so a concurrent writer in another real
process (a score-like prediction writer) gets in between chunks instead of waiting for the whole
import; a SIGKILLed import is finished by running it again, without duplicates (issue 9, section 6)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from store.db import connect, transaction
from store.health import check_store
from store.predictions import write_predictions

ROWS = 60_000
CHUNK = 6_000
# Runs the real importer in its own process, with small chunks so a modest file takes several.
IMPORTER = """
import json, sys
import pipeline.data.importer as importer
importer.CHUNK_ROWS = int(sys.argv[3])
importer.CHUNK_TARGET_S = 1e9  # fixed-size chunks, so the tests can count them (sizing by time: its own test)
report = importer.import_reviews(sys.argv[1], sys.argv[2])
print(json.dumps({"accepted": report.accepted, "unchanged": report.unchanged, "chunks": report.chunks,
                  "longest_chunk_seconds": report.longest_chunk_seconds}), flush=True)
"""


def _csv(path: Path, rows: int = ROWS) -> Path:
    lines = ["review_id,business_id,date,stars,text"]
    lines += [f"c{i},b{i % 50},2021-{1 + i % 12:02d}-{1 + i % 28:02d},{1 + i % 5},"
              f"review {i} of the tacos and the slow service at place {i % 50}" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _start_import(db: Path, csv: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", IMPORTER, str(db), str(csv), str(CHUNK)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _score_some(db: Path, model_id: str) -> tuple[float, int]:
    """Write predictions for up to 200 unscored reviews, as a score job does; returns (seconds waited, reviews seen)."""
    t0 = time.monotonic()
    with transaction(db, timeout_s=30) as con:
        waited = time.monotonic() - t0
        seen = con.execute("SELECT count(*) FROM reviews").fetchone()[0]
        ids = [r for (r,) in con.execute(
            "SELECT review_id FROM reviews r WHERE NOT EXISTS (SELECT 1 FROM predictions p "
            "WHERE p.model_id = ? AND p.review_id = r.review_id) LIMIT 200", [model_id]).fetchall()]
        if ids:
            write_predictions(con, model_id, pd.DataFrame({
                "review_id": ids, "p_negative": 0.2, "p_neutral": 0.3, "p_positive": 0.5, "label": "positive"}))
    return waited, seen


def test_long_import_does_not_starve_a_concurrent_writer(store_path, tmp_path):
    csv = _csv(tmp_path / "big.csv")
    proc = _start_import(store_path, csv)
    waits, seen = [], set()
    while proc.poll() is None:
        waited, n = _score_some(store_path, "m-concurrent")
        waits.append(waited)
        seen.add(n)
        time.sleep(0.05)
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    report = json.loads(out)
    assert report["accepted"] == ROWS and report["chunks"] == ROWS // CHUNK
    # The writer got in between the import's chunks (it saw a partly imported store) ...
    assert any(0 < n < ROWS for n in seen), sorted(seen)
    # ... and never waited for more than a chunk or two.
    assert max(waits) < max(5.0, 3 * report["longest_chunk_seconds"]), (max(waits), report)
    result = check_store(store_path)
    assert result.healthy and result.tables["reviews"] == ROWS and result.reviews_without_split == 0, result


def test_killed_import_resumes_without_duplicates(store_path, tmp_path):
    csv = _csv(tmp_path / "big.csv")
    proc = _start_import(store_path, csv)
    deadline = time.monotonic() + 120
    n = 0
    while time.monotonic() < deadline and proc.poll() is None:
        with connect(store_path, read_only=True) as con:
            n = con.execute("SELECT count(*) FROM reviews").fetchone()[0]
        if n >= 2 * CHUNK:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the import finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 0 < n < ROWS
    with connect(store_path, read_only=True) as con:
        partial = con.execute("SELECT count(*) FROM reviews").fetchone()[0]
        # Every committed chunk is whole: reviews, labels and splits together.
        assert partial % CHUNK == 0
        assert con.execute("SELECT count(*) FROM splits").fetchone()[0] == partial
        assert con.execute("SELECT count(*) FROM labels").fetchone()[0] == partial
    rerun = _start_import(store_path, csv)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    report = json.loads(out)
    assert (report["accepted"], report["unchanged"]) == (ROWS - partial, partial)
    result = check_store(store_path)
    assert result.healthy and result.duplicate_review_ids == 0, result
    assert result.tables["reviews"] == ROWS and result.tables["splits"] == ROWS and result.tables["labels"] == ROWS


LOCK_HOLDER = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1], read_only=len(sys.argv) > 3 and sys.argv[3] == "read-only")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""


def test_job_that_finds_the_store_busy_waits_and_says_so(store_path, monkeypatch):
    from store import jobs as job_store
    from tests.conftest import cli_cmd

    # Interactive commands in the job's process would give up after 1 s; jobs wait.
    monkeypatch.setenv("TASTEBUD_LOCK_TIMEOUT", "1")
    with transaction(store_path) as con:
        job_id = job_store.create_job(con, "demo-data", {"rows": 300, "seed": 1}, "tester")
    # The writer holds the store before the job's process starts, so the job must find it busy.
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(store_path), "4"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    job = subprocess.run(cli_cmd("--db", str(store_path), "job-run", job_id), capture_output=True, text=True,
                         timeout=120)
    holder.wait(timeout=30)
    assert job.returncode == 0, job.stdout + job.stderr
    assert "waiting for the store: another process is writing to it" in job.stdout
    with connect(store_path, read_only=True) as con:
        assert job_store.get_job(con, job_id)["status"] == "succeeded"
        assert con.execute("SELECT count(*) FROM reviews").fetchone() == (300,)


def test_chunked_import_keeps_stratified_split_proportions(store_path, tmp_path, monkeypatch):
    import pipeline.data.importer as importer

    monkeypatch.setattr(importer, "CHUNK_ROWS", 700)
    monkeypatch.setattr(importer, "CHUNK_TARGET_S", 1e9)
    report = importer.import_reviews(store_path, _csv(tmp_path / "mid.csv", rows=5_000))
    assert report.chunks == 8 and sum(report.splits.values()) == 5_000
    with connect(store_path, read_only=True) as con:
        rows = con.execute(
            "SELECT l.label, s.split, count(*) FROM splits s JOIN current_labels l USING (review_id) GROUP BY ALL"
        ).fetchall()
        assert con.execute("SELECT count(DISTINCT review_id), count(*) FROM splits").fetchone() == (5_000, 5_000)
    per_label: dict[str, dict[str, int]] = {}
    for label, split, n in rows:
        per_label.setdefault(label, {})[split] = n
    for label, counts in per_label.items():
        total = sum(counts.values())
        for split, fraction in (("train", 0.8), ("val", 0.1), ("test", 0.1)):
            assert abs(counts.get(split, 0) - fraction * total) <= 1, (label, counts)


def test_chunks_are_sized_by_time(store_path, tmp_path, monkeypatch):
    import pipeline.data.importer as importer

    # Every chunk takes longer than the target, so after the first each has the fewest rows allowed.
    monkeypatch.setattr(importer, "CHUNK_ROWS", 3_000)
    monkeypatch.setattr(importer, "FIRST_CHUNK_ROWS", 3_000)
    monkeypatch.setattr(importer, "MIN_CHUNK_ROWS", 500)
    monkeypatch.setattr(importer, "CHUNK_TARGET_S", 1e-6)
    report = importer.import_reviews(store_path, _csv(tmp_path / "mid.csv", rows=6_000))
    assert (report.chunks, report.accepted, sum(report.splits.values())) == (1 + 3_000 // 500, 6_000, 6_000)
    result = check_store(store_path)
    assert result.healthy and result.duplicate_review_ids == 0, result
    assert result.tables["reviews"] == result.tables["splits"] == result.tables["labels"] == 6_000
    # Fast chunks grow back to CHUNK_ROWS: a re-import with a generous target takes two chunks.
    monkeypatch.setattr(importer, "CHUNK_TARGET_S", 1e9)
    again = importer.import_reviews(store_path, tmp_path / "mid.csv")
    assert (again.chunks, again.accepted, again.unchanged) == (2, 0, 6_000)


def test_waiting_job_shows_in_jobs_list_while_it_waits(store_path):
    from pipeline.jobs import get_job, job_status_path, list_jobs
    from store import jobs as job_store
    from tests.conftest import cli_cmd

    with transaction(store_path) as con:
        job_id = job_store.create_job(con, "demo-data", {"rows": 200, "seed": 1}, "tester")
    # A long read-only reader (an export, a dashboard query) keeps writers out but lets `tastebud jobs` read.
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(store_path), "120", "read-only"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    job = subprocess.Popen(cli_cmd("--db", str(store_path), "job-run", job_id), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    status = job_status_path(store_path, job_id)
    deadline = time.monotonic() + 60
    while not status.exists() and time.monotonic() < deadline and job.poll() is None:
        time.sleep(0.05)
    assert status.exists(), "the job never recorded that it waits"
    listed = subprocess.run(cli_cmd("--db", str(store_path), "jobs"), capture_output=True, text=True, timeout=60)
    rows = list_jobs(store_path).to_dict("records")
    holder.kill()  # the reader is done: the job gets the store
    holder.wait(timeout=30)
    out, _ = job.communicate(timeout=120)
    assert job.returncode == 0, out
    assert listed.returncode == 0, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if line.startswith(job_id))
    assert "waiting for the store since " in line, listed.stdout
    assert rows[0]["message"].startswith("waiting for the store since ") and rows[0]["waiting_since"] is not None
    # Once in, the job removes its status file and the row speaks for itself again.
    assert not status.exists()
    done = get_job(store_path, job_id)
    assert done["status"] == "succeeded" and done["waiting_since"] is None
    assert not (done["message"] or "").startswith("waiting for the store")
