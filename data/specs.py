"""What a model takes as input, carried from the cache to the checkpoint, inference and export.

    PixelSpec(size=(160, 120), fps=24.0)      # uint8 (T, H, W, 3) frames, W x H, sampled at fps
    FeatureSpec(dims=1152, level="frame")     # float (T, dims) YouTube-8M features; T = 1 at video level

A checkpoint's sidecar stores `spec.to_json()` and `spec_from_json` reads it back, checking every
field (a sidecar may come from anywhere). No torch here: `classify` reads a checkpoint's spec and
starts its decoders before it imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

LEVELS = ("video", "frame")
YT8M_FEATURE_DIM = 1152  # the default of old sidecars; equals models.common.FEATURE_DIM (tested)


@dataclass(frozen=True)
class PixelSpec:
    """Raw video frames: uint8 (T, H, W, 3) RGB at `size` = (W, H), sampled at `fps`."""

    size: tuple[int, int]  # (W, H) in pixels
    fps: float  # frames per second the video is sampled at
    kind: ClassVar[str] = "pixels"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "size": [int(self.size[0]), int(self.size[1])], "fps": float(self.fps)}

    def describe(self) -> str:
        return f"pixels {self.size[0]}x{self.size[1]} at {self.fps:g} fps"


@dataclass(frozen=True)
class FeatureSpec:
    """Precomputed YouTube-8M features: float (T, dims), one row per second ("frame") or T = 1 ("video")."""

    dims: int = YT8M_FEATURE_DIM  # features per step (1024 rgb + 128 audio)
    level: str = "frame"  # "video" or "frame"
    kind: ClassVar[str] = "features"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "dims": int(self.dims), "level": self.level}

    def describe(self) -> str:
        return f"features ({self.dims}-d, {self.level} level)"


InputSpec = PixelSpec | FeatureSpec


class SpecError(ValueError):
    """An input spec that is not one (the message says which field is wrong)."""


def spec_from_json(d: Any) -> InputSpec:
    """The spec a sidecar stores (`to_json` output); SpecError when a field is missing or wrong."""
    if isinstance(d, (PixelSpec, FeatureSpec)):
        return d
    if not isinstance(d, dict) or d.get("kind") not in ("pixels", "features"):
        raise SpecError('input_spec must be an object with kind "pixels" or "features"')
    if d["kind"] == "pixels":
        size, fps = d.get("size"), d.get("fps")
        if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(_positive(v, int) for v in size)):
            raise SpecError("a pixel input_spec needs size [W, H] of positive integers")
        if not _positive(fps, (int, float)):
            raise SpecError("a pixel input_spec needs a positive fps")
        return PixelSpec(size=(int(size[0]), int(size[1])), fps=float(fps))
    dims, level = d.get("dims", YT8M_FEATURE_DIM), d.get("level", "frame")
    if not _positive(dims, int) or level not in LEVELS:
        raise SpecError('a feature input_spec needs positive integer dims and level "video" or "frame"')
    return FeatureSpec(dims=int(dims), level=level)


def _positive(value: Any, types: type | tuple[type, ...]) -> bool:
    return isinstance(value, types) and not isinstance(value, bool) and value > 0
