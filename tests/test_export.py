"""`python -m app export`: ONNX and TorchScript exports give the checkpoint's logits, for batch sizes
and lengths other than the ones the graph was traced with."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from app.__main__ import main
from app.checkpoint import load_checkpoint, save_checkpoint
from app.export import example_inputs, run_onnx
from models import create_model

PIXELS = {"kind": "pixels", "size": [32, 24], "fps": 12.0}
FRAMES = {"kind": "features", "dims": 1152, "level": "frame"}


def _checkpoint(tmp_path: Path, name: str, spec: dict, **cfg) -> Path:
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, **cfg)
    save_checkpoint(tmp_path / name, model, class_names=list("abcde"), input_spec=spec)
    return tmp_path / f"{name}.json"


TT = {"in_modes": (4, 6, 8, 12), "hidden_modes": (2, 2, 2, 1), "ranks": (1, 2, 2, 2, 1)}  # 32*24*3 pixels
CASES = {  # (model, format) pairs checked here; every pixel model exports to both formats
    ("logistic", "torchscript"): (FRAMES, {}),
    ("qrnn", "onnx"): (FRAMES, {"hidden_size": 16, "num_layers": 2}),
    ("gru", "torchscript"): (PIXELS, {"input_size": 32 * 24 * 3, "hidden_size": 8}),
    ("lstm", "onnx"): (PIXELS, {"input_size": 32 * 24 * 3, "hidden_size": 8}),
    ("tt_gru", "torchscript"): (PIXELS, TT),
    ("tt_gru", "onnx"): (PIXELS, {**TT, "cell": "cudnn"}),
    ("tt_lstm", "torchscript"): (PIXELS, {**TT, "separate_gates": True}),
    ("tt_mlp", "onnx"): (PIXELS, {**TT, "num_frames": 3}),
}
DEMO = Path(__file__).resolve().parents[1] / "data" / "models" / "demo_tt_gru.json"  # the bundled default


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
@pytest.mark.parametrize("name,fmt", sorted(CASES))
def test_export_reproduces_logits(tmp_path, capsys, name, fmt):
    spec, cfg = CASES[name, fmt]
    ckpt_path = _checkpoint(tmp_path, name, spec, **cfg)
    _export_and_compare(tmp_path, capsys, ckpt_path, fmt, steps=1 if spec.get("level") == "video" else 9)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_bundled_demo_checkpoint_exports(tmp_path, capsys, fmt):
    assert DEMO.exists(), f"the bundled default checkpoint {DEMO} is missing"
    _export_and_compare(tmp_path, capsys, DEMO, fmt, steps=7)


def _export_and_compare(tmp_path: Path, capsys, ckpt_path: Path, fmt: str, *, steps: int) -> None:
    """Export through the CLI, then compare the file's logits with the checkpoint's on a batch of
    another size and other lengths than the export's own example and check."""
    if fmt == "onnx":
        pytest.importorskip("onnxscript", reason="ONNX export needs onnx + onnxscript")
    out = tmp_path / f"model.{fmt}"
    T = steps
    code = main(["export", "--checkpoint", str(ckpt_path), "--format", fmt, "--output", str(out), "--max-frames", str(T)])
    assert code == 0, capsys.readouterr().err
    ckpt = load_checkpoint(ckpt_path)
    meta = json.loads(out.with_name(out.name + ".json").read_text())
    assert meta["max_frames"] == T and meta["class_names"] == ckpt.class_names
    assert meta["input_spec"] == ckpt.input_spec.to_json()

    x, lengths = example_inputs(ckpt, batch=5, steps=T, seed=7)  # new batch size, new lengths
    lengths[1] = 1
    x[1, 1:] = 0
    with torch.inference_mode():
        expected = ckpt.model(x, lengths).numpy()
    if fmt == "torchscript":
        got = torch.jit.load(str(out))(x, lengths).detach().numpy()
    else:
        got = run_onnx(out, x, lengths)
        if got is None:
            pytest.skip("onnxruntime is not installed")
    np.testing.assert_allclose(got, expected, atol=1e-4)
    # padding to the graph's fixed length is how shorter clips are fed: same logits as unpadded
    short = int(lengths[1])
    with torch.inference_mode():
        alone = ckpt.model(x[1:2, :short], lengths[1:2]).numpy()
    np.testing.assert_allclose(got[1:2], alone, atol=1e-4)


def test_sizes_name_the_1_gb_rule_only_above_it():
    from app.checkpoint import KAGGLE_MODEL_LIMIT, describe_size

    assert describe_size(12_345_678) == "12.3 MB"
    assert "1 GB" not in describe_size(KAGGLE_MODEL_LIMIT)
    assert "over the 1 GB" in describe_size(KAGGLE_MODEL_LIMIT + 1)
