"""`tastebud aspects import` and the aspects CLI: every reject reason with its row, conflicting duplicates,
incomplete reviews, reviews created from texts, SemEval XML (and hostile XML refused), idempotence."""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.data.aspect_import import import_aspect_labels, resolve_aspect_format
from store.actors import Actor
from store.aspects import aspect_names, current_review_aspects
from store.db import connect
from store.errors import PermissionDeniedError, TastebudError
from store.imports import fetch_rejects, list_imports
from tests.conftest import SHARED_DATA, cli_cmd, seed_reviews

ADMIN = Actor("ana", "admin")
SEEDED = [f"r{i}" for i in range(1, 10)]


def _write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def _seed(db: Path) -> None:
    seed_reviews(db, pd.DataFrame({
        "review_id": SEEDED,
        "text": [f"Review {r}: the food was good, the service slow." for r in SEEDED],
        "stars": [4] * len(SEEDED),
    }))


def _rejects(db: Path, import_id: int) -> list[tuple[int, str]]:
    with connect(db, read_only=True) as con:
        frame = fetch_rejects(con, import_id, limit=1000)
    return list(zip(frame["row_number"].tolist(), frame["reason"].tolist()))


def _current(db: Path) -> dict[tuple[str, str], str]:
    with connect(db, read_only=True) as con:
        rows = con.execute("SELECT review_id, aspect, polarity FROM current_aspect_labels").fetchall()
    return {(r, a): p for r, a, p in rows}


def _count(db: Path, table: str) -> int:
    with connect(db, read_only=True) as con:
        return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


CSV_MIXED = (
    "review_id,aspect,polarity,text,labeler\n"  # 1 header
    "r1,Food,pos,,ann\n"  # 2 ok: food positive (name normalized, pos mapped)
    "r1,service,NEGATIVE,,ann\n"  # 3 ok
    "r1,food,positive,,ann\n"  # 4 an identical repeat of row 2: imported once, not a reject
    "r2,food,positive,,\n"  # 5 conflicting_duplicate
    "r2,food,negative,,\n"  # 6 conflicting_duplicate
    "r2,service,neutral,,\n"  # 7 review_incomplete (r2's food was rejected)
    "r3,wait,negative,,\n"  # 8 unknown_aspect (not in the store's set)
    "r4,food,mixed,,\n"  # 9 unknown_polarity
    "ghost,food,positive,,\n"  # 10 unknown_review (no such review, no text)
    ",food,positive,,\n"  # 11 missing_id
    'new1,price,neu,"A new place, cheap.",\n'  # 12 ok: creates review new1
    "new1,ambience,conflict,,\n"  # 13 ok: new1's text came on row 12
    "r5,food,positive,Not the stored text,\n"  # 14 text_mismatch
    'new2,food,positive,"\t ",\n'  # 15 empty_text
    f"new3,food,positive,{'x' * 20_001},\n"  # 16 text_too_long
    "r6,food,positive,too,many,columns\n"  # 17 malformed_row
).encode() + b"r7,food,positive,caf\xe9,\n" + (  # 18 invalid_utf8
    "r8,Bad!Name,positive,,\n"  # 19 unknown_aspect (not a valid name)
    "r9,service,,,\n"  # 20 unknown_polarity (empty)
).encode()
CSV_MIXED_REJECTS = [
    (5, "conflicting_duplicate"), (6, "conflicting_duplicate"), (7, "review_incomplete"), (8, "unknown_aspect"),
    (9, "unknown_polarity"), (10, "unknown_review"), (11, "missing_id"), (14, "text_mismatch"), (15, "empty_text"),
    (16, "text_too_long"), (17, "malformed_row"), (18, "invalid_utf8"), (19, "unknown_aspect"),
    (20, "unknown_polarity"),
]
CSV_MIXED_LABELS = {
    ("r1", "food"): "positive", ("r1", "service"): "negative",
    ("new1", "price"): "neutral", ("new1", "ambience"): "conflict",
}


