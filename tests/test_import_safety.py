"""`tastebud import` against values a parser accepts but a review cannot hold, hostile bytes,
binary files, and re-imports that change a human-labeled text (issue 9, sections 1 and 2)."""

from __future__ import annotations

import bz2
import gzip
import json
import subprocess
import zipfile
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.data.importer import import_reviews
from pipeline.loop import relabel as rl
from store.actors import Actor
from store.db import connect
from store.errors import TastebudError
from store.imports import fetch_rejects
from store.labels import current_label
from store.printable import printable
from store.labels import fetch_label_history
from tests.conftest import cli_cmd

ANA = Actor("ana", "labeler")


def _write(path: Path, data: str | bytes) -> Path:
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def _rejects(db: Path, import_id: int) -> list[tuple[int, str]]:
    with connect(db, read_only=True) as con:
        frame = fetch_rejects(con, import_id, limit=1000)
    return list(zip(frame["row_number"].tolist(), frame["reason"].tolist()))


def _details(db: Path, import_id: int) -> list[str]:
    with connect(db, read_only=True) as con:
        return fetch_rejects(con, import_id, limit=1000)["detail"].tolist()


def _count(db: Path, table: str) -> int:
    with connect(db, read_only=True) as con:
        return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def _texts(db: Path) -> dict[str, str]:
    with connect(db, read_only=True) as con:
        return dict(con.execute("SELECT review_id, text FROM reviews").fetchall())


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(cli_cmd(*args), capture_output=True, timeout=120)


# --------------------------------------------------------------------------- dates


def test_implausible_dates_are_date_out_of_range(store_path, tmp_path):
    today = datetime.now(timezone.utc).date()
    rows = [
        ("d1", "infinity"), ("d2", "-infinity"), ("d3", "-0044-03-15"), ("d4", "0044-03-15 (BC)"),
        ("d5", "9999-12-31"), ("d6", "0001-01-01"), ("d7", "1989-12-31 23:59:59"),
        ("d8", (today + timedelta(days=2)).isoformat()),
        ("ok1", "1990-01-01"), ("ok2", (today + timedelta(days=1)).isoformat() + " 23:59:00"), ("ok3", "2012-06-16"),
    ]
    csv = "review_id,date,text\n" + "".join(f"{r},{d},fine food\n" for r, d in rows)
    report = import_reviews(store_path, _write(tmp_path / "dates.csv", csv))
    assert (report.accepted, report.rejected) == (3, 8)
    assert report.rejected_by_reason == {"date_out_of_range": 8}
    assert _rejects(store_path, report.import_id) == [(n, "date_out_of_range") for n in range(2, 10)]
    assert 'date "infinity" is outside 1990-01-01 .. ' in _details(store_path, report.import_id)[0]
    assert set(_texts(store_path)) == {"ok1", "ok2", "ok3"}


def test_min_and_max_date_widen_the_window_but_infinity_stays_out(store_path, tmp_path):
    csv = "review_id,date,text\nold,1975-05-01,fine\nfar,2100-01-01,fine\ninf,infinity,fine\n"
    path = _write(tmp_path / "old.csv", csv)
    report = import_reviews(store_path, path, min_date=date(1970, 1, 1), max_date=date(9999, 12, 31))
    assert (report.accepted, report.rejected_by_reason) == (2, {"date_out_of_range": 1})
    proc = _run("--db", str(store_path), "import", str(path), "--min-date", "last tuesday")
    assert proc.returncode == 2 and proc.stderr.decode().strip() == (
        "error: --min-date 'last tuesday' is not a date (YYYY-MM-DD)")
    with pytest.raises(TastebudError, match="--min-date 2020-01-01 is after --max-date 2019-01-01"):
        import_reviews(store_path, path, min_date=date(2020, 1, 1), max_date=date(2019, 1, 1))


# --------------------------------------------------------------------------- text values


def test_nul_characters_are_removed_and_invisible_texts_are_empty(store_path, tmp_path):
    data = (
        b"review_id,text\n"
        b"n1,good\x00 food\n"
        b"n2,\x00 \x00\n"
        b"n3,\xe2\x80\x8b\xc2\xa0\t\n"  # zero-width space, no-break space, tab
        b'n4,"quoted \x00 nul"\n'
    )
    report = import_reviews(store_path, _write(tmp_path / "nul.csv", data))
    assert _rejects(store_path, report.import_id) == [(3, "empty_text"), (4, "empty_text")]
    assert _texts(store_path) == {"n1": "good food", "n4": "quoted  nul"}


