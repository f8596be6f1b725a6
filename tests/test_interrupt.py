"""Interruptions: `preprocess`, `train` and `classify` killed with SIGKILL at 10 seeded random moments
each never leave a partial file where a reader would trust it, never leave worker processes behind,
and a re-run finishes with results identical to an uninterrupted run. A read-only or full output
folder gives a one-line error and no partial file.

The commands run in a warm fork server (tests/robustness/forkserver.py): a kill lands in the real work
(decoding, training steps, writing files), not in the seconds a fresh interpreter spends importing
torch. Kill moments are drawn from [0, 1.1 x the measured uninterrupted run]: some land after the end.
The final re-runs use the real CLI in a fresh process. Full-disk and read-only cases mount a small
tmpfs (root only); they skip cleanly where mounting is not allowed.
"""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from robustness.forkserver import ForkServer, RunResult
from robustness.run import make_checkpoint

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "data" / "samples"
KILLS = 10  # kill points per command
ENV = {"PYTHONPATH": str(REPO)}


@pytest.fixture(scope="module")
def server():
    with ForkServer() as s:
        yield s


def kill_points(seed: int, span: float, *, low: float = 0.0, high: float = 1.1) -> list[float]:
    rng = random.Random(seed)
    return [span * rng.uniform(low, high) for _ in range(KILLS)]


def cli(*argv) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app", *map(str, argv)], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env={**os.environ, **ENV})


