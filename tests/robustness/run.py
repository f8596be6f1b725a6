"""Run the robustness corpus through the decoder and through `classify`, check every outcome, print
the figures (docs/RELIABILITY.md quotes them).

    python -m tests.robustness.run [--seed 0] [--workers 2] [--timeout 20] [--no-classify] [--keep DIR]

Decoder: `video_to_array` on every input, each in a watchdog worker (tests/robustness/watchdog.py),
must return uint8 (T, 24, 32, 3) frames or raise VideoDecodeError with a one-line message, within
the time limit; inputs that must decode do, copies under other names decode to the same frames.
Classify: the real CLI in a subprocess on the whole corpus folder with a tiny TT-GRU checkpoint must
exit 3 with one row per input in predictions.csv / predictions.jsonl / report.html, the same
verdict per input as the decoder, and no traceback on stderr. Then the same for damaged TFRecord
shards (tests/robustness/shards.py): the reader, and classify with a YouTube-8M feature checkpoint.
Exit status 0 when nothing is wrong.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .corpus import Case, build_corpus, remove_corpus
from .shards import build_shards, check_classify_shards, check_shards, make_feature_checkpoint, read_target
from .watchdog import Outcome, run_cases

REPO = Path(__file__).resolve().parents[2]
SIZE = (32, 24)  # (W, H): small frames keep the corpus quick; 32*24*3 = 2304 = 4*8*8*9
FPS = 4.0
OUTPUT_FILES = {"predictions.csv", "predictions.jsonl", "report.html"}
TIMELINE_FILES = {"timeline.csv", "timeline.jsonl"}  # as well, when a (claimed) long video gets a timeline


# --- the decoder -------------------------------------------------------------------------------------


def decode_target(path: str) -> str:
    """Watchdog target: decode, check the array's form, describe it as `T=<frames> sha256=<digest>`."""
    from preprocessing import video_to_array

    frames = video_to_array(path, fps=FPS, size=SIZE, threads=1)
    W, H = SIZE
    assert frames.dtype.name == "uint8" and frames.ndim == 4 and frames.shape[1:] == (H, W, 3), (
        f"bad array {frames.dtype} {frames.shape}"
    )
    assert frames.shape[0] >= 1, "an array with no frames"
    digest = hashlib.sha256(frames.tobytes()).hexdigest()[:16]
    frozen = bool((frames == frames[:1]).all())
    return f"T={frames.shape[0]} sha256={digest} frozen={frozen}"


def _detail(outcome: Outcome) -> dict[str, str]:
    return dict(item.split("=", 1) for item in outcome.detail.split())


def decode_corpus(cases: list[Case], *, workers: int = 2, timeout: float = 20.0) -> list[Outcome]:
    from preprocessing import VideoDecodeError

    return run_cases([c.path for c in cases], decode_target, allowed=(VideoDecodeError,),
                     workers=workers, timeout=timeout)


def check_decode(cases: list[Case], outcomes: list[Outcome]) -> list[str]:
    """Every broken promise, one line each ([] when all is well)."""
    problems = []
    by_name = {c.name: o for c, o in zip(cases, outcomes)}
    for case, o in zip(cases, outcomes):
        where = f"{case.name} ({case.origin})"
        if o.status in ("crash", "hang"):
            problems.append(f"{where}: {o.status}: {o.detail.splitlines()[0] if o.detail else ''}")
            continue
        if case.expect == "array" and o.status != "ok":
            problems.append(f"{where}: must decode, got {o.error_type}: {o.detail}")
        if case.expect == "error" and o.status != "error":
            problems.append(f"{where}: must be refused with VideoDecodeError, got frames {o.detail}")
        if o.status == "error" and ("\n" in o.detail or not o.detail.startswith(str(case.path))):
            problems.append(f"{where}: the error is not one line starting with the path: {o.detail!r}")
        if case.same_as and o.status == "ok":
            twin = by_name[case.same_as]
            if twin.status != "ok" or _detail(twin)["sha256"] != _detail(o)["sha256"]:
                problems.append(f"{where}: frames differ from {case.same_as}'s")
    frozen, one = by_name.get("synth_frozen.mkv"), by_name.get("synth_one_frame.mp4")
    if frozen and frozen.status == "ok" and _detail(frozen)["frozen"] != "True":
        problems.append("synth_frozen.mkv: identical input frames gave different output frames")
    if one and one.status == "ok" and _detail(one)["T"] != "1":
        problems.append(f"synth_one_frame.mp4: one input frame gave {_detail(one)['T']} output frames")
    return problems


