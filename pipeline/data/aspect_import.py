"""Import aspect labels: CSV, TSV or JSON Lines (one row per review and aspect) and SemEval-2014 XML.

Files:
    * **CSV / TSV / JSON Lines**: one row per (review, aspect) with columns ``review_id``, ``aspect``
      and ``polarity`` (common names are recognised, see ``COLUMN_ALIASES``), an optional ``text`` and an
      optional ``labeler``. A row for a review the store does not have creates it when some row of that
      review carries its text (source: the file name, no sentiment label, a frozen split like any
      import); without a text it is ``unknown_review``. Aspects a file does not name for a review keep
      what they had; a row saying ``absent`` removes an aspect.
    * **SemEval-2014 Task 4 XML** as published (``<sentences><sentence id><text>`` with
      ``<aspectCategories><aspectCategory category polarity/>``): each sentence becomes a review with id
      ``semeval:<sentence id>`` (``SEMEVAL_ID_PREFIX``; the prefix keeps SemEval's small integer ids
      apart from a store's own) and source ``semeval``, each category a label. A sentence's categories
      are its complete annotation: re-importing a sentence that lost a category marks that aspect
      ``absent``. Aspect *terms* (``<aspectTerms>``) are not imported: the store's aspects are categories.
      Row numbers are the line of the ``<aspectCategory>`` element (of the ``<sentence>`` when it has none).

The XML is read with the standard library's expat parser, with any document type declaration refused
outright: SemEval's files have none, and without a DTD there are no entities to expand (billion laughs)
or to fetch (external entities). defusedxml is not installed, and a third-party parser (lxml) would add a
compiled dependency and resolves entities by default; expat in the standard library does all this
format needs.

Rules for bad rows are those of review import (:mod:`pipeline.data.importer`): the whole file is read
and checked with no store connection open (then one short read of the store's aspects and of the
reviews the file names); bad rows are kept in ``import_rejects`` with their row number and reason; an
``imports`` row records the run (format ``aspects:<format>``; ``accepted`` counts label rows written,
``unchanged`` labels already stored); archives and binary files are refused as a whole. Reasons, the
first failing check wins (see ``REJECT_REASONS``).

Two rules keep a review's annotation honest, because the store reads a review with any aspect label
as completely annotated (an aspect without a label is absent): the same review and aspect twice with
different polarities rejects every such row (``conflicting_duplicate``: nothing is silently chosen;
identical repeats are imported once and counted as ``repeated``), and when any row of a review is
rejected its other rows are rejected too (``review_incomplete``), so a rejected aspect is never read as
absent. Rows the reader could not split (``malformed_row``) name no review and cannot take part in that.

Polarities, case and surrounding spaces ignored: ``positive``/``pos``, ``negative``/``neg``,
``neutral``/``neu``, ``conflict`` (praised and criticised at once) and ``absent``. Anything else,
numbers and ``mixed`` included, is ``unknown_polarity``. Aspect names are normalized
(:func:`store.aspects.normalize_aspect_name`); a name not in the store's set is ``unknown_aspect``
unless ``create_aspects`` adds it.

Writing is chunked like review import (whole reviews per chunk, each chunk one transaction, a pause
between chunks when another process waits) and idempotent: a stored label that says the same is
skipped (:func:`store.aspects.append_aspect_labels`), so re-importing a file, or finishing an import
that was killed halfway, adds nothing twice.
"""

from __future__ import annotations

import json
import os
import shlex
import time
import unicodedata
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from xml.parsers import expat

import pandas as pd
import pyarrow as pa

from pipeline.data.importer import (
    _EXTENSIONS,
    _MAGIC,
    MAX_TEXT_CHARS,
    _check_file,
    _ChunkSizer,
    _looks_binary,
    _refuse_binary,
    _shown_columns,
    _stage,
)
from store import imports as staging
from store.actors import Actor, audit, cli_actor, require
from store.aspects import (
    ASPECT_LABEL_VALUES,
    POLARITY_SPELLINGS,
    add_aspect,
    append_aspect_labels,
    aspect_names,
    fetch_aspect_split,
    normalize_aspect_name,
)
from store.db import connect, hand_off, skip_row_group_merges, transaction
from store.errors import TastebudError
from store.printable import printable
from store.reviews import fetch_reviews, upsert_reviews
from store.schema import init_store
from store.splits import assign_splits, count_split_strata