def visible_files(folder: Path) -> set[str]:
    """Relative paths of the files a reader would look at (temporary files are hidden: '.name.tmp')."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")}


def assert_clean_kill(r: RunResult, what: str) -> None:
    assert r.returncode in (-9, 0, 3), f"{what}: exit {r.returncode}: {r.stderr[-1500:]}"
    assert "Traceback" not in r.stderr, f"{what}: {r.stderr[-1500:]}"
    assert not r.orphans, f"{what}: worker processes {r.orphans} outlived the killed command"


# --- preprocess ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """A `folder` dataset: 3 links to each real sample clip and one file that is not a video."""
    root = tmp_path_factory.mktemp("dataset")
    names = sorted(p.name for p in SAMPLES.iterdir() if p.suffix in (".mpg", ".avi", ".mp4") and "corrupt" not in p.name)
    for copy in range(3):
        for name in names:
            link = root / "train" / f"class{copy % 2}" / f"{copy}_{name}"
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(SAMPLES / name)
    (root / "test" / "junk").mkdir(parents=True)
    shutil.copy(SAMPLES / "corrupt_not_a_video.mp4", root / "test" / "junk" / "junk.mp4")
    return root


def preprocess_argv(root: Path, cache: Path, workers: int = 1) -> list:
    return ["preprocess", "--dataset", "folder", "--root", root, "--cache", cache, "--size", "32x24", "--fps", "12",
            "--workers", workers, "--no-progress"]


def check_cache(cache: Path, ref: Path) -> None:
    """Whatever a killed run left: every record's array whole and equal to the reference's; the
    manifest and failures file absent or complete; every visible array file whole."""
    from preprocessing.cache import read_cache, verify_cache

    if not (cache / "cache.json").exists():
        assert not list(cache.rglob("[!.]*.json")), "records without cache.json"
        return
    ref_entries = read_cache(ref).by_id()
    index = read_cache(cache)  # reads every record and checks each array's header and size
    for entry in index.entries:
        assert entry == ref_entries[entry.clip_id], f"record of {entry.clip_id} differs from the reference"
    assert verify_cache(cache) == []  # every recorded array hashes to its record
    for name in ("manifest.json", "failures.jsonl"):
        if (cache / name).exists():
            assert (cache / name).read_bytes() == (ref / name).read_bytes(), f"{name} is partial or differs"
    for rel in visible_files(cache):
        assert (ref / rel).exists(), f"unexpected file {rel}"
        if rel.endswith(".npy"):  # written before its record: whole even without one
            assert (cache / rel).read_bytes() == (ref / rel).read_bytes(), f"{rel} is partial"


def test_preprocess_killed_anywhere_resumes_to_the_same_cache(server, dataset, tmp_path):
    ref = tmp_path / "ref"
    r = server.run(preprocess_argv(dataset, ref), cwd=tmp_path)
    assert r.returncode == 3, r.stderr  # the junk file fails; 15 clips are cached
    killed = []
    rng = random.Random(7)
    for i, delay in enumerate(kill_points(101, r.seconds)):
        cache = tmp_path / f"kill{i}"
        run = server.run(preprocess_argv(dataset, cache, workers=rng.choice([1, 2])), cwd=tmp_path, kill_after=delay)
        assert_clean_kill(run, f"preprocess killed at {delay:.2f} s")
        check_cache(cache, ref)
        killed.append((cache, run.returncode == -9))
    assert sum(k for _, k in killed) >= 3, "kill points should land before the end"
    print(f"preprocess: {KILLS} kill points, {sum(k for _, k in killed)} killed mid-run; run {r.seconds:.2f} s")
    # every interrupted cache is completed by a re-run (the real CLI for the first, the server after)
    for i, (cache, _) in enumerate(killed):
        rerun = cli(*preprocess_argv(dataset, cache)) if i == 0 else server.run(preprocess_argv(dataset, cache), cwd=tmp_path)
        assert rerun.returncode == 3, rerun.stderr
        check_cache(cache, ref)
        assert visible_files(cache) == visible_files(ref)


# --- train ---------------------------------------------------------------------------------------------


def _metric_rows(path: Path) -> list[dict]:
    from app.train import TIMING_COLUMNS  # (here: the kill tests' own process needs no torch otherwise)

    with open(path, newline="", encoding="utf-8") as f:
        return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in csv.DictReader(f)]


def check_run(run_dir: Path, ref: Path) -> None:
    """Whatever a killed run left is whole and agrees with the uninterrupted run so far."""
    from app.checkpoint import load_checkpoint
    from app.train import load_resume

    if (run_dir / "resume.pt").exists():
        load_resume(run_dir / "resume.pt")
    for sidecar in (run_dir / "checkpoints").glob("[!.]*.json"):
        load_checkpoint(sidecar)  # the sidecar and its weights are both whole
    if (run_dir / "metrics.csv").exists():
        rows, ref_rows = _metric_rows(run_dir / "metrics.csv"), _metric_rows(ref / "metrics.csv")
        assert rows == ref_rows[: len(rows)], "metrics.csv differs from the uninterrupted run"
    if (run_dir / "test_metrics.json").exists():
        assert json.loads((run_dir / "test_metrics.json").read_text()) == json.loads((ref / "test_metrics.json").read_text())
    for name in ("config.toml",):
        if (run_dir / name).exists():
            assert (run_dir / name).read_text().replace('"killed"', '"ref"') == (ref / name).read_text()
    assert visible_files(run_dir) <= visible_files(ref), visible_files(run_dir) - visible_files(ref)


def test_train_killed_anywhere_resumes_to_the_same_weights(server, tmp_path):
    import safetensors.torch
    from train_fixtures import write_config, write_fake_cache

    cache = write_fake_cache(tmp_path / "cache", per_class=10, splits={"train": 0.8, "test": 0.2})
    config = write_config(
        tmp_path / "exp.toml", cache=cache, data={"batch_size": 2, "workers": 0, "max_frames": 5},
        train={"epochs": 3, "deterministic": True, "save_every_steps": 1, "threads": 1},
    )
    base = ["train", "--config", config, "--no-progress"]
    r = server.run([*base, "--train.name=ref"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    ref, run_dir = tmp_path / "runs" / "ref", tmp_path / "runs" / "killed"
    # Each kill interrupts a `--resume` of the previous one: short delays walk the kill points through
    # the whole run (startup, steps, epoch ends, test scoring) and past its end.
    outcomes = []
    for delay in kill_points(202, r.seconds, low=0.05, high=0.3):
        run = server.run([*base, "--train.name=killed", "--resume"], cwd=tmp_path, kill_after=delay)
        assert_clean_kill(run, f"train killed at {delay:.2f} s")
        check_run(run_dir, ref)
        outcomes.append(run.returncode)
    assert outcomes.count(-9) >= 3, outcomes
    print(f"train: {KILLS} kill points, {outcomes.count(-9)} killed mid-run; run {r.seconds:.2f} s")
    final = cli(*base, "--train.name=killed", "--resume")
    assert final.returncode == 0, final.stderr[-2000:]
    check_run(run_dir, ref)
    for name in ("last", "best"):
        a = safetensors.torch.load_file(str(ref / "checkpoints" / f"{name}.safetensors"))
        b = safetensors.torch.load_file(str(run_dir / "checkpoints" / f"{name}.safetensors"))
        assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a), f"{name} weights differ"
    assert _metric_rows(run_dir / "metrics.csv") == _metric_rows(ref / "metrics.csv")
    assert visible_files(run_dir) == visible_files(ref)


# --- classify ------------------------------------------------------------------------------------------

CLASSIFY_OUTPUTS = ("predictions.csv", "predictions.jsonl", "report.html")


def check_outputs(out: Path, ref: Path) -> None:
    """Each output file is absent or whole (equal to the reference; the report has one row per input)."""
    for name in ("predictions.csv", "predictions.jsonl"):
        if (out / name).exists():
            assert (out / name).read_bytes() == (ref / name).read_bytes(), f"{name} is partial or differs"
    if (out / "report.html").exists():
        html = (out / "report.html").read_text(encoding="utf-8")
        ref_html = (ref / "report.html").read_text(encoding="utf-8")
        assert html.endswith("</html>\n") and html.count("<tr class=") == ref_html.count("<tr class=")
    assert visible_files(out) <= set(CLASSIFY_OUTPUTS)


def test_classify_killed_anywhere_leaves_whole_outputs(server, tmp_path):
    ckpt = make_checkpoint(tmp_path / "ckpt" / "tiny")
    inputs = [SAMPLES]

    def argv(out: Path, workers: int = 2) -> list:
        return ["classify", *inputs, "--checkpoint", ckpt, "--output", out, "--workers", workers, "--no-progress"]

    ref = tmp_path / "ref"
    r = server.run(argv(ref), cwd=tmp_path)
    assert r.returncode == 3, r.stderr  # the bundled non-video fails
    out = tmp_path / "out"  # one folder for every kill: each run writes over what the last one left
    outcomes = []
    for delay in kill_points(303, r.seconds):
        run = server.run(argv(out), cwd=tmp_path, kill_after=delay)
        assert_clean_kill(run, f"classify killed at {delay:.2f} s")
        check_outputs(out, ref)
        outcomes.append(run.returncode)
    assert outcomes.count(-9) >= 3, outcomes
    print(f"classify: {KILLS} kill points, {outcomes.count(-9)} killed mid-run; run {r.seconds:.2f} s")
    final = cli(*argv(out))
    assert final.returncode == 3 and "Traceback" not in final.stderr, final.stderr
    check_outputs(out, ref)
    assert visible_files(out) == set(CLASSIFY_OUTPUTS)


# --- read-only and full output folders -----------------------------------------------------------------


@pytest.fixture
def mount_tmpfs(tmp_path):
    """mount_tmpfs(name, size, read_only) -> a fresh tmpfs folder; skips where mounting is not allowed."""
    mounted = []

    def mount(name: str, size: str, read_only: bool = False) -> Path:
        where = tmp_path / name
        where.mkdir()
        opts = f"size={size},mode=0755" + (",ro" if read_only else "")
        if shutil.which("mount") is None:
            pytest.skip("no mount command")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.strip()}")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def assert_one_line_error(r: RunResult, *words: str) -> None:
    assert r.returncode in (1, 2), (r.returncode, r.stderr[-1500:])
    assert "Traceback" not in r.stderr, r.stderr[-1500:]
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and all(w in last for w in words), r.stderr[-1500:]


def test_read_only_output_folders_are_a_clear_error(server, dataset, mount_tmpfs, tmp_path):
    from train_fixtures import write_config, write_fake_cache

    ro = mount_tmpfs("ro", "1m", read_only=True)
    r = server.run(preprocess_argv(dataset, ro / "cache"), cwd=tmp_path)
    assert_one_line_error(r, "Read-only file system")
    r = server.run(preprocess_argv(dataset, ro), cwd=tmp_path)  # the folder exists, is read-only
    assert_one_line_error(r, "Read-only file system")
    ckpt = make_checkpoint(tmp_path / "ckpt" / "tiny")
    r = server.run(["classify", SAMPLES, "--checkpoint", ckpt, "--output", ro, "--workers", 0, "--no-progress"],
                   cwd=tmp_path)
    assert_one_line_error(r, "Read-only file system")
    cache = write_fake_cache(tmp_path / "cache", per_class=4, splits={"train": 0.75, "test": 0.25})
    config = write_config(tmp_path / "exp.toml", cache=cache, train={"epochs": 1, "out_dir": str(ro)})
    r = server.run(["train", "--config", config, "--no-progress"], cwd=tmp_path)
    assert_one_line_error(r, "Read-only file system")


def test_full_disk_is_a_clear_error_and_loses_no_clip(server, dataset, mount_tmpfs, tmp_path):
    """The cache fills the disk midway: the run stops with one line, keeps the clips it wrote whole,
    and does not record the clips it could not write as failed videos (a later training run would
    then take the cache as complete without them)."""
    from preprocessing.cache import read_cache

    small = mount_tmpfs("small", "300k")
    cache = small / "cache"
    r = server.run(preprocess_argv(dataset, cache), cwd=tmp_path)
    assert_one_line_error(r, "No space left on device")
    partial = read_cache(cache)  # records whole, arrays whole
    failures = (cache / "failures.jsonl").read_text() if (cache / "failures.jsonl").exists() else ""
    assert "No space" not in failures and "written" not in failures, failures
    assert not [p for p in cache.rglob(".*.tmp")], "temporary files left on the full disk"
    # on a bigger disk the same command completes the cache
    bigger = tmp_path / "bigger"
    shutil.copytree(cache, bigger, symlinks=True)
    r = server.run(preprocess_argv(dataset, bigger), cwd=tmp_path)
    assert r.returncode == 3 and f"{len(partial)} already cached" in r.stdout, (r.stdout, r.stderr[-1000:])

    ckpt = make_checkpoint(tmp_path / "ckpt" / "tiny")
    tiny = mount_tmpfs("tiny", "8k")
    r = server.run(["classify", SAMPLES, "--checkpoint", ckpt, "--output", tiny, "--workers", 0, "--no-progress"],
                   cwd=tmp_path)
    assert_one_line_error(r, "No space left on device")
    assert not (tiny / "report.html").exists() and not list(tiny.glob(".*.tmp"))


# --- the one moment random kills rarely hit: between a checkpoint's two files ------------------------------


class _Killed(BaseException):
    """Stands for SIGKILL at one exact line (a real kill there is a matter of luck)."""


def test_a_save_interrupted_between_weights_and_sidecar_is_detected(tmp_path, monkeypatch):
    """save_checkpoint writes NAME.safetensors, then NAME.json. Killed in between, the old sidecar
    (its class names, metrics, epoch) would describe the new weights. The loader must notice."""
    import torch

    import app.checkpoint as checkpoint
    from models import create_model

    spec = {"kind": "pixels", "size": [32, 24], "fps": 4.0}

    def model(seed: int):
        torch.manual_seed(seed)
        return create_model("tt_gru", num_classes=3, in_modes=(4, 8, 8, 9), hidden_modes=(2, 2, 2, 2),
                            ranks=(1, 2, 2, 2, 1))

    first = model(0)
    checkpoint.save_checkpoint(tmp_path / "best", first, class_names=["a", "b", "c"], input_spec=spec,
                               metrics={"epoch": 1})
    assert checkpoint.load_checkpoint(tmp_path / "best").metrics == {"epoch": 1}

    def killed(*args, **kwargs):
        raise _Killed()

    monkeypatch.setattr(checkpoint, "write_json", killed)
    with pytest.raises(_Killed):
        checkpoint.save_checkpoint(tmp_path / "best", model(1), class_names=["a", "b", "c"], input_spec=spec,
                                   metrics={"epoch": 2})
    monkeypatch.undo()
    try:
        loaded = checkpoint.load_checkpoint(tmp_path / "best")
    except checkpoint.CheckpointError as e:
        assert "interrupted" in str(e)  # refused, with the reason
    else:  # or loaded whole: the weights the sidecar describes
        for name, tensor in first.state_dict().items():
            assert torch.equal(loaded.model.state_dict()[name], tensor), f"{name}: epoch-2 weights under an epoch-1 sidecar"
    assert not list(tmp_path.glob(".*.tmp")), "temporary files left behind"