# --- classify (the real CLI) -------------------------------------------------------------------------


def make_checkpoint(path: Path) -> Path:
    """A tiny TT-GRU for 32x24 frames at 4 fps, saved with the project's checkpoint writer."""
    import torch

    from app.checkpoint import save_checkpoint
    from models import create_model

    torch.manual_seed(0)
    model = create_model("tt_gru", num_classes=3, in_modes=(4, 8, 8, 9), hidden_modes=(2, 2, 2, 2),
                         ranks=(1, 2, 2, 2, 1))
    save_checkpoint(path, model, class_names=["a", "b", "<i>c</i>"],
                    input_spec={"kind": "pixels", "size": list(SIZE), "fps": FPS})
    return path


def classify_corpus(corpus_dir: Path, out_dir: Path, checkpoint: Path, *, workers: int = 2,
                    timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "app", "classify", str(corpus_dir), "--checkpoint", str(checkpoint),
           "--output", str(out_dir), "--workers", str(workers), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def classify_inputs(cases: list[Case]) -> list[Case]:
    """The cases classify lists when given the corpus folder: every entry but folders."""
    return [c for c in cases if not c.path.is_dir()]


def check_classify(cases: list[Case], outcomes: list[Outcome], run: subprocess.CompletedProcess,
                   out_dir: Path) -> list[str]:
    problems = []
    if run.returncode != 3:
        problems.append(f"classify exited {run.returncode}, expected 3 (some inputs failed)")
    if "Traceback" in run.stderr:
        problems.append("classify printed a traceback: " + run.stderr[run.stderr.index("Traceback"):][:300])
    present = {p.name for p in out_dir.iterdir()} if out_dir.is_dir() else set()
    if present not in (OUTPUT_FILES, OUTPUT_FILES | TIMELINE_FILES):
        problems.append(f"output folder holds {sorted(present)}, expected {sorted(OUTPUT_FILES)}")
        if not OUTPUT_FILES <= present:
            return problems
    expected = {str(c.path): c for c in classify_inputs(cases)}
    verdict = {str(c.path): o for c, o in zip(cases, outcomes)}
    rows = [json.loads(line) for line in (out_dir / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    paths = [r["path"] for r in rows]
    if sorted(paths) != sorted(expected):
        missing, extra = set(expected) - set(paths), set(paths) - set(expected)
        problems.append(f"predictions.jsonl: {len(rows)} rows for {len(expected)} inputs "
                        f"(missing {sorted(missing)[:3]}, unexpected {sorted(extra)[:3]})")
    for r in rows:
        o = verdict.get(r["path"])
        if o is None:
            continue
        name = Path(r["path"]).name
        if r["error"] is not None and "\n" in r["error"]:
            problems.append(f"{name}: classify error is not one line")
        if (r["error"] is None) != (o.status == "ok"):
            problems.append(f"{name}: classify says {r['error'] or 'ok'}, the decoder said {o.status}: {o.detail}")
        elif o.status == "ok" and r["frames"] != int(_detail(o)["T"]):
            problems.append(f"{name}: classify saw {r['frames']} frames, the decoder gives {_detail(o)['T']}")
    with open(out_dir / "predictions.csv", newline="", encoding="utf-8") as f:
        csv_paths = {row["path"] for row in csv.DictReader(f)}
    ok_paths = {r["path"] for r in rows if r["error"] is None}
    if csv_paths != ok_paths:
        problems.append(f"predictions.csv lists {len(csv_paths)} inputs, {len(ok_paths)} were classified")
    html = (out_dir / "report.html").read_text(encoding="utf-8")
    body_rows = html.count('<tr class="ok">') + html.count('<tr class="error">')
    if body_rows != len(rows):
        problems.append(f"report.html has {body_rows} rows for {len(rows)} inputs")
    if "<img src=x onerror" in html or "<i>c</i>" in html:
        problems.append("report.html contains unescaped markup from a file or class name")
    return problems


# --- figures -----------------------------------------------------------------------------------------


@dataclass
class Figures:
    inputs: int
    status: Counter
    good: int  # inputs that must decode
    good_decoded: int
    partial_files: int  # files the decoder or classify left that a reader might trust
    seconds: float
    by_group: dict[str, Counter] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    shards: Counter = field(default_factory=Counter)  # TFRecord shards: outcome status -> count

    def lines(self) -> list[str]:
        s = self.status
        out = [
            f"inputs tried: {self.inputs}",
            f"decoded to frames: {s['ok']}, refused with VideoDecodeError: {s['error']}",
            f"crashes: {s['crash']}, hangs: {s['hang']}, partial files: {self.partial_files}",
            f"good inputs decoded: {self.good_decoded} of {self.good}",
            f"decode wall time: {self.seconds:.1f} s",
            "by kind of input (frames / refused / crash / hang):",
        ]
        for group, c in sorted(self.by_group.items()):
            out.append(f"  {group:<18} {sum(c.values()):>4}: {c['ok']} / {c['error']} / {c['crash']} / {c['hang']}")
        if self.shards:
            c = self.shards
            out.append(f"TFRecord shards tried: {sum(c.values())}; read whole: {c['ok']}, refused with "
                       f"TFRecordError: {c['error']}, crashes: {c['crash']}, hangs: {c['hang']}")
        return out


def figures(cases: list[Case], outcomes: list[Outcome], *, partial_files: int, seconds: float,
            problems: list[str]) -> Figures:
    by_group: dict[str, Counter] = {}
    for c, o in zip(cases, outcomes):
        by_group.setdefault(c.group, Counter())[o.status] += 1
    good = [o for c, o in zip(cases, outcomes) if c.expect == "array"]
    return Figures(
        inputs=len(cases), status=Counter(o.status for o in outcomes), good=len(good),
        good_decoded=sum(o.status == "ok" for o in good), partial_files=partial_files, seconds=seconds,
        by_group=by_group, problems=problems,
    )


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """name -> (size, mtime_ns) of every entry (not following links), to spot files someone left."""
    out = {}
    for p in sorted(folder.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(folder))] = (st.st_size, st.st_mtime_ns)
    return out


def run_all(work: Path, *, seed: int = 0, workers: int = 2, timeout: float = 20.0,
            with_classify: bool = True) -> Figures:
    corpus_dir = work / "corpus"
    cases = build_corpus(corpus_dir, seed=seed)
    before = snapshot(corpus_dir)
    t0 = time.perf_counter()
    outcomes = decode_corpus(cases, workers=workers, timeout=timeout)
    seconds = time.perf_counter() - t0
    after = snapshot(corpus_dir)
    partial = len(set(after) - set(before)) + sum(after[k] != before[k] for k in before if k in after)
    problems = check_decode(cases, outcomes)
    if with_classify:
        ckpt = make_checkpoint(work / "ckpt" / "tiny_tt_gru")
        out_dir = work / "classify_out"
        run = classify_corpus(corpus_dir, out_dir, ckpt, workers=workers)
        problems += check_classify(cases, outcomes, run, out_dir)
        partial += sum(1 for p in out_dir.rglob("*") if p.name not in OUTPUT_FILES)
        partial += len(set(snapshot(corpus_dir)) - set(before))

    from data.tfrecord_io import TFRecordError

    shard_cases = build_shards(work / "shards", seed=seed)
    shard_outcomes = run_cases([c.path for c in shard_cases], read_target, allowed=(TFRecordError,),
                               workers=workers, timeout=timeout)
    problems += check_shards(shard_cases, shard_outcomes)
    if with_classify:
        ckpt = make_feature_checkpoint(work / "ckpt" / "logistic")
        run = classify_corpus(work / "shards", work / "classify_shards", ckpt, workers=0)
        problems += check_classify_shards(shard_cases, shard_outcomes, run, work / "classify_shards")
    fig = figures(cases, outcomes, partial_files=partial, seconds=seconds, problems=problems)
    fig.shards = Counter(o.status for o in shard_outcomes)
    return fig


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.robustness.run", description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=0, help="corpus seed (default 0)")
    p.add_argument("--workers", type=int, default=2, help="decoding processes (default 2)")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds per input before it counts as a hang")
    p.add_argument("--no-classify", action="store_true", help="only the decoder")
    p.add_argument("--keep", metavar="DIR", help="build in DIR (must not exist) and keep it")
    args = p.parse_args(argv)
    if args.keep:
        work = Path(args.keep)
        work.mkdir(parents=True)
    else:
        work = Path(tempfile.mkdtemp(prefix="vidclass_robustness_"))
    try:
        fig = run_all(work, seed=args.seed, workers=args.workers, timeout=args.timeout,
                      with_classify=not args.no_classify)
    finally:
        if not args.keep:
            remove_corpus(work / "corpus")
            import shutil

            shutil.rmtree(work, ignore_errors=True)
    print("\n".join(fig.lines()))
    for line in fig.problems:
        print(f"PROBLEM: {line}")
    print("result: " + ("all promises kept" if not fig.problems else f"{len(fig.problems)} problems"))
    return 1 if fig.problems else 0


if __name__ == "__main__":
    sys.exit(main())
