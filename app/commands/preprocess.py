"""Decode a dataset's videos into the frame cache: one uint8 (T, H, W, 3) .npy per clip plus manifests.

Re-running skips clips already cached, so an interrupted run is finished by running it again.
`--shard I/N` (0 <= I < N) takes every N-th clip for Slurm arrays; the shards fill one cache.
Exit code 3 when some clips failed (listed with reasons in the failures file; the rest are cached), 0 otherwise.
"""

from __future__ import annotations

import argparse
import sys

from app.errors import UsageError
from data.layouts import DATASETS, LayoutError, default_fps, default_size
from preprocessing.names import printable_name


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, choices=DATASETS, help="dataset layout")
    parser.add_argument("--root", required=True, help="dataset folder")
    parser.add_argument("--cache", required=True, help="cache folder (created if needed)")
    parser.add_argument("--fps", type=float, help="sampling rate (default: the dataset's, 24)")
    parser.add_argument("--size", help="frame size WIDTHxHEIGHT (default: the dataset's, e.g. 160x120)")
    parser.add_argument(
        "--workers", type=int, help="decoding processes, one core each (default: the cores available)"
    )
    parser.add_argument(
        "--decoder-threads", type=int, default=1,
        help="FFmpeg threads per worker: 1 (default, a worker is one core) or 0 for FFmpeg's choice",
    )  # fmt: skip
    parser.add_argument("--shard", help="I/N: process only shard I of N (0-based), by sorted clip id")
    parser.add_argument("--backend", default="auto", choices=("auto", "pyav", "opencv"), help="decoder")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"--size must look like 160x120, got {text!r}") from None
    if width <= 0 or height <= 0:
        raise UsageError(f"--size must be positive, got {text!r}")
    return width, height


def parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard must look like 0/4, got {text!r}") from None
    if not 0 <= i < n:
        raise UsageError(f"--shard I/N needs 0 <= I < N, got {text!r}")
    return i, n


def run(args: argparse.Namespace) -> int:
    from data.preprocess_job import PreprocessConfig, default_workers

    workers = default_workers() if args.workers is None else args.workers
    if workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    if args.decoder_threads < 0:
        raise UsageError(f"--decoder-threads must be 0 (FFmpeg's choice) or more, got {args.decoder_threads}")
    if args.fps is not None and not args.fps > 0:
        raise UsageError(f"--fps must be positive, got {args.fps}")
    config = PreprocessConfig(
        dataset=args.dataset,
        root=args.root,
        cache_dir=args.cache,
        fps=args.fps if args.fps is not None else default_fps(args.dataset),
        size=parse_size(args.size) if args.size else default_size(args.dataset),
        workers=workers,
        decoder_threads=args.decoder_threads,
        shard=parse_shard(args.shard) if args.shard else None,
        backend=args.backend,
    )
    summary = preprocess_with_progress(config, progress=not args.no_progress)
    rate = summary.ok / summary.seconds if summary.seconds > 0 else 0.0
    print(
        f"clips: {summary.ok} decoded, {summary.skipped} already cached, {summary.failed} failed; "
        f"{summary.frames} frames; {summary.seconds:.1f} s ({rate:.2f} clips/s)"
    )
    print(f"manifest: {printable_name(summary.manifest)}")
    if summary.failed:
        print(f"failures: {printable_name(summary.failures)}", file=sys.stderr)
        return 3  # some clips failed; the others are cached
    return 0


def preprocess_with_progress(config, *, progress: bool):
    """Run the preprocess job with a progress bar and one `failed:` line per clip that fails; a layout
    or cache problem becomes a UsageError. Returns the job's Summary."""
    from tqdm import tqdm

    from data.preprocess_job import run_preprocess
    from preprocessing.cache import CacheError

    bar = None

    def on_plan(total: int, skipped: int) -> None:
        nonlocal bar
        if skipped:
            print(f"{skipped} of {total} clips already cached", file=sys.stderr)
        bar = tqdm(total=total, initial=skipped, unit="clip", disable=not progress, dynamic_ncols=True)

    def on_result(result) -> None:
        if result.status == "failed":
            bar.write(f"failed: {result.clip_id}: {result.reason}", file=sys.stderr)
        bar.update(1)

    try:
        return run_preprocess(config, on_plan=on_plan, on_result=on_result)
    except (LayoutError, CacheError) as e:
        raise UsageError(str(e)) from None
    finally:
        if bar is not None:
            bar.close()