def test_parquet_text_columns_that_are_not_strings_are_rejected_per_row(store_path, tmp_path):
    cases = {
        "binary": (pa.array([b"\xff\xfe\x00bad", None], pa.binary()), "text is a binary value, not a string"),
        "float": (pa.array([1.5, None], pa.float64()), "text is a float value, not a string"),
        "list": (pa.array([["a", "b"], None], pa.list_(pa.string())), "text is a list value, not a string"),
        "struct": (pa.array([{"a": "x"}, None], pa.struct([("a", pa.string())])),
                   "text is a struct value, not a string"),
    }
    for name, (column, detail) in cases.items():
        path = tmp_path / f"{name}.parquet"
        pq.write_table(pa.table({"review_id": [f"{name}1", f"{name}2"], "text": column}), path)
        report = import_reviews(store_path, path)
        assert report.accepted == 0 and report.rejected_by_reason == {"text_not_string": 1, "empty_text": 1}, name
        assert _details(store_path, report.import_id)[0] == detail
    assert _count(store_path, "reviews") == 0


def test_jsonl_text_values_that_are_not_strings_are_rejected(store_path, tmp_path):
    lines = [
        {"review_id": "j1", "text": 1.5}, {"review_id": "j2", "text": ["a"]}, {"review_id": "j3", "text": {"a": 1}},
        {"review_id": "j4", "text": True}, {"review_id": "j5", "text": 7}, {"review_id": "j6", "text": "real text"},
    ]
    path = _write(tmp_path / "r.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n")
    report = import_reviews(store_path, path)
    assert report.accepted == 1 and _rejects(store_path, report.import_id) == [(n, "text_not_string") for n in range(1, 6)]
    assert [d.split(" value")[0] for d in _details(store_path, report.import_id)] == [
        "text is a float", "text is a list", "text is a object", "text is a boolean", "text is a integer"]


# --------------------------------------------------------------------------- binary files


def _zip_of(path: Path, inner: str) -> bytes:
    tmp = path.with_suffix(".tmpzip")
    with zipfile.ZipFile(tmp, "w") as zf:
        zf.writestr(inner, "review_id,text\nr1,hello\n")
    data = tmp.read_bytes()
    tmp.unlink()
    return data


