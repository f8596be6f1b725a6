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

While an exporter records a model, the models take a static-shape path (`models.pixels.capturing_graph`:
no `int(lengths.max())`, every frame through the TT layer, a plain GEMM instead of the chunked
autograd.Function, GRU/LSTM without packing), so every pixel model exports to both formats.
Cost grows with max_frames, since every step is unrolled into the graph, and ONNX (torch.export,
the ONNX translation, onnxscript's graph optimizer) takes far longer than a TorchScript trace
(the bundled demo_tt_gru at its default 240 steps: docs/BENCHMARKS.md, "Figures formerly quoted in
the code"); pass a smaller `max_frames` for shorter clips.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.checkpoint import Checkpoint
from data.specs import FeatureSpec, PixelSpec
from preprocessing.fileio import atomic_path, write_json

log = logging.getLogger(__name__)

FORMATS = ("onnx", "torchscript")
SUFFIX = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
DEFAULT_SECONDS = 10.0  # pixel models: default max_frames = fps * this
FRAME_LEVEL_MAX = 300  # YouTube-8M readers cap frame-level videos at 300 frames


class ExportError(Exception):
    """The model could not be exported, or the export does not reproduce the eager logits."""


def default_max_frames(ckpt: Checkpoint) -> int:
    spec = ckpt.input_spec
    if isinstance(spec, FeatureSpec):
        return 1 if spec.level == "video" else FRAME_LEVEL_MAX
    data_cfg = ckpt.train_config.get("data", {}) if isinstance(ckpt.train_config, dict) else {}
    trained_cap = data_cfg.get("max_frames") if isinstance(data_cfg, dict) else None
    if isinstance(trained_cap, int) and trained_cap > 0:  # 0 means the training clips were not cut
        return trained_cap
    return max(1, round(spec.fps * DEFAULT_SECONDS))


def example_inputs(ckpt: Checkpoint, *, batch: int, steps: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random inputs of the checkpoint's kind: x (batch, steps, ...) and lengths (batch,) in [1, steps]."""
    g = torch.Generator().manual_seed(seed)
    spec = ckpt.input_spec
    if isinstance(spec, PixelSpec):
        W, H = spec.size
        x = torch.randint(0, 256, (batch, steps, H, W, 3), dtype=torch.uint8, generator=g)  # (B, T, H, W, 3)
    else:
        x = torch.randn(batch, steps, spec.dims, generator=g)  # (B, T, D)
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
    model = copy.deepcopy(ckpt.model).cpu().eval()
    for p in model.parameters():  # frozen weights: no autograd records in the exported graph
        p.requires_grad_(False)
    output = Path(output)
    trace_x, trace_len = example_inputs(ckpt, batch=2, steps=steps, seed=0)
    check_x, check_len = example_inputs(ckpt, batch=3, steps=steps, seed=1)
    with torch.inference_mode():
        expected = model(check_x, check_len).float().numpy()
    example, check = (trace_x, trace_len), (check_x, check_len)
    attempts = _TORCHSCRIPT if fmt == "torchscript" else _ONNX
    failures = []
    for how, attempt in attempts:
        try:
            with atomic_path(output) as tmp, _quiet_torch():  # an exception discards the file
                got = attempt(model, example, tmp, check)
                err = None if got is None else float(np.abs(got - expected).max())
                if err is not None and not err <= atol:
                    raise ExportError(f"logits differ from the model's by {err:.3g} (> {atol})")
        except Exception as e:  # this route cannot export the model; try the next one
            failures.append(f"{how}: {_one_line(e)}")
            continue
        break
    else:
        raise ExportError(f"{ckpt.model_name} could not be exported to {fmt}: " + "; ".join(failures))
    log.info("exported %s to %s via %s (max |logit diff| %s)", ckpt.model_name, output, how, err)
    write_json(
        output.with_name(output.name + ".json"),
        {
            "format": fmt,
            "model_name": ckpt.model_name,
            "class_names": ckpt.class_names,
            "input_spec": ckpt.input_spec.to_json(),
            "multi_label": ckpt.multi_label,
            "max_frames": steps,
            "inputs": {"x": _shape_doc(ckpt, steps), "lengths": "int64 (B,)"},
            "outputs": {"logits": f"float32 (B, {len(ckpt.class_names)})"},
            "checkpoint": str(ckpt.path) if ckpt.path else None,
            "exported_via": how,
            "verified_max_abs_diff": err,
        },
    )
    return output


def _shape_doc(ckpt: Checkpoint, steps: int) -> str:
    spec = ckpt.input_spec
    if isinstance(spec, PixelSpec):
        W, H = spec.size
        return f"uint8 (B, {steps}, {H}, {W}, 3)"
    return f"float32 (B, {steps}, {spec.dims})"


def _torch_export(model: torch.nn.Module, example: tuple[torch.Tensor, torch.Tensor]):
    """torch.export with a dynamic batch: a graph of ATen ops. It goes through custom autograd
    Functions (which TorchScript tracing cannot save) but not through Python `int()` of tensor
    values (which tracing freezes harmlessly when they only feed asserts)."""
    batch = torch.export.Dim("batch", min=1, max=65536)
    return torch.export.export(
        model, example, dynamic_shapes={"x": {0: batch}, "lengths": {0: batch}},
        strict=False, prefer_deferred_runtime_asserts_over_guards=True,
    )


def _save_traced(module, example, path: Path, check) -> np.ndarray:
    with torch.no_grad():
        traced = torch.jit.trace(module, example, check_trace=False)
    torch.jit.save(traced, str(path))
    with torch.no_grad():
        return torch.jit.load(str(path))(*check).float().numpy()


def _ts_trace(model, example, path, check):
    return _save_traced(model, example, path, check)


def _ts_from_export(model, example, path, check):
    return _save_traced(_torch_export(model, example).module(), example, path, check)


def _onnx_dynamo(model, example, path, check):
    _need_onnx()
    torch.onnx.export(
        _torch_export(model, example), example, str(path), dynamo=True,
        external_data=False,  # one self-contained file (our models are small)
        input_names=["x", "lengths"], output_names=["logits"], verbose=False,
    )
    return run_onnx(path, *check)


def _onnx_legacy(model, example, path, check):
    """The TorchScript-based exporter (deprecated in torch 2.9+, still shipped): traces with real
    values, so it takes models whose code calls int() on tensor values."""
    _need_onnx()
    with torch.no_grad():
        torch.onnx.export(
            model, example, str(path), dynamo=False, input_names=["x", "lengths"], output_names=["logits"],
            dynamic_axes={"x": {0: "batch"}, "lengths": {0: "batch"}, "logits": {0: "batch"}},
        )
    return run_onnx(path, *check)


def _need_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        raise ExportError("ONNX export needs the onnx and onnxscript packages (pip install onnx onnxscript)") from None


# (name, function) per format, tried in order; the first whose output matches the model wins.
_TORCHSCRIPT = [("torch.jit.trace", _ts_trace), ("torch.export + torch.jit.trace", _ts_from_export)]
_ONNX = [("torch.onnx dynamo exporter", _onnx_dynamo), ("torch.onnx TorchScript exporter", _onnx_legacy)]


@contextlib.contextmanager
def _quiet_torch():
    """Exporters warn and log graphs (onnx_ir: a line per deduplicated initializer) on every route;
    we report failures ourselves."""
    loggers = [logging.getLogger(name) for name in ("torch", "onnxscript", "onnx_ir")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


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
    return f"{type(e).__name__}: {text[:200]}"
