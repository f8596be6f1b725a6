"""The classification report: one self-contained HTML page, one table row per input.

Each row shows the file, a strip of thumbnails taken from the frames the model saw (JPEG data:
URIs, so the page works offline and can be mailed), the top-k labels as bars, frames, duration and
the error if there is one (highlighted). Columns sort on click (a few lines of inline JS; no CDN).
Names are shown in their printable form (preprocessing/names.py); every file name, label and
message goes through `html.escape`: a file named
`<script>alert(1)</script>.mp4` shows up as text.

A video with a timeline (`Prediction.segments`, app/timeline.py) gets a second row right under its
own, spanning the table: a strip (inline SVG, one <rect> per segment, coloured by the segment's top
label, hover for its time range and scores), a time axis and a legend (label -> colour, share of
the video's time it tops); sorting keeps that row under its video. Videos without one are unchanged.
"""

from __future__ import annotations

import base64
import colorsys
import datetime
import math
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
tr:has(+ tr.timeline) > td { border-bottom: none; }
tr.timeline > td { padding-top: 0; }
svg.tl { display: block; width: 100%; height: 22px; background: #e4e4e4; border-radius: 2px; }
svg.tl rect:hover { opacity: .6; }
.tl-axis { position: relative; height: 1.2em; font-size: 11px; color: #666; }
.tl-axis span { position: absolute; top: 0; padding-left: 2px; border-left: 1px solid #aaa; white-space: nowrap; }
.tl-legend { display: flex; flex-wrap: wrap; gap: 2px 12px; font-size: 12px; }
.tl-legend i { display: inline-block; width: .9em; height: .9em; margin-right: 4px; vertical-align: -1px; }
"""

# Sort the body rows by the clicked column: numbers when the header says data-type="num".
_JS = """
document.querySelectorAll("#results th[data-col]").forEach(function (th) {
  th.addEventListener("click", function () {
    var col = +th.dataset.col, num = th.dataset.type === "num";
    var asc = !th.classList.contains("sorted-asc");
    document.querySelectorAll("#results th").forEach(function (h) { h.classList.remove("sorted-asc", "sorted-desc"); });
    th.classList.add(asc ? "sorted-asc" : "sorted-desc");
    var body = document.querySelector("#results tbody"), rows = [];
    Array.prototype.forEach.call(body.rows, function (r) {  // a timeline row stays under its video's
      if (r.classList.contains("timeline")) rows[rows.length - 1].tl = r; else rows.push(r);
    });
    rows.sort(function (a, b) {
      var x = a.cells[col].dataset.v, y = b.cells[col].dataset.v;
      var c = num ? (parseFloat(x) || -Infinity) - (parseFloat(y) || -Infinity) : x.localeCompare(y);
      return asc ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); if (r.tl) body.appendChild(r.tl); });
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
    colours = label_colours(predictions)
    rows = "\n".join(_row(i + 1, p, colours) for i, p in enumerate(predictions))
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


def _row(n: int, p: Prediction, colours: dict[str, str]) -> str:
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
    row = f'<tr class="{"ok" if p.ok else "error"}">' + "".join(cells) + "</tr>"
    return row + "\n" + _timeline_row(p, colours) if p.segments else row


def _td(sort_value: object, html_text: str, cls: str = "") -> str:
    klass = f' class="{cls}"' if cls else ""
    return f'<td{klass} data-v="{escape(str(sort_value), quote=True)}">{html_text}</td>'


# --- the timeline strip -------------------------------------------------------------------------

# Tableau 10 without its grey (grey is the strip's background: time no segment covers); labels past
# these get golden-angle hues (distinct hues for distinct ranks, three lightness levels).
_PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f"]
_NO_LABEL = "#ffffff"  # a segment without scores
_HOVER_TOP = 3  # labels in a segment's hover text (a 1,000-segment strip stays ~200 KB)


def _colour(rank: int) -> str:
    if rank < len(_PALETTE):
        return _PALETTE[rank]
    k = rank - len(_PALETTE)
    r, g, b = colorsys.hls_to_rgb((k * 0.381966) % 1.0, (0.45, 0.62, 0.32)[k % 3], 0.62)
    return f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"


def label_colours(predictions: Sequence[Prediction]) -> dict[str, str]:
    """One colour per label that tops a segment anywhere in the report, by its rank in the sorted
    set of those labels: the same label has the same colour in every video's strip (of this page)."""
    tops = sorted({s.labels[0][0] for p in predictions for s in p.segments if s.labels})
    return {label: _colour(i) for i, label in enumerate(tops)}


def _clock(t: float) -> str:
    """Seconds as m:ss, or h:mm:ss from an hour on; tenths when there are any (1:02.5)."""
    tenths = round(max(0.0, t) * 10)
    seconds, tenth = divmod(tenths, 10)
    h, rest = divmod(seconds, 3600)
    m, sec = divmod(rest, 60)
    text = f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"
    return f"{text}.{tenth}" if tenth else text


def _num(x: float) -> str:
    """An SVG coordinate in seconds, to the millisecond, short."""
    text = f"{x:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _ticks(total: float) -> list[float]:
    """Axis marks at a round step, at most about 8 across the strip."""
    steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400]
    step = next((s for s in steps if total / s <= 8), math.ceil(total / 8 / 86400) * 86400)
    return [k * step for k in range(int(total // step) + 1)]


def _timeline_row(p: Prediction, colours: dict[str, str]) -> str:
    """The row under a video's row: its timeline strip, axis and legend (one cell, whole width).

    The strip is an SVG whose x axis is seconds (viewBox 0..length, stretched to the cell's width),
    so a segment's position is start / length of the strip. Overlapping segments (stride < window)
    are each drawn over [start, next segment's start) -- the last one to its end -- so the strip
    shows one colour per moment, that of the latest segment covering it; with gaps (stride > window)
    each is drawn over [start, end) and the grey background shows the time no segment covers. The
    hover text gives the segment's own range [start, end) and its top 3 labels with scores.
    """
    segments = sorted(p.segments, key=lambda s: s.start)
    total = max([p.duration or 0.0] + [s.end for s in segments])
    if not total > 0:
        total = 1.0  # degenerate: empty segments at 0 s; still one (empty) rect each
    rects, shares = [], {}
    for j, seg in enumerate(segments):
        start = min(max(0.0, seg.start), total)
        stop = min(seg.end, total, segments[j + 1].start if j + 1 < len(segments) else math.inf)
        width = max(0.0, stop - start)
        top = seg.labels[0][0] if seg.labels else None
        if top is not None:
            shares[top] = shares.get(top, 0.0) + width
        lines = [f"{_clock(seg.start)}\u2013{_clock(seg.end)}"]
        scores = [f"{printable_text(label)} {score:.3f}" for label, score in seg.labels[:_HOVER_TOP]]
        lines += scores or ["no scores"]
        rects.append(
            f'<rect x="{_num(start)}" width="{_num(width)}" height="1" '
            f'fill="{colours.get(top, _NO_LABEL)}">'
            f"<title>{escape(chr(10).join(lines))}</title></rect>"
        )
    svg = (
        f'<svg class="tl" viewBox="0 0 {_num(total)} 1" preserveAspectRatio="none" shape-rendering="crispEdges" '
        f'role="img" aria-label="timeline, {len(segments)} segments">{"".join(rects)}</svg>'
    )
    axis = "".join(
        f'<span style="left:{100 * t / total:.2f}%">{_clock(t)}</span>' for t in _ticks(total) if t / total <= 0.94
    )
    legend = "".join(
        f'<span title="{escape(name)}: tops {100 * share / total:.1f}% of the time">'
        f'<i style="background:{colours[label]}"></i>{escape(name)} {escape(_percent(share / total))}</span>'
        for label, share in sorted(shares.items(), key=lambda kv: (-kv[1], kv[0]))
        for name in [printable_text(label)]
    )
    return (
        f'<tr class="timeline"><td colspan="{len(_COLUMNS)}">{svg}'
        f'<div class="tl-axis">{axis}</div><div class="tl-legend">{legend}</div></td></tr>'
    )


def _percent(share: float) -> str:
    return "<1%" if 0 < share < 0.005 else f"{100 * share:.0f}%"