def test_csv_rows_with_every_reason(store_path, tmp_path):
    _seed(store_path)
    report = import_aspect_labels(store_path, _write(tmp_path / "labels.csv", CSV_MIXED), actor=ADMIN)
    assert _rejects(store_path, report.import_id) == CSV_MIXED_REJECTS
    assert (report.rows, report.labels_added, report.repeated, report.rejected) == (19, 4, 1, 14)
    assert report.rejected_by_reason["conflicting_duplicate"] == 2 and report.rejected_by_reason["unknown_aspect"] == 2
    assert (report.reviews_created, report.reviews_annotated) == (1, 2)
    assert _current(store_path) == CSV_MIXED_LABELS
    details = {r["row_number"]: r["detail"] for r in report.first_rejects}
    assert "row 5: positive, row 6: negative" in details[5] and "none was imported" in details[5]
    assert "row 5 of review \"r2\" was rejected (conflicting_duplicate)" in details[7]
    assert "`tastebud aspects add wait`" in details[8] and "--create-aspects" in details[8]
    assert details[8].index("--create-aspects") < details[8].index("known:")  # the remedy survives a cut
    with connect(store_path, read_only=True) as con:
        new1 = con.execute("SELECT text, source FROM reviews WHERE review_id = 'new1'").fetchone()
        split = con.execute("SELECT split FROM splits WHERE review_id = 'new1'").fetchone()
        sentiment = con.execute("SELECT count(*) FROM labels WHERE review_id = 'new1'").fetchone()[0]
        labeler = con.execute("SELECT labeler FROM aspect_labels WHERE review_id = 'r1' AND aspect = 'food'").fetchall()
        imports = list_imports(con)
    assert new1 == ("A new place, cheap.", "labels.csv") and split is not None and sentiment == 0
    assert labeler == [("ann",)]
    assert imports.iloc[0]["format"] == "aspects:csv" and imports.iloc[0]["accepted"] == 4
    assert imports.iloc[0]["rejected"] == 14


def test_reimport_adds_nothing_and_create_aspects_is_opt_in(store_path, tmp_path):
    _seed(store_path)
    path = _write(tmp_path / "labels.csv", CSV_MIXED)
    import_aspect_labels(store_path, path, actor=ADMIN)
    before = {t: _count(store_path, t) for t in ("aspect_labels", "reviews", "splits", "aspects")}
    again = import_aspect_labels(store_path, path, actor=ADMIN)
    assert (again.labels_added, again.labels_unchanged, again.reviews_created, again.rejected) == (0, 4, 0, 14)
    assert {t: _count(store_path, t) for t in before} == before
    created = import_aspect_labels(store_path, path, create_aspects=True, actor=ADMIN)
    assert created.aspects_created == ["wait"] and created.labels_added == 1
    assert _current(store_path)[("r3", "wait")] == "negative"
    assert created.rejected_by_reason["unknown_aspect"] == 1  # "Bad!Name" is no valid name either way
    with connect(store_path, read_only=True) as con:
        assert aspect_names(con)[-1] == "wait"


def test_jsonl_rows(store_path, tmp_path):
    _seed(store_path)
    lines = [
        json.dumps({"review_id": "r1", "aspect": "price", "polarity": "neg"}),  # 1 ok
        json.dumps({"review_id": 17, "aspect": "food", "polarity": "positive", "text": "Seventeen's text."}),  # 2 ok
        "{not json",  # 3 malformed_json
        "[1, 2]",  # 4 malformed_json (an array)
        "",  # 5 blank: skipped
        json.dumps({"review_id": "n2", "aspect": "food", "polarity": "positive", "text": 42}),  # 6 text_not_string
        json.dumps({"review_id": "n3", "aspect": "food", "polarity": "positive", "text": " \u0000 "}),  # 7 empty_text
        json.dumps({"review_id": "r2", "aspect": "food", "polarity": 1}),  # 8 unknown_polarity
    ]
    report = import_aspect_labels(store_path, _write(tmp_path / "labels.jsonl", "\n".join(lines) + "\n"), actor=ADMIN)
    assert _rejects(store_path, report.import_id) == [
        (3, "malformed_json"), (4, "malformed_json"), (6, "text_not_string"), (7, "empty_text"), (8, "unknown_polarity"),
    ]
    assert _current(store_path) == {("r1", "price"): "negative", ("17", "food"): "positive"}
    assert report.reviews_created == 1


