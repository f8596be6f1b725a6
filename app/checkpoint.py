"""Self-describing checkpoints: `<name>.safetensors` (weights) + `<name>.json` (everything else).

The JSON sidecar holds the model name and config, class names, the input spec, the training
config, metrics and the code version, so inference rebuilds the model from the checkpoint alone.
Loading never unpickles: weights come from safetensors, the rest is plain JSON. The sidecar also
records the sha256 of its weights file: a process killed between writing the two files leaves new
weights beside the old sidecar, and the loader refuses that pair instead of mislabelling the weights.

The input spec is a typed `data.specs.PixelSpec` or `FeatureSpec`; the sidecar stores its JSON form:
    {"kind": "pixels", "size": [W, H], "fps": 24.0}
    {"kind": "features", "dims": 1152, "level": "video" | "frame"}
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.version import code_version
from data.specs import InputSpec, SpecError, spec_from_json
from preprocessing.fileio import atomic_path, write_json

if TYPE_CHECKING:
    from torch import nn

# torch and safetensors are imported where the weights are read or written: reading a sidecar
# (`read_meta`, `read_input_spec`) stays cheap, so `classify` can start its decoders before torch loads.

FORMAT = "vidclass-checkpoint/1"


class CheckpointError(Exception):
    """A checkpoint is missing, unreadable, not in our format, or does not match its model."""


@dataclass
class Checkpoint:
    model: nn.Module
    model_name: str
    model_config: dict[str, Any]
    class_names: list[str]
    input_spec: InputSpec
    multi_label: bool = False
    train_config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    code_version: str = ""
    path: Path | None = None
    clip_seconds: float | None = None  # median length of the training clips (the timeline's window)


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    class_names: list[str],
    input_spec: InputSpec | dict[str, Any],
    multi_label: bool = False,
    train_config: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    clip_seconds: float | None = None,
) -> Path:
    """Save to `path` (a `.safetensors` file name or a stem); returns the `.safetensors` path.

    The weights are written first and the JSON last, each atomically: a checkpoint is complete
    exactly when its JSON exists.
    """
    import safetensors.torch

    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    stem = _stem(path)
    weights = stem.with_suffix(".safetensors")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(weights) as tmp:
        safetensors.torch.save_file(state, str(tmp), metadata={"format": FORMAT})
        digest = _sha256(tmp)
    meta = {
        "format": FORMAT,
        "model_name": model.registry_name,
        "model_config": dataclasses.asdict(model.config),
        "class_names": list(class_names),
        "input_spec": spec_from_json(input_spec).to_json(),
        "multi_label": bool(multi_label),
        "train_config": train_config or {},
        "metrics": metrics or {},
        "code_version": code_version(),
        "clip_seconds": clip_seconds,
        "weights": weights.name,
        "weights_sha256": digest,
    }
    write_json(stem.with_suffix(".json"), meta)
    return weights


KAGGLE_MODEL_LIMIT = 2**30  # the YouTube-8M 2018 challenge's rule: a model must fit in 1 GB


def describe_size(nbytes: int) -> str:
    """`12.3 MB`, and a warning when the model would break the 1 GB rule of YouTube-8M's 2018 challenge."""
    text = f"{nbytes / 1e6:.1f} MB"
    if nbytes > KAGGLE_MODEL_LIMIT:
        text += " (over the 1 GB a YouTube-8M 2018 challenge model may take)"
    return text


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """Find the JSON sidecar for a run folder (its `best`, else `last`), a `.json` or a `.safetensors`."""
    p = Path(path)
    if p.is_dir():
        for name in ("best.json", "checkpoints/best.json", "last.json", "checkpoints/last.json"):
            if (p / name).is_file():
                return p / name
        folds = sorted(p.glob("fold[0-9]*/checkpoints/best.json"))
        if len(folds) == 1:  # a run of one fold (train --fold K, fit without train/ and test/)
            return folds[0]
        jsons = sorted(p.glob("*.json"))
        if len(jsons) == 1:
            return jsons[0]
        raise CheckpointError(f"{p}: no checkpoint found (expected best.json or last.json)")
    if p.suffix in (".safetensors", ".json", ""):
        js = _stem(p).with_suffix(".json")
        if js.is_file():
            return js
    raise CheckpointError(
        f"{p}: not a vidclass checkpoint (expected a run folder, NAME.json or NAME.safetensors "
        "with its JSON sidecar; pickled .pt/.pth files are refused)"
    )


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    js = resolve_checkpoint(path)
    try:
        meta = json.loads(js.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{js}: unreadable checkpoint sidecar ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{js}: not a {FORMAT} sidecar")
    meta["_json_path"] = str(js)
    return meta


def read_input_spec(path: str | os.PathLike) -> InputSpec:
    """The checkpoint's input spec, from its sidecar alone (checked, and its weights file exists;
    no torch, no weights read)."""
    meta = read_meta(path)
    js = Path(meta["_json_path"])
    _check_meta(meta, js)
    weights = _weights_path(meta, js)
    if not weights.is_file():
        raise CheckpointError(f"{weights}: the weights file its sidecar {js.name} names is missing")
    return spec_from_json(meta["input_spec"])


def load_checkpoint(path: str | os.PathLike, *, map_location: str = "cpu") -> Checkpoint:
    """Rebuild the model from the sidecar and load its weights (safetensors only, never pickle)."""
    import safetensors
    import safetensors.torch
    import torch

    from models import create_model  # local import: models import torch-heavy modules

    meta = read_meta(path)
    js = Path(meta["_json_path"])
    _check_meta(meta, js)
    weights = _weights_path(meta, js)
    try:
        # on the meta device: no memory and no random init for weights that are about to be replaced
        with torch.device("meta"):
            model = create_model(meta["model_name"], **meta["model_config"])
    except (KeyError, TypeError, ValueError, AssertionError, RuntimeError, MemoryError, OverflowError) as e:
        raise CheckpointError(f"{js}: cannot rebuild model ({e})") from None
    num_classes = getattr(model.config, "num_classes", len(meta["class_names"]))
    if num_classes != len(meta["class_names"]):
        raise CheckpointError(
            f"{js}: the model has {num_classes} outputs but the sidecar names {len(meta['class_names'])} classes"
        )
    try:
        digest = _sha256(weights) if "weights_sha256" in meta else None
        state = safetensors.torch.load_file(str(weights), device=map_location)
    except (OSError, safetensors.SafetensorError) as e:
        raise CheckpointError(f"{weights}: not a readable safetensors file ({e})") from None
    if digest is not None and digest != meta["weights_sha256"]:
        raise CheckpointError(
            f"{weights}: not the weights its sidecar {js.name} describes (a save was interrupted between "
            "the two files; resume or re-run the training)"
        )
    # Names and shapes are checked on the meta model, before any memory is given to it (a sidecar's
    # config could ask for terabytes).
    meta_state = model.state_dict()
    expected = {k: tuple(v.shape) for k, v in meta_state.items()}
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    missing, unexpected = sorted(expected.keys() - shapes.keys()), sorted(shapes.keys() - expected.keys())
    if missing or unexpected:
        raise CheckpointError(
            f"{weights}: weights do not match model {meta['model_name']!r} "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    wrong = sorted(k for k in expected if expected[k] != shapes[k])
    if wrong:
        k = wrong[0]
        raise CheckpointError(
            f"{weights}: weights do not match model {meta['model_name']!r} ({k}: shape {list(shapes[k])} in the "
            f"file, {list(expected[k])} in the model; {len(wrong)} tensors differ)"
        )
    try:
        if set(dict(model.named_buffers())) - expected.keys():
            # a buffer computed at construction and not saved (persistent=False): build it for real
            model = create_model(meta["model_name"], **meta["model_config"])
            model.load_state_dict(state)  # strict: the names were checked above
        else:
            # fresh copies of the file's tensors become the weights, in the model's dtypes (as a
            # copying load would convert them) and in torch's own aligned memory (safetensors'
            # tensors need not be: kernels then round differently); no meta -> CPU `to_empty`,
            # whose first call imports sympy (~0.3 s of every classify's start-up)
            model.load_state_dict({k: v.to("cpu", meta_state[k].dtype, copy=True) for k, v in state.items()}, assign=True)
    except (RuntimeError, MemoryError) as e:  # out of memory for a model this large, or a dtype it refuses
        reason = " ".join(str(e).split())
        raise CheckpointError(f"{weights}: cannot load into model {meta['model_name']!r} ({reason[:300]})") from None
    model.eval()
    return Checkpoint(
        model=model,
        model_name=meta["model_name"],
        model_config=meta["model_config"],
        class_names=list(meta["class_names"]),
        input_spec=spec_from_json(meta["input_spec"]),
        multi_label=bool(meta.get("multi_label", False)),
        train_config=meta.get("train_config", {}),
        metrics=meta.get("metrics", {}),
        code_version=meta.get("code_version", ""),
        clip_seconds=_positive_or_none(meta.get("clip_seconds")),
        path=js,
    )


def _check_meta(meta: dict[str, Any], js: Path) -> None:
    """Refuse a sidecar whose fields have the wrong types (a file from elsewhere, or damaged)."""

    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"{js}: malformed checkpoint sidecar ({what})")

    if not isinstance(meta.get("model_name"), str) or not isinstance(meta.get("model_config"), dict):
        raise bad("model_name must be a string and model_config an object")
    names = meta.get("class_names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise bad("class_names must be a non-empty list of strings")
    if not isinstance(meta.get("weights", ""), str):
        raise bad("weights must be a file name")
    try:
        spec_from_json(meta.get("input_spec"))
    except SpecError as e:
        raise bad(str(e)) from None


def _weights_path(meta: dict[str, Any], js: Path) -> Path:
    """The weights file beside the sidecar (a bare file name: a sidecar cannot point elsewhere)."""
    return js.parent / Path(meta.get("weights", js.with_suffix(".safetensors").name)).name


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _stem(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p.with_suffix("") if p.suffix in (".safetensors", ".json") else p


def _positive_or_none(value: Any) -> float | None:
    """A sidecar number that must be positive when present (older sidecars lack it)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None