FORMATS: tuple[str, ...] = ("csv", "tsv", "jsonl", "semeval-xml")
FORMAT_NAMES = {"csv": "CSV", "tsv": "TSV", "jsonl": "JSON Lines", "semeval-xml": "SemEval XML"}
# SemEval sentence "3121" becomes review "semeval:3121".
SEMEVAL_ID_PREFIX = "semeval:"
# reviews.source of reviews made from SemEval sentences, and the labeler of their labels.
SEMEVAL_SOURCE = "semeval"
SEMEVAL_LABELER = "semeval-2014"
# Why an aspect label row was rejected, in the order the checks run (the first failing one is recorded).
REJECT_REASONS: tuple[str, ...] = (
    "invalid_utf8",  # the row's bytes are not valid UTF-8 (CSV, TSV, JSON Lines)
    "malformed_row",  # a CSV/TSV record the reader could not split
    "malformed_json",  # a JSON Lines line that is not a JSON object
    "text_not_string",  # the text value is a JSON number, list or object
    "empty_text",  # a text is given but nothing visible is left after removing NUL characters
    "text_too_long",  # text longer than review import accepts
    "missing_id",  # no review id (SemEval: a sentence without an id)
    "unknown_aspect",  # the aspect is empty, not a valid name, or not in the store's set
    "unknown_polarity",  # the polarity is empty or not one of POLARITY_SPELLINGS
    "unknown_review",  # no such review in the store and no text to create it from
    "text_mismatch",  # the row's text differs from the review's stored text (or from another row's)
    "conflicting_duplicate",  # the same review and aspect again with a different polarity: all such rows
    "review_incomplete",  # another row of the same review was rejected
)
# File column names recognised per field (compared lower-cased, spaces and dashes as underscores), first match wins.
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "review_id": ("review_id", "id", "sentence_id", "reviewid"),
    "aspect": ("aspect", "category", "aspect_category", "aspect_name"),
    "polarity": ("polarity", "sentiment", "aspect_polarity", "label"),
    "text": ("text", "review", "review_text", "sentence", "content", "body"),
    "labeler": ("labeler", "annotator", "labeller"),
}
_REQUIRED = ("review_id", "aspect", "polarity")
_XML_EXTENSIONS = (".xml",)
# Longest value quoted in a reject's detail (the raw row keeps more).
_QUOTE_CHARS = 60


@dataclass(slots=True)
class _Row:
    """One review-aspect row as read, and its verdict."""

    row_number: int
    review_id: str | None
    aspect: str | None
    polarity: str | None
    text: object = None  # str, None (not given) or, from JSON, any other value (text_not_string)
    labeler: str | None = None
    raw: str = ""
    reason: str | None = None
    detail: str | None = None
    repeat: bool = False  # the same review, aspect and polarity as an earlier row: imported once


@dataclass
class AspectImportReport:
    """What one aspect label import did.

    ``rows`` = labels accepted (``labels_added`` + ``labels_unchanged``) + ``repeated`` + ``rejected``.
    """

    import_id: int
    path: str
    format: str
    source: str
    columns: dict[str, str | None]
    rows: int
    labels_added: int
    labels_unchanged: int
    repeated: int
    absent_added: int
    reviews_annotated: int
    reviews_created: int
    aspects_created: list[str]
    rejected: int
    rejected_by_reason: dict[str, int]
    splits: dict[str, int]
    parse_seconds: float
    write_seconds: float
    first_rejects: list[dict] = field(default_factory=list)
    chunks: int = 0

    @property
    def imported_anything(self) -> bool:
        """True when some label row was accepted (written or already stored); the CLI then exits 0."""
        return self.labels_added + self.labels_unchanged > 0

    def to_dict(self) -> dict:
        return asdict(self)


