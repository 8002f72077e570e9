"""Streamlit "magic" can never render a help block again: no page holds a bare expression statement,
and both ways of serving the dashboard turn magic off."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

from pipeline.cli.dashboard import dashboard_command

REPO = Path(__file__).resolve().parents[1]


def bare_expressions(source: str) -> list[tuple[int, str]]:
    """(line, code) of every expression statement magic would render: anything but a call,
    an await/yield, or a docstring-like constant."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Expr) and not isinstance(
            node.value, (ast.Call, ast.Await, ast.Yield, ast.YieldFrom, ast.Constant)
        ):
            found.append((node.lineno, ast.unparse(node.value)))
    return found


def test_the_check_finds_a_conditional_expression_statement():
    code = 'st.error("a") if bad else st.success("b")\nok or st.warning("c")\nst.write("d")\n"""doc"""\n'
    assert bare_expressions(code) == [
        (1, "st.error('a') if bad else st.success('b')"),
        (2, "ok or st.warning('c')"),
    ]


def test_no_bare_expression_statement_anywhere_in_the_dashboard():
    found = {
        str(path.relative_to(REPO)): bare
        for path in sorted((REPO / "dashboard").rglob("*.py"))
        if (bare := bare_expressions(path.read_text(encoding="utf-8")))
    }
    assert found == {}


def test_magic_is_off_in_the_app_config_and_on_the_command_line():
    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    assert config["runner"]["magicEnabled"] is False
    argv = dashboard_command(host="localhost", port=8501, secrets=None)
    assert argv[argv.index("--runner.magicEnabled") + 1] == "false"


def test_the_command_serves_the_repository_app():
    argv = dashboard_command(host="localhost", port=8501, secrets=None)
    served = Path(argv[argv.index("run") + 1])
    assert served.parent == REPO / "dashboard" and served.is_file()


def test_the_accent_colour_is_never_red_or_green_in_config_and_on_the_command_line():
    from dashboard.views import ACCENT, LABEL_COLORS

    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    argv = dashboard_command(host="localhost", port=8501, secrets=None)
    assert config["theme"]["primaryColor"] == argv[argv.index("--theme.primaryColor") + 1] == ACCENT
    assert ACCENT not in LABEL_COLORS.values()