@pytest.mark.parametrize(
    ("name", "payload", "message"),
    [
        ("reviews.csv", "zip", "reviews.csv is a zip archive, not CSV"),
        ("reviews.csv", gzip.compress(b"review_id,text\nr1,hello\n", mtime=0), "reviews.csv is a gzip file, not CSV"),
        ("reviews.tsv", bz2.compress(b"review_id\ttext\nr1\thello\n"), "reviews.tsv is a bzip2 file, not TSV"),
        ("reviews.csv", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "reviews.csv is a PDF document, not CSV"),
        ("reviews.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "reviews.csv is a PNG image, not CSV"),
        ("reviews.csv", b"7z\xbc\xaf\x27\x1c\x00\x04", "reviews.csv is a 7z archive, not CSV"),
        ("reviews.csv", b"\xfd7zXZ\x00\x00\x04", "reviews.csv is an xz file, not CSV"),
        ("reviews.jsonl", "zip", "reviews.jsonl is a zip archive, not JSON Lines"),
        ("reviews.jsonl", bytes(range(256)) * 8, "reviews.jsonl is a binary file, not JSON Lines"),
        ("reviews.parquet", "zip", "reviews.parquet is a zip archive, not Parquet"),
        ("reviews.parquet", b"review_id,text\nr1,hi\n", "reviews.parquet is not a Parquet file (no PAR1 header)"),
    ],
)
def test_binary_files_are_refused_as_a_whole(store_path, tmp_path, name, payload, message):
    path = tmp_path / name
    _write(path, _zip_of(path, "reviews.csv") if payload == "zip" else payload)
    proc = _run("--db", str(store_path), "import", str(path))
    stderr = proc.stderr.decode()
    assert proc.returncode == 2 and stderr.strip().splitlines() == [f"error: {message}"], stderr
    assert "CSV" not in stderr or name.endswith(".csv")
    assert _count(store_path, "imports") == 0 and _count(store_path, "reviews") == 0


def test_a_parquet_file_named_csv_is_refused_with_a_hint(store_path, tmp_path):
    path = tmp_path / "reviews.csv"
    pq.write_table(pa.table({"review_id": ["r1"], "text": ["hello"]}), path)
    with pytest.raises(TastebudError, match=r"^reviews.csv is a Parquet file, not CSV; pass --format parquet$"):
        import_reviews(store_path, path)


# --------------------------------------------------------------------------- escaping


def test_nothing_from_the_file_reaches_the_terminal_unescaped(store_path, tmp_path):
    garbage = b"\xff\xfe\x1b\x07" + b"x" * 40  # invalid UTF-8 and controls, a few percent of the bytes
    data = (
        b"review_id,date,stars,text\n"
        b"e1,\x1b]0;pwned\x07,5,fine\n"  # an OSC sequence as a date
        b"e2,2020-01-01,\x1b[2J\x9b31m,fine\n"  # clear-screen as stars
        + b"e3,2020-01-01," + garbage * 200 + b",fine\n"  # long binary garbage
    )
    path = _write(tmp_path / "hostile.csv", data)
    proc = _run("--db", str(store_path), "import", str(path))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    for raw in (b"\x1b", b"\x07", b"\x9b", b"\xc2\x9b", b"\x01"):
        assert raw not in out
    text = out.decode()
    assert "\\x1b]0;pwned\\x07" in text and "invalid_date" in text
    assert max(len(line) for line in text.splitlines()) < 400
    # Column names in errors are escaped too.
    bad_header = _write(tmp_path / "header.csv", b"\x1b[31mid,\x07stars\n1,5\n")
    proc = _run("--db", str(store_path), "import", str(bad_header))
    assert proc.returncode == 2 and b"\x1b" not in proc.stderr and b"\x07" not in proc.stderr
    assert "\\x1b[31mid, \\x07stars" in proc.stderr.decode() or "\\x1b[31mid" in proc.stderr.decode()


def test_printable_escapes_controls_and_cuts_long_values():
    assert printable("a\x1b[31mb\x07c\u202ed") == "a\\x1b[31mb\\x07c\\u202ed"
    assert printable("line\nbreak\ttab") == "line\\nbreak\\ttab"
    assert printable(b"\xff\xfeok") == "\\xff\\xfeok"
    assert printable("é" * 10, max_chars=4) == "éééé… (6 more characters)"


# --------------------------------------------------------------------------- text changed


def _history(db: Path, review_id: str):
    with connect(db, read_only=True) as con:
        return fetch_label_history(con, review_id)


def _flags(db: Path, review_id: str) -> list[tuple[str, str]]:
    with connect(db, read_only=True) as con:
        return con.execute(
            "SELECT reason, status FROM flags WHERE review_id = ? ORDER BY flag_id", [review_id]).fetchall()


def _split(db: Path, review_id: str) -> str:
    with connect(db, read_only=True) as con:
        return con.execute("SELECT split FROM splits WHERE review_id = ?", [review_id]).fetchone()[0]


def test_changed_text_retracts_the_human_label_and_flags_for_relabeling(store_path, tmp_path):
    first = _write(tmp_path / "a.csv", "review_id,stars,text\nx1,5,original text\nx2,4,kept text\nx3,2,stars only\n")
    import_reviews(store_path, first)
    for review_id in ("x1", "x2", "x3"):
        rl.relabel(store_path, ANA, review_id, "positive")
    split_before = _split(store_path, "x1")
    second = _write(tmp_path / "b.csv",
                    "review_id,stars,text\nx1,1,a completely different text\nx2,4,kept text\nx3,5,stars only\n")
    proc = _run("--db", str(store_path), "import", str(second))
    assert proc.returncode == 0, proc.stderr
    assert "1 updated text had human or aspect labels: retracted and flagged for relabeling" in proc.stdout.decode()
    # x1: the human label no longer counts (history kept), the new stars do; flagged; split frozen.
    assert current_label_of(store_path, "x1") == ("negative", "stars")
    history = _history(store_path, "x1")
    human = history[history["source"] == "human"]
    assert human["retraction_reason"].tolist() == ["text_changed"]
    assert _flags(store_path, "x1") == [("text_changed", "open")]
    assert _split(store_path, "x1") == split_before
    # x3 only changed stars: its human label stands.
    assert current_label_of(store_path, "x3") == ("positive", "human") and _flags(store_path, "x3") == []
    assert current_label_of(store_path, "x2") == ("positive", "human")
    # Importing the same file again changes nothing more; the JSON report says 0.
    proc = _run("--db", str(store_path), "import", str(second), "--json")
    report = json.loads(proc.stdout)
    assert (report["relabel_needed"], report["unchanged"]) == (0, 3)
    assert _flags(store_path, "x1") == [("text_changed", "open")]


def test_relabeled_then_changed_again_is_flagged_again(store_path, tmp_path):
    import_reviews(store_path, _write(tmp_path / "a.csv", "review_id,text\ny1,first\n"))
    rl.relabel(store_path, ANA, "y1", "neutral")
    report = import_reviews(store_path, _write(tmp_path / "b.csv", "review_id,text\ny1,second\n"))
    assert (report.relabel_needed, report.relabel_needed_ids) == (1, ["y1"])
    rl.relabel(store_path, ANA, "y1", "negative")  # resolves the text_changed flag
    report = import_reviews(store_path, _write(tmp_path / "c.csv", "review_id,text\ny1,third\n"))
    assert report.relabel_needed == 1
    assert _flags(store_path, "y1") == [("text_changed", "resolved"), ("text_changed", "open")]
    assert current_label_of(store_path, "y1") is None  # no stars: nothing stands once the human label is retracted


def current_label_of(db: Path, review_id: str) -> tuple[str, str] | None:
    with connect(db, read_only=True) as con:
        row = current_label(con, review_id)
    return None if row is None else (row["label"], row["source"])


def _import_job_with_champion(store_path: Path, tmp_path: Path, params: dict | None) -> dict:
    from pipeline.data import import_job
    from pipeline.jobs import JobReporter
    from store import models as model_store
    from store.db import transaction

    with transaction(store_path) as con:
        model_store.register_model(con, model_id="champ", kind="baseline", name="champ", params=params)
        model_store.promote_model(con, Actor("dario", "data_scientist"), "champ", reason="test")
    path = _write(tmp_path / "in.csv", "review_id,text,stars\nj1,Lovely brunch,5\nj2,Cold grits,1\n")
    return import_job.run_job(store_path, {"path": str(path), "score_after": True,
                                           "columns": {"text": "text", "review_id": "review_id", "stars": "stars"}},
                              JobReporter(store_path, None, echo=lambda line: None))


def test_the_import_job_scores_what_came_in_with_the_champion(store_path, tmp_path):
    result = _import_job_with_champion(store_path, tmp_path, {"predictor": "vader"})
    assert (result["accepted"], result["scored"]) == (2, 2)
    assert result["after"].startswith("scored 2 reviews")


def test_a_champion_that_cannot_score_keeps_the_import_and_says_why(store_path, tmp_path):
    result = _import_job_with_champion(store_path, tmp_path, None)  # a row with no "predictor": cannot be loaded
    assert result["accepted"] == 2 and result["scored"] is None
    assert "scoring afterwards failed" in result["after"] and "no \"predictor\" entry" in result["warning"]
    assert _count(store_path, "reviews") == 2


def test_changed_text_retracts_the_review_s_aspect_labels_and_flags_it(store_path, tmp_path):
    """Aspect labels (imported and human) belong to the text they were given for: a new text voids them,
    the review is flagged, and the same labels can be given again for the new text."""
    from store import aspects as aspect_store

    import_reviews(store_path, _write(tmp_path / "a.csv", "review_id,text\nz1,Great food.\nz2,Slow service.\n"))
    with connect(store_path) as con:
        aspect_store.append_aspect_labels(con, _aspect_rows([("z1", "food", "positive", "import"),
                                                             ("z2", "service", "negative", "import")]))
    rl.relabel_aspects(store_path, ANA, "z1", {"service": "negative"})
    report = import_reviews(store_path, _write(tmp_path / "b.csv",
                                               "review_id,text\nz1,The parking was awful.\nz2,Slow service.\n"))
    assert (report.relabel_needed, report.relabel_needed_ids) == (1, ["z1"])
    with connect(store_path, read_only=True) as con:
        assert aspect_store.current_review_aspects(con, "z1") == {}  # not annotated any more
        assert aspect_store.current_review_aspects(con, "z2") == {"service": ("negative", "import")}
        history = aspect_store.fetch_aspect_label_history(con, "z1")
    assert len(history) == 2  # kept, retracted
    assert _flags(store_path, "z1") == [("text_changed", "open")] and _flags(store_path, "z2") == []
    # The same label for the new text is written again (the retracted row does not count).
    with connect(store_path) as con:
        assert aspect_store.append_aspect_labels(con, _aspect_rows([("z1", "food", "positive", "import")])) == 1


def _aspect_rows(rows):
    import pandas as pd

    return pd.DataFrame(rows, columns=["review_id", "aspect", "polarity", "source"])
