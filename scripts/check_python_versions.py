"""Check that requirements.txt resolves on every supported Python (3.10-3.13), against PyPI.

    python scripts/check_python_versions.py [--requirements requirements.txt] [--python 3.10 3.13 ...]

For each version it runs pip's resolver for this machine's platform,

    pip install --dry-run --ignore-installed --only-binary=:all: --python-version X --report - -r ...

and prints OK with the torch, torchvision and av it would install, or the resolver's error; exit status
1 if any version fails. Nothing is installed: pip reads package metadata, from the index where it serves
it (PEP 658), otherwise from the wheels it downloads (several GB the first time: torch and the CUDA
libraries it needs). Local pip configuration (the machine's constraints, extra indexes, find-links) is
left out so that it can neither hide nor fake a resolution; PIP_INDEX_URL, PIP_CERT and PIP_PROXY from
the environment are kept (a mirror, a proxy and its CA).

pip before 23.3 checks `Requires-Python` against the running interpreter even with --python-version,
so with such a pip a newer one is fetched into a temporary folder for the check. pip evaluates
environment markers for the running interpreter too: the markers of requirements.txt's own lines
(`tomli; python_version < "3.11"`) are evaluated here for each target version instead; those of the
packages' own dependencies still follow the running interpreter.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

try:
    from packaging.requirements import Requirement
    from packaging.version import Version
except ImportError:  # a bare interpreter: pip's own copy
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
SHOWN = ["torch", "torchvision", "av"]
KEPT_PIP_ENV = {"PIP_INDEX_URL", "PIP_CERT", "PIP_DEFAULT_TIMEOUT", "PIP_PROXY"}
MIN_PIP = "23.3"  # the first pip whose resolver honours --python-version for Requires-Python


def pip_env(extra_path: str | None = None) -> dict[str, str]:
    """The environment without the local pip configuration (config files, constraints, extra indexes)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k in KEPT_PIP_ENV}
    env["PIP_CONFIG_FILE"] = os.devnull  # pip reads no pip.conf at all
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    if extra_path:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [extra_path, env.get("PYTHONPATH")]))
    return env


def pip_version() -> Version | None:
    out = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True, text=True)
    return Version(out.stdout.split()[1]) if out.returncode == 0 and out.stdout.startswith("pip ") else None


def requirements_for(python_version: str, requirements: Path, folder: Path) -> Path:
    """A copy of the requirements with each line's environment marker evaluated for `python_version`."""
    env = {"python_version": python_version, "python_full_version": f"{python_version}.0"}
    kept = []
    for line in requirements.read_text().splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate(env):
            req.marker = None
            kept.append(str(req))
    path = folder / f"requirements-{python_version}.txt"
    path.write_text("\n".join(kept) + "\n")
    return path


def resolve(python_version: str, requirements: Path, env: dict[str, str], folder: Path) -> tuple[bool, str]:
    """Run pip's resolver for one Python version: (ok, "torch X, torchvision Y, av Z" or the error)."""
    cmd = [
        sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
        "--python-version", python_version, "--only-binary=:all:", "--report", "-",
        "-r", str(requirements_for(python_version, requirements, folder)),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if out.returncode != 0:
        lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("ERROR")] or lines[-5:]
        return False, "\n    ".join(errors) or f"pip exited {out.returncode}"
    try:
        report = json.loads(out.stdout)
    except json.JSONDecodeError as e:
        return False, f"unreadable pip report ({e})"
    versions = {item["metadata"]["name"].lower(): item["metadata"]["version"] for item in report["install"]}
    return True, ", ".join(f"{name} {versions.get(name, '(not installed)')}" for name in SHOWN)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requirements", type=Path, default=ROOT / "requirements.txt")
    p.add_argument("--python", nargs="+", default=PYTHONS, metavar="X.Y", help="Python versions to check")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="check_python_versions_") as tmp:
        folder = Path(tmp)
        env = pip_env()
        have = pip_version()
        if have is None or have < Version(MIN_PIP):
            print(f"pip {have or '(none)'} is older than {MIN_PIP}: using a newer pip for the check", flush=True)
            fetch = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
                     str(folder / "pip"), f"pip>={MIN_PIP}"]
            if subprocess.run(fetch, env=env).returncode != 0:
                print("error: could not fetch a newer pip", file=sys.stderr)
                return 1
            env = pip_env(str(folder / "pip"))
        failed = []
        for version in args.python:
            ok, text = resolve(version, args.requirements.resolve(), env, folder)
            print(f"Python {version}: {'OK' if ok else 'FAILED'}: {text}", flush=True)
            if not ok:
                failed.append(version)
    if failed:
        print(f"{args.requirements.name} does not resolve on Python {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
