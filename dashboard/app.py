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
from store.errors import TastebudError  # noqa: E402
from store.printable import printable_message  # noqa: E402

_SCREENS = Path(__file__).resolve().parent / "screens"

# (file, title, icon, permission needed, section). A page whose permission the role lacks is
# never registered, so its URL does not exist for that session.
PAGES: tuple[tuple[str, str, str, str, str], ...] = (
    ("overview.py", "Overview", ":material/dashboard:", "read", "Insights"),
    ("trends.py", "Sentiment trends", ":material/trending_up:", "read", "Insights"),
    ("comparison.py", "Model comparison", ":material/compare_arrows:", "read", "Insights"),
    ("hard_cases.py", "Hard cases", ":material/rule:", "relabel", "Work"),
    ("training.py", "Training", ":material/model_training:", "train", "Work"),
    ("data.py", "Data", ":material/database:", "import", "Work"),
)

st.set_page_config(page_title="tastebud", page_icon=":material/restaurant:", layout="wide")

actor = auth.current_actor()
if actor is None:
    st.navigation([st.Page(auth.render_login, title="Sign in", url_path="login")], position="hidden").run()
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
