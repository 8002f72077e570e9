"""A separate OS process that hammers the store (run by test_concurrency.py, never imported by pytest)."""

from __future__ import annotations

import json
import sys
import time

import pandas as pd

from store.db import connect, transaction
from store.labels import append_labels
from store.reviews import upsert_reviews


def main(db: str, name: str, batches: int, per_batch: int) -> None:
    reads = 0
    for b in range(batches):
        ids = [f"{name}-{b:04d}-{i:03d}" for i in range(per_batch)]
        with transaction(db) as con:
            upsert_reviews(con, pd.DataFrame({"review_id": ids, "text": [f"review {i}" for i in ids], "source": [name] * per_batch}))
            append_labels(con, pd.DataFrame({"review_id": ids, "label": ["positive"] * per_batch, "source": ["human"] * per_batch}))
        # Read like the dashboard does: a read-only connection, opened and closed.
        with connect(db, read_only=True) as con:
            con.execute("SELECT count(*), count(DISTINCT source) FROM reviews").fetchone()
            reads += 1
        time.sleep(0.001)
    print(json.dumps({"name": name, "batches": batches, "reads": reads}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
