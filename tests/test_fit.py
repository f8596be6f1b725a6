"""`fit`: a folder of class subfolders to a trained checkpoint, every choice printed and saved."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli

from app.config import load_config
from app.fit import choose_size, plan_fit
from data.synthetic import write_video


def _frames(k: int, T: int = 6, size=(32, 24)) -> np.ndarray:
    """Class k: brightness and a bar moving at a class-specific speed (learnable in a few steps)."""
    W, H = size
    x = np.full((T, H, W, 3), 30 + 90 * k, np.uint8)
    for t in range(T):
        x[t, :, (t * (k + 1) * 4) % W] = 255
    return x


def _folder(root: Path, per_class: dict[str, int], *, splits: bool = False, size=(32, 24)) -> Path:
    for k, (name, n) in enumerate(sorted(per_class.items())):
        for i in range(n):
            sub = (("train" if i < n - 1 else "test") + "/") if splits else ""
            path = root / f"{sub}{name}" / f"clip_{i:02d}.mp4"
            path.parent.mkdir(parents=True, exist_ok=True)
            write_video(path, _frames(k, size=size), fps=24.0)
    return root


@pytest.mark.slow
def test_fit_trains_saves_its_choices_and_resumes(tmp_path, capsys):
    root = _folder(tmp_path / "videos", {"bright": 4, "dark": 4, "mid": 4}, splits=True)
    out = tmp_path / "runs" / "mine"
    r = run_cli(capsys, ["fit", root, "--out", out, "--epochs", "3", "--no-progress"])
    assert r.returncode == 0, r.stderr
    cfg = load_config(out / "fit.toml")
    assert cfg.data.size == (32, 24) and cfg.train.epochs == 3 and cfg.train.name == "mine"
    assert tuple(cfg.model.params["in_modes"]) == (4, 6, 8, 12)  # rows 24 = 4 x 6, columns x RGB 96 = 8 x 12
    assert (out / "checkpoints" / "best.json").is_file() and (out / "report.html").is_file()
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "Per class" in html and "data:image/png;base64" in html
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert metrics["num_clips"] == 3 and 0.0 <= metrics["accuracy"] <= 1.0
    # the same command again: nothing decoded, training resumes at its end, same result
    r = run_cli(capsys, ["fit", root, "--out", out, "--epochs", "3", "--no-progress"])
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "test_metrics.json").read_text()) == metrics
    # other choices in the same run folder are refused, not mixed
    r = run_cli(capsys, ["fit", root, "--out", out, "--epochs", "4", "--no-progress"])
    assert r.returncode == 2 and "holds another fit" in r.stderr
    # the same fit named by a relative path is the same plan (paths are absolute in fit.toml)
    cwd = Path.cwd()
    try:
        os.chdir(tmp_path)
        r = run_cli(capsys, ["fit", "videos", "--out", "runs/mine", "--epochs", "3", "--no-progress"])
    finally:
        os.chdir(cwd)
    assert r.returncode == 0, r.stderr
    # `train --config fit.toml` repeats the run exactly (here under another name)
    r = run_cli(capsys, ["train", "--config", out / "fit.toml", "--train.name=again", "--no-progress"])
    assert r.returncode == 0, r.stderr
    again = out.parent / "again"
    assert json.loads((again / "test_metrics.json").read_text()) == metrics
    assert ((again / "checkpoints" / "best.safetensors").read_bytes()
            == (out / "checkpoints" / "best.safetensors").read_bytes())
    # classify accepts the run folder
    r = run_cli(capsys, ["classify", root / "test", "--checkpoint", out, "--output", tmp_path / "pred",
                         "--no-progress", "--workers", "0"])
    assert r.returncode == 0, r.stderr
    assert len((tmp_path / "pred" / "predictions.jsonl").read_text().splitlines()) == 3
    # a video added since: resuming would test on a split the model was not planned on; refused
    write_video(root / "test" / "dark" / "new.mp4", _frames(1), fps=24.0)
    r = run_cli(capsys, ["fit", root, "--out", out, "--epochs", "3", "--no-progress"])
    assert r.returncode == 2 and "the videos changed" in r.stderr and "1 added" in r.stderr
    # a run folder that fit did not start is not resumed
    r = run_cli(capsys, ["fit", root, "--out", tmp_path / "runs" / "again", "--epochs", "3", "--no-progress"])
    assert r.returncode == 2 and "a run that fit did not start" in r.stderr


def test_fit_without_splits_holds_out_a_fold_by_source_group(tmp_path):
    root = tmp_path / "videos"
    for name in ("a", "b"):
        for g in range(3):
            for c in range(2):
                path = root / name / f"v_{name}_{g:02d}_{c:02d}.mp4"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"")  # planning reads names only; sizes are probed, these fail to probe
    plan = plan_fit(root, out=tmp_path / "run")
    assert plan.config.data.split == "group" and plan.config.data.fold == 0
    groups = {c.group for c in plan.clips}
    assert groups == {f"{n}/v_{n}_{g:02d}" for n in "ab" for g in range(3)}
    assert plan.config.data.size == (160, 120)  # nothing could be probed: the paper's size
    # long clips are loaded in micro-batches of at most 512 MB of pixels (9,102 frames at 160x120)
    assert plan.config.data.batch_frames == (512 << 20) // (160 * 120 * 3)


@pytest.mark.parametrize("layout, message", [
    ({"only": 3}, "at least two classes"),
    ({"a": 3, "b": 1}, "class b has 1 video"),
])
def test_folders_fit_cannot_use_get_one_line(tmp_path, capsys, layout, message):
    root = _folder(tmp_path / "videos", layout)
    r = run_cli(capsys, ["fit", root, "--out", tmp_path / "run", "--no-progress"])
    assert r.returncode == 2 and message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_empty_class_folders_and_non_videos_are_noted(tmp_path, capsys):
    root = _folder(tmp_path / "videos", {"a": 2, "b": 2})
    (root / "empty").mkdir()
    (root / "a" / "notes.txt").write_text("not a video")
    (root / "b" / "broken.mp4").write_text("not a video either")
    plan = plan_fit(root, out=tmp_path / "run")
    assert plan.classes == ("a", "b")
    assert any("empty holds no videos" in n for n in plan.notes)
    assert any("1 file(s) without a video extension" in n for n in plan.notes)


def test_an_empty_folder_is_one_line(tmp_path, capsys):
    (tmp_path / "videos").mkdir()
    r = run_cli(capsys, ["fit", tmp_path / "videos", "--out", tmp_path / "run"])
    assert r.returncode == 2 and "no videos in class folders" in r.stderr


def test_size_is_the_papers_scaled_down_never_up(tmp_path):
    small = tmp_path / "small.mp4"
    write_video(small, _frames(0, size=(64, 48)), fps=24.0)
    big = tmp_path / "big.mp4"
    write_video(big, _frames(0, size=(320, 240)), fps=24.0)
    assert choose_size([big])[0] == (160, 120)
    assert choose_size([big, small])[0] == (64, 48)
    odd = tmp_path / "odd.mp4"
    write_video(odd, _frames(0, size=(50, 30)), fps=24.0)
    assert choose_size([odd])[0] == (40, 30)  # 4:3 inside 50x30, even sides


def test_epochs_follow_the_step_budget(tmp_path):
    root = _folder(tmp_path / "videos", {"a": 3, "b": 3}, splits=True)
    plan = plan_fit(root, out=tmp_path / "run")
    assert plan.config.train.epochs == 60  # 4 training clips: 1 step an epoch, capped at 60
    assert plan.config.model.params["dropout"] == 0.25  # a small set: the paper's dropout


def test_pixel_modes_split_rows_and_columns_evenly():
    from app.fit import pixel_modes

    assert pixel_modes(32, 24) == (4, 6, 8, 12)
    assert pixel_modes(160, 120) == (10, 12, 20, 24)
    assert pixel_modes(234, 100) == (10, 10, 26, 27)
    for w, h in [(32, 24), (160, 120), (234, 100), (50, 30), (34, 26), (2, 2)]:
        modes = pixel_modes(w, h)
        assert modes[0] * modes[1] == h and modes[2] * modes[3] == w * 3
        assert (1 in modes) == ((w, h) == (2, 2))  # a 1 only where a side is prime (h = 2)


def test_train_without_test_and_a_path_toml_cannot_hold_are_one_line(tmp_path, capsys):
    root = _folder(tmp_path / "videos", {"a": 2, "b": 2}, splits=True)
    for clip in (root / "test").rglob("*.mp4"):
        clip.unlink()
    r = run_cli(capsys, ["fit", root, "--out", tmp_path / "run"])
    assert r.returncode == 2 and "no test/ videos" in r.stderr
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/vid\xe9os"))
    _folder(odd, {"a": 2, "b": 2})
    r = run_cli(capsys, ["fit", odd, "--out", tmp_path / "run2"])
    assert r.returncode == 2 and "not valid UTF-8" in r.stderr and "vid\\xe9os" in r.stderr


def test_nested_class_folders_are_not_noted_as_empty(tmp_path):
    root = _folder(tmp_path / "videos" / "animals", {"cat": 2, "dog": 2}).parent
    (root / "empty\tone").mkdir()
    plan = plan_fit(root, out=tmp_path / "run")
    assert plan.classes == ("cat", "dog")
    assert plan.notes == (f"{tmp_path}/videos/empty\\tone holds no videos: not a class",)


@pytest.mark.slow
def test_ctrl_c_then_the_same_command_finishes_the_same_model(tmp_path, capsys):
    """Oracle: an uninterrupted fit of the same folder. Ctrl-C lands inside the 2nd optimizer step
    (KeyboardInterrupt from an optimizer hook); the same command then resumes from the saved state."""
    from torch.optim.optimizer import register_optimizer_step_post_hook

    root = _folder(tmp_path / "videos", {"bright": 3, "dark": 3}, splits=True)
    argv = ["--epochs", "6", "--no-progress"]
    assert run_cli(capsys, ["fit", root, "--out", tmp_path / "whole", *argv]).returncode == 0
    steps = 0

    def ctrl_c(optimizer, args, kwargs):
        nonlocal steps
        steps += 1
        if steps == 2:
            raise KeyboardInterrupt

    handle = register_optimizer_step_post_hook(ctrl_c)
    try:
        r = run_cli(capsys, ["fit", root, "--out", tmp_path / "cut", *argv])
    finally:
        handle.remove()
    assert r.returncode == 130 and not (tmp_path / "cut" / "test_metrics.json").exists()
    r = run_cli(capsys, ["fit", root, "--out", tmp_path / "cut", *argv])
    assert r.returncode == 0, r.stderr
    best = "checkpoints/best.safetensors"
    assert (tmp_path / "cut" / best).read_bytes() == (tmp_path / "whole" / best).read_bytes()