def import_aspect_labels(
    db: str | os.PathLike | None,
    path: str | os.PathLike,
    *,
    fmt: str | None = None,
    create_aspects: bool = False,
    source: str | None = None,
    actor: Actor | None = None,
) -> AspectImportReport:
    """Import one file of aspect labels into the store (created if missing); see the module doc for the rules.

    Args:
        db: the store file.
        path: a CSV, TSV, JSON Lines or SemEval-2014 XML file.
        fmt: one of ``FORMATS``; default from the extension, else from the content.
        create_aspects: add aspect names the store does not know instead of rejecting their rows.
        source: ``reviews.source`` of reviews the file creates; default the file name (``semeval`` for XML).
        actor: who imports (needs the ``import`` permission); default the CLI operator.

    Returns:
        The counts: labels written and unchanged, repeats, reviews created, rejects by reason.

    Raises:
        TastebudError: missing, unreadable, binary or not well-formed file, unknown format, a required
            column missing, an XML document type declaration.

    Example:
        >>> report = import_aspect_labels("t.duckdb", "Restaurants_Train_v2.xml")  # doctest: +SKIP
        >>> report.reviews_created, report.labels_added, report.repeated
        (3041, 3711, 2)
    """
    actor = actor or cli_actor()
    require(actor, "import")
    file = _check_file(Path(path))
    fmt = resolve_aspect_format(file, fmt)
    source = source or (SEMEVAL_SOURCE if fmt == "semeval-xml" else file.name)
    started = datetime.now()
    t0 = time.perf_counter()
    if fmt == "semeval-xml":
        rows, columns = read_semeval_xml(file), {"review_id": "sentence@id", "aspect": "aspectCategory@category",
                                                  "polarity": "aspectCategory@polarity", "text": "text"}
    else:
        rows, columns = _read_table(file, fmt)
    init_store(db)
    with connect(db, read_only=True) as con:
        known_aspects = aspect_names(con)
        wanted = sorted({r.review_id for r in rows if r.review_id})
        stored = fetch_reviews(con, wanted)[["review_id", "text"]] if wanted else None
    stored_texts = {} if stored is None else dict(zip(stored["review_id"], stored["text"]))
    plan = _check_rows(rows, known_aspects=known_aspects, create_aspects=create_aspects, stored_texts=stored_texts,
                       source=source, complete=fmt == "semeval-xml")
    t1 = time.perf_counter()
    written = _write(db, file, fmt, started, plan, actor)
    rejects = plan.rejects
    by_reason: dict[str, int] = defaultdict(int)
    for r in rejects:
        by_reason[r.reason] += 1
    return AspectImportReport(
        path=str(file), format=fmt, source=source, columns=columns, rows=len(rows),
        repeated=plan.repeated, rejected=len(rejects),
        rejected_by_reason=dict(sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0]))),
        reviews_annotated=len({r.review_id for r in plan.labels}),
        parse_seconds=round(t1 - t0, 3), write_seconds=round(time.perf_counter() - t1, 3),
        first_rejects=[{"row_number": r.row_number, "reason": r.reason, "detail": r.detail} for r in rejects[:10]],
        **written,
    )


def read_aspect_file(path: str | os.PathLike, aspects: list[str], *,
                     fmt: str | None = None) -> tuple[pd.DataFrame, dict[str, int]]:
    """Read and check an aspect label file without a store: what ``tastebud evaluate MODEL --data FILE`` reads.

    Rows are checked as an import would check them against a store that knows ``aspects`` and no review,
    so every kept row carries its review's text.

    Returns:
        (labels: review_id, text, aspect, polarity; rows left out per reason, most frequent first).
    """
    file = _check_file(Path(path))
    fmt = resolve_aspect_format(file, fmt)
    rows = read_semeval_xml(file) if fmt == "semeval-xml" else _read_table(file, fmt)[0]
    plan = _check_rows(rows, known_aspects=aspects, create_aspects=False, stored_texts={}, source=file.name,
                       complete=fmt == "semeval-xml")
    frame = pd.DataFrame(
        [(r.review_id, plan.new_reviews[r.review_id], r.aspect, r.polarity) for r in plan.labels],
        columns=["review_id", "text", "aspect", "polarity"],
    )
    left_out: dict[str, int] = defaultdict(int)
    for r in plan.rejects:
        left_out[r.reason] += 1
    return frame, dict(sorted(left_out.items(), key=lambda kv: (-kv[1], kv[0])))


def resolve_aspect_format(file: Path, fmt: str | None) -> str:
    """The file's format: ``fmt`` checked, else from the extension, else from its first bytes; binary
    files and archives are refused as a whole.

    Raises:
        TastebudError: an unknown format, a format that cannot be told, a binary file.

    Example:
        >>> resolve_aspect_format(Path("labels.tsv"), None)  # doctest: +SKIP
        'tsv'
    """
    if fmt is not None:
        fmt = fmt.strip().lower()
        fmt = "semeval-xml" if fmt in ("xml", "semeval") else fmt
        if fmt not in FORMATS:
            raise TastebudError(f"unknown format {printable(fmt)!r}; choose one of {', '.join(FORMATS)}")
    else:
        suffix = file.suffix.lower()
        fmt = "semeval-xml" if suffix in _XML_EXTENSIONS else _EXTENSIONS.get(suffix)
        if fmt == "parquet":
            raise TastebudError(f"{printable(file.name)}: aspect labels are imported from {', '.join(FORMATS)}, "
                                "not Parquet; save it as CSV or JSON Lines")
        fmt = fmt or _sniff_format(file)
    if fmt == "semeval-xml":
        _refuse_binary_xml(file)
    else:
        _refuse_binary(file, fmt)
    return fmt


