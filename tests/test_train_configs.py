"""Every shipped paper config: it parses, builds the paper-size model with the paper's parameter count,
and runs one training step (then validation and test) on a tiny fake cache of its dataset's layout."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from train_fixtures import IN_MODES, SIZE, write_fake_cache

from app.config import load_config
from app.train import build_model, train_experiment
from data.specs import PixelSpec

CONFIGS = Path(__file__).resolve().parent.parent / "app" / "configs"
DATASETS = {"ucf11": 11, "hollywood2": 12, "celebrities": 47}
MODELS = ("tt_gru", "tt_lstm", "tt_mlp", "gru", "lstm")
# The paper's input-to-hidden weight counts (Yang et al. 2017; docs/DESIGN.md, "Dataset facts"; scripts/param_table.py).
PAPER_TT = {
    ("ucf11", "tt_gru"): 3232, ("ucf11", "tt_lstm"): 3360,
    ("hollywood2", "tt_gru"): 2944, ("hollywood2", "tt_lstm"): 3104,
    ("celebrities", "tt_gru"): 3328, ("celebrities", "tt_lstm"): 3392,
}  # fmt: skip
PAPER_CONFIGS = [f"{d}_{m}" for d in DATASETS for m in MODELS]


def _tt_params(in_modes, out_modes, ranks) -> int:
    return sum(ranks[k] * i * o * ranks[k + 1] for k, (i, o) in enumerate(zip(in_modes, out_modes)))


def test_every_paper_row_has_a_config():
    shipped = {p.stem for p in CONFIGS.glob("*.toml")}
    assert set(PAPER_CONFIGS) <= shipped
    assert {"demo_tt_gru", "demo_gru"} <= shipped


@pytest.mark.parametrize("name", PAPER_CONFIGS)
def test_paper_config_builds_the_paper_model(name):
    cfg = load_config(CONFIGS / f"{name}.toml")
    dataset, model_name = cfg.data.dataset, cfg.model.name
    assert name == f"{dataset}_{model_name}"
    W, H = cfg.data.size
    D = W * H * 3
    assert (cfg.data.fps, (W, H)) == {"ucf11": (24.0, (160, 120)), "hollywood2": (12.0, (234, 100)),
                                      "celebrities": (12.0, (160, 120))}[dataset]
    assert cfg.train.l2 == 0.01 and cfg.data.batch_size == 16
    spec = PixelSpec(size=(W, H), fps=cfg.data.fps)
    with torch.device("meta"):  # the dense baselines have 44M+ weights: build them without memory
        model = build_model(cfg, num_classes=DATASETS[dataset], input_spec=spec)
    assert model.classifier.out_features == DATASETS[dataset]
    count = model.input_map_num_params(include_bias=False)
    if (dataset, model_name) in PAPER_TT:
        assert count == PAPER_TT[(dataset, model_name)]
    elif model_name in ("gru", "lstm"):
        gates = 3 if model_name == "gru" else 4
        assert count == D * 256 * gates  # UCF11 GRU: 57,600 x 768 = 44,236,800
    else:  # TT-MLP: 6 frames stacked on the first input mode, 4x4x4x4 hidden, ranks 4
        modes = cfg.model.params["in_modes"]
        assert count == _tt_params((modes[0] * 6, *modes[1:]), (4, 4, 4, 4), (1, 4, 4, 4, 1))
    if (dataset, model_name) == ("ucf11", "gru"):
        assert count == 44_236_800
    if model_name.startswith("tt_"):
        assert math.prod(cfg.model.params["in_modes"]) == D
        assert cfg.model.params["ranks"] == (1, 4, 4, 4, 1)
        assert math.prod(cfg.model.params["hidden_modes"]) == 256


@pytest.fixture(scope="module")
def fake_caches(tmp_path_factory):
    root = tmp_path_factory.mktemp("caches")
    return {
        "ucf11": write_fake_cache(root / "ucf11", dataset="ucf11", classes=("biking", "diving", "golf"),
                                  per_class=5, groups_per_class=5),
        "celebrities": write_fake_cache(root / "celebrities", dataset="celebrities", classes=("ann", "bob", "cy"),
                                        per_class=5, fps=12.0),
        "hollywood2": write_fake_cache(root / "hollywood2", dataset="hollywood2", classes=("Eat", "Kiss", "Run"),
                                       per_class=6, multi_label=True, splits={"train": 0.5, "test": 0.5},
                                       fps=12.0),
    }


@pytest.mark.parametrize("name", PAPER_CONFIGS)
def test_paper_config_trains_one_step_on_a_tiny_cache(name, fake_caches, tmp_path):
    dataset = name.split("_", 1)[0]
    overrides = [
        f"--data.cache={fake_caches[dataset]}", f"--data.size=[{SIZE[0]},{SIZE[1]}]", "--data.fold=0",
        "--data.workers=0", "--data.batch_size=4", "--train.epochs=1", "--train.steps_per_epoch=1",
        "--train.progress=false", "--train.plots=false", f"--train.out_dir={tmp_path}",
    ]
    if name.split("_", 1)[1].startswith("tt_"):
        overrides.append(f"--model.in_modes={list(IN_MODES)}")
    cfg = load_config(CONFIGS / f"{name}.toml", overrides)
    result = train_experiment(cfg)
    run = tmp_path / name / ("fold0" if dataset != "hollywood2" else "")
    rows = (run / "metrics.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].split(",")[1] == "1", "exactly one optimizer step"
    metric = "map" if dataset == "hollywood2" else "accuracy"
    assert 0.0 <= result[metric] <= 1.0
    meta = json.loads((run / "checkpoints" / "best.json").read_text())
    assert meta["model_name"] == cfg.model.name and meta["multi_label"] == (dataset == "hollywood2")
    assert meta["input_spec"]["fps"] == cfg.data.fps
