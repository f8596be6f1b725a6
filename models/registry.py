"""A plain dict registry of models: `create_model("tt_gru", **cfg)`, `list_models()`.

Every model is an `nn.Module` built from ONE frozen config dataclass (`model.config`) and called as
`model(x, lengths) -> logits (B, K)`. Checkpoints store `(name, asdict(config))`, so a model is
rebuilt from a checkpoint alone.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any

from torch import nn

# Modules whose import registers models. Imported lazily on first registry use so that
# `import models` stays cheap.
_MODEL_MODULES = (
    "models.tt_rnn",
    "models.tt_mlp",
    "models.rnn",
    "models.qrnn",
    "models.yt8m_baselines",
)

_REGISTRY: dict[str, tuple[type[nn.Module], type]] = {}
_loaded = False


def register_model(name: str, config_cls: type) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: `@register_model("tt_gru", TTGRUConfig)`."""
    if not dataclasses.is_dataclass(config_cls):
        raise TypeError(f"{config_cls} must be a dataclass")

    def wrap(cls: type[nn.Module]) -> type[nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model name {name!r} registered twice ({_REGISTRY[name][0].__qualname__}, {cls.__qualname__})")
        _REGISTRY[name] = (cls, config_cls)
        cls.registry_name = name
        return cls

    return wrap


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    for mod in _MODEL_MODULES:  # a module that fails to import is an error, never a silently missing family
        importlib.import_module(mod)
    _loaded = True


def list_models() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def model_config_class(name: str) -> type:
    _load_all()
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; valid names: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name][1]


def create_model(name: str, **config: Any) -> nn.Module:
    """Build a registered model from keyword config values. Unknown keys are errors."""
    config_cls = model_config_class(name)
    fields = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(config) - fields)
    if unknown:
        raise TypeError(f"model {name!r} has no config keys {unknown}; valid keys: {sorted(fields)}")
    # JSON turns tuples into lists; configs are frozen dataclasses of tuples.
    config = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
    return _REGISTRY[name][0](config_cls(**config))
