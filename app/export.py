"""Export a checkpoint for deployment: ONNX (torch.onnx, dynamo exporter) or TorchScript (trace).

The recurrent models loop over time in Python, so both exporters unroll the loop: the exported
graph takes a FIXED number of steps `max_frames` and a dynamic batch size. That is enough for any
clip of at most `max_frames` steps, because every model is padding-invariant: zero-pad the clip to
`max_frames` and pass its true length in `lengths`. Longer clips must be cut (`--max-frames` in
classify does the same).

Inputs, as in `model(x, lengths)`:
    x        uint8 (B, max_frames, H, W, 3) for pixel models, float32 (B, max_frames, 1152) for
             feature models (max_frames = 1 for video-level models)
    lengths  int64 (B,)
Output: logits float32 (B, K). A JSON sidecar beside the file (`<file>.json`) holds the class names,
input spec, `multi_label` (sigmoid vs softmax scores) and these shapes.

Every export is verified before it is kept: the exported model is run on a batch of a different
size and different lengths than the one it was traced with, and its logits must match the eager
model's; otherwise `ExportError` says which model did not export cleanly.
TorchScript is deprecated in PyTorch 2.x but still the format many C++/mobile runtimes load.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.checkpoint import Checkpoint
from app.fileio import atomic_path, write_json

FORMATS = ("onnx", "torchscript")
SUFFIX = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
DEFAULT_SECONDS = 10.0  # pixel models: default max_frames = fps * this
FRAME_LEVEL_MAX = 300  # YouTube-8M readers cap frame-level videos at 300 frames


class ExportError(Exception):
    """The model could not be exported, or the export does not reproduce the eager logits."""


def default_max_frames(ckpt: Checkpoint) -> int:
    spec = ckpt.input_spec
    if spec.get("kind") == "features":
        return 1 if spec.get("level") == "video" else FRAME_LEVEL_MAX
    data_cfg = ckpt.train_config.get("data", {}) if isinstance(ckpt.train_config, dict) else {}
    if isinstance(data_cfg, dict) and isinstance(data_cfg.get("max_frames"), int):
        return int(data_cfg["max_frames"])
    return max(1, round(float(spec.get("fps", 24.0)) * DEFAULT_SECONDS))


def example_inputs(ckpt: Checkpoint, *, batch: int, steps: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random inputs of the checkpoint's kind: x (batch, steps, ...) and lengths (batch,) in [1, steps]."""
    g = torch.Generator().manual_seed(seed)
    spec = ckpt.input_spec
    if spec.get("kind") == "pixels":
        W, H = (int(v) for v in spec["size"])
        x = torch.randint(0, 256, (batch, steps, H, W, 3), dtype=torch.uint8, generator=g)  # (B, T, H, W, 3)
    else:
        x = torch.randn(batch, steps, int(spec.get("dims", 1152)), generator=g)  # (B, T, D)
    lengths = torch.randint(1, steps + 1, (batch,), generator=g)
    lengths[0] = steps  # one full-length item
    for b in range(batch):
        x[b, int(lengths[b]) :] = 0  # zero padding, as classify feeds it
    return x, lengths


def export_checkpoint(
    ckpt: Checkpoint,
    output: str | os.PathLike,
    *,
    fmt: str,
    max_frames: int | None = None,
    atol: float = 1e-4,
) -> Path:
    """Export `ckpt.model` to `output` in `fmt` ("onnx" | "torchscript"), verify it, write the sidecar."""
    assert fmt in FORMATS, f"format must be one of {FORMATS}, got {fmt!r}"
    steps = max_frames or default_max_frames(ckpt)
    assert steps >= 1, f"max_frames must be >= 1, got {steps}"
    model = ckpt.model.cpu().eval()
    output = Path(output)
    trace_x, trace_len = example_inputs(ckpt, batch=2, steps=steps, seed=0)
    check_x, check_len = example_inputs(ckpt, batch=3, steps=steps, seed=1)
    with torch.inference_mode():
        expected = model(check_x, check_len).float().numpy()
    with atomic_path(output) as tmp:
        if fmt == "torchscript":
            got = _export_torchscript(model, (trace_x, trace_len), tmp, (check_x, check_len))
        else:
            got = _export_onnx(model, (trace_x, trace_len), tmp, (check_x, check_len))
        err = float(np.abs(got - expected).max()) if got is not None else None
        if err is not None and not err <= atol:
            raise ExportError(
                f"{ckpt.model_name}: the {fmt} export does not reproduce the model "
                f"(max |logit difference| {err:.3g} > {atol}); the model's code likely depends on "
                "Python values of its inputs that tracing froze"
            )
    write_json(
        output.with_name(output.name + ".json"),
        {
            "format": fmt,
            "model_name": ckpt.model_name,
            "class_names": ckpt.class_names,
            "input_spec": ckpt.input_spec,
            "multi_label": ckpt.multi_label,
            "max_frames": steps,
            "inputs": {"x": _shape_doc(ckpt, steps), "lengths": "int64 (B,)"},
            "outputs": {"logits": f"float32 (B, {len(ckpt.class_names)})"},
            "checkpoint": str(ckpt.path) if ckpt.path else None,
            "verified_max_abs_diff": err,
        },
    )
    return output


def _shape_doc(ckpt: Checkpoint, steps: int) -> str:
    spec = ckpt.input_spec
    if spec.get("kind") == "pixels":
        W, H = spec["size"]
        return f"uint8 (B, {steps}, {H}, {W}, 3)"
    return f"float32 (B, {steps}, {spec.get('dims', 1152)})"


def _export_torchscript(model, example, path: Path, check) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated but still supported
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # we verify the trace ourselves below
        try:
            traced = torch.jit.trace(model, example, check_trace=False)
        except Exception as e:
            raise ExportError(f"torch.jit.trace failed: {_one_line(e)}") from None
        torch.jit.save(traced, str(path))
        loaded = torch.jit.load(str(path))
        with torch.inference_mode():
            return loaded(*check).float().numpy()


def _export_onnx(model, example, path: Path, check) -> np.ndarray | None:
    try:
        import onnxscript  # noqa: F401  (the dynamo exporter needs it)
    except ImportError:
        raise ExportError("ONNX export needs the onnx and onnxscript packages (pip install onnx onnxscript)") from None
    batch = torch.export.Dim("batch", min=1, max=65536)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                model,
                example,
                str(path),
                dynamo=True,
                external_data=False,  # one self-contained file (our models are small)
                input_names=["x", "lengths"],
                output_names=["logits"],
                dynamic_shapes={"x": {0: batch}, "lengths": {0: batch}},
                verbose=False,
            )
        except Exception as e:
            raise ExportError(f"torch.onnx.export failed: {_one_line(e)}") from None
    return run_onnx(path, *check)


def run_onnx(path: str | os.PathLike, x: torch.Tensor, lengths: torch.Tensor) -> np.ndarray | None:
    """Logits from an exported ONNX file with onnxruntime; None when onnxruntime is not installed."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {"x": x.numpy(), "lengths": lengths.numpy()}
    names = {i.name for i in sess.get_inputs()}
    feeds = {k: v for k, v in feeds.items() if k in names}  # an unused input may be pruned
    return sess.run(["logits"], feeds)[0]


def read_sidecar(path: str | os.PathLike) -> dict[str, Any]:
    p = Path(path)
    return json.loads(p.with_name(p.name + ".json").read_text(encoding="utf-8"))


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:400]}"
