"""bench/layout_metrics.py on a small made-up tree: lengths, back-edges, cycles, lazy imports."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_SPEC = importlib.util.spec_from_file_location("layout_metrics", Path(__file__).parents[1] / "bench" / "layout_metrics.py")
layout_metrics = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(layout_metrics)


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_measures_a_tree(tmp_path, monkeypatch):
    monkeypatch.setattr(layout_metrics.shutil, "which", lambda name: None)  # no duplicates tool here
    _write(tmp_path, "store/__init__.py", "")
    _write(tmp_path, "store/a.py", "from store import b\n\ndef f():\n    return 1\n")
    _write(tmp_path, "store/b.py", "import store.a\n\ndef g():\n    x = 1\n    y = 2\n    return x + y\n")
    _write(tmp_path, "pipeline/__init__.py", "")
    _write(tmp_path, "pipeline/run.py", "def h():\n    from dashboard import page\n    return page\n")
    _write(tmp_path, "dashboard/__init__.py", "")
    _write(tmp_path, "dashboard/page.py", "from pipeline import run\n")
    result = layout_metrics.measure(tmp_path)
    assert result["files_per_folder"] == {"dashboard": 2, "pipeline": 2, "store": 3}
    assert result["function_lines"]["store"] == {"functions": 2, "median": 3.0, "max": 4}
    assert result["back_edges"] == [("pipeline.run", "dashboard"), ("pipeline.run", "dashboard.page")]
    assert result["cycles"] == [["store.a", "store.b"]]
    assert result["function_level_imports"] == 1 and result["duplicate_pairs"] is None
