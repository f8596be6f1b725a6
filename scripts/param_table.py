"""Reproduce the TT-RNN paper's parameter counts (Yang et al. 2017, Table 1 and the per-dataset
counts) from the models themselves: `python -m scripts.param_table`.

Each number is the size of the model's input-to-hidden map, counted by the model
(`input_map_num_params()`). The paper counts weights only, no biases: with biases every TT count
would be larger by the number of gate units (e.g. 3,232 + 768 for the UCF11 TT-GRU), and the plain
GRU's 44,236,800 is exactly 57,600 x 768. Models are built on the meta device, so the 44M-weight
GRU costs no memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from models import create_model
from models.tt import TTLinear

UCF11 = (8, 20, 20, 18)  # 120 x 160 x 3
HOLLYWOOD2 = (10, 18, 13, 30)  # 100 x 234 x 3
CELEBRITIES = (4, 20, 20, 36)  # 120 x 160 x 3
HIDDEN = (4, 4, 4, 4)

# (table, setting, model label, registry name or "ttl", config, paper's number)
_SPECS: list[tuple[str, str, str, str, dict, int]] = []
for _r, (_ttl, _lstm, _gru, _sep) in {
    3: (1752, 2040, 1944, 7008),
    4: (2976, 3360, 3232, 11904),
    5: (4520, 5000, 4840, 18080),
}.items():
    _ranks = (1, _r, _r, _r, 1)
    _setting = f"8x20x20x18 -> 4x4x4x4, rank {_r}"
    _SPECS += [
        ("Table 1", _setting, "TTL", "ttl", dict(in_modes=UCF11, out_modes=HIDDEN, ranks=_ranks), _ttl),
        ("Table 1", _setting, "TT-LSTM (fused gates)", "tt_lstm", dict(in_modes=UCF11, ranks=_ranks), _lstm),
        ("Table 1", _setting, "TT-GRU (fused gates)", "tt_gru", dict(in_modes=UCF11, ranks=_ranks), _gru),
        (
            "Table 1",
            _setting,
            "TT-LSTM (separate gates)",
            "tt_lstm",
            dict(in_modes=UCF11, ranks=_ranks, separate_gates=True),
            _sep,
        ),
    ]
_SPECS += [
    ("Datasets", "UCF11 8x20x20x18", "TT-GRU", "tt_gru", dict(in_modes=UCF11), 3232),
    ("Datasets", "UCF11 8x20x20x18", "TT-LSTM", "tt_lstm", dict(in_modes=UCF11), 3360),
    ("Datasets", "UCF11 57,600 -> 256", "GRU", "gru", dict(input_size=57600, hidden_size=256), 44_236_800),
    (
        "Datasets",
        "Hollywood2 10x18x13x30",
        "TT-GRU",
        "tt_gru",
        dict(in_modes=HOLLYWOOD2, num_classes=12),
        2944,
    ),
    (
        "Datasets",
        "Hollywood2 10x18x13x30",
        "TT-LSTM",
        "tt_lstm",
        dict(in_modes=HOLLYWOOD2, num_classes=12),
        3104,
    ),
    (
        "Datasets",
        "Celebrities 4x20x20x36",
        "TT-GRU",
        "tt_gru",
        dict(in_modes=CELEBRITIES, num_classes=47),
        3328,
    ),
    (
        "Datasets",
        "Celebrities 4x20x20x36",
        "TT-LSTM",
        "tt_lstm",
        dict(in_modes=CELEBRITIES, num_classes=47),
        3392,
    ),
]


@dataclass(frozen=True)
class ParamRow:
    table: str  # "Table 1" or "Datasets"
    setting: str  # input modes -> hidden modes, ranks
    model: str  # the paper's name for the model
    ours: int  # input-to-hidden weights counted from our model (biases excluded)
    paper: int  # the paper's number
    dense: int  # weights of the dense input-to-hidden matrix it replaces

    @property
    def match(self) -> bool:
        return self.ours == self.paper


def param_table_rows() -> list[ParamRow]:
    """All rows, each counted from a freshly built model."""
    rows = []
    for table, setting, label, name, cfg, paper in _SPECS:
        if name == "ttl":
            layer = TTLinear(bias=False, **cfg)
            ours, dense = layer.num_params(include_bias=False), layer.in_features * layer.out_features
        else:
            model = create_model(name, **cfg)
            ours = model.input_map_num_params(include_bias=False)
            gates = {"tt_gru": 3, "gru": 3, "tt_lstm": 4}[name]
            in_features = cfg.get("input_size") or math.prod(cfg["in_modes"])
            dense = in_features * math.prod(HIDDEN) * gates
        rows.append(ParamRow(table, setting, label, ours, paper, dense))
    return rows


def format_table(rows: list[ParamRow]) -> str:
    lines = [
        "| table | setting | model | ours | paper | matches | dense | compression |",
        "|---|---|---|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.table} | {r.setting} | {r.model} | {r.ours:,} | {r.paper:,} | "
            f"{'yes' if r.match else 'NO'} | {r.dense:,} | {r.dense / r.ours:,.0f}x |"
        )
    return "\n".join(lines)


def main() -> int:
    rows = param_table_rows()
    print("Input-to-hidden parameters (weights only, as the paper counts), from the models:\n")
    print(format_table(rows))
    bad = [r for r in rows if not r.match]
    print(f"\n{len(rows) - len(bad)}/{len(rows)} numbers match the paper.")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