SEMEVAL = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<sentences>
    <sentence id="1">
        <text>The pasta was great but the waiter was rude.</text>
        <aspectTerms><aspectTerm term="pasta" polarity="positive" from="4" to="9"/></aspectTerms>
        <aspectCategories>
            <aspectCategory category="food" polarity="positive"/>
            <aspectCategory category="service" polarity="negative"/>
            <aspectCategory category="food" polarity="positive"/>
        </aspectCategories>
    </sentence>
    <sentence id="2">
        <text>Pricey &amp; loud.</text>
        <aspectCategories>
            <aspectCategory category="price" polarity="negative"/>
            <aspectCategory category="ambience" polarity="negative"/>
        </aspectCategories>
    </sentence>
    <sentence id="3">
        <text>Odd one.</text>
        <aspectCategories>
            <aspectCategory category="food" polarity="positive"/>
            <aspectCategory category="food" polarity="neutral"/>
            <aspectCategory category="service" polarity="positive"/>
        </aspectCategories>
    </sentence>
    <sentence>
        <text>No id here.</text>
        <aspectCategories><aspectCategory category="food" polarity="positive"/></aspectCategories>
    </sentence>
    <sentence id="5">
        <text>Great drinks.</text>
        <aspectCategories><aspectCategory category="drinks" polarity="positive"/></aspectCategories>
    </sentence>
    <sentence id="6">
        <text>Nothing listed.</text>
    </sentence>
