"""What ``tastebud dashboard`` serves: the app of dashboard/app.py plus the session-cookie routes.

``streamlit run dashboard/server.py`` finds the ``st.App`` below and serves it with uvicorn;
the routes of :mod:`dashboard.sessions` set and delete the HttpOnly sign-in cookie, which a
Streamlit script cannot do itself.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Streamlit imports this file as a top-level module with only dashboard/ on sys.path.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import streamlit as st  # noqa: E402

from dashboard import sessions  # noqa: E402
from dashboard.navigation import PAGE_PATHS  # noqa: E402

app = st.App(
    Path(__file__).resolve().parent / "app.py",
    routes=sessions.routes(base_url=st.get_option("server.baseUrlPath") or "", pages=PAGE_PATHS),
)
