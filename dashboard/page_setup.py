"""The one call every page starts with: who is signed in, may they see this page, which store."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from dashboard import auth
from store.actors import Actor
from store.db import resolve_db_path
from store.health import ensure_store


@dataclass(frozen=True)
class PageContext:
    actor: Actor
    db: Path


def store_path() -> Path:
    """The store the dashboard reads: ``$TASTEBUD_DB`` (set by ``tastebud dashboard --db``) or ./tastebud.duckdb."""
    return resolve_db_path(None).resolve()


def setup_page(title: str, permission: str) -> PageContext:
    """Render the page title and return the context, or stop the page for anyone lacking ``permission``.

    app.py registers only the pages a role may open; this check repeats it inside the page
    so a page can never run for the wrong person, however it was reached.
    """
    actor = auth.current_actor()
    if actor is None or not actor.can(permission):
        st.error("You do not have access to this page.")
        st.stop()
    st.title(title)
    db = store_path()
    if not db.exists():
        st.error(f"No store at {db}. Create one with `tastebud demo-data` or `tastebud import`, then reload.")
        st.stop()
    # Opened on every run, not cached: a store damaged since the last run must not show stale numbers.
    # Its error (damaged, not a store, permission, busy) becomes app.py's banner.
    ensure_store(db)
    return PageContext(actor=actor, db=db)
