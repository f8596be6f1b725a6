"""The layers import one way (docs/ARCHITECTURE.md): models and preprocessing import nothing else of
the project's, data may use preprocessing and models, app sits on top. Parsed from the source with
`ast`, so an import inside a function counts too."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("app", "data", "models", "preprocessing")
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
