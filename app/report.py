"""The classification report: one self-contained HTML page, one table row per input.

Each row shows the file, a strip of thumbnails taken from the frames the model saw (JPEG data:
URIs, so the page works offline and can be mailed), the top-k labels as bars, frames, duration and
the error if there is one (highlighted). Columns sort on click (a few lines of inline JS; no CDN).
Names are shown in their printable form (preprocessing/names.py); every file name, label and
message goes through `html.escape`: a file named
`<script>alert(1)</script>.mp4` shows up as text.
"""

from __future__ import annotations

import base64
import datetime
import os
from collections.abc import Sequence
from html import escape

from app.inference import Prediction
from preprocessing.fileio import atomic_open
from preprocessing.names import printable_name, printable_text

_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; margin: 0 0 .3em; }
.meta { color: #555; margin: 0 0 1em; }
table { border-collapse: collapse; width: 100%; }
th, td { border-bottom: 1px solid #ddd; padding: 6px 8px; text-align: left; vertical-align: middle; }
th { background: #f4f4f4; cursor: pointer; user-select: none; white-space: nowrap; position: sticky; top: 0; }
th.sorted-asc::after { content: " \\25B2"; } th.sorted-desc::after { content: " \\25BC"; }
td.file { max-width: 22em; word-break: break-all; font-family: ui-monospace, monospace; font-size: 12px; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.strip { display: flex; gap: 2px; } .strip img { height: 48px; border-radius: 2px; }
.bar { position: relative; height: 18px; margin: 2px 0; background: #eef2f7; min-width: 16em; }
.bar span.fill { position: absolute; left: 0; top: 0; bottom: 0; background: #9cc3e6; }
.bar span.text { position: relative; padding: 0 4px; font-size: 12px; white-space: nowrap; }
tr.error td { background: #fde8e8; } tr.error td.status { color: #a40000; font-weight: 600; }
td.status { max-width: 28em; word-break: break-word; }
"""

# Sort the body rows by the clicked column: numbers when the header says data-type="num".
_JS = """
document.querySelectorAll("#results th[data-col]").forEach(function (th) {
  th.addEventListener("click", function () {
    var col = +th.dataset.col, num = th.dataset.type === "num";
    var asc = !th.classList.contains("sorted-asc");
    document.querySelectorAll("#results th").forEach(function (h) { h.classList.remove("sorted-asc", "sorted-desc"); });
    th.classList.add(asc ? "sorted-asc" : "sorted-desc");
    var body = document.querySelector("#results tbody");
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[col].dataset.v, y = b.cells[col].dataset.v;
      var c = num ? (parseFloat(x) || -Infinity) - (parseFloat(y) || -Infinity) : x.localeCompare(y);
      return asc ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
"""

# (header, sort type); None = not sortable
_COLUMNS = [
    ("#", "num"),
    ("file", "text"),
    ("frames seen by the model", None),
    ("top label", "text"),
    ("score", "num"),
    ("top-k", None),
    ("frames", "num"),
    ("duration (s)", "num"),
    ("status", "text"),
]


def render_report(
    predictions: Sequence[Prediction],
    *,
    title: str = "vidclass classification report",
    details: dict[str, str] | None = None,
) -> str:
    """The report page as a string. `details` are shown above the table (checkpoint, model...)."""
    n_ok = sum(p.ok for p in predictions)
    n_bad = len(predictions) - n_ok
    meta = dict(details or {})
    meta.setdefault("inputs", f"{len(predictions)} ({n_ok} ok, {n_bad} failed)")
    meta.setdefault("generated", datetime.datetime.now().isoformat(timespec="seconds"))
    meta_html = " &middot; ".join(f"<b>{escape(k)}</b>: {escape(printable_text(str(v)))}" for k, v in meta.items())
    head = "".join(
        f'<th data-col="{i}" data-type="{kind}">{escape(name)}</th>' if kind else f"<th>{escape(name)}</th>"
        for i, (name, kind) in enumerate(_COLUMNS)
    )
    rows = "\n".join(_row(i + 1, p) for i, p in enumerate(predictions))
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{_CSS}</style></head>\n<body>\n"
        f"<h1>{escape(title)}</h1>\n<p class=\"meta\">{meta_html}</p>\n"
        f'<table id="results"><thead><tr>{head}</tr></thead>\n<tbody>\n{rows}\n</tbody></table>\n'
        f"<script>{_JS}</script>\n</body></html>\n"
    )


def write_report(path: str | os.PathLike, predictions: Sequence[Prediction], **kwargs) -> None:
    """Render and write atomically."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write(render_report(predictions, **kwargs))


def _row(n: int, p: Prediction) -> str:
    thumbs = "".join(
        f'<img alt="frame" src="data:image/jpeg;base64,{base64.b64encode(b).decode("ascii")}">' for b in p.thumbnails
    )
    bars = "".join(
        f'<div class="bar" title="{escape(label)}: {score:.4f}">'
        f'<span class="fill" style="width:{100 * max(0.0, min(1.0, score)):.1f}%"></span>'
        f'<span class="text">{escape(label)} {score:.3f}</span></div>'
        for label, score in ((printable_text(label), score) for label, score in p.labels)
    )
    top_label, top_score = p.labels[0] if p.labels else ("", None)
    top_label = printable_text(top_label)
    name = printable_name(p.path)
    status = "ok" if p.ok else printable_text(p.error, p.path).removeprefix(f"{name}: ")  # file: own column
    cells = [
        _td(n, str(n), "num"),
        _td(name, escape(name), "file"),
        f'<td><div class="strip">{thumbs}</div></td>',
        _td(top_label, escape(top_label)),
        _td("" if top_score is None else f"{top_score:.6f}", "" if top_score is None else f"{top_score:.3f}", "num"),
        f"<td>{bars}</td>",
        _td("" if p.frames is None else p.frames, "" if p.frames is None else str(p.frames), "num"),
        _td("" if p.duration is None else p.duration, "" if p.duration is None else f"{p.duration:.2f}", "num"),
        _td(status, escape(status), "status"),
    ]
    return f'<tr class="{"ok" if p.ok else "error"}">' + "".join(cells) + "</tr>"


def _td(sort_value: object, html_text: str, cls: str = "") -> str:
    klass = f' class="{cls}"' if cls else ""
    return f'<td{klass} data-v="{escape(str(sort_value), quote=True)}">{html_text}</td>'