def _sniff_format(file: Path) -> str:
    """The format told from the first bytes: ``<`` XML, ``{`` JSON Lines, a tab before any comma TSV, a comma CSV."""
    with open(file, "rb") as f:
        head = f.read(8192)
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    first_line = text.split(b"\n", 1)[0]
    if text.startswith(b"<"):
        return "semeval-xml"
    if text.startswith(b"{"):
        return "jsonl"
    if b"\t" in first_line and b"," not in first_line.split(b"\t", 1)[0]:
        return "tsv"
    if b"," in first_line:
        return "csv"
    raise TastebudError(
        f"cannot tell the format of {printable(file.name)} from its name or content; pass --format {'|'.join(FORMATS)}"
    )


def _refuse_binary_xml(file: Path) -> None:
    """Refuse an archive or binary file named as XML, with review import's list of magic bytes."""
    with open(file, "rb") as f:
        head = f.read(8192)
    what = next((name for magic, name in _MAGIC if head.startswith(magic)), None)
    if what is None and head.startswith((b"\xff\xfe", b"\xfe\xff")):
        what = "UTF-16 text (save it as UTF-8)"
    elif what is None and _looks_binary(head):
        what = "a binary file"
    if what is not None:
        raise TastebudError(f"{printable(file.name)} is {what}, not SemEval XML")


# ---------------------------------------------------------------- reading


def _normalise(name: str) -> str:
    return name.strip().lower().replace(" ", "_").replace("-", "_")


def map_aspect_columns(names: list[str]) -> dict[str, int | None]:
    """Choose the file column (by position) for each aspect label field by ``COLUMN_ALIASES``.

    Raises:
        TastebudError: no review id, aspect or polarity column.

    Example:
        >>> map_aspect_columns(["sentence_id", "text", "category", "polarity"])
        {'review_id': 0, 'aspect': 2, 'polarity': 3, 'text': 1, 'labeler': None}
    """
    normalised = [_normalise(n) for n in names]
    chosen = {
        f: next((normalised.index(a) for a in aliases if a in normalised), None) for f, aliases in COLUMN_ALIASES.items()
    }
    missing = [f for f in _REQUIRED if chosen[f] is None]
    if missing:
        raise TastebudError(
            f"no {' or '.join(missing)} column found (columns: {_shown_columns(names) or 'none'}); an aspect label "
            "file needs review_id, aspect and polarity columns (text and labeler are optional)"
        )
    return chosen


def _read_table(file: Path, fmt: str) -> tuple[list[_Row], dict[str, str | None]]:
    """Read a CSV, TSV or JSON Lines file as review import stages it; the reader's rejects come back as rows."""
    mem = staging.open_staging()
    try:
        staged = _stage(mem, file, fmt)
        mapping = map_aspect_columns(staged.columns)
        records = mem.table("_staged").fetchall()
        parse_rejects = staging.fetch_staged_rejects(mem).to_pylist()
    finally:
        mem.close()
    rows = [
        _Row(r["row_number"], None, None, None, raw=r["raw"] or "", reason=r["reason"], detail=r["detail"])
        for r in parse_rejects
    ]
    if staged.kind == "json":
        keys = {f: (staged.columns[i] if i is not None else None) for f, i in mapping.items()}
        rows += [_json_row(number, line, keys) for number, line in records]
    else:
        rows += [_table_row(record, staged.columns, mapping) for record in records]
    rows.sort(key=lambda r: r.row_number)
    return rows, {f: (staged.columns[i] if i is not None else None) for f, i in mapping.items()}


def _table_row(record: tuple, columns: list[str], mapping: dict[str, int | None]) -> _Row:
    values = record[1:]
    pick = {f: (values[i] if i is not None else None) for f, i in mapping.items()}
    raw = json.dumps(dict(zip(columns, values)), ensure_ascii=False)[: staging.REJECT_RAW_MAX_CHARS]
    return _Row(record[0], pick["review_id"], pick["aspect"], pick["polarity"], pick["text"], pick["labeler"], raw)


