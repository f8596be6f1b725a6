"""Tiny frame caches for the training tests, written with the real cache writer (preprocessing.cache).

Each class gets its own brightness and a moving bright bar, so a small model can learn something
in a few steps; lengths vary so batches need padding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from preprocessing.cache import CacheMeta, open_cache, write_clip, write_manifest

SIZE = (8, 6)  # (W, H): 144 values per frame = in_modes (2, 3, 4, 6)
IN_MODES = (2, 3, 4, 6)


def clip_frames(label: int, num_classes: int, T: int, rng: np.random.Generator, size=SIZE) -> np.ndarray:
    W, H = size
    x = rng.integers(0, 40, size=(T, H, W, 3)).astype(np.uint8)  # (T, H, W, 3) noise
    x += np.uint8(20 + 200 * label // max(num_classes - 1, 1))
    for t in range(T):  # a bar moving right at a speed set by the class
        x[t, :, (t * (label + 1)) % W, :] = 255
    return x


def write_fake_cache(
    cache_dir: Path,
    *,
    dataset: str = "folder",
    classes: tuple[str, ...] = ("a", "b", "c"),
    per_class: int = 8,
    groups_per_class: int = 0,
    splits: dict[str, float] | None = None,
    multi_label: bool = False,
    size: tuple[int, int] = SIZE,
    fps: float = 24.0,
    lengths: tuple[int, int] = (3, 7),
    seed: int = 0,
) -> Path:
    """A cache of `per_class` clips per class. `splits={"train": 0.75, "test": 0.25}` sets each clip's
    split field (Hollywood2 / demo style); `groups_per_class` > 0 gives UCF11-style groups."""
    rng = np.random.default_rng(seed)
    meta = CacheMeta(dataset=dataset, fps=fps, size=size, root=str(cache_dir / "no_root"))
    open_cache(cache_dir, meta)
    entries = []
    for k, name in enumerate(classes):
        for i in range(per_class):
            T = int(rng.integers(lengths[0], lengths[1] + 1))
            labels = (name,)
            if multi_label and rng.random() < 0.5:
                labels = tuple(sorted({name, classes[(k + 1) % len(classes)]}))
            split = None
            if splits:
                split = "test" if i >= round(per_class * splits.get("train", 1.0)) else "train"
            group = f"{name}_{i % groups_per_class:02d}" if groups_per_class else None
            clip_id = f"{name}_{i:03d}"
            entries.append(write_clip(
                cache_dir, clip_frames(k, len(classes), T, rng, size), clip_id=clip_id,
                path=f"{split + '/' if split else ''}{name}/{clip_id}.avi", labels=labels, group=group,
                split=split, fps=fps, source_size=1, source_mtime_ns=1, backend="pyav",
            ))
    write_manifest(cache_dir, meta, entries, "manifest.json")
    return cache_dir


def write_config(path: Path, *, cache: Path, dataset: str = "folder", model: str = "tt_gru",
                 data: dict | None = None, model_params: dict | None = None, train: dict | None = None) -> Path:
    """A tiny experiment TOML over a fake cache; `data`, `model_params`, `train` add or replace keys."""
    import json

    model_keys = {
        "tt_gru": {"in_modes": list(IN_MODES), "hidden_modes": [2, 2, 2, 2], "ranks": [1, 2, 2, 2, 1]},
        "gru": {"hidden_size": 8},
    }[model]
    sections = {
        "data": {"dataset": dataset, "cache": str(cache), "size": list(SIZE), "batch_size": 4, "workers": 0,
                 "val_fraction": 0.25, **(data or {})},
        "model": {"name": model, **model_keys, **(model_params or {})},
        "train": {"out_dir": str(path.parent / "runs"), "epochs": 3, "lr": 0.01, "patience": 0,
                  "progress": False, "plots": False, **(train or {})},
    }
    lines = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]  # JSON scalars/lists are TOML
    path.write_text("\n".join(lines) + "\n")
    return path
