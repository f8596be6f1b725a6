"""Generate the camera-motion demo dataset from the bundled real clips (data/samples/).

    python -m app make-demo --out data/demo
    python -m app preprocess --dataset folder --root data/demo --cache cache/demo --fps 24 --size 32x24
    python -m app train --config app/configs/demo_tt_gru.toml

Seven classes (static, pan_left, pan_right, tilt_up, tilt_down, zoom_in, zoom_out), written as
`DIR/train/<class>/*.mp4` and `DIR/test/<class>/*.mp4`; train and test clips come from different
source videos. Deterministic given --seed.
"""

from __future__ import annotations

import argparse
import time

from app.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from data.synthetic import DemoConfig

    d = DemoConfig()
    parser.add_argument("--out", required=True, help="output folder (train/ and test/ are created in it)")
    parser.add_argument("--size", default=f"{d.size[0]}x{d.size[1]}", help=f"frame WIDTHxHEIGHT (default {d.size[0]}x{d.size[1]})")
    parser.add_argument("--frames", type=int, default=d.frames, help=f"frames per clip (default {d.frames})")
    parser.add_argument("--fps", type=float, default=d.fps, help=f"frame rate (default {d.fps:g})")
    parser.add_argument("--train-scenes", type=int, default=d.train_scenes,
                        help=f"training scenes, one clip per class each (default {d.train_scenes})")
    parser.add_argument("--test-scenes", type=int, default=d.test_scenes,
                        help=f"test scenes, one clip per class each (default {d.test_scenes})")
    parser.add_argument("--seed", type=int, default=d.seed, help=f"random seed (default {d.seed})")


def run(args: argparse.Namespace) -> int:
    from app.commands.preprocess import parse_size
    from data.synthetic import DemoConfig, make_demo

    size = parse_size(args.size)
    if size[0] % 2 or size[1] % 2:
        raise UsageError(f"--size must have an even width and height (yuv420p video), got {args.size}")
    if args.frames < 2 or args.train_scenes < 1 or args.test_scenes < 1 or args.fps <= 0:
        raise UsageError("--frames >= 2, --train-scenes >= 1, --test-scenes >= 1 and --fps > 0 please")
    config = DemoConfig(size=size, frames=args.frames, fps=args.fps, train_scenes=args.train_scenes,
                        test_scenes=args.test_scenes, seed=args.seed)
    t0 = time.perf_counter()
    info = make_demo(args.out, config=config)
    print(f"wrote {info['clips']['train']} train + {info['clips']['test']} test clips "
          f"({size[0]}x{size[1]}, {args.frames} frames at {args.fps:g} fps) to {args.out} "
          f"in {time.perf_counter() - t0:.1f} s")
    print(f"next: python -m app preprocess --dataset folder --root {args.out} --cache cache/demo "
          f"--fps {args.fps:g} --size {size[0]}x{size[1]}")
    return 0
