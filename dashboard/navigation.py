"""The dashboard's pages and the permission each needs (read by app.py and by server.py)."""

from __future__ import annotations

# (file under screens/, title, icon, permission needed, section). A page whose permission the
# role lacks is never registered, so its URL does not exist for that session.
PAGES: tuple[tuple[str, str, str, str, str], ...] = (
    ("overview.py", "Overview", ":material/dashboard:", "read", "Insights"),
    ("trends.py", "Sentiment trends", ":material/trending_up:", "read", "Insights"),
    ("aspects.py", "Aspects", ":material/category:", "read", "Insights"),
    ("comparison.py", "Model comparison", ":material/compare_arrows:", "read", "Insights"),
    ("hard_cases.py", "Hard cases", ":material/rule:", "relabel", "Work"),
    ("training.py", "Training", ":material/model_training:", "train", "Work"),
    ("data.py", "Data", ":material/database:", "import", "Work"),
)
# The URL path of each page (``/hard_cases``): the file name without ``.py``.
PAGE_PATHS: tuple[str, ...] = tuple(filename.removesuffix(".py") for filename, *_ in PAGES)
PERMISSION_OF: dict[str, str] = {filename.removesuffix(".py"): permission for filename, _, _, permission, _ in PAGES}
