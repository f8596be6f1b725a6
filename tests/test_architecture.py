"""The shape of the code (docs/ARCHITECTURE.md), parsed from the source with `ast`:

- layers import one way: models and preprocessing import nothing else of the project's, data may
  use preprocessing and models, app sits on top (an import inside a function counts too);
- no function outside tests is longer than 80 lines, but for the exceptions listed with a reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("app", "data", "models", "preprocessing")
MAX_FUNCTION_LINES = 80
LONG_FUNCTIONS: dict[str, str] = {}  # "path:function" -> why it stays long (none today)
ALLOWED = {  # package -> the project packages it may import besides itself
    "models": set(),
    "preprocessing": set(),
    "data": {"preprocessing", "models"},
    "app": {"data", "preprocessing", "models"},
}


def project_imports(path: Path) -> list[tuple[int, str]]:
    """(line, top-level package) of every import of a project package in one file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        out += [(node.lineno, n.split(".")[0]) for n in names if n.split(".")[0] in PACKAGES]
    return out


def upward_imports() -> list[str]:
    bad = []
    for package, allowed in ALLOWED.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            for line, target in project_imports(path):
                if target != package and target not in allowed:
                    bad.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    return bad


def test_layers_import_one_way():
    assert upward_imports() == []


def test_the_check_sees_an_import_inside_a_function(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from app.inference import classify\n    import data.yt8m\n")
    assert project_imports(f) == [(2, "app"), (3, "data")]


def long_functions(limit: int = MAX_FUNCTION_LINES) -> dict[str, int]:
    """"path:name" -> lines, for every function (or method) longer than `limit` outside tests."""
    out = {}
    for package in (*PACKAGES, "scripts"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines = node.end_lineno - node.lineno + 1
                    if lines > limit:
                        out[f"{path.relative_to(ROOT)}:{node.name}"] = lines
    return out


def test_no_function_over_80_lines():
    found = long_functions()
    unexplained = {name: n for name, n in found.items() if name not in LONG_FUNCTIONS}
    assert not unexplained, "functions over 80 lines (split them, or list them with a reason):\n" + "\n".join(
        f"  {name}: {n} lines" for name, n in sorted(unexplained.items(), key=lambda kv: -kv[1]))
    assert set(LONG_FUNCTIONS) <= set(found), "an exception that is no longer long: remove it"


def test_the_length_check_counts_lines():
    assert long_functions(limit=5), "some function is longer than 5 lines"
    assert all(n > 5 for n in long_functions(limit=5).values())
