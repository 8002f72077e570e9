"""`tastebud import`: formats, bad rows with reasons and row numbers, idempotence, labels, atomicity, CLI."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.data.importer import ColumnMapping, import_reviews, map_columns
from store.actors import Actor
from store.db import connect
from store.errors import PermissionDeniedError, TastebudError
from store.imports import fetch_rejects, list_imports
from tests.conftest import SHARED_DATA, cli_cmd, requires_shared_data


def _write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def _rejects(db: Path, import_id: int) -> list[tuple[int, str]]:
    with connect(db, read_only=True) as con:
        frame = fetch_rejects(con, import_id, limit=1000)
    return list(zip(frame["row_number"].tolist(), frame["reason"].tolist()))


def _table_counts(db: Path) -> dict[str, int]:
    with connect(db, read_only=True) as con:
        return {
            t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("reviews", "labels", "splits", "imports", "import_rejects", "audit_log")
        }


def _reviews(con) -> dict[str, tuple]:
    rows = con.execute("SELECT review_id, text, stars, created_at, restaurant_id FROM reviews").fetchall()
    return {r[0]: r[1:] for r in rows}


def _labels(db: Path) -> dict[str, tuple[str, str]]:
    with connect(db, read_only=True) as con:
        return {r: (label, source) for r, label, source in con.execute(
            "SELECT review_id, label, source FROM current_labels").fetchall()}


LONG_TEXT = "x" * 20_001

CSV_MIXED = (
    "review_id,business_id,date,stars,text\n"  # row 1: header
    'r1,b1,2024-01-05,5,"Great tacos, ""best"" in town"\n'  # 2 ok
    'r2,b1,2024-01-06,1,"Cold food.\n\nWon\'t return."\n'  # 3 ok, one row over three lines
    "r3,b2,2024-01-07,3,   \n"  # 4 empty_text
    "\n"  # 5 blank line: not a row, but counted like a spreadsheet does
    "r4,b2,not-a-date,4,Fine\n"  # 6 invalid_date
    "r5,b2,2024-01-08,6,Too many stars\n"  # 7 stars_out_of_range
    "r6,b2,2024-01-08,five,Words for stars\n"  # 8 stars_not_numeric
    "r7,b3,2024-01-09,2,too,many,columns\n"  # 9 malformed_row
    "r1,b1,2024-01-10,4,Same id again\n"  # 10 duplicate_id
    f"r8,b3,2024-01-11,4,{LONG_TEXT}\n"  # 11 text_too_long
).encode() + b"r9,b3,2024-01-12,4,caf\xe9 bytes\n" + (  # 12 invalid_utf8
    "r10,b3,2024-01-13T10:00:00+02:00,2,Offset date\n"  # 13 ok, stored as UTC
).encode()
CSV_MIXED_REJECTS = [
    (4, "empty_text"),
    (6, "invalid_date"),
    (7, "stars_out_of_range"),
    (8, "stars_not_numeric"),
    (9, "malformed_row"),
    (10, "duplicate_id"),
    (11, "text_too_long"),
    (12, "invalid_utf8"),
]


def test_csv_good_and_bad_rows(store_path, tmp_path):
    report = import_reviews(store_path, _write(tmp_path / "mixed.csv", CSV_MIXED))
    assert (report.rows, report.accepted, report.updated, report.unchanged, report.rejected) == (11, 3, 0, 0, 8)
    assert report.rejected_by_reason == {reason: 1 for _, reason in CSV_MIXED_REJECTS}
    assert _rejects(store_path, report.import_id) == CSV_MIXED_REJECTS
    assert report.columns == {
        "text": "text", "review_id": "review_id", "created_at": "date", "stars": "stars", "label": None,
        "restaurant_id": "business_id", "restaurant_name": None, "neighborhood": None,
    }
    with connect(store_path, read_only=True) as con:
        rows = _reviews(con)
        rejects = fetch_rejects(con, report.import_id, limit=100).set_index("row_number")
    assert rows["r1"] == ('Great tacos, "best" in town', 5, datetime(2024, 1, 5), "b1")
    assert rows["r2"][0] == "Cold food.\n\nWon't return."
    assert rows["r10"][2] == datetime(2024, 1, 13, 8, 0)
    assert rejects.loc[10, "detail"] == 'id "r1" already accepted at row 2'
    assert rejects.loc[7, "detail"] == 'stars "6" is not a whole number from 1 to 5'
    assert json.loads(rejects.loc[6, "raw"]) == {
        "review_id": "r4", "business_id": "b2", "date": "not-a-date", "stars": "4", "text": "Fine"}
    assert rejects.loc[9, "raw"] == "r7,b3,2024-01-09,2,too,many,columns"
    assert rejects.loc[11, "detail"] == "text has 20001 characters; the limit is 20000"
    assert len(rejects.loc[11, "raw"]) == 2000
    assert rejects.loc[4, "file"] == str((tmp_path / "mixed.csv").resolve())


def test_csv_with_crlf_line_endings(store_path, tmp_path):
    body = "id,text,stars\r\na,Good,5\r\nb,,3\r\nc,\"two\r\nlines\",2\r\nd,Bad stars,0\r\n"
    report = import_reviews(store_path, _write(tmp_path / "crlf.csv", body))
    assert (report.accepted, report.rejected) == (2, 2)
    assert _rejects(store_path, report.import_id) == [(3, "empty_text"), (5, "stars_out_of_range")]


def test_tsv_with_label_column_and_aliases(store_path, tmp_path):
    body = (
        "id\treview\trating\tsentiment\trestaurant_name\tcity\n"
        "t1\tLovely pasta\t2\tPositive\tLuigi's\tDecatur\n"  # label column beats stars
        "t2\tMeh\t3\t NEU \tLuigi's\tDecatur\n"
        "t3\tAwful\t1\tneg\tTaco Town\tAtlanta\n"
        "t4\tMixed feelings\t3\tmixed\tTaco Town\tAtlanta\n"  # row 5 unknown_label
        't5\t"has\ttab inside"\t4\tpos\tTaco Town\tAtlanta\n'
        "t6\t\t4\tpos\tTaco Town\tAtlanta\n"  # row 7 empty_text
        "t7\tOnly three fields\t4\n"  # row 8 malformed_row
        "t8\tNumeric label\t4\t2\tTaco Town\tAtlanta\n"  # row 9 unknown_label without --numeric-labels
        "t9\tNo label yet\t5\t\tTaco Town\tAtlanta\n"  # accepted, unlabeled
    )
    report = import_reviews(store_path, _write(tmp_path / "reviews.tsv", body))
    assert (report.accepted, report.rejected, report.label_source, report.labels_added) == (5, 4, "import", 4)
    assert _rejects(store_path, report.import_id) == [
        (5, "unknown_label"), (7, "empty_text"), (8, "malformed_row"), (9, "unknown_label")]
    assert _labels(store_path) == {
        "t1": ("positive", "import"), "t2": ("neutral", "import"),
        "t3": ("negative", "import"), "t5": ("positive", "import"),
    }
    with connect(store_path, read_only=True) as con:
        row = con.execute(
            "SELECT text, stars, restaurant_name, neighborhood FROM reviews WHERE review_id = 't5'"
        ).fetchone()
    assert row == ("has\ttab inside", 4, "Taco Town", "Atlanta")


def test_numeric_labels_need_an_explicit_scheme(store_path, tmp_path):
    path = _write(tmp_path / "uci.txt", "Review\tLiked\nWow, loved it\t1\nCrust not good\t0\nOdd\t2\n")
    report = import_reviews(
        store_path, path, fmt="tsv", columns=ColumnMapping(label="Liked"), numeric_labels="binary"
    )
    assert (report.accepted, report.rejected) == (2, 1)
    assert _rejects(store_path, report.import_id) == [(4, "unknown_label")]
    assert sorted(label for label, _ in _labels(store_path).values()) == ["negative", "positive"]
    with pytest.raises(TastebudError, match="unknown --numeric-labels 'decimal'"):
        import_reviews(store_path, path, fmt="tsv", columns=ColumnMapping(label="Liked"), numeric_labels="decimal")


def _yelp_line(review_id: str, text: str | None = "ok", *, stars=4, date="2018-07-07 22:09:11") -> str:
    row = {"review_id": review_id, "user_id": "u" + review_id, "business_id": "b1", "stars": stars,
           "useful": 0, "funny": 0, "cool": 1, "text": text, "date": date}
    if text is None:
        del row["text"]
    return json.dumps(row)


def test_jsonl_in_yelp_review_json_shape(store_path, tmp_path):
    lines = [
        _yelp_line("y1", "Great tacos!\nWill return.", stars=5.0),  # 1 ok
        _yelp_line("y2", "Cold food", stars=2, date="2019-01-02 10:00:00"),  # 2 ok
        "",  # 3 blank: skipped
        '{"review_id": "y3", "text": broken}',  # 4 malformed_json
        "[1, 2]",  # 5 malformed_json (not an object)
        _yelp_line("y4", "zero stars?", stars=0),  # 6 stars_out_of_range
        None,  # 7 invalid_utf8
        _yelp_line("y6", "  "),  # 8 empty_text
        _yelp_line("y7", date="yesterday"),  # 9 invalid_date
        _yelp_line("y8", None),  # 10 empty_text (no text key)
        _yelp_line("y1", "again"),  # 11 duplicate_id
        _yelp_line("y9", "Stars as text", stars="4"),  # 12 ok
    ]
    raw = b"\n".join(
        b'{"review_id": "y5", "text": "caf\xe9", "stars": 3}' if line is None else line.encode() for line in lines
    ) + b"\n"
    report = import_reviews(store_path, _write(tmp_path / "review.json", raw))
    assert report.format == "jsonl"
    assert (report.rows, report.accepted, report.rejected) == (11, 3, 8)
    assert _rejects(store_path, report.import_id) == [
        (4, "malformed_json"), (5, "malformed_json"), (6, "stars_out_of_range"), (7, "invalid_utf8"),
        (8, "empty_text"), (9, "invalid_date"), (10, "empty_text"), (11, "duplicate_id"),
    ]
    with connect(store_path, read_only=True) as con:
        rows = _reviews(con)
        raw5 = fetch_rejects(con, report.import_id, reason="malformed_json")["raw"].tolist()
    assert rows["y1"] == ("Great tacos!\nWill return.", 5, datetime(2018, 7, 7, 22, 9, 11), "b1")
    assert rows["y9"][1] == 4
    assert raw5 == ['{"review_id": "y3", "text": broken}', "[1, 2]"]
    assert _labels(store_path)["y2"] == ("negative", "stars")


def test_jsonl_keys_are_bound_not_formatted(store_path, tmp_path):
    lines = [
        {"a/b": "k1", "review ~ text": "Keys with a slash and a tilde", "it's": "x"},
        {"a/b": "k2", "review ~ text": "Second"},
    ]
    path = _write(tmp_path / "odd_keys.jsonl", "\n".join(json.dumps(line) for line in lines) + "\n")
    report = import_reviews(store_path, path, columns=ColumnMapping(text="review ~ text", review_id="a/b"))
    assert (report.accepted, report.rejected) == (2, 0)
    with connect(store_path, read_only=True) as con:
        assert dict(con.execute("SELECT review_id, text FROM reviews").fetchall()) == {
            "k1": "Keys with a slash and a tilde", "k2": "Second"}


def test_parquet_with_typed_columns(store_path, tmp_path):
    table = pa.table({
        "review_id": ["p1", "p2", "p3", "p1", "p5"],
        "text": ["Crisp dosa", None, "Seven stars?", "Duplicate", "No date"],
        "stars": pa.array([5, 4, 7, 3, 3], pa.int64()),
        "created_at": pa.array([datetime(2023, 5, 1, 12, 30), datetime(2023, 5, 2), None, None, None],
                               pa.timestamp("us")),
        "restaurant_name": ["Dosa Hut"] * 5,
    })
    pq.write_table(table, tmp_path / "reviews.parquet")
    report = import_reviews(store_path, tmp_path / "reviews.parquet")
    assert (report.format, report.rows, report.accepted, report.rejected) == ("parquet", 5, 2, 3)
    assert _rejects(store_path, report.import_id) == [(2, "empty_text"), (3, "stars_out_of_range"), (4, "duplicate_id")]
    with connect(store_path, read_only=True) as con:
        rows = dict(con.execute("SELECT review_id, created_at FROM reviews").fetchall())
    assert rows == {"p1": datetime(2023, 5, 1, 12, 30), "p5": None}


def test_reimport_is_idempotent(store_path, tmp_path):
    path = _write(tmp_path / "mixed.csv", CSV_MIXED)
    first = import_reviews(store_path, path)
    before = _table_counts(store_path)
    with connect(store_path, read_only=True) as con:
        splits_before = con.execute("SELECT review_id, split FROM splits ORDER BY 1").fetchall()
    second = import_reviews(store_path, path)
    after = _table_counts(store_path)
    assert (second.accepted, second.updated, second.unchanged, second.labels_added) == (0, 0, first.accepted, 0)
    assert second.rejected == first.rejected
    for table in ("reviews", "labels", "splits"):
        assert after[table] == before[table], table
    assert after["imports"] == before["imports"] + 1
    with connect(store_path, read_only=True) as con:
        assert con.execute("SELECT review_id, split FROM splits ORDER BY 1").fetchall() == splits_before
        imports = list_imports(con)
    assert imports[["accepted", "unchanged", "rejected"]].values.tolist() == [[0, 3, 8], [3, 0, 8]]


def test_changed_text_is_reported_as_update(store_path, tmp_path):
    v1 = "review_id,text,stars\na,Good food,5\nb,Slow service,2\nc,Fine,3\n"
    v2 = "review_id,text,stars\na,Good food,5\nb,Slow service but kind staff,2\nc,Fine,1\n"
    import_reviews(store_path, _write(tmp_path / "v1.csv", v1))
    labels_before = _table_counts(store_path)["labels"]
    report = import_reviews(store_path, _write(tmp_path / "v2.csv", v2))
    assert (report.accepted, report.updated, report.unchanged) == (0, 2, 1)
    assert report.labels_added == 1  # c's stars moved from 3 to 1; b's label did not change
    assert _table_counts(store_path)["labels"] == labels_before + 1
    with connect(store_path, read_only=True) as con:
        text, updated_at = con.execute("SELECT text, updated_at FROM reviews WHERE review_id = 'b'").fetchone()
    assert text == "Slow service but kind staff" and updated_at is not None
    assert _labels(store_path)["c"] == ("negative", "stars")


def test_labels_derive_from_stars(store_path, tmp_path):
    body = "review_id,text,stars\n" + "".join(f"s{n},Text {n},{n}\n" for n in (1, 2, 3, 4, 5)) + "s6,No stars,\n"
    report = import_reviews(store_path, _write(tmp_path / "stars.csv", body))
    assert (report.accepted, report.labels_added, report.label_source) == (6, 5, "stars")
    assert _labels(store_path) == {
        "s1": ("negative", "stars"), "s2": ("negative", "stars"), "s3": ("neutral", "stars"),
        "s4": ("positive", "stars"), "s5": ("positive", "stars"),
    }
    assert sum(report.splits.values()) == 6


def test_file_without_ids_gets_stable_hashed_ids(store_path, tmp_path):
    body = "restaurant_id,text\nb1,Lovely patio\nb2,Lovely patio\nb1,Lovely patio\n"
    path = _write(tmp_path / "noids.csv", body)
    first = import_reviews(store_path, path)
    assert (first.accepted, first.rejected) == (2, 1)
    assert _rejects(store_path, first.import_id) == [(4, "duplicate_id")]
    second = import_reviews(store_path, path)
    assert (second.accepted, second.unchanged) == (0, 2)
    with connect(store_path, read_only=True) as con:
        ids = [r for (r,) in con.execute("SELECT review_id FROM reviews").fetchall()]
    assert len(ids) == 2 and all(i.startswith("h-") for i in ids)


def test_failed_write_leaves_store_unchanged(store_path, tmp_path, monkeypatch):
    import_reviews(store_path, _write(tmp_path / "first.csv", "review_id,text,stars\na,Good,5\n"))
    before = _table_counts(store_path)

    def explode(con, **kwargs):
        raise RuntimeError("disk full while assigning splits")

    monkeypatch.setattr("pipeline.data.importer.assign_splits", explode)
    with pytest.raises(RuntimeError, match="disk full"):
        import_reviews(store_path, _write(tmp_path / "mixed.csv", CSV_MIXED))
    assert _table_counts(store_path) == before


def test_viewer_may_not_import(store_path, tmp_path):
    path = _write(tmp_path / "a.csv", "text\nhello\n")
    with pytest.raises(PermissionDeniedError):
        import_reviews(store_path, path, actor=Actor("vera", "viewer"))
    assert _table_counts(store_path)["reviews"] == 0


def test_map_columns_explains_missing_columns():
    assert map_columns(["Business_ID", "Date", "Rating", "Review Text"])["restaurant_id"] == 0
    assert map_columns(["Business_ID", "Date", "Rating", "Review Text"])["text"] == 3
    with pytest.raises(TastebudError, match=r"no text column found \(columns: id, stars\); name it with --text"):
        map_columns(["id", "stars"])
    with pytest.raises(TastebudError, match=r"column 'body_text' \(--text\) is not in the file"):
        map_columns(["id", "text"], ColumnMapping(text="body_text"))


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(cli_cmd(*args), capture_output=True, text=True, timeout=120)


def _assert_one_line_error(proc: subprocess.CompletedProcess, message: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr


def test_cli_errors_are_one_line(store_path, tmp_path):
    db = str(store_path)
    _assert_one_line_error(_run("--db", db, "import", str(tmp_path / "missing.csv")), "no such file")
    no_text = _write(tmp_path / "no_text.csv", "id,stars\n1,5\n")
    _assert_one_line_error(_run("--db", db, "import", str(no_text)), "no text column found")
    odd = _write(tmp_path / "reviews.xlsx", "not really")
    _assert_one_line_error(_run("--db", db, "import", str(odd)), "cannot tell the format of reviews.xlsx")
    _assert_one_line_error(_run("--db", db, "import", str(tmp_path)), "not a file")
    assert _table_counts(store_path)["imports"] == 0


def test_cli_json_report_and_exit_codes(store_path, tmp_path):
    good = _write(tmp_path / "mixed.csv", CSV_MIXED)
    proc = _run("--db", str(store_path), "import", str(good), "--json", "--source", "partner-feed")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert set(report) >= {"import_id", "path", "format", "source", "columns", "rows", "accepted", "updated",
                           "unchanged", "rejected", "rejected_by_reason", "labels_added", "label_source", "splits"}
    assert (report["accepted"], report["updated"], report["unchanged"], report["rejected"]) == (3, 0, 0, 8)
    assert report["rejected_by_reason"]["invalid_date"] == 1 and report["source"] == "partner-feed"
    assert report["splits"] == {"train": 3, "val": 0, "test": 0}
    # Everything rejected: the rejects are kept, and the exit code says nothing was imported.
    bad = _write(tmp_path / "bad.csv", "text,stars\nGood,9\n,3\n")
    proc = _run("--db", str(store_path), "import", str(bad))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "rejected            2" in proc.stdout and "stars_out_of_range" in proc.stdout
    assert _table_counts(store_path)["import_rejects"] == 10


@requires_shared_data
def test_real_yelp_dev_csv(store_path):
    report = import_reviews(store_path, SHARED_DATA / "yelp_reviews_10k" / "yelp_dev.csv")
    assert (report.accepted, report.rejected, report.labels_added) == (8001, 0, 8001)
    with connect(store_path, read_only=True) as con:
        counts = dict(con.execute("SELECT label, count(*) FROM current_labels GROUP BY 1").fetchall())
        n_splits = con.execute("SELECT count(*) FROM splits").fetchone()[0]
    assert counts == {"negative": 1341, "neutral": 1169, "positive": 5491}
    assert n_splits == 8001
