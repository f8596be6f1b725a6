"""Stand-ins for the TT-RNN paper's datasets at their real size and on-disk layout, with content a
model can learn: for rehearsing the pipeline at paper scale where the datasets cannot be downloaded.

    python -m scripts.make_paper_scale --dataset ucf11 --scale 1.0 --out /data/ucf11_standin
    python -m scripts.make_paper_scale --dataset hollywood2 --scale 0.25 --out /tmp/h2
    python -m scripts.make_paper_scale --dataset ucf11 --scale 0.01 --length-scale 0.05 --out /tmp/u  # CI size

What each stand-in copies from its dataset (docs/DESIGN.md, "Dataset facts"; data/layouts.py):
- ucf11: 11 classes x 25 groups, 1,600 MPEG-1 .mpg clips, 320x240 at 29.97 fps, in
  `<class>/v_<prefix>_GG/v_<prefix>_GG_CC.mpg`; clip lengths 204-1,492 frames at 24 fps, mean ~484
  (204 + a gamma(2, 140) draw, cut at 1,492).
- hollywood2: 823 train + 884 test clips, `AVIClips/<clip>.avi` (MPEG-4 Part 2 in AVI) and
  `ClipSets/<Action>_{train,test}.txt`, 12 actions, multi-label (one action per clip, a second one
  for a fifth of them); sources 468x200 at 24 fps (the model sees 234x100 at 12 fps); 30-600 frames
  at 12 fps.
- celebrities: 1,910 .avi clips of 47 people in one flat folder, named `NNNN_VV_CCC_<name>.avi`;
  320x240 at 24 fps; 2-85 frames at 12 fps.
Sizes are what is documented for the datasets; lengths where the documentation gives none (Hollywood2,
Celebrities' distribution) are this script's assumptions.

Content: each class is a camera motion (`data.synthetic.render`: a window moving over real footage
from the bundled clips, the footage keeping its own motion), a direction of travel around the circle
(and, for Celebrities' 47 classes, a zoom in or out and a speed), and an object of the class's colour
(a disc a third of the frame high, fully saturated, hue k/n) moving the same way over the footage
from a random start. Motion alone was not learned from a few hundred clips (at scale 0.1 the TT-GRU
memorized the training clips and scored chance on the test fold); with the object it was (test
accuracy 0.67, chance 0.09: docs/BENCHMARKS.md), so a run at any scale shows that labels and pixels
travel together through the whole chain. Hollywood2 clips with two actions make the first motion
(and colour) in the first half and the second in the second half. Everything is a function of `--seed`; `--scale F`
keeps a share F of the clips (at least enough for 5-fold group cross-validation), `--length-scale`
shortens every clip (for tests). Resumable: a clip already written is skipped.
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from data.layouts import HOLLYWOOD2_ACTIONS
from data.synthetic import SAMPLES_DIR, TRAIN_SOURCES, DemoConfig, load_footage, make_scenes, render

UCF11_CLASSES = (
    "basketball", "biking", "diving", "golf_swing", "horse_riding", "soccer_juggling",
    "swing", "tennis_swing", "trampoline_jumping", "volleyball_spiking", "walking",
)  # fmt: skip
UCF11_PREFIX = {"basketball": "shooting", "golf_swing": "golf", "horse_riding": "riding",
                "soccer_juggling": "juggle", "tennis_swing": "tennis", "trampoline_jumping": "jumping",
                "volleyball_spiking": "spiking", "walking": "walk_dog"}  # fmt: skip
CELEBRITY_COUNT = 47


@dataclass(frozen=True)
class Motion:
    """A class's camera motion: travel direction (radians), speed (window widths per second), zoom
    (window width factor per second)."""

    angle: float
    travel: float = 0.6
    zoom: float = 1.0
    hue: float = 0.0  # the colour of the class's object (0-1 around the colour wheel)


@dataclass(frozen=True)
class Clip:
    """One file to write: where, which motions (one per part of the clip), how many source frames."""

    path: Path
    motions: tuple[Motion, ...]
    frames: int  # at the source's rate


def circle(n: int) -> list[Motion]:
    return [Motion(2 * math.pi * k / n, hue=k / n) for k in range(n)]


def celebrity_motions() -> list[Motion]:
    """47 classes: 8 directions x (no zoom, in, out) x 2 speeds, the first 47."""
    out = [Motion(2 * math.pi * d / 8, travel, zoom) for zoom in (1.0, 0.7, 1.4) for travel in (0.4, 0.9) for d in range(8)]
    return [Motion(m.angle, m.travel, m.zoom, hue=(k * 7 % CELEBRITY_COUNT) / CELEBRITY_COUNT)
            for k, m in enumerate(out[:CELEBRITY_COUNT])]  # fmt: skip


def lengths(rng: np.random.Generator, n: int, dataset: str, length_scale: float) -> np.ndarray:
    """Frames at the model's fps (24 for UCF11, 12 otherwise) of n clips."""
    if dataset == "ucf11":
        t = np.minimum(204 + rng.gamma(2.0, 140.0, n), 1492)
    elif dataset == "hollywood2":
        t = np.minimum(30 + rng.gamma(1.5, 120.0, n), 600)
    else:
        t = rng.integers(2, 86, n).astype(float)
    return np.maximum(2, np.round(t * length_scale)).astype(int)


