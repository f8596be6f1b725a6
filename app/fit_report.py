"""The report of a `fit` run: one self-contained HTML page (the choices and why, the test metrics,
the training curves and confusion matrix as embedded PNGs, a per-class table)."""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path
from typing import Any

from preprocessing.fileio import atomic_open
from preprocessing.names import printable_text

_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; max-width: 60em; }
table { border-collapse: collapse; margin: .5em 0 1.5em; } th, td { border-bottom: 1px solid #ddd;
padding: 4px 8px; text-align: left; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; border: 1px solid #eee; margin: .5em 0; }
"""


def write_fit_report(path: Path, *, run_dir: Path, plan: Any, result: dict[str, Any]) -> Path:
    """Write `path` (atomically) from the plan, the test metrics and the run folder's plots."""
    html = render_fit_report(run_dir=run_dir, plan=plan, result=result)
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(html)
    return path


def render_fit_report(*, run_dir: Path, plan: Any, result: dict[str, Any]) -> str:
    cfg = plan.config
    choices = [(k, str(v)) for k, v in plan.reasons.items()]
    params = {**cfg.model.params, "epochs": cfg.train.epochs, "patience": cfg.train.patience,
              "size": f"{cfg.data.size[0]}x{cfg.data.size[1]}", "fps": cfg.data.fps}
    head = {k: result[k] for k in ("accuracy", "macro_map", "map", "loss", "num_clips") if k in result}
    parts = [
        f"<h1>fit: {escape(printable_text(run_dir.name))}</h1>",
        f"<p>{len(plan.classes)} classes, {len(plan.clips)} videos; model tt_gru. Test metrics of the best "
        f"epoch (by validation) on the test videos.</p>",
        _table(["metric", "value"], [(k, f"{v:.4f}" if isinstance(v, float) else str(v)) for k, v in head.items()]),
        "<h2>Choices</h2>",
        _table(["setting", "value"], [(k, str(v)) for k, v in params.items()]),
        _table(["choice", "rule"], choices),
    ]
    for name, title in (("curves.png", "Training curves"), ("confusion.png", "Confusion matrix")):
        png = run_dir / name
        if png.is_file():
            data = base64.b64encode(png.read_bytes()).decode("ascii")
            parts.append(f'<h2>{title}</h2><img alt="{title}" src="data:image/png;base64,{data}">')
    per_class = result.get("per_class") or {}
    if per_class:
        rows = [(name, *(f"{r[k]:.3f}" for k in ("precision", "recall", "f1", "ap")), str(r["support"]))
                for name, r in per_class.items()]
        parts += ["<h2>Per class</h2>", _table(["class", "precision", "recall", "F1", "AP", "support"], rows)]
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>fit report</title>'
            f"<style>{_CSS}</style></head><body>\n{body}\n</body></html>\n")


def _table(header: list[str], rows: list[tuple[str, ...]]) -> str:
    th = "".join(f"<th>{escape(h)}</th>" for h in header)
    trs = "".join(
        "<tr>" + "".join(f'<td{" class=num" if i else ""}>{escape(printable_text(str(c)))}</td>'
                         for i, c in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"
