"""Look at a file before importing it: the detected column mapping, the first rows as they would be
stored, and a dry run of every row's checks, with nothing written anywhere.

It runs the importer's own staging and validation (:mod:`pipeline.data.importer`), so what the
dry run accepts is exactly what ``tastebud import`` would accept.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.data import importer
from pipeline.data.importer import ColumnMapping
from store.reviews import REVIEW_FIELDS

# Lines (or Parquet rows) read for the quick preview; the dry run reads the whole file.
PREVIEW_LINES = 200


@dataclass
class DryRun:
    """What importing a file would do (nothing was written)."""

    format: str
    file_columns: list[str]
    mapping: dict[str, str | None]  # review field -> file column (None: not in the file)
    rows: int
    accepted: int
    rejected: int
    rejected_by_reason: dict[str, int]
    label_source: str | None  # "import" (a label column), "stars" or None
    sample: pd.DataFrame  # the first accepted rows, review fields + label
    first_rejects: pd.DataFrame  # row_number, reason, detail
    partial: bool  # True when only the first PREVIEW_LINES were read


def dry_run(
    path: str | os.PathLike,
    *,
    fmt: str | None = None,
    columns: ColumnMapping | None = None,
    numeric_labels: str | None = None,
    sample_rows: int = 10,
    head_only: bool = False,
) -> DryRun:
    """Parse and validate ``path`` as an import would, without a store.

    Args:
        path: CSV, TSV, JSON Lines or Parquet.
        fmt: format when the extension does not say.
        columns: explicit column choices (others auto-detected).
        numeric_labels: numeric label scheme, as for import.
        sample_rows: accepted rows to return as a sample.
        head_only: read only the first ``PREVIEW_LINES`` (a quick preview of a big file).

    Returns:
        A :class:`DryRun`.

    Raises:
        TastebudError: the same file-level errors as ``tastebud import`` (unreadable, no text column...).

    Example:
        >>> dry_run("reviews.csv").rejected_by_reason  # doctest: +SKIP
        {'empty_text': 2}
    """
    file = importer._check_file(Path(path))
    fmt = importer._resolve_format(file, fmt)
    spellings = importer.label_spellings(numeric_labels)
    with tempfile.TemporaryDirectory(prefix="tastebud-preview-") as tmp:
        checked = _head(file, fmt, Path(tmp)) if head_only else file
        mapping, staged, valid, rejects, by_reason = importer._parse_and_validate(checked, fmt, columns, file.name, spellings,
                                                                               importer.date_window())
    label_source = "import" if mapping["label"] is not None else "stars" if mapping["stars"] is not None else None
    label = (valid["label" if label_source == "import" else "stars_label"] if label_source
             else pa.nulls(valid.num_rows, pa.string()))
    sample = valid.slice(0, sample_rows).select(list(REVIEW_FIELDS)).append_column("label", label.slice(0, sample_rows))
    return DryRun(
        format=fmt,
        file_columns=list(staged.columns),
        mapping={k: (staged.columns[v] if v is not None else None) for k, v in mapping.items()},
        rows=staged.rows,
        accepted=valid.num_rows,
        rejected=rejects.num_rows,
        rejected_by_reason=dict(by_reason),
        label_source=label_source,
        sample=sample.to_pandas(),
        first_rejects=rejects.slice(0, 20).select(["row_number", "reason", "detail"]).to_pandas(),
        partial=head_only,
    )


def _head(file: Path, fmt: str, folder: Path) -> Path:
    """The first PREVIEW_LINES records of ``file`` in a file of the same format."""
    target = folder / f"head{file.suffix}"
    if fmt == "parquet":
        batches = pq.ParquetFile(file).iter_batches(batch_size=PREVIEW_LINES)
        first = next(batches, None)
        pq.write_table(pa.Table.from_batches([first]) if first is not None else pq.read_table(file), target)
        return target
    with open(file, "rb") as src, open(target, "wb") as dst:
        for i, line in enumerate(src):
            if i > PREVIEW_LINES:  # the header (CSV/TSV) plus PREVIEW_LINES lines
                break
            dst.write(line)
    return target