def _json_row(number: int, line: str, keys: dict[str, str | None]) -> _Row:
    obj = json.loads(line)  # the staging step kept only lines that are JSON objects
    pick = {f: (obj.get(k) if k is not None else None) for f, k in keys.items()}
    as_text = {f: _json_scalar(v) for f, v in pick.items() if f != "text"}
    return _Row(number, as_text["review_id"], as_text["aspect"], as_text["polarity"], pick["text"],
                as_text["labeler"], line[: staging.REJECT_RAW_MAX_CHARS])


def _json_scalar(value: object) -> str | None:
    """A JSON value as review import reads ids: strings as they are, numbers written out, null as None."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


class _XmlRefused(Exception):
    """Raised from inside the expat callbacks to stop at a construct tastebud does not read."""


def read_semeval_xml(path: str | os.PathLike) -> list[_Row]:
    """Read a SemEval-2014 Task 4 file: one row per ``<aspectCategory>`` (or per sentence that has none).

    The standard library's expat parser reads it; a document type declaration (and so any entity
    definition) refuses the file, as does anything not well-formed (XML cannot be read past an error).

    Raises:
        TastebudError: not well-formed, a DTD or entity, or a root other than ``<sentences>``.
    """
    file = Path(path)
    name = printable(file.name)
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.buffer_text = True
    reader = _SemevalReader(parser)

    def refuse(*_args) -> None:
        raise _XmlRefused(
            f"{name} declares a document type or entities (line {parser.CurrentLineNumber}); tastebud reads "
            "XML without a DTD, which SemEval's files never have (entity expansion is refused)"
        )

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.UnparsedEntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    try:
        with open(file, "rb") as f:
            parser.ParseFile(f)
    except _XmlRefused as exc:
        raise TastebudError(str(exc)) from None
    except expat.ExpatError as exc:
        raise TastebudError(
            f"{name} is not well-formed XML: line {exc.lineno}, column {exc.offset + 1}: "
            f"{printable(expat.ErrorString(exc.code))}"
        ) from None
    if reader.root is None:
        raise TastebudError(f"{name} has no XML elements")
    return reader.rows


class _SemevalReader:
    """expat callbacks collecting sentences (id, text, categories) into rows."""

    def __init__(self, parser) -> None:
        self.parser = parser
        self.rows: list[_Row] = []
        self.root: str | None = None
        self.path: list[str] = []
        self.sentence: dict | None = None
        parser.StartElementHandler = self.start
        parser.EndElementHandler = self.end
        parser.CharacterDataHandler = self.chars

    def start(self, tag: str, attrs: dict[str, str]) -> None:
        if self.root is None:
            self.root = tag
            if tag != "sentences":
                hint = " (SemEval-2015/2016 files are not supported)" if tag == "Reviews" else ""
                raise _XmlRefused(f"the root element is <{printable(tag, max_chars=40)}>, expected <sentences> "
                                  f"(SemEval-2014 Task 4){hint}")
        line = self.parser.CurrentLineNumber
        if tag == "sentence" and self.path == ["sentences"]:
            self.sentence = {"line": line, "id": attrs.get("id"), "text": None, "categories": []}
        elif tag == "text" and self.path == ["sentences", "sentence"] and self.sentence is not None:
            self.sentence["text"] = ""
        elif tag == "aspectCategory" and self.path[-1:] == ["aspectCategories"] and self.sentence is not None:
            self.sentence["categories"].append((line, attrs.get("category"), attrs.get("polarity")))
        self.path.append(tag)

    def chars(self, data: str) -> None:
        if self.path[-2:] == ["sentence", "text"] and self.sentence is not None:
            self.sentence["text"] += data

    def end(self, tag: str) -> None:
        self.path.pop()
        if tag == "sentence" and self.path == ["sentences"] and self.sentence is not None:
            self._emit(self.sentence)
            self.sentence = None

    def _emit(self, s: dict) -> None:
        sid = (s["id"] or "").strip()
        review_id = SEMEVAL_ID_PREFIX + sid if sid else None
        for line, category, polarity in s["categories"] or [(s["line"], None, None)]:
            raw = json.dumps({"sentence_id": s["id"], "text": s["text"], "category": category, "polarity": polarity},
                             ensure_ascii=False)[: staging.REJECT_RAW_MAX_CHARS]
            row = _Row(line, review_id, category, polarity, s["text"], SEMEVAL_LABELER, raw)
            if not s["categories"]:
                row.reason, row.detail = "unknown_aspect", "the sentence lists no aspectCategory"
            self.rows.append(row)


# ---------------------------------------------------------------- checking


@dataclass
class _Plan:
    """What the checks leave to write: labels, reviews to create, aspects to add, rejects."""

    labels: list[_Row]
    new_reviews: dict[str, str]  # review_id -> text, in file order
    new_aspects: list[str]
    rejects: list[_Row]
    repeated: int
    source: str
    complete: bool  # the file's aspects of a review are its whole annotation (SemEval)
    known_reviews: set[str]


def _visible(text: str) -> bool:
    """Whether a text holds a character other than whitespace, controls and format characters."""
    return any(not ch.isspace() and unicodedata.category(ch) not in ("Zs", "Zl", "Zp", "Cc", "Cf") for ch in text)


def _quote(value: object) -> str:
    text = str(value)
    return '"' + text[:_QUOTE_CHARS] + ('…' if len(text) > _QUOTE_CHARS else "") + '"'


def _reject(row: _Row, reason: str, detail: str) -> None:
    row.reason, row.detail = reason, detail


def _check_rows(
    rows: list[_Row],
    *,
    known_aspects: list[str],
    create_aspects: bool,
    stored_texts: dict[str, str],
    source: str,
    complete: bool,
) -> _Plan:
    """Give every row its verdict (the first failing check of ``REJECT_REASONS``); no store connection."""
    known = set(known_aspects)
    new_aspects: list[str] = []
    for row in rows:
        if row.reason is None:
            _check_row(row, known, new_aspects if create_aspects else None, stored_texts)
    new_reviews = _check_new_reviews(rows, stored_texts)
    repeated = _check_duplicates(rows)
    _reject_incomplete_reviews(rows)
    labels = [r for r in rows if r.reason is None and not r.repeat]
    used, annotated = {r.aspect for r in labels}, {r.review_id for r in labels}
    return _Plan(
        labels=labels,
        new_reviews={rid: text for rid, text in new_reviews.items() if rid in annotated},
        new_aspects=[a for a in new_aspects if a in used],
        rejects=sorted((r for r in rows if r.reason), key=lambda r: r.row_number),
        repeated=repeated,
        source=source,
        complete=complete,
        known_reviews=set(stored_texts),
    )


def _check_row(row: _Row, known: set[str], new_aspects: list[str] | None, stored_texts: dict[str, str]) -> None:
    """The checks of one row on its own (text, id, aspect, polarity, review); normalizes what passes."""
    if row.text is not None and not isinstance(row.text, str):
        kind = {bool: "boolean", int: "integer", float: "float", list: "list", dict: "object"}.get(type(row.text), "")
        return _reject(row, "text_not_string", f"text is a {kind or 'non-string'} value, not a string")
    if isinstance(row.text, str):
        row.text = row.text.replace("\x00", "")
        if not _visible(row.text):
            return _reject(row, "empty_text", "text is empty (nothing left after removing NUL characters and whitespace)")
        if len(row.text) > MAX_TEXT_CHARS:
            return _reject(row, "text_too_long", f"text has {len(row.text)} characters; the limit is {MAX_TEXT_CHARS}")
    row.review_id = (row.review_id or "").strip() or None
    if row.review_id is None:
        return _reject(row, "missing_id", "the review id is empty on this row")
    if not (row.aspect or "").strip():
        return _reject(row, "unknown_aspect", "the aspect is empty on this row")
    try:
        aspect = normalize_aspect_name(row.aspect)
    except TastebudError as exc:
        return _reject(row, "unknown_aspect", str(exc))
    if aspect not in known:
        if new_aspects is None:
            return _reject(
                row, "unknown_aspect",
                # The remedy first: a long list of known aspects may be cut where rejects are printed.
                f"aspect {_quote(aspect)} is not in the store's set: add it with "
                f"`tastebud aspects add {shlex.quote(aspect)}` or import with --create-aspects "
                f"(known: {', '.join(sorted(known))})",
            )
        if aspect not in new_aspects:
            new_aspects.append(aspect)
    row.aspect = aspect
    polarity = POLARITY_SPELLINGS.get((row.polarity or "").strip().lower())
    if polarity is None:
        shown = _quote(row.polarity.strip()) if (row.polarity or "").strip() else "(empty)"
        return _reject(row, "unknown_polarity", f"polarity {shown} is not one of {', '.join(ASPECT_LABEL_VALUES)} "
                                                "(or pos, neg, neu)")
    row.polarity = polarity
    row.labeler = (row.labeler or "").strip() or None
    stored = stored_texts.get(row.review_id)
    if stored is not None and row.text is not None and row.text.strip() != stored.strip():
        _reject(row, "text_mismatch",
                f"the text differs from review {_quote(row.review_id)}'s stored text (labels belong to the text "
                "they were given for; re-import the review first)")


def _check_new_reviews(rows: list[_Row], stored_texts: dict[str, str]) -> dict[str, str]:
    """Reviews the file creates (review_id -> text): unknown to the store, with the same text on every row
    that gives one. Rows of an unknown review without any text are ``unknown_review``."""
    texts: dict[str, tuple[int, str]] = {}
    for row in rows:
        if row.reason is None and row.review_id not in stored_texts and row.text is not None:
            first = texts.setdefault(row.review_id, (row.row_number, row.text))
            if first[1].strip() != row.text.strip():
                _reject(row, "text_mismatch", f"the text differs from the text of the same review on row {first[0]}")
    for row in rows:
        if row.reason is None and row.review_id not in stored_texts and row.review_id not in texts:
            _reject(row, "unknown_review",
                    f"no review {_quote(row.review_id)} in the store and no text to create it from "
                    "(import the review first, or give a text column)")
    return {rid: text for rid, (_, text) in texts.items()}


def _check_duplicates(rows: list[_Row]) -> int:
    """Reject every row of a (review, aspect) given different polarities; mark identical repeats (kept once).

    Returns:
        How many rows repeat an earlier one exactly.
    """
    groups: dict[tuple[str, str], list[_Row]] = defaultdict(list)
    for row in rows:
        if row.reason is None:
            groups[(row.review_id, row.aspect)].append(row)
    repeated = 0
    for (review_id, aspect), group in groups.items():
        if len(group) == 1:
            continue
        if len({r.polarity for r in group}) > 1:
            said = ", ".join(f"row {r.row_number}: {r.polarity}" for r in group[:6])
            for r in group:
                _reject(r, "conflicting_duplicate",
                        f"review {_quote(review_id)} has aspect {_quote(aspect)} {len(group)} times with different "
                        f"polarities ({said}); none was imported")
        else:
            for r in group[1:]:
                r.repeat = True
                repeated += 1
    return repeated


def _reject_incomplete_reviews(rows: list[_Row]) -> None:
    """Reject the remaining rows of any review with a rejected row (its other aspects would read as absent)."""
    first_bad: dict[str, _Row] = {}
    for row in rows:
        if row.reason and row.review_id and row.review_id not in first_bad:
            first_bad[row.review_id] = row
    for row in rows:
        bad = first_bad.get(row.review_id) if row.reason is None else None
        if bad is not None:
            _reject(row, "review_incomplete",
                    f"row {bad.row_number} of review {_quote(row.review_id)} was rejected ({bad.reason}); a review's "
                    "aspect labels are imported together, so a rejected aspect is never read as absent")


# ---------------------------------------------------------------- writing


def _chunks(plan: _Plan, sizer: _ChunkSizer):
    """Yield (rejects, labels) slices: about ``sizer.rows`` of each, labels in whole reviews."""
    by_review: dict[str, list[_Row]] = defaultdict(list)
    for row in plan.labels:
        by_review[row.review_id].append(row)
    groups = list(by_review.values())
    g = r = 0
    while True:
        size = sizer.rows
        labels: list[_Row] = []
        while g < len(groups) and len(labels) < size:
            labels.extend(groups[g])
            g += 1
        rejects = plan.rejects[r : r + size]
        r += size
        last = g >= len(groups) and r >= len(plan.rejects)
        yield rejects, labels, last
        if last:
            return


def _write(db, file: Path, fmt: str, started: datetime, plan: _Plan, actor: Actor) -> dict:
    """Write in chunks, each one transaction: rejects, created reviews and their splits, labels (and, for
    complete annotations, ``absent`` for aspects a re-imported review lost). The import row and any new
    aspects go with the first chunk, the counts and the audit row with the last."""
    totals = {"labels_added": 0, "labels_unchanged": 0, "absent_added": 0, "reviews_created": 0}
    splits = {"train": 0, "val": 0, "test": 0}
    sizer, import_id, strata, created = _ChunkSizer(), None, None, []
    for rejects, labels, last in _chunks(plan, sizer):
        if import_id is not None:
            hand_off(db)  # let a process waiting for the store in between two chunks
        with transaction(db) as con:
            sizer.start()
            skip_row_group_merges(con)
            first = import_id is None
            if first:
                import_id = staging.start_import(con, path=str(file), fmt=f"aspects:{fmt}", started_at=started)
                created = _add_aspects(con, actor, plan.new_aspects)
                if not last:
                    strata = count_split_strata(con)
            _require_aspects(con, labels)
            staging.append_rejects(con, import_id, str(file), _reject_table(rejects))
            _write_labels(con, plan, labels, totals, splits, strata, first)
            if last:
                rejected = len(plan.rejects)
                staging.finish_import(con, import_id, accepted=totals["labels_added"] + totals["absent_added"],
                                      updated=0, unchanged=totals["labels_unchanged"], rejected=rejected)
                audit(con, actor, "aspect.import", target=str(file),
                      detail={"import_id": import_id, **totals, "rejected": rejected, "aspects_created": created})
        sizer.stop(max(len(labels), len(rejects), 1))
    return {"import_id": import_id, **totals, "aspects_created": created, "splits": splits, "chunks": sizer.count}


def _add_aspects(con, actor: Actor, names: list[str]) -> list[str]:
    """Add the file's new aspect names (``create_aspects``); one another process added meanwhile is kept."""
    present = set(aspect_names(con))
    return [add_aspect(con, actor, name) for name in names if name not in present]


