"""Long videos through `classify`: peak memory of the whole process tree, and time beside decoding alone.

    python -m scripts.bench_long_video [--minutes 20 120] [--precision fp32 bf16] [--out DIR] [--keep]
                                       [--memory-limit 4]

For each length it makes (or reuses, from `--out`) a synthetic MPEG-1 video as UCF11's files are
(mpeg1video in an .mpg, 320x240 at 30000/1001 fps, about 600 kbit/s, GOP 15 with B-frames): a few
seeded frames of gradients and discs, cycled and scrolled so that the encoder has motion to code.
It saves a 160x120 TT-GRU at 24 fps (app/configs/ucf11_tt_gru.toml's model, seeded random weights,
11 classes: untrained, as only speed and memory are measured) and runs, each in its own process:
- decode-only: the file decoded at 24 fps to 160x120 RGB with one decoder thread, frames discarded:
  `preprocessing.decode.VideoChunks` (64-frame chunks) where it exists, else a plain PyAV loop doing
  the work of `video_to_array` (same sampling rule, same swscale area conversion) without keeping
  anything;
- classify, once per `--precision` (each with its own output folder):
  `python -m app classify VIDEO --checkpoint CKPT --output DIR --workers 1 --no-progress --precision P`;
- model-only: the checkpoint's model (`load_checkpoint(CKPT).model.eval()`) on one thread
  (`torch.set_num_threads(1)`: in classify the decoder has the other core) fed as many frames as
  decode-only produced, as 64-frame uint8 160x120 RGB chunks (one seeded random chunk, made once and
  reused: nothing generated inside the timing), through `model.stream()` under `inference_mode`:
  `open(0, (240, 240))` (the timeline classify turns on by default for long videos: 10-s segments,
  one every 10 s, so 2 state rows), `feed` + `advance()` per chunk, `close`, `advance()`. Per
  precision: fp32, and bf16 with `torch.autocast("cpu", bfloat16)` around `feed` only (the TT map; the
  stream keeps the recurrence and its state float32, as classify does). Timed twice: the whole stream,
  and the TT map alone (`feed` with no `advance`; the buffered gate inputs are dropped), so the
  difference is the recurrence's share. One untimed chunk first warms up the kernels.
Both command timings are wall-clock and include interpreter start-up. Each command runs twice: once
timed, sampling only RSS (cheap counters), and once for memory, since reading PSS walks the page
tables of every process and slows a command that uses both cores by 5-8%. Memory is sampled every
0.1 s from /proc: the sum over the process and all its descendants (decode workers too) of PSS
(smaps_rollup; shared pages counted once) and of RSS (shared pages counted in every process); the
table shows the largest sums seen, and the largest RSS high-water mark of a single process (VmHWM).
A process tree whose RSS sum passes `--memory-limit` GiB is killed (the machine is shared), and fails.

The bound: on 2 cores classify decodes on one core while the model runs on the other. The decode
worker starts before torch is imported, but once its shared-memory ring is full it waits for the
model, which starts after classify's start-up (the wall-clock time of `python -c "import torch; ...;
load_checkpoint(CKPT); os._exit(0)"`: classify, too, skips the interpreter's teardown). So classify
takes no less than max(decode-only after its start-up + the start-up not covered by decoding the
ring's frames, start-up + model-only), shown as a ratio to decode-only. A bound above 1.3 means the ratio target cannot be met at that
precision on this machine: the model's compute, not the pipeline, sets the time.

Targets (per video and precision): classify <= 1.3x decode-only, peak tree memory (PSS where
readable, else RSS) <= 1 GiB, and the video classified (predictions.jsonl has its row with error
null), not refused. Always exits 0: it is a benchmark; PASS/FAIL is printed. Videos go to a
temporary folder removed at the end unless `--keep` (or `--out DIR`, whose files stay and are reused
by the next run: making the 2-hour file takes a minute or two). Results are recorded in
docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "app" / "configs" / "ucf11_tt_gru.toml"
RATE = Fraction(30000, 1001)  # UCF11's frame rate
WIDTH, HEIGHT = 320, 240
FPS, SIZE = 24.0, (160, 120)  # the model's input, as the UCF11 config
GIB = 2**30
TARGET_RATIO, TARGET_PEAK = 1.3, 1 * GIB
PRECISIONS = ("fp32", "bf16")  # as app.precision.PRECISIONS
CHUNK = 64  # frames per chunk, as classify's decoders send them
WINDOW = (240, 240)  # classify's automatic timeline for long videos: 10-s segments every 10 s at 24 fps
PAGE = os.sysconf("SC_PAGE_SIZE")


# --- the synthetic video ---------------------------------------------------------------------------


def _base_frames(n: int, seed: int) -> list[np.ndarray]:
    """`n` seeded yuv420p pictures (as PyAV lays them out: (H * 3/2, W) uint8) of gradients, discs, noise."""
    import av

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    out = []
    for _ in range(n):
        img = np.empty((HEIGHT, WIDTH, 3), np.float32)
        for c in range(3):
            fx, fy, phase = rng.uniform(0.01, 0.06), rng.uniform(0.01, 0.06), rng.uniform(0, 2 * np.pi)
            img[..., c] = 127 + 100 * np.sin(fx * x + fy * y + phase)
        for _ in range(6):
            cx, cy, r = rng.integers(0, WIDTH), rng.integers(0, HEIGHT), rng.integers(10, 40)
            img[(x - cx) ** 2 + (y - cy) ** 2 < r * r] = rng.integers(0, 256, 3)
        img += rng.normal(0, 6, img.shape)
        rgb = np.clip(img, 0, 255).astype(np.uint8)
        out.append(av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p").to_ndarray())
    return out


def _scrolled(yuv: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """A yuv420p picture scrolled by (dx, dy) pixels (even), wrapping around; chroma by half that."""
    h4 = HEIGHT // 4
    luma = np.roll(yuv[:HEIGHT], (dy, dx), (0, 1))
    u, v = (np.roll(p.reshape(HEIGHT // 2, WIDTH // 2), (dy // 2, dx // 2), (0, 1)).reshape(h4, WIDTH)
            for p in (yuv[HEIGHT:HEIGHT + h4], yuv[HEIGHT + h4:]))  # fmt: skip
    return np.concatenate([luma, u, v])


def frame_count(minutes: float) -> int:
    return round(minutes * 60 * RATE)


def video_ok(path: Path, minutes: float) -> bool:
    """A finished earlier run's video: 320x240 MPEG-1 of the right length (within a second)."""
    import av

    try:
        with av.open(str(path)) as c:
            vs = c.streams.video[0]
            return (vs.codec_context.name == "mpeg1video" and (vs.width, vs.height) == (WIDTH, HEIGHT)
                    and c.duration is not None and abs(c.duration / 1e6 - minutes * 60) < 1.0)  # fmt: skip
    except (OSError, av.FFmpegError, IndexError):
        return False


