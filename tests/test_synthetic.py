"""The camera-motion demo set: motion direction (phase correlation), windows inside the frame, the
folder layout, real decodable videos, determinism."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from data.layouts import list_clips
from data.synthetic import CLASSES, DemoConfig, Scene, camera_path, in_modes_for, make_demo, render
from preprocessing.decode import video_to_array


def _texture(h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.uniform(0, 255, (h, w, 3)).astype(np.float32), (0, 0), 2.0)
    img = (img - img.min()) / (img.max() - img.min()) * 255
    return img.astype(np.uint8)[None]  # (1, h, w, 3): one still footage frame


def _scene(**kw) -> Scene:
    base = dict(source="t", start=0, transpose=False, mirror=False, flip=False, reverse=False, channels=(0, 1, 2), gain=1.0,
                width=60.0, center=(64.0, 48.0))
    return Scene(**{**base, **kw})


def _mean_shift(clip: np.ndarray) -> tuple[float, float]:
    """Mean (dx, dy) of the content between consecutive frames (phase correlation)."""
    g = clip.mean(axis=3).astype(np.float64)
    shifts = [cv2.phaseCorrelate(g[t], g[t + 1])[0] for t in range(len(g) - 1)]
    return float(np.mean([s[0] for s in shifts])), float(np.mean([s[1] for s in shifts]))


@pytest.mark.parametrize(
    "label, direction",
    [("pan_left", (1, 0)), ("pan_right", (-1, 0)), ("tilt_up", (0, 1)), ("tilt_down", (0, -1)), ("static", (0, 0))],
)
def test_pans_and_tilts_move_the_content_the_right_way(label, direction):
    cfg = DemoConfig(size=(64, 48), frames=12, shift=(0.4, 0.4))
    footage = _texture()
    path = camera_path(label, _scene(), (128, 96), cfg, np.random.default_rng(0))
    dx, dy = _mean_shift(render(footage, path, _scene(), cfg.size))
    # a camera turning left shows the scene drifting right in the frame, and so on; the travel is
    # 0.4 of the frame's width (pans) or height (tilts); phase correlation reads a bit low (blur, borders)
    for got, sign, extent in ((dx, direction[0], 64), (dy, direction[1], 48)):
        expected = sign * 0.4 * extent / (12 - 1)  # output pixels per frame
        if sign == 0:
            assert abs(got) < 0.1
        else:
            assert 0.6 * abs(expected) < abs(got) < 1.2 * abs(expected) and np.sign(got) == sign


def test_zooms_change_the_window_size_and_windows_stay_inside():
    cfg = DemoConfig()
    rng = np.random.default_rng(0)
    for _ in range(200):
        canvas = (int(rng.integers(64, 200)), int(rng.integers(40, 150)))
        w = rng.uniform(0.2, 1.0) * min(canvas[0], canvas[1] * 4 / 3)
        scene = _scene(width=w, center=(rng.uniform(0, canvas[0]), rng.uniform(0, canvas[1])))
        for label in CLASSES:
            path = camera_path(label, scene, canvas, cfg, rng)  # (T, 3): cx, cy, width
            half_w, half_h = path[:, 2] / 2, path[:, 2] * 3 / 8
            assert (path[:, 0] - half_w >= -1e-6).all() and (path[:, 0] + half_w <= canvas[0] + 1e-6).all()
            assert (path[:, 1] - half_h >= -1e-6).all() and (path[:, 1] + half_h <= canvas[1] + 1e-6).all()
            ratio = path[-1, 2] / path[0, 2]
            if label == "zoom_in":
                assert 1 / cfg.zoom[1] - 1e-9 <= ratio <= 1 / cfg.zoom[0] + 1e-9
            elif label == "zoom_out":
                assert cfg.zoom[0] - 1e-9 <= ratio <= cfg.zoom[1] + 1e-9
            else:
                assert ratio == pytest.approx(1.0)


def test_make_demo_writes_real_videos_in_the_folder_layout(tmp_path):
    cfg = DemoConfig(frames=6, train_scenes=2, test_scenes=1)
    info = make_demo(tmp_path / "a", config=cfg)
    assert info["clips"] == {"train": 14, "test": 7}
    clips = list_clips("folder", tmp_path / "a")
    assert len(clips) == 21
    assert {c.labels[0] for c in clips} == set(CLASSES)
    assert {c.split for c in clips} == {"train", "test"}
    train_sources = {c.path.stem.rsplit("_", 1)[0] for c in clips if c.split == "train"}
    test_sources = {c.path.stem.rsplit("_", 1)[0] for c in clips if c.split == "test"}
    assert not train_sources & test_sources, "train and test must come from different videos"
    frames = video_to_array(clips[0].path, fps=cfg.fps, size=cfg.size)
    assert frames.shape == (6, 24, 32, 3) and frames.std() > 5

    # deterministic given the seed: the same bytes again, other bytes for another seed
    make_demo(tmp_path / "b", config=cfg)
    rel = clips[0].path.relative_to(tmp_path / "a")
    assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    make_demo(tmp_path / "c", config=DemoConfig(frames=6, train_scenes=2, test_scenes=1, seed=1))
    assert (tmp_path / "a" / rel).read_bytes() != (tmp_path / "c" / rel).read_bytes()


def test_in_modes_follow_the_frame_size():
    assert in_modes_for((32, 24)) == (4, 6, 8, 12)
    for size in ((32, 24), (64, 48), (32, 32), (48, 36)):
        assert np.prod(in_modes_for(size)) == size[0] * size[1] * 3