def ucf11_clips(out: Path, scale: float, rng: np.random.Generator, length_scale: float) -> list[Clip]:
    groups = min(25, max(5, round(25 * scale)))  # 5 at least: group 5-fold cross-validation
    n = max(round(1600 * scale), len(UCF11_CLASSES) * groups)
    frames = lengths(rng, n, "ucf11", length_scale)
    motions, clips = circle(len(UCF11_CLASSES)), []
    for i in range(n):
        c, g = i % len(UCF11_CLASSES), (i // len(UCF11_CLASSES)) % groups + 1
        k = i // (len(UCF11_CLASSES) * groups) + 1
        name, prefix = UCF11_CLASSES[c], UCF11_PREFIX.get(UCF11_CLASSES[c], UCF11_CLASSES[c])
        path = out / name / f"v_{prefix}_{g:02d}" / f"v_{prefix}_{g:02d}_{k:02d}.mpg"
        clips.append(Clip(path, (motions[c],), math.ceil(frames[i] * 30000 / 1001 / 24)))
    return clips


def hollywood2_clips(out: Path, scale: float, rng: np.random.Generator, length_scale: float) -> list[Clip]:
    actions, motions = HOLLYWOOD2_ACTIONS, circle(len(HOLLYWOOD2_ACTIONS))
    counts = {split: max(len(actions), round(n * scale)) for split, n in (("train", 823), ("test", 884))}
    clips, sets = [], {(a, s): [] for a in actions for s in counts}
    for split, n in counts.items():
        frames = lengths(rng, n, "hollywood2", length_scale)
        for i in range(n):
            labels = [i % len(actions)]  # every action in every split
            if rng.random() < 0.2:
                labels.append(int(rng.choice([a for a in range(len(actions)) if a != labels[0]])))
            name = f"actionclip{split}{i + 1:05d}"
            for a, action in enumerate(actions):
                sets[action, split].append(f"{name} {1 if a in labels else -1}")
            clips.append(Clip(out / "AVIClips" / f"{name}.avi", tuple(motions[a] for a in labels), frames[i] * 2))
    (out / "ClipSets").mkdir(parents=True, exist_ok=True)
    for (action, split), lines in sets.items():
        (out / "ClipSets" / f"{action}_{split}.txt").write_text("\n".join(lines) + "\n")
    return clips


def celebrity_clips(out: Path, scale: float, rng: np.random.Generator, length_scale: float) -> list[Clip]:
    motions = celebrity_motions()
    n = max(round(1910 * scale), CELEBRITY_COUNT * 5)
    frames = lengths(rng, n, "celebrities", length_scale)
    clips = []
    for i in range(n):
        c = i % CELEBRITY_COUNT
        name = f"{c + 1:04d}_{i // CELEBRITY_COUNT % 100:02d}_{i:03d}_person_{chr(97 + c % 26)}{chr(97 + c // 26)}.avi"
        clips.append(Clip(out / name, (motions[c],), frames[i] * 2))
    return clips


FORMATS = {  # dataset: (source size, source rate, codec, clip lister)
    "ucf11": ((320, 240), Fraction(30000, 1001), "mpeg1video", ucf11_clips),
    "hollywood2": ((468, 200), Fraction(24), "mpeg4", hollywood2_clips),
    "celebrities": ((320, 240), Fraction(24), "mpeg4", celebrity_clips),
}


def window_path(motions: tuple[Motion, ...], frames: int, rate: float, canvas: tuple[int, int], aspect: float,
                rng: np.random.Generator) -> np.ndarray:
    """Window (center x, center y, width) per frame, (frames, 3): the motions one after the other,
    each over an equal part of the clip, at a steady speed. The window may leave the footage: the
    renderer reflects it at its edges (as far as needed), and what moves past the camera then
    still drifts the way the camera's motion says."""
    cw, ch = canvas
    largest = min(cw, ch / aspect)
    x, y, w = rng.uniform(0, cw), rng.uniform(0, ch), rng.uniform(0.45, 0.6) * largest
    rows = []
    for motion, part in zip(motions, np.array_split(np.arange(frames), len(motions))):
        for _ in part:
            rows.append((x, y, w))
            x += math.cos(motion.angle) * motion.travel * w / rate
            y += math.sin(motion.angle) * motion.travel * w / rate
            w = float(np.clip(w * motion.zoom ** (1 / rate), 0.25 * largest, largest))
    return np.array(rows)


def object_track(motions: tuple[Motion, ...], frames: int, rate: float, size: tuple[int, int],
                 rng: np.random.Generator) -> np.ndarray:
    """The class's object per frame, (frames, 4): center x, y, radius (pixels) and hue. It starts
    anywhere (its position says nothing about the class), travels in the class's direction at half
    the camera's speed, wrapping around the frame, and grows or shrinks with the class's zoom."""
    W, H = size
    x, y, r = rng.uniform(0, W), rng.uniform(0, H), 0.3 * H
    rows = []
    for motion, part in zip(motions, np.array_split(np.arange(frames), len(motions))):
        for _ in part:
            rows.append((x, y, r, motion.hue))
            x = (x + math.cos(motion.angle) * motion.travel * 0.5 * W / rate) % W
            y = (y + math.sin(motion.angle) * motion.travel * 0.5 * W / rate) % H
            r = float(np.clip(r / motion.zoom ** (1 / rate), 0.15 * H, 0.45 * H))
    return np.array(rows)


def draw_objects(frames: np.ndarray, track: np.ndarray) -> None:
    """Paint each frame's object, a disc of its hue at full saturation, in place (within its box)."""
    import colorsys

    T, H, W, _ = frames.shape
    for t, (cx, cy, r, hue) in enumerate(track):
        x0, x1 = max(0, int(cx - r)), min(W, int(cx + r) + 1)
        y0, y1 = max(0, int(cy - r)), min(H, int(cy + r) + 1)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        inside = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
        frames[t, y0:y1, x0:x1][inside] = np.array(colorsys.hsv_to_rgb(hue, 1.0, 1.0)) * 255


def write_clip(clip: Clip, footage: dict, size: tuple[int, int], rate: Fraction, codec: str, seed: int) -> None:
    from data.synthetic import write_video

    rng = np.random.default_rng(seed)
    cfg = DemoConfig(size=size, frames=clip.frames, window=(0.9, 1.0), transpose=0.0, flip=0.5)
    (scene,) = make_scenes({k: footage[k] for k in [sorted(footage)[seed % len(footage)]]}, 1, cfg, rng)
    src = footage[scene.source]
    canvas = (src.shape[2], src.shape[1])
    path = window_path(clip.motions, clip.frames, float(rate), canvas, size[1] / size[0], rng)
    frames = render(src, path, scene, size, footage_step=0.5)
    draw_objects(frames, object_track(clip.motions, clip.frames, float(rate), size, rng))
    clip.path.parent.mkdir(parents=True, exist_ok=True)
    write_video(clip.path, frames, fps=float(rate), codec=codec, quality=4)


def make(dataset: str, out: Path, *, scale: float, length_scale: float = 1.0, seed: int = 0, workers: int = 1) -> list[Clip]:
    """Write the stand-in (skipping clips already there); returns its clips."""
    size, rate, codec, lister = FORMATS[dataset]
    rng = np.random.default_rng(seed)
    clips = lister(out, scale, rng, length_scale)
    todo = [(i, c) for i, c in enumerate(clips) if not c.path.exists()]
    global _FOOTAGE
    _FOOTAGE = {Path(n).stem: load_footage(SAMPLES_DIR / n, width=2 * size[0], fps=12.0) for n in TRAIN_SOURCES}
    from tqdm import tqdm

    jobs = [(c, size, rate, codec, seed * 1_000_003 + i) for i, c in todo]
    if workers <= 1:
        for job in tqdm(jobs, desc=dataset, unit="clip"):
            _write(job)
    else:  # forked workers inherit the footage; a job carries only its clip
        from concurrent.futures import ProcessPoolExecutor

        import cv2

        from preprocessing.workers import worker_context

        cv2.setNumThreads(1)  # inherited: each worker renders on one core, not all of them each
        with ProcessPoolExecutor(workers, mp_context=worker_context()) as pool:
            list(tqdm(pool.map(_write, jobs, chunksize=4), total=len(jobs), desc=dataset, unit="clip"))
    return clips


_FOOTAGE: dict[str, np.ndarray] = {}  # the decoded bundled clips, set by `make`


def _write(job: tuple) -> None:
    clip, size, rate, codec, seed = job
    write_clip(clip, _FOOTAGE, size, rate, codec, seed)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.make_paper_scale", description=__doc__.split("\n")[0])
    p.add_argument("--dataset", choices=sorted(FORMATS), required=True)
    p.add_argument("--scale", type=float, default=1.0, help="share of the dataset's clips (1.0: full size)")
    p.add_argument("--length-scale", type=float, default=1.0, help="multiplies every clip's length (tests)")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = p.parse_args(argv)
    clips = make(args.dataset, Path(args.out), scale=args.scale, length_scale=args.length_scale, seed=args.seed,
                 workers=args.workers)
    total = sum(c.path.stat().st_size for c in clips)
    print(f"{args.dataset}: {len(clips)} clips, {total / 2**30:.2f} GiB in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
