"""`python -m app <command>`: the vidclass command line.

Each command lives in `app/commands/<name>.py` with `add_arguments(parser)` and `run(args) -> int`.
Exit codes: 0 success, 1 failure, 2 usage error, 3 some inputs failed (the batch went on).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from app.errors import UsageError

# name -> one-line help. Modules are imported only for the command being run.
COMMANDS = {
    "preprocess": "decode a dataset's videos and cache uint8 frame arrays",
    "train": "train a model from an experiment config",
    "fit": "train a TT-GRU on a folder of class subfolders in one command (choices printed and saved)",
    "evaluate": "evaluate a checkpoint on a dataset split",
    "classify": "classify videos, folders, TFRecords or feature arrays with a checkpoint",
    "export": "export a checkpoint to ONNX or TorchScript",
    "make-demo": "generate the synthetic camera-motion demo dataset from real clips",
}


def _command_of(argv: list[str]) -> str | None:
    """The command argv names: its first argument that is not an option (None if there is none)."""
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    prog = "vidclass" if os.path.basename(sys.argv[0]) == "vidclass" else "python -m app"  # the console script
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    names = [only] if only else list(COMMANDS)
    mods = {}
    for name in names:
        modname = f"app.commands.{name.replace('-', '_')}"
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as e:
            if e.name != modname:
                raise
            continue
        p = sub.add_parser(name, help=COMMANDS[name], description=mod.__doc__)
        mod.add_arguments(p)
        mods[name] = mod
    parser.set_defaults(_mods=mods)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    for stream in (sys.stdout, sys.stderr):  # a path the user typed may not be UTF-8: show it, never crash
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    # Build only the chosen command's parser: importing every command would import torch for --help.
    chosen = _command_of(argv)
    parser = build_parser(chosen if chosen in COMMANDS else None)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s" if args.verbose else "%(message)s",
    )
    if not args.command:
        parser.print_help()
        return 2
    try:
        return int(args._mods[args.command].run(args) or 0)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk, a read-only folder: the system's reason and the path, one line
        where = f": {e.filename}" if e.filename else ""
        print("error: " + " ".join(f"{e.strerror or e}{where}".split()), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


# Commands whose process ends with `os._exit` once their outputs are written: tearing down an
# interpreter that imported torch takes a third of a second, a tenth of classifying a short video.
FAST_EXIT = {"classify"}


def program(argv: list[str] | None = None) -> int:
    """`main` as a program (`python -m app`, the `vidclass` script): a FAST_EXIT command's process
    ends right after it returns, with its output flushed; in-process callers use `main`."""
    argv = sys.argv[1:] if argv is None else argv
    rc = main(argv)
    if _command_of(argv) in FAST_EXIT:
        logging.shutdown()  # flushes the log handlers
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a reader that went away (`| head`), a closed stream
                pass
        os._exit(rc)
    return rc


if __name__ == "__main__":
    sys.exit(program())
