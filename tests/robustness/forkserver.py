"""A warm launcher for the kill tests: import the CLI's heavy modules once, then run each command in
a forked child that the test can SIGKILL at any moment of its real work.

`python -m app ...` spends its first seconds importing torch; a kill at a random moment of a fresh
process would mostly hit the imports. The server imports everything once (and runs no torch
operation, so forking is safe, as in the project's own decoding pools); each child then runs
`app.__main__.main(argv)` at once, with its stdout and stderr sent to files.

    with ForkServer() as server:
        result = server.run(["preprocess", ...], cwd=tmp, kill_after=0.8)   # RunResult

Protocol (JSON lines): the client sends {"argv", "cwd", "stdout", "stderr"}; the server forks,
answers {"pid"} at once, waits for the child and answers {"status"} (the exit code, or minus the
signal number when killed).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _serve() -> None:
    import torch  # noqa: F401 - imported only: no torch operation runs in the server

    import app.__main__
    import app.commands.classify  # noqa: F401
    import app.commands.preprocess  # noqa: F401
    import app.commands.train  # noqa: F401
    import app.inference  # noqa: F401
    import app.train  # noqa: F401
    import data.preprocess_job  # noqa: F401

    print(json.dumps({"ready": os.getpid()}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:  # the child: become the command
            code = 1
            try:
                os.chdir(req["cwd"])
                for fd, name in ((1, req["stdout"]), (2, req["stderr"])):
                    out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                    os.dup2(out, fd)
                    os.close(out)
                sys.stdin.close()
                code = app.__main__.main(req["argv"])
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
            except BaseException:  # noqa: BLE001 - reported like the interpreter would
                traceback.print_exc()
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(int(code))
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        print(json.dumps({"status": code}), flush=True)


@dataclass(frozen=True)
class RunResult:
    returncode: int  # exit code, or -9 when killed
    stdout: str
    stderr: str
    seconds: float  # from the fork to the end (or the kill)
    orphans: tuple[int, ...] = ()  # processes the command started that outlived it by 5 s (then killed)


def children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (Linux /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        ppid = int(text.rsplit(")", 1)[1].split()[1])  # the field after the state, past "(comm)"
        if ppid == pid:
            out.append(int(stat.parent.name))
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class ForkServer:
    """Client side: start the server, run commands in it (optionally SIGKILLing them), stop it."""

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.robustness.forkserver"], cwd=REPO, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        hello = json.loads(self.proc.stdout.readline() or "{}")
        assert "ready" in hello, "the fork server did not start"
        self._n = 0

    def run(self, argv: list[str], *, cwd: Path, kill_after: float | None = None) -> RunResult:
        self._n += 1
        out, err = Path(cwd) / f".fork{self._n}.out", Path(cwd) / f".fork{self._n}.err"
        req = {"argv": [str(a) for a in argv], "cwd": str(cwd), "stdout": str(out), "stderr": str(err)}
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        t0 = time.monotonic()
        pid = json.loads(self.proc.stdout.readline())["pid"]
        helpers: list[int] = []
        if kill_after is not None:
            time.sleep(max(0.0, kill_after - (time.monotonic() - t0)))
            helpers = children(pid)  # its worker processes, if any: they must not outlive it
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # it finished first
        status = json.loads(self.proc.stdout.readline())["status"]
        seconds = time.monotonic() - t0
        deadline = time.monotonic() + 5
        while any(alive(p) for p in helpers) and time.monotonic() < deadline:
            time.sleep(0.05)
        orphans = tuple(p for p in helpers if alive(p))
        for p in orphans:  # started by this test: end them so they do not pile up
            os.kill(p, signal.SIGKILL)
        result = RunResult(status, out.read_text(errors="replace"), err.read_text(errors="replace"), seconds,
                           orphans)
        out.unlink()
        err.unlink()
        return result

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> ForkServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


if __name__ == "__main__":
    _serve()
