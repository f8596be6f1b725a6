"""Project-level checks: one dependency list, required layout, the CLI answers --help."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

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
    """constraints.txt (CI's exact versions, Python 3.11) pins the required torch and torchvision, and
    requirements.txt's ranges (any Python 3.10-3.13) admit them and nothing newer."""
    from packaging.requirements import Requirement

    lines = (ROOT / "constraints.txt").read_text().splitlines()
    pins = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
    assert "torch==2.14.1" in pins and "torchvision==0.29.1" in pins
    ranges = {r.name: r.specifier for r in map(Requirement, _requirements())}
    for name, pinned, newer in [("torch", "2.14.1", "2.14.2"), ("torchvision", "0.29.1", "0.29.2")]:
        assert ranges[name].contains(pinned) and not ranges[name].contains(newer), (name, ranges[name])


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


def _project_text_files() -> list[Path]:
    """Tracked text files (.py, .toml, .md, .sh), plus new ones git does not ignore."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    if out.returncode != 0:  # not a git checkout (e.g. an unpacked archive): walk the tree instead
        names = [p.relative_to(ROOT).as_posix() for p in ROOT.rglob("*") if p.is_file()]
        names = [n for n in names if not n.split("/")[0].startswith(".")]
    else:
        names = [n for n in out.stdout.split("\0") if n]
    files = (ROOT / n for n in names if n.endswith((".py", ".toml", ".md", ".sh")))
    return sorted(p for p in files if p.is_file())


def test_design_references_point_at_docs_design():
    """Every mention of the design notes names the file in the repository, `docs/DESIGN.md`, and a
    section cited right after it (`docs/DESIGN.md, "Decoding"`) is a heading of that file."""
    design = ROOT / "docs/DESIGN.md"
    assert design.is_file(), "docs/DESIGN.md is missing"
    headings = {
        " ".join(m.group(1).split())
        for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", design.read_text(encoding="utf-8"), re.M)
    }
    # `docs/` must start the path: the bare name, a path outside the repository, or a longer path ending
    # in docs/ are all reported.
    mention = re.compile(r"(?<![\w./-])docs/DESIGN\.md|DESIGN\.md")
    section = re.compile(r'`?,\s*"([^"]{1,100})"')
    problems = []
    for path in _project_text_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        rel = path.relative_to(ROOT).as_posix()
        for m in mention.finditer(text):
            where = f"{rel}:{text.count(chr(10), 0, m.start()) + 1}"
            if not m.group(0).startswith("docs/"):
                problems.append(f"{where}: cite `docs/DESIGN.md`, not {text[max(0, m.start() - 12) : m.end()]!r}")
                continue
            cited = section.match(text, m.end())
            if cited and " ".join(cited.group(1).split()) not in headings:
                problems.append(f"{where}: docs/DESIGN.md has no heading {cited.group(1)!r}")
    assert not problems, "bad references to the design notes:\n" + "\n".join(problems)


def test_input_specs_round_trip_and_old_sidecars_still_load():
    """PixelSpec / FeatureSpec to JSON and back; a sidecar's spec written before the types existed
    (a feature spec without dims or level) reads with the defaults it always had."""
    from data.specs import FeatureSpec, PixelSpec, SpecError, spec_from_json
    from models.common import FEATURE_DIM

    for spec in (PixelSpec(size=(160, 120), fps=24.0), FeatureSpec(dims=1152, level="video")):
        assert spec_from_json(json.loads(json.dumps(spec.to_json()))) == spec
    assert spec_from_json({"kind": "features"}) == FeatureSpec(dims=FEATURE_DIM, level="frame")
    assert spec_from_json({"kind": "pixels", "size": [32, 24], "fps": 24}) == PixelSpec(size=(32, 24), fps=24.0)
    for bad in ({"kind": "pixels", "size": [32], "fps": 24}, {"kind": "pixels", "size": [32, 24], "fps": 0},
                {"kind": "features", "level": "clip"}, {"kind": "audio"}, ["pixels"]):
        with pytest.raises(SpecError):
            spec_from_json(bad)
