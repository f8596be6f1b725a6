"""Experiment configs: TOML parsing, overrides, unknown keys and wrong types, the round trip."""

from pathlib import Path

import pytest

from app.config import (
    DataConfig,
    ExperimentConfig,
    config_from_dict,
    config_to_toml,
    load_config,
    parse_override,
)
from app.errors import UsageError

CONFIGS = Path(__file__).resolve().parent.parent / "app" / "configs"

BASIC = """
[data]
dataset = "ucf11"
cache = "cache/ucf11"
size = [160, 120]

[model]
name = "tt_gru"
in_modes = [8, 20, 20, 18]

[train]
lr = 1e-4
"""


def write(tmp_path: Path, text: str, name: str = "exp.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_load_basic_and_defaults(tmp_path):
    cfg = load_config(write(tmp_path, BASIC))
    assert cfg.data == DataConfig(dataset="ucf11", cache="cache/ucf11", size=(160, 120))
    assert cfg.model.name == "tt_gru" and cfg.model.params == {"in_modes": (8, 20, 20, 18)}
    assert cfg.train.lr == 1e-4 and cfg.train.l2 == 0.01
    assert cfg.train.name == "exp"  # the file's stem


def test_overrides_take_toml_values(tmp_path):
    cfg = load_config(
        write(tmp_path, BASIC),
        ["--train.lr=0.5", "--data.size=[32,24]", "--model.in_modes=[4, 6, 8, 12]", "--train.name=run2",
         "data.fold=3", "--train.deterministic=true", "--train.epochs=7"],
    )
    assert cfg.train.lr == 0.5 and cfg.train.name == "run2" and cfg.train.deterministic is True
    assert cfg.data.size == (32, 24) and cfg.data.fold == 3 and cfg.train.epochs == 7
    assert cfg.model.params["in_modes"] == (4, 6, 8, 12)
    assert parse_override("--train.lr=1") == ("train", "lr", 1)
    assert parse_override("--train.name=x y") == ("train", "name", "x y")


@pytest.mark.parametrize(
    "text, message",
    [
        (BASIC + "bogus = 1\n", "unknown keys in [train]"),
        (BASIC.replace('cache = "cache/ucf11"', 'cache = "c"\nfpss = 3'), "unknown keys in [data]"),
        (BASIC.replace("in_modes", "in_modez"), "unknown keys in [model]"),
        (BASIC + "[extra]\nx = 1\n", "unknown config sections"),
        (BASIC.replace('name = "tt_gru"', 'name = "no_such_model"'), "unknown model"),
        (BASIC.replace("lr = 1e-4", 'lr = "fast"'), "train.lr"),
        (BASIC.replace("size = [160, 120]", "size = [160]"), "data.size"),
        (BASIC.replace('dataset = "ucf11"', 'dataset = "kinetics"'), "data.dataset"),
        (BASIC.replace("lr = 1e-4", "epochs = true"), "train.epochs"),
        ("[data]\ndataset = 'ucf11'\n", "missing [model]"),
        ("[data\n", "invalid TOML"),
    ],
)
def test_errors_are_usage_errors(tmp_path, text, message):
    with pytest.raises(UsageError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(write(tmp_path, text))


def test_bad_override_is_an_error(tmp_path):
    with pytest.raises(UsageError, match="unknown keys in"):
        load_config(write(tmp_path, BASIC), ["--train.bogus=1"])
    with pytest.raises(UsageError, match="expected --section.key=value"):
        load_config(write(tmp_path, BASIC), ["--lr=1"])


def test_toml_round_trip(tmp_path):
    cfg = load_config(write(tmp_path, BASIC), ["--train.name=a \"quoted\" name"])
    again = load_config(write(tmp_path, config_to_toml(cfg), "again.toml"))
    assert again == cfg
    assert config_from_dict(cfg.to_dict()) == cfg
    assert isinstance(cfg.replace("data", fold=2), ExperimentConfig) and cfg.replace("data", fold=2).data.fold == 2


def test_toml_round_trip_of_any_utf8_text_and_a_clear_refusal_of_the_rest(tmp_path):
    """Paths with a tab, DEL, quotes, a backslash or an emoji parse back to themselves (oracle: the
    config itself); undecodable bytes of a file name cannot be written to TOML: ValueError."""
    import dataclasses
    import os

    cfg = load_config(write(tmp_path, BASIC))
    odd = "vid\u00e9os/tab\there \x7f \"q\" back\\slash \U0001f600"
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, cache=odd))
    assert load_config(write(tmp_path, config_to_toml(cfg), "odd.toml")) == cfg
    bad = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, cache=os.fsdecode(b"caf\xe9")))
    with pytest.raises(ValueError, match="not valid UTF-8"):
        config_to_toml(bad)


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_config_parses(path):
    cfg = load_config(path)
    assert cfg.train.name == path.stem
