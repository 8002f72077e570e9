"""How readable the tree is, measured with ``ast``: files per folder, function lengths per package,
layering back-edges and import cycles, and (when the ``duplicates`` tool is on PATH) its pair count.

Usage:
    python bench/layout_metrics.py [REPO_DIR] [--json]

A back-edge is an import, at module level or inside a function, against the layering
store <- pipeline <- dashboard (store importing pipeline or dashboard, pipeline importing dashboard). Cycles are strongly connected groups of
project modules in the graph of module-level imports (imports inside functions run later and
cannot deadlock an import, so they are counted apart as ``function_level_imports``).
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import statistics
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

LAYERS = {"store": 0, "pipeline": 1, "dashboard": 2}
FOLDERS = ("store", "pipeline", "dashboard", "tests", "bench", "scripts")


def python_files(root: Path) -> list[Path]:
    """Every .py file under the project folders, sorted."""
    return sorted(p for folder in FOLDERS for p in (root / folder).rglob("*.py") if ".venv" not in p.parts)


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def function_lengths(tree: ast.AST) -> list[int]:
    """Lines of every function and method (decorators excluded, docstring included)."""
    return [n.end_lineno - n.lineno + 1 for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def _imported(node: ast.AST, current: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            base = ".".join(current.split(".")[: -node.level] + ([base] if base else []))
        return [base] + [f"{base}.{alias.name}" for alias in node.names]
    return []


def import_graph(root: Path, files: list[Path]) -> tuple[dict[str, set[str]], dict[str, set[str]], int]:
    """Module-level import edges between project modules, the same with imports inside functions
    added, and the number of project imports inside functions."""
    modules = {module_name(root, p): p for p in files}
    edges: dict[str, set[str]] = defaultdict(set)
    all_edges: dict[str, set[str]] = defaultdict(set)
    function_level = 0
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        inner = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                 for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
        for node in ast.walk(tree):
            targets = [t for t in _imported(node, name) if t in modules]
            if not targets:
                continue
            all_edges[name].update(t for t in targets if t != name)
            if id(node) in inner:
                function_level += 1
                continue
            edges[name].update(t for t in targets if t != name)
    return edges, all_edges, function_level


def back_edges(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    out = []
    for source, targets in edges.items():
        for target in targets:
            a, b = LAYERS.get(source.split(".")[0]), LAYERS.get(target.split(".")[0])
            if a is not None and b is not None and b > a:
                out.append((source, target))
    return sorted(out)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), ignoring a package's edge to its own modules."""
    pruned = {s: {t for t in ts if not t.startswith(s + ".") and not s.startswith(t + ".")} for s, ts in edges.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    sys.setrecursionlimit(10_000)

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in pruned.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in list(pruned):
        if v not in index:
            visit(v)
    return groups


def duplicate_pairs(root: Path) -> int | None:
    """The pair count of the ``duplicates`` tool, or None where it is not installed."""
    if shutil.which("duplicates") is None:
        return None
    out = subprocess.run(["duplicates", "--repo", str(root), "--seconds", "120"], capture_output=True, text=True).stdout
    if out.startswith("no duplicates"):
        return 0
    match = re.match(r"(\d+) pairs?", out)
    return int(match.group(1)) if match else None


def measure(root: Path) -> dict:
    files = python_files(root)
    per_folder = Counter(str(p.parent.relative_to(root)) for p in files)
    lengths: dict[str, list[int]] = defaultdict(list)
    for path in files:
        lengths[str(path.parent.relative_to(root))].extend(function_lengths(ast.parse(path.read_text(encoding="utf-8"))))
    edges, all_edges, function_level = import_graph(root, files)
    return {
        "files_per_folder": dict(sorted(per_folder.items())),
        "function_lines": {
            folder: {"functions": len(v), "median": statistics.median(v), "max": max(v)}
            for folder, v in sorted(lengths.items()) if v
        },
        "back_edges": back_edges(all_edges),
        "cycles": cycles(edges),
        "function_level_imports": function_level,
        "duplicate_pairs": duplicate_pairs(root),
    }


def main(argv: list[str]) -> None:
    root = Path(next((a for a in argv if not a.startswith("--")), Path(__file__).resolve().parents[1])).resolve()
    result = measure(root)
    if "--json" in argv:
        print(json.dumps(result, indent=2))
        return
    print(f"{'folder':<22}{'files':>6}{'functions':>11}{'median':>8}{'max':>6}")
    for folder, n in result["files_per_folder"].items():
        f = result["function_lines"].get(folder, {"functions": 0, "median": 0, "max": 0})
        print(f"{folder:<22}{n:>6}{f['functions']:>11}{f['median']:>8}{f['max']:>6}")
    print(f"back-edges: {len(result['back_edges'])} {result['back_edges']}")
    print(f"cycles: {len(result['cycles'])} {result['cycles']}")
    print(f"project imports inside functions: {result['function_level_imports']}")
    print(f"duplicates pairs: {result['duplicate_pairs']}")


if __name__ == "__main__":
    main(sys.argv[1:])
