"""Experiment configs: one flat TOML file per experiment with `[data]`, `[model]` and `[train]`.

    [data]                      # what to read and how to batch it (DataConfig)
    dataset = "ucf11"
    cache = "cache/ucf11_24fps"
    [model]                     # `name` picks a registered model; other keys are its config fields
    name = "tt_gru"
    in_modes = [8, 20, 20, 18]
    [train]                     # optimizer, schedule, early stopping, run folder (TrainConfig)
    lr = 1e-3

Read with `tomllib`; no inheritance, no includes. Command-line overrides `--train.lr=1e-4`,
`--data.size=[32,24]` take TOML values (a bare word is a string). Unknown sections and keys are
errors, as are values of the wrong type. The resolved config is written to the run folder and into
every checkpoint (`to_dict`), and `config_from_dict` reads it back.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.errors import UsageError
from app.precision import PRECISIONS
from data.config import DATASETS, SPLITS, DataConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, from PyPI (requirements.txt installs it there)
    import tomli as tomllib


@dataclass(frozen=True)
class ModelConfig:
    name: str  # a registered model name (`models.list_models()`)
    params: dict[str, Any] = field(default_factory=dict)  # that model's config fields (lists become tuples)


@dataclass(frozen=True)
class TrainConfig:
    name: str = ""  # run name: the folder runs/<name>/ (default: the config file's stem)
    out_dir: str = "runs"  # parent folder of run folders
    epochs: int = 50  # maximum number of epochs
    steps_per_epoch: int = 0  # cap on optimizer steps per epoch (0: the whole training set)
    lr: float = 1e-3  # Adam learning rate
    lr_decay: float = 1.0  # staircase decay factor applied every lr_decay_examples training examples
    lr_decay_examples: int = 0  # examples between decays (0: constant lr)
    l2: float = 0.01  # L2 penalty l2 * sum(w^2) on the classifier weights only (Keras `l2(0.01)`)
    grad_clip: float = 1.0  # max global gradient norm (0: no clipping)
    # multi-label BCE: "mean" over batch and classes, or "sum_classes" (summed over classes, mean over
    # the batch: the YouTube-8M starter's loss; with Adam it lets rare classes' weights learn faster)
    loss: str = "mean"
    # YouTube-8M: start each class of the classifier at its frequency in the training labels instead of
    # the model's one init_prior (rare classes' biases then need no training to reach their level)
    class_priors: bool = False
    patience: int = 10  # epochs without a better validation score before stopping (0: never stop early)
    monitor: str = "auto"  # validation metric: "auto" (accuracy, or MAP when multi-label, GAP for yt8m), "loss", ...
    seed: int = 0  # seeds weights, dropout and data order (data order is a function of (seed, epoch))
    deterministic: bool = False  # torch deterministic algorithms (bit-exact resume, slower on GPU)
    device: str = "auto"  # "auto" (cuda when available), "cpu", "cuda"
    threads: int = 0  # torch intra-op threads per process (0: torch's default)
    save_every_steps: int = 0  # also write resume state every N steps inside an epoch (0: epoch ends only)
    progress: bool = True  # tqdm bar per epoch with clips/s (rank 0 only)
    plots: bool = True  # curves.png and confusion.png in the run folder at the end
    precision: str = "fp32"  # "fp32", or "bf16": the forward under torch.autocast (weights stay float32)


@dataclass(frozen=True)
class ExperimentConfig:
    data: DataConfig
    model: ModelConfig
    train: TrainConfig

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/TOML-able dict: `{"data": {...}, "model": {"name": ..., **params}, "train": {...}}`."""
        return {
            "data": _plain(dataclasses.asdict(self.data)),
            "model": {"name": self.model.name, **_plain(dict(self.model.params))},
            "train": _plain(dataclasses.asdict(self.train)),
        }

    def replace(self, section: str, **changes: Any) -> ExperimentConfig:
        """A copy with some fields of one section changed (`cfg.replace("data", fold=2)`)."""
        if section == "model":
            return dataclasses.replace(self, model=ModelConfig(self.model.name, {**self.model.params, **changes}))
        return dataclasses.replace(self, **{section: dataclasses.replace(getattr(self, section), **changes)})


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Read an experiment TOML and apply `section.key=value` overrides (leading `--` optional)."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{path}: invalid TOML ({e})") from None
    for item in overrides:
        section, key, value = parse_override(item)
        raw.setdefault(section, {})
        if not isinstance(raw[section], dict):
            raise UsageError(f"override {item!r}: [{section}] is not a section")
        raw[section][key] = value
    raw.setdefault("train", {})
    if isinstance(raw["train"], dict) and not raw["train"].get("name"):
        raw["train"]["name"] = path.stem
    try:
        return config_from_dict(raw)
    except UsageError as e:
        raise UsageError(f"{path}: {e}") from None


