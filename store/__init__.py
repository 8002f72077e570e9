"""tastebud's DuckDB store: schema, migrations and every SQL statement the project runs.

Nothing here imports torch or streamlit. Callers open short-lived connections through
:func:`store.db.connect` (reads) or :func:`store.db.transaction` (writes).
"""

from store.db import connect, resolve_db_path, transaction
from store.errors import StoreBusyError, StoreMissingError, TastebudError

__all__ = [
    "connect",
    "transaction",
    "resolve_db_path",
    "TastebudError",
    "StoreBusyError",
    "StoreMissingError",
]
