"""The model registry: every family loads, a name is taken once, unknown names list the valid ones."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from torch import nn

from models import create_model, list_models, register_model
from models.registry import _MODEL_MODULES


def test_every_model_module_registers_its_models():
    names = list_models()
    for expected in ("tt_gru", "tt_lstm", "tt_mlp", "gru", "lstm", "qrnn", "logistic", "moe"):
        assert expected in names
    import sys

    assert all(mod in sys.modules for mod in _MODEL_MODULES)


def test_a_name_registered_twice_is_an_error():
    @dataclass(frozen=True)
    class Cfg:
        pass

    with pytest.raises(ValueError, match="registered twice"):
        @register_model("tt_gru", Cfg)
        class Other(nn.Module):
            pass


def test_unknown_model_names_the_valid_ones():
    with pytest.raises(KeyError, match="valid names: .*tt_gru"):
        create_model("no_such_model")