def _require_aspects(con, labels: list[_Row]) -> None:
    """Stop (rolling the chunk back) when an aspect was removed since the file was checked."""
    gone = sorted({r.aspect for r in labels} - set(aspect_names(con)))
    if gone:
        raise TastebudError(f"aspect {', '.join(gone)} was removed while importing; run the import again")


def _reject_table(rejects: list[_Row]) -> pa.Table:
    return pa.table({
        "row_number": pa.array([r.row_number for r in rejects], pa.int64()),
        "reason": pa.array([r.reason for r in rejects], pa.string()),
        "detail": pa.array([r.detail for r in rejects], pa.string()),
        "raw": pa.array([r.raw for r in rejects], pa.string()),
    })


def _write_labels(con, plan: _Plan, labels: list[_Row], totals: dict[str, int], splits: dict[str, int],
                  strata: dict | None, first: bool) -> None:
    """One chunk's reviews to create (with splits) and labels."""
    ids = list(dict.fromkeys(r.review_id for r in labels))
    fresh = [rid for rid in ids if rid in plan.new_reviews]
    if fresh:
        counts = upsert_reviews(con, pa.table({
            "review_id": pa.array(fresh, pa.string()),
            "text": pa.array([plan.new_reviews[rid] for rid in fresh], pa.string()),
            "source": pa.array([plan.source] * len(fresh), pa.string()),
        }))
        if counts.updated:
            raise TastebudError("reviews this file creates were written by someone else meanwhile; run the import again")
        totals["reviews_created"] += counts.inserted
    # The first chunk also assigns reviews an earlier, interrupted import left without a split.
    scope = pa.array(ids, pa.string()) if strata is not None and not first else None
    for split, n in assign_splits(con, strata=strata, review_ids=scope).items():
        splits[split] += n
    frame = pd.DataFrame({
        "review_id": [r.review_id for r in labels],
        "aspect": [r.aspect for r in labels],
        "polarity": [r.polarity for r in labels],
        "source": "import",
        "labeler": [r.labeler for r in labels],
    })
    added = append_aspect_labels(con, frame) if labels else 0
    totals["labels_added"] += added
    totals["labels_unchanged"] += len(labels) - added
    if plan.complete:
        totals["absent_added"] += _mark_lost_aspects(con, labels, [rid for rid in ids if rid in plan.known_reviews])


def _mark_lost_aspects(con, labels: list[_Row], known_ids: list[str]) -> int:
    """For reviews annotated before: ``absent`` for aspects they had that the file no longer lists."""
    if not known_ids:
        return 0
    current = fetch_aspect_split(con, None)
    current = current[current["review_id"].isin(known_ids)]
    listed = {(r.review_id, r.aspect) for r in labels}
    lost = [
        (review_id, aspect)
        for review_id, row in current.set_index("review_id").drop(columns="text").iterrows()
        for aspect, polarity in row.items()
        if polarity != "absent" and (review_id, aspect) not in listed
    ]
    if not lost:
        return 0
    frame = pd.DataFrame(lost, columns=["review_id", "aspect"]).assign(
        polarity="absent", source="import", labeler=SEMEVAL_LABELER
    )
    return append_aspect_labels(con, frame)
