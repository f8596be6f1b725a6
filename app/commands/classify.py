"""Classify videos, folders, YouTube-8M TFRecords or `.npy` feature arrays with a checkpoint.

    python -m app classify INPUT... --checkpoint CKPT --output OUT_DIR [--top-k 5]
        [--batch-size 8] [--workers 2] [--device auto|cpu|cuda] [--feature-weights DIR]

Folders are searched recursively and every file in them gets a row (hidden files are skipped);
whether a file is a video is decided by decoding it, not by its extension. Writes, atomically, to
OUT_DIR: predictions.csv (path, rank, label, score), predictions.jsonl (one object per input),
report.html, and submission.csv (Kaggle format) when TFRecord records were classified. File names
are written in their printable form (preprocessing/names.py); CSV text cells that a spreadsheet would
evaluate start with a `'`. Each file is written even when another cannot be.
Exit code 0 when every input was classified, 3 when some failed, 1 when an output could not be
written (one `error:` line each), 2 for usage errors.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import sys
from pathlib import Path

import numpy as np

from app.errors import UsageError
from app.precision import PRECISIONS
from preprocessing.names import printable_name, printable_text, spreadsheet_safe

MAX_SECONDS = 1e7  # --timeline and --timeline-window: about 115 days, far beyond any video


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="video files, folders, TFRecord files/patterns, .npy arrays")
    p.add_argument("--checkpoint", required=True, help="checkpoint: NAME.json / NAME.safetensors / run folder")
    p.add_argument("--output", required=True, help="output folder (created)")
    p.add_argument("--top-k", type=int, default=5, help="labels kept per input (default 5)")
    p.add_argument("--batch-size", type=int, default=8, help="inputs per forward pass (default 8)")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="decoding processes (0: decode in this process)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where the model runs")
    p.add_argument("--max-frames", type=int, default=None, help="keep at most this many frames per video")
    p.add_argument("--feature-weights", default=None, metavar="DIR",
                   help="local Inception/PCA/VGGish files, to give raw videos to a YouTube-8M feature model")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="fp32, or bf16: the model under torch.autocast (default fp32: faster on CPU, docs/RESULTS.md)")
    p.add_argument("--timeline", type=float, default=None, metavar="SECONDS",
                   help="score a segment every SECONDS of each video (timeline.csv/.jsonl, a strip in the report); "
                        "default: on for videos of a pixel model at least 10 windows and 1 minute long; 0: off")
    p.add_argument("--timeline-window", type=float, default=None, metavar="SECONDS",
                   help="length of a timeline segment (default: the model's training clips, 10 s if unknown)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import time

    from app.checkpoint import CheckpointError, read_input_spec
    from app.decoding import decode_pool
    from app.inputs import InferenceOptions, discover_inputs

    start = time.perf_counter()
    if not args.inputs:
        raise UsageError("no inputs: give video files, folders, TFRecord files or .npy arrays to classify")
    for name, value in (("--top-k", args.top_k), ("--batch-size", args.batch_size)):
        if value < 1:
            raise UsageError(f"{name} must be at least 1, got {value}")
    if args.workers < 0:
        raise UsageError(f"--workers must be 0 or more, got {args.workers}")
    if args.max_frames is not None and args.max_frames < 1:
        raise UsageError(f"--max-frames must be at least 1, got {args.max_frames}")
    if args.timeline is not None and not 0 <= args.timeline <= MAX_SECONDS:
        raise UsageError(f"--timeline must be a number of seconds up to {MAX_SECONDS:g} (0: off), got {args.timeline}")
    if args.timeline_window is not None and not 0 < args.timeline_window <= MAX_SECONDS:
        raise UsageError(f"--timeline-window must be a positive number of seconds up to {MAX_SECONDS:g}, got {args.timeline_window}")
    if not os.path.exists(args.checkpoint) and not os.path.exists(Path(args.checkpoint).with_suffix(".json")):
        raise UsageError(f"checkpoint not found: {args.checkpoint}")
    try:
        spec = read_input_spec(args.checkpoint)
    except CheckpointError as e:
        raise UsageError(" ".join(str(e).split())) from None
    items = discover_inputs(args.inputs)
    if not items:
        raise UsageError(f"no input files found in {' '.join(args.inputs)}")
    options = InferenceOptions(
        top_k=args.top_k, batch_size=args.batch_size, workers=args.workers,
        device=args.device, max_frames=args.max_frames, precision=args.precision,
        timeline=args.timeline, timeline_window=args.timeline_window,
    )
    # A pixel model's videos start decoding now, in worker processes forked before torch is imported
    # (a lighter fork); importing torch and loading the model (the bulk of start-up) overlap the decoding.
    decoder = decode_pool(items, spec, options) if args.workers > 0 else None
    try:
        return _classify(args, items, options, decoder, start)
    finally:
        if decoder is not None:
            decoder.close()


def _classify(args: argparse.Namespace, items: list, options, decoder, start: float) -> int:
    import torch
    from tqdm import tqdm

    from app.checkpoint import CheckpointError, load_checkpoint
    from app.inference import classify, resolve_device

    try:
        ckpt = load_checkpoint(args.checkpoint)
    except CheckpointError as e:
        raise UsageError(" ".join(str(e).split())) from None
    extractor = None
    if ckpt.input_spec.kind == "features" and any(it.kind == "video" for it in items):
        from preprocessing.features import FeatureExtractorError, load_feature_extractor

        if args.feature_weights is not None:
            try:
                extractor = load_feature_extractor(args.feature_weights)
            except FeatureExtractorError as e:
                raise UsageError(str(e)) from None
        elif all(it.kind == "video" for it in items):
            # Only a run of nothing but videos is refused whole: among feature files, an input that
            # looks like a video (often a damaged shard) gets an error row like any bad input.
            raise UsageError(
                "this checkpoint takes YouTube-8M features, and raw videos need a feature extractor: "
                "pass --feature-weights DIR holding the local Inception/PCA/VGGish files listed in "
                "preprocessing/features.py (they cannot be downloaded here)"
            )
    try:
        device = resolve_device(args.device)
    except ValueError as e:  # --device cuda without CUDA
        raise UsageError(str(e)) from None
    if device.type == "cpu" and args.workers > 0:
        # Leave the decoders their cores: torch would otherwise run one thread per core.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) - args.workers))

    out = Path(args.output)
    has_records = any(it.kind == "tfrecord" for it in items)
    with tqdm(
        total=None if has_records else len(items), unit="video", desc="classify",
        disable=args.no_progress, file=sys.stderr, dynamic_ncols=True,
    ) as bar, LongVideoBars(disable=args.no_progress) as long_bars:
        def done(p) -> None:
            long_bars.finish(p.path)
            bar.update(1)

        result = classify(
            items, ckpt, options=options, feature_extractor=extractor, on_prediction=done,
            decoder=decoder, start=start, on_progress=long_bars.update,
        )
    preds = result.predictions

    details = {
        "checkpoint": str(ckpt.path),
        "model": ckpt.model_name,
        "classes": str(len(ckpt.class_names)),
        "input": ckpt.input_spec.describe(),
    }
    write_errors = _write_outputs(out, preds, details)
    failed = [p for p in preds if not p.ok]
    for p in failed[:20]:
        print(f"failed: {printable_text(p.error, p.path)}", file=sys.stderr)
    if len(failed) > 20:
        print(f"... and {len(failed) - 20} more failures (see predictions.jsonl)", file=sys.stderr)
    print(
        f"{result.n_ok} ok, {result.n_failed} failed, {result.seconds:.1f} s ({result.videos_per_second:.2f} videos/s, "
        f"loading torch and the model included); "
        f"report: {printable_name(out / 'report.html')}"
    )
    for line in write_errors:
        print(f"error: {line}", file=sys.stderr)
    return 1 if write_errors else 3 if failed else 0


class LongVideoBars:
    """A progress bar of its own (seconds done / total) for each video longer than `LONG_SECONDS`
    while the model runs it."""

    LONG_SECONDS = 60.0

    def __init__(self, disable: bool) -> None:
        self.disable, self.bars = disable, {}

    def __enter__(self) -> LongVideoBars:
        return self

    def __exit__(self, *exc) -> None:
        for bar in self.bars.values():
            bar.close()

    def update(self, path: str, seconds: float, total: float | None) -> None:
        if self.disable or total is None or total < self.LONG_SECONDS:
            return
        from tqdm import tqdm

        bar = self.bars.get(path)
        if bar is None:
            name = printable_name(os.path.basename(path))
            bar = self.bars[path] = tqdm(total=round(total), unit="s", desc=name[:40], file=sys.stderr, leave=False)
        bar.update(max(0, min(round(seconds), bar.total) - bar.n))

    def finish(self, path: str) -> None:
        bar = self.bars.pop(path, None)
        if bar is not None:
            bar.close()


def _write_outputs(out: Path, preds: list, details: dict[str, str]) -> list[str]:
    """Write every output file, each atomically; one that cannot be written does not stop the others
    (the results are kept in whatever could be written). Returns one line per file that failed."""
    from app.report import write_report

    writers = [
        ("predictions.jsonl", _write_jsonl),
        ("predictions.csv", _write_csv),
        ("report.html", lambda path, preds: write_report(path, preds, details=details)),
    ]
    if any(p.kind == "tfrecord" and p.ok for p in preds):
        writers.append(("submission.csv", _write_submission))
    if any(p.segments for p in preds):
        writers += [("timeline.csv", _write_timeline_csv), ("timeline.jsonl", _write_timeline_jsonl)]
    else:  # a timeline left in the folder by an earlier run would describe other videos
        for name in ("timeline.csv", "timeline.jsonl"):
            with contextlib.suppress(OSError):
                (out / name).unlink()
    errors = []
    for name, write in writers:
        try:
            write(out / name, preds)
        except OSError as e:
            errors.append(" ".join(f"{out / name}: {e.strerror or e}".split()))
        except Exception as e:  # a bug must not cost the other files
            errors.append(" ".join(f"{out / name}: {type(e).__name__}: {e}".split()))
    if len(errors) == len(writers) > 1:  # nothing could be written (a read-only or full folder): one line
        return [f"nothing written to {out}; {errors[0]}"]
    return errors


def _write_jsonl(path: Path, preds: list) -> None:
    from app.inference import prediction_record
    from preprocessing.fileio import atomic_open

    with atomic_open(path, "w", encoding="utf-8") as f:
        for p in preds:
            f.write(json.dumps(prediction_record(p), ensure_ascii=False) + "\n")


def _write_csv(path: Path, preds: list) -> None:
    """path, rank, label, score: one row per (input, label); text cells a spreadsheet cannot run."""
    from preprocessing.fileio import atomic_open

    with atomic_open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "rank", "label", "score"])
        for p in preds:
            name = spreadsheet_safe(printable_name(p.path))
            for rank, (label, score) in enumerate(p.labels, start=1):
                w.writerow([name, rank, spreadsheet_safe(printable_text(label)), f"{score:.6f}"])


def _write_timeline_csv(path: Path, preds: list) -> None:
    """path, start, end, rank, label, score: one row per (segment, label), in seconds."""
    from preprocessing.fileio import atomic_open

    with atomic_open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "start", "end", "rank", "label", "score"])
        for p in preds:
            name = spreadsheet_safe(printable_name(p.path))
            for s in p.segments:
                for rank, (label, score) in enumerate(s.labels, start=1):
                    w.writerow([name, f"{s.start:.3f}", f"{s.end:.3f}", rank, spreadsheet_safe(printable_text(label)), f"{score:.6f}"])


def _write_timeline_jsonl(path: Path, preds: list) -> None:
    """One object per video with a timeline: {"path", "segments": [{"start", "end", "labels"}]}."""
    from app.inference import json_score
    from preprocessing.fileio import atomic_open

    with atomic_open(path, "w", encoding="utf-8") as f:
        for p in preds:
            if p.segments:
                segments = [
                    {"start": s.start, "end": s.end,
                     "labels": [{"label": printable_text(n), "score": json_score(v)} for n, v in s.labels]}
                    for s in p.segments
                ]
                f.write(json.dumps({"path": printable_name(p.path), "segments": segments}, ensure_ascii=False) + "\n")


def _write_submission(path: Path, preds: list) -> None:
    """The starter's Kaggle format; each row from that video's own top-20 (label, score) pairs."""
    from app.metrics.yt8m import kaggle_rows
    from preprocessing.fileio import atomic_open

    with atomic_open(path, "w", newline="", encoding="utf-8") as f:
        f.write("VideoId,LabelConfidencePairs\n")
        for p in preds:
            if p.kind == "tfrecord" and p.ok:
                row = kaggle_rows([p.video_id], np.asarray([p.top_scores]), class_indices=p.top_indices)[0]
                f.write(row + "\n")