def parse_override(item: str) -> tuple[str, str, Any]:
    """`--train.lr=1e-4` -> ("train", "lr", 0.0001). The value is TOML; a bare word is a string."""
    text = item[2:] if item.startswith("--") else item
    dotted, sep, value_text = text.partition("=")
    section, dot, key = dotted.partition(".")
    if not sep or not dot or not section or not key:
        raise UsageError(f"bad override {item!r}: expected --section.key=value, e.g. --train.lr=1e-4")
    try:
        value = tomllib.loads(f"v = {value_text}")["v"]
    except tomllib.TOMLDecodeError:
        value = value_text  # a bare word such as --train.name=my_run
    return section, key, value


def config_from_dict(raw: dict[str, Any]) -> ExperimentConfig:
    """Validate a parsed TOML (or a checkpoint's stored config) into an ExperimentConfig."""
    unknown = sorted(set(raw) - {"data", "model", "train"})
    if unknown:
        raise UsageError(f"unknown config sections {unknown}; valid: [data], [model], [train]")
    for section in ("data", "model"):
        if not isinstance(raw.get(section), dict):
            raise UsageError(f"missing [{section}] section")
    data = _build(DataConfig, raw["data"], "data")
    train = _build(TrainConfig, raw.get("train", {}), "train")
    model = _build_model(raw["model"])
    _check_choices(data, train)
    return ExperimentConfig(data=data, model=model, train=train)


def config_to_toml(cfg: ExperimentConfig) -> str:
    """The resolved config as TOML text (the run folder's config.toml); parses back to the same config."""
    lines = []
    for section, values in cfg.to_dict().items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
        lines.append("")
    return "\n".join(lines)


