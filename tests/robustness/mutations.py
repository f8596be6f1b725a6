"""Do the tests bite? Seed one realistic mistake at a time into a scratch copy of the repository
and check that a test fails.

    python -m tests.robustness.mutations                 # every mutation; exit 1 below the 95% bar
    python -m tests.robustness.mutations -k resume       # only those whose name or group matches
    python -m tests.robustness.mutations --list          # the mutations, no run

Each mutation replaces one exact piece of source (a removed protection: `weights_only=False`, an
`exec` of .py configs, no escaping...; or a plain bug: an off-by-one, a swapped argument, a wrong
reduction) and names the tests that must then fail. The lists live beside this file, one module per
area (`mutants_*.py`, each a `MUTATIONS` tuple); this module holds the removed protections. The
copy leaves out .venv and .git; the tests run with this interpreter. A mutation whose source text
is no longer found exactly once is reported as "stale": update it together with the code it guards.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Mutation:
    """Replace `old` (found exactly once in `file`) by `new`; the pytest selection `tests` must fail."""

    name: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]  # pytest node ids / -k expressions: ("tests/x.py", "-k", "expr")


MUTATIONS = (
    Mutation(
        "checkpoint weights read with torch.load (pickle)", "app/checkpoint.py",
        "state = safetensors.torch.load_file(str(weights), device=map_location)",
        "import torch; state = torch.load(str(weights), map_location=map_location, weights_only=False)"
        "; state = state if isinstance(state, dict) and all(hasattr(v, 'shape') for v in state.values()) else {}",
        ("tests/test_untrusted.py", "-k", "without_unpickling"),
    ),
    Mutation(
        "resume state read with weights_only=False", "app/train.py",
        "weights_only=True)  # never", "weights_only=False)  # never",
        ("tests/test_untrusted.py", "-k", "resume_state_is_read"),
    ),
    Mutation(
        "a .py config is executed", "app/config.py",
        "    path = Path(path)\n    try:\n        raw = tomllib.loads",
        "    path = Path(path)\n    if path.suffix == '.py':\n        exec(path.read_text(), {})\n"
        "    try:\n        raw = tomllib.loads",
        ("tests/test_untrusted.py", "-k", "python_config"),
    ),
    Mutation(
        "config overrides are eval'ed", "app/config.py",
        "    except tomllib.TOMLDecodeError:\n        value = value_text",
        "    except tomllib.TOMLDecodeError:\n        try:\n            value = eval(value_text)\n"
        "        except Exception:\n            value = value_text",
        ("tests/test_untrusted.py", "-k", "not_evaluated"),
    ),
    Mutation(
        "manifest paths not checked", "preprocessing/cache.py",
        '    """Refuse names that would read or write outside the cache folder or the dataset root."""\n',
        '    """Refuse names that would read or write outside the cache folder or the dataset root."""\n    return\n',
        ("tests/test_untrusted.py", "-k", "manifest or escapes"),
    ),
    Mutation(
        "Hollywood2 clip names not checked", "data/layouts.py",
        "if not _PLAIN_CLIP_NAME.match(clip):", "if False:",
        ("tests/test_untrusted.py", "-k", "hollywood2"),
    ),
    Mutation(
        "report does not escape", "app/report.py",
        "from html import escape", "escape = lambda s, quote=True: s  # noqa: E731",
        ("tests/test_untrusted.py", "-k", "report"),
    ),
    Mutation(
        "decoder opens named pipes", "preprocessing/decode.py",
        "        if not stat.S_ISREG(mode):", "        if False:",
        ("tests/robustness/test_corpus.py", "-k", "named_pipe"),
    ),
    Mutation(
        "no output budget in the decoder", "preprocessing/decode.py",
        "    if nbytes > MAX_OUTPUT_BYTES:", "    if False:",
        ("tests/robustness/test_regressions.py", "-k", "timestamp_jump"),
    ),
    Mutation(
        "decode workers outlive a killed classify", "app/inputs.py",
        "    die_with_parent(parent_pid)\n", "    pass\n",
        ("tests/test_interrupt.py", "-k", "classify_killed"),
    ),
    Mutation(
        "checkpoint pair not checked", "app/checkpoint.py",
        "    if digest is not None and digest != meta[\"weights_sha256\"]:",
        "    if False:",
        ("tests/test_interrupt.py", "-k", "interrupted_between"),
    ),
)


PROTECTIONS = MUTATIONS
AREAS = ("decode", "cache", "data", "models", "metrics", "train", "inference", "outputs")


def all_mutations() -> list[tuple[str, Mutation]]:
    """(area, mutation) for every seeded mistake: the protections above, then each area's module."""
    import importlib

    out = [("protections", m) for m in PROTECTIONS]
    for area in AREAS:
        try:
            module = importlib.import_module(f"tests.robustness.mutants_{area}")
        except ModuleNotFoundError as e:
            if e.name != f"tests.robustness.mutants_{area}":
                raise
            continue
        out.extend((area, m) for m in module.MUTATIONS)
    return out


def _copy(dest: Path) -> None:
    ignore = shutil.ignore_patterns(".venv", ".git", "runs", "cache", "out", "__pycache__", ".pytest_cache",
                                    ".ruff_cache")
    shutil.copytree(REPO, dest, ignore=ignore, symlinks=True)


def run(mutations=MUTATIONS, on_result=None) -> list[tuple[str, str]]:
    """(name, "caught" | "MISSED" | "stale") per mutation; `on_result(name, verdict)` as each ends."""
    results = []
    with tempfile.TemporaryDirectory(prefix="vidclass_mutations_") as tmp:
        copy = Path(tmp) / "repo"
        _copy(copy)
        for m in mutations:
            path = copy / m.file
            original = path.read_text()
            if original.count(m.old) != 1:
                results.append((m.name, "stale"))
                if on_result is not None:
                    on_result(*results[-1])
                continue
            path.write_text(original.replace(m.old, m.new))
            try:
                r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *m.tests],
                                   cwd=copy, capture_output=True, text=True, timeout=600)
            finally:
                path.write_text(original)
            results.append((m.name, "caught" if r.returncode == 1 else "MISSED" if r.returncode == 0 else
                            f"error (pytest exit {r.returncode})"))
            if on_result is not None:
                on_result(*results[-1])
    return results


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m tests.robustness.mutations", description=__doc__.split("\n")[0])
    ap.add_argument("-k", default="", help="only mutations whose area or name contains this text")
    ap.add_argument("--list", action="store_true", help="list the mutations and exit")
    args = ap.parse_args(argv)
    chosen = [(a, m) for a, m in all_mutations() if args.k.lower() in f"{a} {m.name}".lower()]
    if args.list:
        for area, m in chosen:
            print(f"{area:>11}  {m.name}  ({m.file})")
        print(f"{len(chosen)} mutations")
        return 0
    area_of = {m.name: a for a, m in chosen}
    results = run([m for _, m in chosen],
                  on_result=lambda name, verdict: print(f"{verdict:>8}  {area_of[name]:>11}  {name}", flush=True))
    caught = sum(v == "caught" for _, v in results)
    share = caught / len(results) if results else 1.0
    print(f"{caught} of {len(results)} seeded mistakes caught by a failing test ({100 * share:.0f}%)")
    return 0 if share >= 0.95 else 1


if __name__ == "__main__":
    sys.exit(main())
