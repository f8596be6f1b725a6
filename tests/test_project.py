"""Project-level checks: one dependency list, required layout, the CLI answers --help."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _requirements() -> list[str]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def test_environment_yml_mirrors_requirements():
    text = (ROOT / "environment.yml").read_text()
    pip_section = text.split("- pip:", 1)[1]
    env_pins = [m.group(1).strip() for m in re.finditer(r"^\s+- (\S.*)$", pip_section, re.M)]
    assert env_pins == _requirements(), "environment.yml pip list must equal requirements.txt"


def test_torch_pins_are_the_required_ones():
    reqs = _requirements()
    assert "torch==2.14.1" in reqs and "torchvision==0.29.1" in reqs


def test_required_top_level_layout():
    for name in ["app", "preprocessing", "models", "data", "scripts", "tests", "environment.yml"]:
        assert (ROOT / name).exists(), f"missing required top-level entry {name}"


def test_cli_help_lists_commands():
    out = subprocess.run(
        [sys.executable, "-m", "app", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    for command in ["preprocess", "train", "evaluate", "classify"]:
        assert command in out.stdout, f"`python -m app --help` does not list {command}"


def test_readme_has_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert "bash scripts/demo.sh" in readme and "bash scripts/test.sh" in readme
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()
