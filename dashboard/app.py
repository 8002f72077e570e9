"""tastebud dashboard router: sign-in, then only the pages the signed-in role may open.

Run with ``tastebud dashboard`` (or ``streamlit run dashboard/app.py`` from the repository).
"""

from __future__ import annotations

import sys
from pathlib import Path

# `streamlit run dashboard/app.py` puts dashboard/ on sys.path, not the directory holding the packages.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import streamlit as st  # noqa: E402

from dashboard import auth  # noqa: E402
from dashboard.navigation import PAGES  # noqa: E402
from store.errors import TastebudError  # noqa: E402
from store.printable import printable_message  # noqa: E402

_SCREENS = Path(__file__).resolve().parent / "screens"

st.set_page_config(page_title="tastebud", page_icon=":material/restaurant:", layout="wide")

actor = auth.current_actor()
if actor is None:
    # Every page URL shows the sign-in form (hidden from the menu), so a deep link such as
    # /hard_cases signs in and then opens that page instead of "Page not found": pages are
    # identified by URL path, and the rerun after signing in stays on the same path.
    login = [st.Page(auth.login_page(""), title="Sign in", url_path="login", default=True)]
    login += [
        st.Page(auth.login_page(filename.removesuffix(".py")), title=title, url_path=filename.removesuffix(".py"),
                visibility="hidden")
        for filename, title, *_ in PAGES
    ]
    try:
        st.navigation(login, position="hidden").run()
    except TastebudError as exc:  # sign-in reads the store too (throttling)
        st.error(printable_message(str(exc)))
else:
    sections: dict[str, list] = {}
    for filename, title, icon, permission, section in PAGES:
        if actor.can(permission):
            page = st.Page(_SCREENS / filename, title=title, icon=icon, url_path=filename.removesuffix(".py"))
            sections.setdefault(section, []).append(page)
    with st.sidebar:
        st.text(f"Signed in as {actor.name} ({actor.role.replace('_', ' ')})")
        if st.button("Sign out", key="sign-out"):
            auth.sign_out()
            st.rerun()
    try:
        st.navigation(sections).run()
    except TastebudError as exc:
        # A damaged, foreign, unreadable or busy store (or any refused action): the one-line
        # sentence the CLI prints, never a traceback with paths or another process's PID.
        st.error(printable_message(str(exc)))
