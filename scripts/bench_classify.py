"""Model overhead of `classify`: its throughput beside decoding alone, on the same folder.

    python -m scripts.bench_classify [--folder data/samples] [--checkpoint data/models/demo_tt_gru]
        [--workers 1 2] [--rounds 15]

For each worker count, side by side in one run (rounds alternate; the rates are medians over the
rounds, the ratio is the median of the per-round ratios, which cancels the machine's slow drift):
- decode-only: `video_to_array` (the decoder classify uses, with the checkpoint's fps and size) on
  every file of the folder in a process pool of that many workers, largest files first (as classify
  hands them out), nothing else;
- classify: the whole `python -m app classify` command, in-process (discovery, decoding in workers,
  batched inference, predictions.csv/jsonl and report.html written), interpreter start-up excluded.
Both count every file, also the ones that fail to decode. Target: classify >= 0.8x decode-only.
Wall-clock timings on a shared machine are noisy; the CPU columns (this process + its workers, from
getrusage) are not, and their ratio is what the wall-clock ratio tends to when the CPU is saturated.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import io
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time

import preprocessing  # noqa: F401  (imported before forking, as classify does)
from app.__main__ import main as app_main
from app.checkpoint import read_input_spec
from app.inference import discover_inputs


def _decode_one(path: str, fps: float, size: tuple[int, int]) -> int:
    from preprocessing import VideoDecodeError, video_to_array

    try:
        return int(video_to_array(path, fps=fps, size=size, threads=1).shape[0])
    except VideoDecodeError:
        return 0


def _cpu_seconds() -> float:
    """CPU time of this process plus its reaped children (the pool workers, once shut down)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _timed(fn, *args) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one call."""
    cpu = _cpu_seconds()
    wall = fn(*args)
    while multiprocessing.active_children():  # reap exiting workers, so that their CPU time counts
        time.sleep(0.001)
    return wall, _cpu_seconds() - cpu


def decode_only(paths: list[str], fps: float, size: tuple[int, int], workers: int) -> float:
    """Seconds to decode every file with `workers` processes (pool start-up included, as in classify;
    like classify, it does not wait for the workers to exit once the last result is in)."""
    start = time.perf_counter()
    ctx = multiprocessing.get_context("fork") if sys.platform.startswith("linux") else None
    pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
    paths = sorted(paths, key=lambda p: -os.stat(p).st_size)  # largest first, as classify hands them out
    list(pool.map(_decode_one, paths, [fps] * len(paths), [size] * len(paths)))
    seconds = time.perf_counter() - start
    pool.shutdown(wait=True)  # outside the timing
    return seconds


def classify_cli(folder: str, checkpoint: str, workers: int, out: str) -> float:
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = app_main(["classify", folder, "--checkpoint", checkpoint, "--output", out,
                         "--workers", str(workers), "--no-progress"])
    seconds = time.perf_counter() - start
    assert code in (0, 3), f"classify failed with exit code {code}"
    return seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--folder", default="data/samples")
    p.add_argument("--checkpoint", default="data/models/demo_tt_gru")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rounds", type=int, default=15)
    args = p.parse_args(argv)

    spec = read_input_spec(args.checkpoint)
    fps, size = spec.fps, spec.size
    items = discover_inputs([args.folder])
    paths = [it.path for it in items if it.kind == "video"]
    n = len(items)  # classify's unit: every file gets a row; decode-only is given the video candidates
    print(f"folder {args.folder}: {n} files ({len(paths)} video candidates); checkpoint {args.checkpoint} "
          f"({size[0]}x{size[1]} at {fps:g} fps); {os.cpu_count()} CPUs; median of {args.rounds} rounds")
    print(f"{'workers':>7}  {'decode-only videos/s':>20}  {'classify videos/s':>17}  {'ratio':>5}  "
          f"{'decode-only cpu s':>17}  {'classify cpu s':>14}  {'cpu ratio':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        classify_cli(args.folder, args.checkpoint, 1, tmp)  # warm-up: imports, page cache
        for w in args.workers:
            dec, cls = [], []
            for _ in range(args.rounds):
                dec.append(_timed(decode_only, paths, fps, size, w))
                cls.append(_timed(classify_cli, args.folder, args.checkpoint, w, tmp))
            d, c = n / statistics.median(t for t, _ in dec), n / statistics.median(t for t, _ in cls)
            dc, cc = statistics.median(u for _, u in dec), statistics.median(u for _, u in cls)
            ratio = statistics.median(td / tc for (td, _), (tc, _) in zip(dec, cls))  # paired, per round
            print(f"{w:>7}  {d:>20.2f}  {c:>17.2f}  {ratio:>5.2f}  {dc:>17.3f}  {cc:>14.3f}  {dc / cc:>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