def make_video(path: Path, minutes: float, seed: int = 0) -> float:
    """Encode the synthetic video to `path` (via a partial file, renamed when done); returns seconds taken."""
    import av

    start = time.perf_counter()
    bases = _base_frames(8, seed)
    partial = path.with_name(path.stem + ".partial.mpg")
    with av.open(str(partial), "w", format="mpeg") as container:
        vs = container.add_stream("mpeg1video", rate=RATE)
        vs.width, vs.height, vs.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        vs.bit_rate = 600_000  # UCF11's clips: about 540 kbit/s
        vs.codec_context.gop_size, vs.codec_context.max_b_frames = 15, 2
        vs.codec_context.thread_count = 1  # the cores are shared
        for i in range(frame_count(minutes)):
            # a new picture every 1.5 s, scrolling right 2 px per frame and down 2 px every 3 frames
            yuv = _scrolled(bases[(i // 45) % len(bases)], (2 * i) % WIDTH, (2 * (i // 3)) % HEIGHT)
            frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            frame.pts = i
            container.mux(vs.encode(frame))
        container.mux(vs.encode())
    os.replace(partial, path)
    return time.perf_counter() - start


def warm_page_cache(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(8 << 20):
            pass


# --- the checkpoint --------------------------------------------------------------------------------


def make_checkpoint(folder: Path, seed: int = 0) -> Path:
    """The UCF11 config's TT-GRU, seeded random weights, 160x120 at 24 fps; returns its sidecar."""
    import torch

    from app.checkpoint import save_checkpoint
    from app.config import load_config
    from data.specs import PixelSpec
    from models.registry import create_model

    cfg = load_config(CONFIG)
    assert (tuple(cfg.data.size), cfg.data.fps) == (SIZE, FPS), f"{CONFIG} is no longer 160x120 at 24 fps"
    torch.manual_seed(seed)
    model = create_model(cfg.model.name, **cfg.model.params)
    classes = [f"class_{k:02d}" for k in range(model.config.num_classes)]
    assert len(classes) == 11, f"{CONFIG}'s model has {len(classes)} classes, not 11"
    weights = save_checkpoint(folder / "tt_gru_160x120", model, class_names=classes,
                              input_spec=PixelSpec(size=SIZE, fps=FPS))  # fmt: skip
    return weights.with_suffix(".json")


# --- decode-only (the child process) ---------------------------------------------------------------


def decode_only(path: str) -> tuple[int, str]:
    """Decode `path` at 24 fps to 160x120 RGB, one decoder thread, discarding frames: (frames, how)."""
    try:
        from preprocessing.decode import VideoChunks
    except ImportError:
        return _decode_loop(path), "PyAV loop (no VideoChunks yet)"
    frames = 0
    chunks = VideoChunks(path, fps=FPS, size=SIZE, threads=1, chunk_frames=64)
    with chunks if hasattr(chunks, "__enter__") else contextlib.nullcontext():
        for chunk in chunks:
            if isinstance(chunk, np.ndarray):
                frames += len(chunk)
            else:  # RESTART: the decoder starts over (timestamps unusable); what came before is void
                frames = 0
    return frames, "VideoChunks"


def _decode_loop(path: str) -> int:
    """`video_to_array`'s PyAV path (monotonic timestamps, as the synthetic files have) keeping nothing."""
    import av
    from av.video.reformatter import VideoReformatter

    from preprocessing.sampling import FpsSampler

    reformatter, sampler = VideoReformatter(), FpsSampler(FPS)
    frames, pending, start, t = 0, None, None, Fraction(0)

    def convert(frame):
        return reformatter.reformat(frame, width=SIZE[0], height=SIZE[1], format="rgb24",
                                    interpolation="AREA", threads=1).to_ndarray()  # fmt: skip

    with av.open(path, metadata_errors="ignore") as container:
        vs = container.streams.video[0]
        vs.codec_context.thread_count = 1
        tb = vs.time_base
        for frame in container.decode(vs):
            start = frame.pts if start is None else start
            t = Fraction(frame.pts - start) * tb
            if pending is not None and (repeats := sampler.slots_until(t)):
                convert(pending)
                frames += repeats
            pending = frame
        end = t + (Fraction(pending.duration) * tb if pending.duration else 1 / vs.average_rate)
        total = sampler.total(end, 0)  # the output is padded with (or cut to) this many frames
        if total > frames:
            convert(pending)
    return total


# --- model-only (the child process) ----------------------------------------------------------------


def model_only(checkpoint: str, frames: int, precisions: list[str], seed: int = 0) -> dict:
    """The checkpoint's model on one thread, `frames` random frames through `model.stream()` in
    64-frame chunks: {precision: {"seconds": whole stream, "map_seconds": TT map alone}}."""
    import torch

    from app.checkpoint import load_checkpoint

    torch.set_num_threads(1)  # in classify the decoder has the other core
    model = load_checkpoint(checkpoint).model.eval()
    w, h = SIZE
    chunk = torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (CHUNK, h, w, 3), dtype=np.uint8))
    sizes = [CHUNK] * (frames // CHUNK) + ([frames % CHUNK] if frames % CHUNK else [])
    chunks = [chunk if k == CHUNK else chunk[:k] for k in sizes]  # views: nothing made while timed

    def cast(bf16: bool):  # the TT map only, as classify: the stream keeps its state float32
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)

    def whole(stream, bf16: bool) -> None:
        stream.open(0, WINDOW)
        for c in chunks:
            with cast(bf16):
                stream.feed(0, c)
            stream.advance()
        stream.close(0)
        stream.advance()

    def map_only(stream, bf16: bool) -> None:
        stream.open(0, WINDOW)
        for c in chunks:
            with cast(bf16):
                stream.feed(0, c)
            stream.drop(0)  # the gate inputs, unused: the recurrence is skipped
            stream.open(0, WINDOW)
        stream.drop(0)

    out = {}
    with torch.inference_mode():
        for precision in precisions:
            bf16 = precision == "bf16"
            stream = model.stream()  # one chunk, untimed: first-call kernel set-up
            stream.open("warm-up", WINDOW)
            with cast(bf16):
                stream.feed("warm-up", chunk)
            stream.close("warm-up")
            stream.advance()
            times = {}
            for name, fn in (("seconds", whole), ("map_seconds", map_only)):
                stream = model.stream()
                start = time.perf_counter()
                fn(stream, bf16)
                times[name] = time.perf_counter() - start
            out[precision] = times
    return out


def startup_seconds(checkpoint: Path) -> float:
    """Classify's start-up: wall-clock time of a process that imports torch and loads the checkpoint
    (nan, with its stderr printed, if it fails)."""
    code = (f"import os, torch; from app.checkpoint import load_checkpoint; load_checkpoint({str(checkpoint)!r}); "
            "os._exit(0)")  # classify too leaves without the interpreter's teardown (app.__main__.FAST_EXIT)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        print(f"  start-up measure failed: exit {done.returncode}; last lines of its stderr:")
        print(_tail(done.stderr))
        return float("nan")
    return time.perf_counter() - start


# --- measuring a process tree ----------------------------------------------------------------------


def _ppids() -> dict[int, int]:
    """pid -> parent pid of every process now running."""
    out = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as f:
                    out[int(entry.name)] = int(f.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass  # it exited meanwhile
    return out


def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, ppid in _ppids().items():
        children.setdefault(ppid, []).append(pid)
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def _status_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in KiB (0, 0 for a zombie); OSError once it is gone."""
    with open(f"/proc/{pid}/status", "rb") as f:
        fields = dict(line.split(b":", 1) for line in f if line.startswith((b"VmRSS:", b"VmHWM:")))
    return int(fields.get(b"VmRSS", b"0 kB").split()[0]), int(fields.get(b"VmHWM", b"0 kB").split()[0])


def _pss_kib(pid: int) -> int:
    """Proportional set size (shared pages divided among their users); PermissionError where unreadable."""
    with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
        return next((int(line.split()[1]) for line in f if line.startswith(b"Pss:")), 0)


def tree_memory(root: int, with_pss: bool = True) -> tuple[int, int | None, dict[int, int]]:
    """Bytes summed over `root` and its descendants: (RSS, PSS or None where unreadable or not asked
    for, {pid: RSS high-water mark})."""
    rss, pss, hwm = 0, 0, {}
    for pid in _tree(root):
        try:
            r, h = _status_kib(pid)
            try:
                p = _pss_kib(pid) if with_pss else None
            except PermissionError:
                p = None
        except (FileNotFoundError, ProcessLookupError):
            continue  # it exited meanwhile
        rss, hwm[pid] = rss + r * 1024, h * 1024
        pss = None if pss is None or p is None else pss + p * 1024
    return rss, pss, hwm


@dataclass
class Run:
    seconds: float
    returncode: int
    peak_rss: int  # largest RSS sum over the tree seen
    peak_pss: int | None  # largest PSS sum seen (None: smaps_rollup was not readable)
    max_one: int  # largest single-process RSS high-water mark (VmHWM, as last sampled)
    killed: bool  # by --memory-limit
    stdout: str
    stderr: str

    @property
    def peak(self) -> int:
        return self.peak_rss if self.peak_pss is None else self.peak_pss


def run_measured(cmd: list[str], limit: int, log_dir: Path, interval: float = 0.1, with_pss: bool = True) -> Run:
    """Run `cmd` in its own session, sampling its process tree's memory until it exits. PSS costs a
    walk of each process's page tables, which slows a process using both cores by 5-8%; without
    it only RSS is read (counters: nearly free), enough for `limit`."""
    out, err = log_dir / "stdout.txt", log_dir / "stderr.txt"
    peaks = {"rss": 0, "pss": 0, "pss_ok": True, "killed": False}
    hwm: dict[int, int] = {}
    done = threading.Event()
    with open(out, "wb") as fo, open(err, "wb") as fe:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL, cwd=ROOT,
                                start_new_session=True)  # fmt: skip

        def sample() -> None:
            while not done.is_set():
                rss, pss, marks = tree_memory(proc.pid, with_pss)
                hwm.update(marks)
                peaks["rss"] = max(peaks["rss"], rss)
                if pss is None:
                    peaks["pss_ok"] = False
                else:
                    peaks["pss"] = max(peaks["pss"], pss)
                if limit and rss > limit and not peaks["killed"]:
                    peaks["killed"] = True
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)  # its session: the process and its workers
                done.wait(interval)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            proc.wait()
        except BaseException:  # Ctrl-C: its own session does not get the terminal's SIGINT
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            raise
        seconds = time.perf_counter() - start
        done.set()
        sampler.join()
    with contextlib.suppress(ProcessLookupError):  # workers left behind, if the root died
        os.killpg(proc.pid, signal.SIGKILL)
    return Run(seconds, proc.returncode, peaks["rss"], peaks["pss"] if peaks["pss_ok"] else None,
               max(hwm.values(), default=0), peaks["killed"],
               out.read_text(errors="replace"), err.read_text(errors="replace"))  # fmt: skip


def timed_and_measured(cmd: list[str], limit: int, log_dir: Path, before: Callable[[], None] = lambda: None) -> Run:
    """`cmd` run twice (`before()` ahead of each): timed with RSS sampling only, then again for the
    peak PSS; the Run has the first's time and output, both runs' largest RSS figures."""
    before()
    timed = run_measured(cmd, limit, _folder(log_dir / "timed"), with_pss=False)
    before()
    memory = run_measured(cmd, limit, _folder(log_dir / "memory"))
    return Run(timed.seconds, timed.returncode or memory.returncode, max(timed.peak_rss, memory.peak_rss),
               memory.peak_pss, max(timed.max_one, memory.max_one), timed.killed or memory.killed,
               timed.stdout, timed.stderr + memory.stderr)  # fmt: skip


# --- one video -------------------------------------------------------------------------------------


def classified(out_dir: Path, video: Path) -> tuple[bool, str, int | None]:
    """(classified, why not, frames) from classify's predictions.jsonl."""
    jsonl = out_dir / "predictions.jsonl"
    if not jsonl.is_file():
        return False, "no predictions.jsonl written", None
    for line in jsonl.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if rec.get("path", "").endswith(video.name):
            if rec.get("error") is not None:
                return False, rec["error"], rec.get("frames")
            return bool(rec.get("labels")), "" if rec.get("labels") else "no labels", rec.get("frames")
    return False, f"no row for {video.name} in predictions.jsonl", None


def bench_video(video: Path, minutes: float, checkpoint: Path, work: Path, limit: int,
                precisions: list[str], seed: int) -> dict:  # fmt: skip
    """Decode-only, classify at each precision, then model-only, of one video; failures are printed
    with the end of their stderr."""
    warm_page_cache(video)
    dec = timed_and_measured([sys.executable, "-m", "scripts.bench_long_video", "--decode-only", str(video)],
                             limit, _folder(work / f"{video.stem}_decode_logs"))  # fmt: skip
    decoded = json.loads(dec.stdout.strip().splitlines()[-1]) if dec.returncode == 0 else {}
    if dec.returncode != 0:
        print(f"  decode-only failed: exit {dec.returncode}{_killed(dec)}; last lines of its stderr:")
        print(_tail(dec.stderr))
    after = decoded.get("seconds", float("nan"))
    print(f"  decode-only {dec.seconds:.1f} s ({after:.1f} s after start-up)", flush=True)
    r = {"decode": dec, "decode_after": after, "classify": {}, "ok": {}, "why": {}, "frames": {},
         "decoder": decoded.get("decoder", "?")}  # fmt: skip
    for precision in precisions:
        out = work / f"{video.stem}_classify_{precision}"
        cmd = [sys.executable, "-m", "app", "classify", str(video), "--checkpoint", str(checkpoint),
               "--output", str(out), "--workers", "1", "--no-progress", "--precision", precision]  # fmt: skip
        cls = timed_and_measured(cmd, limit, _folder(work / f"{video.stem}_classify_{precision}_logs"),
                                 lambda out=out: shutil.rmtree(out, ignore_errors=True))  # fmt: skip
        ok, why, frames = classified(out, video)
        if cls.returncode != 0 or not ok:
            print(f"  classify {precision}: exit {cls.returncode}{_killed(cls)}; {why or 'classified'}; "
                  "last lines of its stderr:")
            print(_tail(cls.stderr))
        print(f"  classify {precision} {cls.seconds:.1f} s (exit {cls.returncode})", flush=True)
        r["classify"][precision], r["ok"][precision], r["why"][precision] = cls, ok, why
        r["frames"][precision] = frames
    # the frames the model sees: decode-only's count (else classify's, else the nominal count)
    n = decoded.get("frames") or next((f for f in r["frames"].values() if f), None)
    r["frames_out"], r["frames_estimated"] = (n, False) if n else (round(minutes * 60 * FPS), True)
    mod = run_measured([sys.executable, "-m", "scripts.bench_long_video", "--model-only", str(checkpoint),
                        "--frames", str(r["frames_out"]), "--seed", str(seed), "--precision", *precisions],
                       limit, _folder(work / f"{video.stem}_model_logs"))  # fmt: skip
    r["model"] = json.loads(mod.stdout.strip().splitlines()[-1]) if mod.returncode == 0 else {}
    if mod.returncode != 0:
        print(f"  model-only failed: exit {mod.returncode}{_killed(mod)}; last lines of its stderr:")
        print(_tail(mod.stderr))
    for precision, t in r["model"].items():
        print(f"  model-only {precision} {t['seconds']:.1f} s (TT map alone {t['map_seconds']:.1f} s)",
              flush=True)
    return r


def _folder(path: Path) -> Path:
    path.mkdir(exist_ok=True)
    return path


def _killed(run: Run) -> str:
    return " (killed at --memory-limit)" if run.killed else ""


def _tail(text: str, n: int = 15) -> str:
    return "\n".join("    | " + line for line in text.rstrip().splitlines()[-n:]) or "    | (empty)"


# --- main ------------------------------------------------------------------------------------------


def _gib(n: int | None) -> str:
    return "-" if n is None else f"{n / GIB:.2f}"


def _length(minutes: float) -> str:
    return f"{minutes / 60:g} h" if minutes >= 60 else f"{minutes:g} min"


def _verdicts(r: dict, precision: str) -> tuple[bool, bool, bool]:
    """(ratio, peak, classified) targets met at `precision`; a classify that classified nothing meets none."""
    dec, cls, ok = r["decode"], r["classify"][precision], r["ok"][precision]
    ratio = ok and dec.returncode == 0 and cls.seconds <= TARGET_RATIO * dec.seconds
    return ratio, ok and cls.peak <= TARGET_PEAK and not cls.killed, ok


def ring_frames() -> int:
    """Frames the decode worker can hold ahead of classify's main process (its shared-memory ring)."""
    from app.decoding import AHEAD_BYTES

    return max(2, AHEAD_BYTES // (CHUNK * SIZE[0] * SIZE[1] * 3)) * CHUNK


def _bound(r: dict, precision: str, startup: float) -> tuple[float, float]:
    """(seconds, ratio to decode-only; nan where unmeasured): classify on 2 cores can take no less
    than the longer of decoding, which stalls once the ring is full until the model starts
    (decode-only after its start-up + what of classify's start-up the ring does not cover), and
    the model (classify's start-up + model-only)."""
    t = r["model"].get(precision)
    if t is None or r["decode"].returncode != 0:
        return float("nan"), float("nan")
    covered = min(ring_frames(), r["frames_out"]) * r["decode_after"] / r["frames_out"]  # seconds of decoding
    seconds = max(r["decode_after"] + max(0.0, startup - covered), startup + t["seconds"])
    return seconds, seconds / r["decode"].seconds


def report(rows: list[tuple[float, Path, dict]], precisions: list[str], startup: float) -> None:
    runs = [r["decode"] for _, _, r in rows] + [c for _, _, r in rows for c in r["classify"].values()]
    measure = "PSS" if all(x.peak_pss is not None for x in runs) else "RSS where PSS was unreadable"
    print(f"\n{'length':>7} {'prec':>4} {'frames':>13} {'MB':>5} {'decode s':>8} {'classify s':>10} "
          f"{'ratio':>5} {'bound':>5} {'decode GiB':>10} {'classify GiB pss/rss/max1':>25}  "
          f"{'ratio<=1.3':>10} {'peak<=1GiB':>10} {'classified':>10}")  # fmt: skip
    for minutes, video, r in rows:
        dec = r["decode"]
        for precision in precisions:
            cls = r["classify"][precision]
            ratio = cls.seconds / dec.seconds if dec.returncode == 0 else float("nan")
            frames = f"{frame_count(minutes)}/{'~' if r['frames_estimated'] else ''}{r['frames_out']}"
            mem = f"{_gib(cls.peak_pss)}/{_gib(cls.peak_rss)}/{_gib(cls.max_one)}"
            verdicts = ["PASS" if v else "FAIL" for v in _verdicts(r, precision)]
            print(f"{_length(minutes):>7} {precision:>4} {frames:>13} {video.stat().st_size / 1e6:>5.0f} "
                  f"{dec.seconds:>8.1f} {cls.seconds:>10.1f} {ratio:>5.2f} "
                  f"{_bound(r, precision, startup)[1]:>5.2f} {_gib(dec.peak):>10} {mem:>25}  "
                  + " ".join(f"{v:>10}" for v in verdicts))  # fmt: skip
    print(f"frames: at 29.97 fps in the file / at 24 fps decoded. MB: file size. Times: wall-clock, start-up "
          f"included. ratio: classify / decode-only; bound: the least that ratio can be on 2 cores (below). "
          f"Memory: peak over the process tree, {measure} (PSS counts shared pages once, the RSS sum in "
          f"every process); max1: the largest single process's RSS high-water mark. decode-only used "
          f"{rows[0][2]['decoder'] if rows else '?'}.")  # fmt: skip

    print(f"\nmodel-only: 1 thread, {CHUNK}-frame uint8 chunks through model.stream() with window {WINDOW} "
          f"(2 state rows), TT map under autocast for bf16, recurrence float32; us per 24-fps frame")
    print(f"{'length':>7} {'prec':>4} {'model s':>7} {'us/fr':>6} {'map us/fr':>9} {'rec us/fr':>9} "
          f"{'rec share':>9} {'decode us/fr':>12} {'start-up s':>10} {'bound s':>7} {'bound ratio':>11} "
          f"{'set by':>6} {'steady':>6} {'bound<=1.3':>10}")  # fmt: skip
    for minutes, _, r in rows:
        n = r["frames_out"]
        for precision in precisions:
            t = r["model"].get(precision)
            if t is None:
                print(f"{_length(minutes):>7} {precision:>4}  (model-only failed)")
                continue
            us, map_us = t["seconds"] / n * 1e6, t["map_seconds"] / n * 1e6
            seconds, ratio = _bound(r, precision, startup)
            print(f"{_length(minutes):>7} {precision:>4} {t['seconds']:>7.1f} {us:>6.0f} {map_us:>9.0f} "
                  f"{us - map_us:>9.0f} {(us - map_us) / us:>9.0%} {r['decode_after'] / n * 1e6:>12.0f} "
                  f"{startup:>10.1f} {seconds:>7.1f} {ratio:>11.2f} "
                  f"{'model' if t['seconds'] > r['decode_after'] else 'decode':>6} "
                  f"{max(t['seconds'], r['decode_after']) / r['decode_after']:>6.2f} "
                  f"{'yes' if ratio <= TARGET_RATIO else 'no':>10}")  # fmt: skip
    print("model s: the whole stream (TT map + recurrence); map: feed alone; rec = model - map (its share of "
          "model). decode us/fr: decode-only after its start-up. bound s = max(decode-only after start-up + the "
          f"start-up not covered by decoding the ring's {ring_frames()} frames, start-up + model s); start-up: a "
          "process importing torch and loading the checkpoint; bound "
          f"ratio = bound s / decode-only s: above {TARGET_RATIO}, the ratio target is out of reach at that "
          "precision on this machine. set by: the longer of decode and model; steady: max(decode, model) / "
          "decode, both after start-up (above 1, the model's compute, not decoding, sets classify's pace; "
          "start-up weighs only on short videos).")
    for minutes, _, r in rows:
        for precision in precisions:
            if not r["ok"][precision]:
                print(f"{_length(minutes)} {precision}: not classified: {r['why'][precision]}")
    met = all(all(_verdicts(r, precision)) for _, _, r in rows for precision in precisions)
    print(f"overall: {'PASS' if met else 'FAIL'} (targets, at every precision: classify <= {TARGET_RATIO}x "
          "decode-only, peak tree memory <= 1 GiB, classified)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, nargs="+", default=[20, 120], help="lengths (default: 20 120)")
    p.add_argument("--out", help="folder for the videos, checkpoint and outputs (kept; videos reused)")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (its path is printed)")
    p.add_argument("--memory-limit", type=float, default=4.0,
                   help="GiB of tree RSS at which a run is killed (0: never; default 4)")  # fmt: skip
    p.add_argument("--precision", nargs="+", choices=PRECISIONS, default=list(PRECISIONS),
                   help="classify (and model-only) at each of these (default: fp32 bf16)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0,
                   help="seeds the pictures, the weights and the model-only frames")  # fmt: skip
    p.add_argument("--decode-only", metavar="VIDEO", help=argparse.SUPPRESS)  # the child processes
    p.add_argument("--model-only", metavar="CKPT", help=argparse.SUPPRESS)
    p.add_argument("--frames", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    precisions = list(dict.fromkeys(args.precision))
    if args.model_only:
        print(json.dumps(model_only(args.model_only, args.frames, precisions, args.seed)))
        return 0
    if args.decode_only:
        start = time.perf_counter()
        frames, how = decode_only(args.decode_only)
        print(json.dumps({"frames": frames, "decoder": how, "seconds": time.perf_counter() - start}))
        return 0

    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench_long_video_"))
    work.mkdir(parents=True, exist_ok=True)
    limit = int(args.memory_limit * GIB)
    print(f"folder {work}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
          f"memory limit {args.memory_limit:g} GiB", flush=True)
    try:
        checkpoint = make_checkpoint(work, args.seed)
        print(f"checkpoint {checkpoint}: the TT-GRU of {CONFIG.relative_to(ROOT)}, random weights")
        startup = startup_seconds(checkpoint)
        print(f"classify's start-up (import torch, load the checkpoint): {startup:.1f} s", flush=True)
        rows = []
        for minutes in args.minutes:
            video = work / f"synthetic_{minutes:g}min_320x240.mpg"
            if video_ok(video, minutes):
                print(f"{_length(minutes)}: reusing {video}", flush=True)
            else:
                print(f"{_length(minutes)}: encoding {frame_count(minutes)} frames ...", end=" ", flush=True)
                seconds = make_video(video, minutes, args.seed)
                print(f"{seconds:.1f} s ({frame_count(minutes) / seconds:.0f} frames/s), "
                      f"{video.stat().st_size / 1e6:.0f} MB", flush=True)
            rows.append((minutes, video, bench_video(video, minutes, checkpoint, work, limit, precisions,
                                                     args.seed)))  # fmt: skip
        report(rows, precisions, startup)
    finally:
        if args.out or args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
