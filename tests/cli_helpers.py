"""Helpers shared by the tests that drive the CLI in-process or feed it hostile files."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from app.__main__ import main


class CliResult(NamedTuple):
    returncode: int
    stderr: str


def run_cli(capsys, args) -> CliResult:
    """`python -m app ARGS`, in-process (fast): its exit code and what it printed on stderr."""
    capsys.readouterr()
    code = main([str(a) for a in args])
    return CliResult(code, capsys.readouterr().err)


class PickleBomb:
    """Unpickles into `open(marker, "w")`: the marker file exists iff something unpickled it."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))