</sentences>
"""


def test_semeval_xml_creates_reviews_and_keeps_annotations_complete(store_path, tmp_path):
    path = _write(tmp_path / "train.xml", SEMEVAL)
    report = import_aspect_labels(store_path, path, actor=ADMIN)
    # Rows are the aspectCategory lines (line of the sentence when it lists none).
    assert _rejects(store_path, report.import_id) == [
        (22, "conflicting_duplicate"), (23, "conflicting_duplicate"), (24, "review_incomplete"),
        (29, "missing_id"), (33, "unknown_aspect"), (35, "unknown_aspect"),
    ]
    assert (report.labels_added, report.repeated, report.reviews_created, report.source) == (4, 1, 2, "semeval")
    assert _current(store_path) == {
        ("semeval:1", "food"): "positive", ("semeval:1", "service"): "negative",
        ("semeval:2", "price"): "negative", ("semeval:2", "ambience"): "negative",
    }
    with connect(store_path, read_only=True) as con:
        reviews = dict(con.execute("SELECT review_id, text FROM reviews").fetchall())
        assert con.execute("SELECT count(*) FROM splits").fetchone()[0] == 2
    assert reviews == {"semeval:1": "The pasta was great but the waiter was rude.", "semeval:2": "Pricey & loud."}
    assert import_aspect_labels(store_path, path, actor=ADMIN).labels_added == 0
    # The sentence's categories are its whole annotation: one it no longer lists becomes absent.
    fewer = SEMEVAL.replace('<aspectCategory category="service" polarity="negative"/>', "")
    again = import_aspect_labels(store_path, _write(tmp_path / "train_v3.xml", fewer), actor=ADMIN)
    assert (again.labels_added, again.absent_added) == (0, 1)
    with connect(store_path, read_only=True) as con:
        assert current_review_aspects(con, "semeval:1")["service"] == ("absent", "import")
    assert import_aspect_labels(store_path, _write(tmp_path / "train_v3.xml", fewer), actor=ADMIN).absent_added == 0


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE sentences [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<sentences><sentence id="1"><text>&lol3;</text></sentence></sentences>
"""
EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE sentences [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<sentences><sentence id="1"><text>&secret;</text>
<aspectCategories><aspectCategory category="food" polarity="positive"/></aspectCategories></sentence></sentences>
"""


@pytest.mark.parametrize(("content", "message"), [
    (BILLION_LAUGHS, "declares a document type or entities"),
    (EXTERNAL_ENTITY, "declares a document type or entities"),
    ("<sentences><sentence id='1'><text>Open", "is not well-formed XML: line 1"),
    ("<Reviews><Review/></Reviews>", "expected <sentences> (SemEval-2014 Task 4) (SemEval-2015/2016"),
    (b"PK\x03\x04" + b"\x00" * 64, "is a zip archive, not SemEval XML"),
])
def test_hostile_or_broken_xml_is_refused_whole(store_path, tmp_path, content, message):
    path = _write(tmp_path / "bad.xml", content)
    with pytest.raises(TastebudError, match=message.replace("(", r"\(").replace(")", r"\)")):
        import_aspect_labels(store_path, path, actor=ADMIN)
    assert (_count(store_path, "imports"), _count(store_path, "reviews"), _count(store_path, "aspect_labels")) == (0, 0, 0)


def test_format_detection_and_refusals(tmp_path):
    assert resolve_aspect_format(_write(tmp_path / "a.txt", "review_id\taspect\tpolarity\n"), None) == "tsv"
    assert resolve_aspect_format(_write(tmp_path / "b", "\n  <sentences/>"), None) == "semeval-xml"
    assert resolve_aspect_format(_write(tmp_path / "c.data", '{"review_id": 1}\n'), None) == "jsonl"
    assert resolve_aspect_format(_write(tmp_path / "d.json", '{"review_id": 1}\n'), "xml") == "semeval-xml"
    with pytest.raises(TastebudError, match="is a gzip file, not CSV"):
        resolve_aspect_format(_write(tmp_path / "e.csv", b"\x1f\x8b\x08\x00" + b"\x00" * 64), None)
    with pytest.raises(TastebudError, match="not Parquet; save it as CSV or JSON Lines"):
        resolve_aspect_format(_write(tmp_path / "f.parquet", "x"), None)
    with pytest.raises(TastebudError, match="unknown format 'xlsx'; choose one of csv, tsv, jsonl, semeval-xml"):
        resolve_aspect_format(_write(tmp_path / "g.csv", "a,b\n"), "xlsx")


def test_missing_columns_and_permissions(store_path, tmp_path):
    with pytest.raises(TastebudError, match=r"no aspect or polarity column found \(columns: review_id, text\)"):
        import_aspect_labels(store_path, _write(tmp_path / "a.csv", "review_id,text\nr1,hi\n"), actor=ADMIN)
    with pytest.raises(PermissionDeniedError):
        import_aspect_labels(store_path, _write(tmp_path / "b.csv", "review_id,aspect,polarity\n"),
                             actor=Actor("lee", "labeler"))
    assert _count(store_path, "imports") == 0


def test_cli_commands(store_path, tmp_path):
    _seed(store_path)
    runner, db = CliRunner(), str(store_path)
    result = runner.invoke(app, ["--db", db, "aspects", "import", str(_write(tmp_path / "l.csv", CSV_MIXED)), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["labels_added"], report["rejected"], report["format"]) == (4, 14, "csv")
    result = runner.invoke(app, ["--db", db, "aspects", "add", "Wait", "--description", "the wait for a table"])
    assert result.exit_code == 0 and "added aspect 'wait'" in result.output
    listed = json.loads(runner.invoke(app, ["--db", db, "aspects", "list", "--json"]).output)
    by_name = {a["aspect"]: a for a in listed["aspects"]}
    assert listed["annotated_reviews"] == 2 and by_name["food"]["mentions"] == 1
    assert by_name["ambience"]["labels"]["conflict"] == 1 and by_name["wait"]["builtin"] is False
    labels = runner.invoke(app, ["--db", db, "aspects", "labels", "r1"])
    assert labels.exit_code == 0 and "food                      positive  (import)" in labels.output
    assert "import by ann" in labels.output
    assert runner.invoke(app, ["--db", db, "aspects", "remove", "wait"]).exit_code == 0
    # Everything rejected: exit 1, the rejects are kept.
    result = runner.invoke(app, ["--db", db, "aspects", "import", str(_write(tmp_path / "bad.tsv", "review_id\taspect\t"
                                                                               "polarity\nr1\tfood\tgreat\n"))])
    assert result.exit_code == 1 and "unknown_polarity" in result.output and "nothing imported" in result.output


def test_cli_errors_are_one_line(store_path, tmp_path):
    proc = subprocess.run(cli_cmd("--db", str(store_path), "aspects", "import",
                                  str(_write(tmp_path / "evil.xml", BILLION_LAUGHS))),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "declares a document type" in proc.stderr


@pytest.mark.skipif(not (SHARED_DATA / "semeval2014_restaurants" / "Restaurants_Train_v2.xml").exists(),
                    reason="../shared/data is not present")
def test_real_semeval_train_xml(store_path):
    path = SHARED_DATA / "semeval2014_restaurants" / "Restaurants_Train_v2.xml"
    report = import_aspect_labels(store_path, path, actor=ADMIN)
    # 3,713 category rows (README); two sentences list anecdotes/miscellaneous twice, identically: one label each.
    assert (report.rows, report.reviews_created, report.rejected) == (3713, 3041, 0)
    assert (report.labels_added, report.repeated) == (3711, 2)
    with connect(store_path, read_only=True) as con:
        polarities = dict(con.execute("SELECT polarity, count(*) FROM current_aspect_labels GROUP BY 1").fetchall())
        aspects = dict(con.execute("SELECT aspect, count(*) FROM current_aspect_labels GROUP BY 1").fetchall())
        assert con.execute("SELECT count(*) FROM reviews WHERE source = 'semeval'").fetchone()[0] == 3041
    assert polarities == {"positive": 2177, "negative": 839, "neutral": 500, "conflict": 195}
    assert aspects == {"food": 1232, "anecdotes/miscellaneous": 1130, "service": 597, "ambience": 431, "price": 321}
    again = import_aspect_labels(store_path, path, actor=ADMIN)
    assert (again.labels_added, again.absent_added, again.reviews_created, again.labels_unchanged) == (0, 0, 0, 3711)


def test_chunked_write_gives_the_same_store(store_path, tmp_path, monkeypatch):
    for name in ("CHUNK_ROWS", "FIRST_CHUNK_ROWS", "MIN_CHUNK_ROWS"):
        monkeypatch.setattr(f"pipeline.data.importer.{name}", 2)
    _seed(store_path)
    report = import_aspect_labels(store_path, _write(tmp_path / "labels.csv", CSV_MIXED), actor=ADMIN)
    assert report.chunks > 3
    assert _rejects(store_path, report.import_id) == CSV_MIXED_REJECTS
    assert _current(store_path) == CSV_MIXED_LABELS
    assert (report.reviews_created, report.splits["train"] + report.splits["val"] + report.splits["test"]) == (1, 1)
    with connect(store_path, read_only=True) as con:
        assert pd.notna(list_imports(con).iloc[0]["finished_at"])


def test_export_reads_back_into_a_fresh_store_with_the_same_annotations(store_path, tmp_path):
    """`aspects export` writes the current labels (a human correction and an absent aspect included) in the
    layout import reads: a fresh store that imports the file holds the same reviews, texts and labels, and
    re-importing it into its own store writes nothing new but the corrected rows' import copies."""
    from pipeline.data.export import export_aspect_labels
    from pipeline.loop.relabel import relabel_aspects

    _seed(store_path)
    import_aspect_labels(store_path, _write(tmp_path / "l.csv", CSV_MIXED), actor=ADMIN)
    relabel_aspects(store_path, Actor("lea", "labeler"), "r1", {"food": "negative", "price": "absent"})
    tricky = 'He said "great",\nthen left;\u2028caf\u00e9 \u2014 fine.\r\nBye'  # quotes, breaks, separators
    seed_reviews(store_path, pd.DataFrame({"review_id": ["multi"], "text": [tricky], "stars": [3]}))
    relabel_aspects(store_path, Actor("lea", "labeler"), "multi", {"service": "negative"})
    runner = CliRunner()
    for fmt in ("csv", "jsonl"):
        out = tmp_path / f"labels.{fmt}"
        result = runner.invoke(app, ["--db", str(store_path), "aspects", "export", str(out)])
        assert result.exit_code == 0, result.output
        assert "exported 6 aspect labels of 3 reviews" in result.output
        fresh = tmp_path / f"fresh-{fmt}.duckdb"
        assert runner.invoke(app, ["--db", str(fresh), "init"]).exit_code == 0
        report = import_aspect_labels(fresh, out, actor=ADMIN)
        assert report.rejected == 0 and report.reviews_created == 3
        assert _current(fresh) == _current(store_path) == {**CSV_MIXED_LABELS, ("r1", "food"): "negative",
                                                            ("r1", "price"): "absent", ("multi", "service"): "negative"}
        with connect(store_path, read_only=True) as a, connect(fresh, read_only=True) as b:
            query = "SELECT review_id, text FROM reviews WHERE review_id IN ('r1', 'new1', 'multi') ORDER BY 1"
            assert a.execute(query).fetchall() == b.execute(query).fetchall()
            assert b.execute("SELECT DISTINCT labeler FROM aspect_labels WHERE review_id = 'r1' AND aspect = 'food'"
                             ).fetchall() == [("lea",)]
    again = import_aspect_labels(store_path, tmp_path / "labels.csv", actor=ADMIN)
    assert again.labels_added == 3 and _current(store_path)[("r1", "food")] == "negative"  # the human label still rules
    exported = pd.read_csv(tmp_path / "labels.csv")
    assert list(exported.columns) == ["review_id", "aspect", "polarity", "text", "labeler", "source", "labeled_at", "split"]
    assert set(exported.loc[exported["review_id"] == "r1", "source"]) == {"human", "import"}
    # Nothing is overwritten by accident; a bad format, a bad split, an empty split are one line each.
    with pytest.raises(TastebudError, match="exists; choose another name or pass --force"):
        export_aspect_labels(store_path, tmp_path / "labels.csv")
    assert export_aspect_labels(store_path, tmp_path / "labels.csv", overwrite=True)[1:] == (6, 3)
    with pytest.raises(TastebudError, match="name it .csv or .jsonl"):
        export_aspect_labels(store_path, tmp_path / "labels.xlsx")
    with pytest.raises(TastebudError, match="unknown aspect label export format 'xml'; choose one of csv, jsonl"):
        export_aspect_labels(store_path, tmp_path / "labels.csv", fmt="xml", overwrite=True)
    with pytest.raises(TastebudError, match="unknown split"):
        export_aspect_labels(store_path, tmp_path / "s.csv", split="dev")
    empty = tmp_path / "empty.duckdb"
    runner.invoke(app, ["--db", str(empty), "init"])
    proc = subprocess.run(cli_cmd("--db", str(empty), "aspects", "export", str(tmp_path / "none.csv")),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip() == "error: the store has no aspect labels: nothing to export"
    assert not (tmp_path / "none.csv").exists()


def _store_with_aspect_labels(store_path: Path, tmp_path: Path) -> None:
    _seed(store_path)
    import_aspect_labels(store_path, _write(tmp_path / "l.csv", CSV_MIXED), actor=ADMIN)


def test_export_refuses_targets_it_would_replace_wrongly(store_path, tmp_path):
    """An export is moved over its target, so anything but a regular file there (a symlink, a directory, a
    FIFO, a device) is refused rather than replaced; a missing folder is refused, not created; a path the
    OS will not write is one line. Nothing on disk changes and no partial file is left."""
    from pipeline.data.export import export_aspect_labels

    _store_with_aspect_labels(store_path, tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "real.csv").write_text("keep me")
    (out / "link.csv").symlink_to("real.csv")
    (out / "dangling.csv").symlink_to("nowhere.csv")
    (out / "dir.csv").mkdir()
    os.mkfifo(out / "fifo.csv")
    (out / "file.csv").write_text("a file")
    refusals = {
        out / "link.csv": "link.csv is a symbolic link: replacing it would replace the link, not the file",
        out / "dangling.csv": "dangling.csv is a symbolic link",
        out / "dir.csv": "dir.csv is a directory, not a regular file",
        out / "fifo.csv": "fifo.csv is a FIFO, not a regular file",
        Path("/dev/full"): "/dev/full is a character device, not a regular file",
        out / "nope" / "x.csv": f"cannot write {out / 'nope' / 'x.csv'}: folder {out / 'nope'} does not exist",
        out / "file.csv" / "x.csv": f"cannot write {out / 'file.csv' / 'x.csv'}: {out / 'file.csv'} is not a folder",
        Path("/proc/x.csv"): "cannot write /proc/x.csv: No such file or directory",
    }
    before = sorted(p.name for p in out.iterdir())
    for target, message in refusals.items():
        for overwrite in (False, True):
            with pytest.raises(TastebudError, match=re.escape(message)):
                export_aspect_labels(store_path, target, fmt="csv", overwrite=overwrite)
    assert sorted(p.name for p in out.iterdir()) == before and not (out / "nope").exists()
    assert os.readlink(out / "link.csv") == "real.csv" and (out / "real.csv").read_text() == "keep me"
    assert (out / "file.csv").read_text() == "a file" and not list((out / "dir.csv").iterdir())
    assert not list(Path("/proc").glob("x.csv*"))
    # Through the CLI: one line, exit 2.
    proc = subprocess.run(cli_cmd("--db", str(store_path), "aspects", "export", str(out / "dir.csv"), "--force"),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr == f"error: {out / 'dir.csv'} is a directory, not a regular file: " \
                                                   "an export only replaces a regular file\n"


def test_failed_export_write_keeps_the_old_file_and_leaves_no_partial(tmp_path):
    """A write that fails midway (a full disk) is one line; the old file and a user's own ``.partial``
    file beside it are untouched, and no partial file is left."""
    from pipeline.data.export import _write_whole

    target = tmp_path / "labels.csv"
    target.write_text("old")
    (tmp_path / "labels.csv.partial").write_text("mine")

    def full_disk(f):
        f.write(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(TastebudError, match=re.escape(f"cannot write {target}: No space left on device")):
        _write_whole(target, full_disk)
    assert target.read_text() == "old" and (tmp_path / "labels.csv.partial").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.csv", "labels.csv.partial"]
    _write_whole(target, lambda f: f.write(b"new"))
    assert target.read_text() == "new" and (tmp_path / "labels.csv.partial").read_text() == "mine"
    assert len(list(tmp_path.iterdir())) == 2


def test_review_export_to_a_file_makes_only_its_own_folder(store_path, tmp_path):
    """The review export (dashboard, large exports) makes ``exports/`` beside the store, but a given path's
    missing folder is refused like the aspect export's."""
    from pipeline.data.export import export_to_file

    _seed(store_path)
    target, rows = export_to_file(store_path, "csv")
    assert target.parent == store_path.resolve().parent / "exports" and rows == len(SEEDED)
    assert len(pd.read_csv(target)) == len(SEEDED)
    with pytest.raises(TastebudError, match="folder .*missing does not exist"):
        export_to_file(store_path, "csv", path=tmp_path / "missing" / "r.csv")
    assert not (tmp_path / "missing").exists()
    (tmp_path / "d.csv").mkdir()
    with pytest.raises(TastebudError, match="d.csv is a directory"):
        export_to_file(store_path, "csv", path=tmp_path / "d.csv")


def _strict_json(text: str):
    """Parse JSON as a strict reader does: NaN / Infinity are not JSON."""
    def refuse(constant):
        raise AssertionError(f"invalid JSON constant {constant} in CLI output")
    return json.loads(text, parse_constant=refuse)


def test_cli_json_has_null_not_nan_for_missing_values(store_path):
    """An aspect without a description and an aspect model without a test evaluation come out as null in
    --json (not NaN, which is invalid JSON), and as nothing (not "nan") in the text table."""
    from tests.aspect_seed import register_aspect_model
    from store.db import transaction

    runner, db = CliRunner(), str(store_path)
    assert runner.invoke(app, ["--db", db, "aspects", "add", "parking"]).exit_code == 0
    result = runner.invoke(app, ["--db", db, "aspects", "list", "--json"])
    assert result.exit_code == 0, result.output
    parking = next(a for a in _strict_json(result.output)["aspects"] if a["aspect"] == "parking")
    assert parking["description"] is None
    text = runner.invoke(app, ["--db", db, "aspects", "list"]).output
    assert "nan" not in next(line for line in text.splitlines() if line.startswith("parking"))
    with transaction(store_path) as con:
        register_aspect_model(con, "aspects-unevaluated", promote=False)
    result = runner.invoke(app, ["--db", db, "models", "--task", "aspects", "--json"])
    assert result.exit_code == 0, result.output
    (model,) = _strict_json(result.output)
    assert model["model_id"] == "aspects-unevaluated" and model["accuracy"] is None


def test_emit_json_turns_every_missing_value_into_null(capsys):
    import numpy as np

    from pipeline.cli.app import emit_json

    emit_json({"nan": float("nan"), "np": np.float32("nan"), "nat": pd.NaT, "na": pd.NA, "arr": np.array([1.0, np.nan]),
               "nested": [{"t": (np.nan, 1)}], "ok": [1, "x", None, True]})
    assert _strict_json(capsys.readouterr().out) == {"nan": None, "np": None, "nat": None, "na": None, "arr": [1.0, None],
                                                     "nested": [{"t": [None, 1]}], "ok": [1, "x", None, True]}
    with pytest.raises(ValueError):
        emit_json({"inf": float("inf")})  # a value JSON cannot carry fails loudly, never prints invalid JSON


def test_an_unknown_aspect_with_a_space_gets_a_command_that_runs(store_path, tmp_path):
    _seed(store_path)
    report = import_aspect_labels(store_path, _write(tmp_path / "w.csv", "review_id,aspect,polarity\nr1,Wait Time,negative\n"),
                                  actor=ADMIN)
    [reject] = report.first_rejects
    assert "`tastebud aspects add 'wait time'`" in reject["detail"]