def add_override_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare `--data.KEY`, `--model.KEY`, `--train.KEY` options on an argparse parser (values are TOML).

    `--model.KEY` covers the config fields of every registered model; which ones apply to the chosen
    model is checked when the config is loaded. `collect_overrides(args)` returns them as
    `section.key=value` strings.
    """
    from models import list_models, model_config_class

    model_keys = {"name"} | {f.name for m in list_models() for f in dataclasses.fields(model_config_class(m))}
    sections = {
        "data": [f.name for f in dataclasses.fields(DataConfig)],
        "model": sorted(model_keys),
        "train": [f.name for f in dataclasses.fields(TrainConfig)],
    }
    group = parser.add_argument_group(
        "config overrides",
        "--SECTION.KEY=VALUE with a TOML value, e.g. --train.lr=1e-4 --data.size=[32,24] --train.name=run2. "
        + " ".join(f"[{sec}] keys: {', '.join(keys)}." for sec, keys in sections.items()),
    )
    for section, keys in sections.items():
        for key in keys:
            group.add_argument(f"--{section}.{key}", dest=f"override:{section}.{key}", help=argparse.SUPPRESS)


def collect_overrides(args: argparse.Namespace) -> list[str]:
    """The `section.key=value` overrides given to a parser set up by `add_override_arguments`."""
    return [f"{k.split(':', 1)[1]}={v}" for k, v in vars(args).items() if k.startswith("override:") and v is not None]


# --- helpers -------------------------------------------------------------------------------------


def _build(cls: type, values: dict[str, Any], section: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise UsageError(f"unknown keys in [{section}]: {unknown}; valid keys: {sorted(fields)}")
    missing = [
        n for n, f in fields.items()
        if n not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise UsageError(f"[{section}] needs {missing}")
    kwargs = {k: _coerce(v, hints[k], f"{section}.{k}") for k, v in values.items()}
    return cls(**kwargs)


def _build_model(values: dict[str, Any]) -> ModelConfig:
    from models import model_config_class  # local import: the registry imports torch

    values = dict(values)
    name = values.pop("name", None)
    if not isinstance(name, str):
        raise UsageError("[model] needs name = \"<registered model>\"")
    try:
        cls = model_config_class(name)
    except KeyError as e:
        raise UsageError(str(e.args[0])) from None
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise UsageError(f"unknown keys in [model] for {name!r}: {unknown}; valid keys: {sorted(fields)}")
    params = {k: _coerce(v, hints[k], f"model.{k}") for k, v in values.items()}
    return ModelConfig(name=name, params=params)


def _check_choices(data: DataConfig, train: TrainConfig) -> None:
    if data.dataset not in DATASETS:
        raise UsageError(f"data.dataset = {data.dataset!r}; valid: {', '.join(DATASETS)}")
    if data.split not in SPLITS:
        raise UsageError(f"data.split = {data.split!r}; valid: {', '.join(SPLITS)}")
    if data.eval_crop not in ("center", "first"):
        raise UsageError(f"data.eval_crop = {data.eval_crop!r}; valid: center, first")
    if data.level not in ("video", "frame"):
        raise UsageError(f"data.level = {data.level!r}; valid: video, frame")
    if not -1 <= data.fold < data.num_folds:
        raise UsageError(f"data.fold = {data.fold} outside -1 .. {data.num_folds - 1}")
    if not 0 <= data.val_fraction < 1:
        raise UsageError(f"data.val_fraction = {data.val_fraction} must be in [0, 1)")
    if data.batch_size < 1 or data.eval_batch_size < 0 or data.workers < 0 or data.max_frames < 0:
        raise UsageError("data.batch_size >= 1, eval_batch_size, workers and max_frames >= 0 please")
    if any(s < 1 for s in data.size):
        raise UsageError(f"data.size = {list(data.size)} must be positive [W, H]")
    if train.loss not in ("mean", "sum_classes"):
        raise UsageError(f"train.loss = {train.loss!r}; valid: mean, sum_classes")
    if train.class_priors and data.dataset != "yt8m":
        raise UsageError(f"train.class_priors is for YouTube-8M data (multi-label), not data.dataset = {data.dataset!r}")
    if train.device not in ("auto", "cpu", "cuda"):
        raise UsageError(f"train.device = {train.device!r}; valid: auto, cpu, cuda")
    if train.precision not in PRECISIONS:
        raise UsageError(f"train.precision = {train.precision!r}; valid: {', '.join(PRECISIONS)}")
    if train.epochs < 1 or train.lr <= 0:
        raise UsageError("train.epochs >= 1 and train.lr > 0 please")


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check `value` against a field's type hint; ints pass as floats, lists become tuples."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            try:
                return _coerce(value, option, where)
            except UsageError:
                pass
        raise UsageError(f"{where} = {value!r}: expected {hint}")
    if hint is type(None):
        if value is None:
            return None
        raise UsageError(f"{where} = {value!r}: expected None")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise UsageError(f"{where} = {value!r}: expected a list")
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], where) for v in value)
        if len(args) != len(value):
            raise UsageError(f"{where} = {value!r}: expected {len(args)} values")
        return tuple(_coerce(v, a, where) for v, a in zip(value, args))
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise UsageError(f"{where} = {value!r}: expected a table")
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    else:
        return value
    raise UsageError(f"{where} = {value!r}: expected {getattr(hint, '__name__', hint)}")


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _toml_string(s: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped, the rest as UTF-8.
    A str holding undecodable bytes of a file name (lone surrogates) cannot be written: ValueError."""
    if any("\ud800" <= c <= "\udfff" for c in s):
        raise ValueError(f"{s.encode('utf-8', 'backslashreplace').decode()!r} is not valid UTF-8 text, "
                         "which a TOML config cannot hold")
    out = (_TOML_ESCAPES.get(c) or (f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F else c) for c in s)
    return '"' + "".join(out) + '"'


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return _toml_string(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")
