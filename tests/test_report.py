"""The HTML report: one row per input, escaping, embedded thumbnails, sorting markup, and a render
in headless Chromium (skipped cleanly when Chromium is not installed)."""

import base64
import re
import shutil
import subprocess
from html.parser import HTMLParser

import cv2
import numpy as np
import pytest

from app.inference import Prediction, make_thumbnails
from app.report import label_colours, render_report, write_report
from app.timeline import SegmentScores

EVIL = "<script>alert(1)</script>.mp4"
HOSTILE = "<script>alert(\"x\")</script> & 'co'"  # a label


def _predictions():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (10, 120, 160, 3), dtype=np.uint8)
    ok = Prediction(
        "clips/a.mp4", "video", (0, 0), labels=[("walk", 0.7), ('<img src=x onerror="alert(2)">', 0.2)],
        frames=10, duration=0.42, thumbnails=make_thumbnails(frames, 4, 64),
    )
    evil = Prediction(EVIL, "video", (1, 0), labels=[("run & jump", 0.9)], frames=30, duration=1.25,
                      thumbnails=make_thumbnails(frames[:3], 5, 64))
    bad = Prediction("clips/broken.avi", "video", (2, 0), error="clips/broken.avi: <moov> atom not found")
    return [ok, evil, bad]


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self.cells, self.imgs, self.tags, self.text = [], None, [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        if tag == "tr" and attrs.get("class") in ("ok", "error"):
            self.cells = []
            self.rows.append((attrs["class"], self.cells))
        if tag == "td" and self.cells is not None:
            self.cells.append(attrs.get("data-v"))
        if tag == "img":
            self.imgs.append(attrs["src"])

    def handle_data(self, data):
        self.text.append(data)


def test_rows_escaping_and_thumbnails():
    html = render_report(_predictions(), details={"checkpoint": "<ckpt>"})
    p = _Collect()
    p.feed(html)
    assert [c for c, _ in p.rows] == ["ok", "ok", "error"]
    assert p.rows[1][1][1] == EVIL  # the sort value of the file cell, unescaped by the parser
    assert p.tags.count("script") == 1 and "onerror=\"alert(2)\"" not in html
    assert EVIL not in html and "<ckpt>" not in html and "<moov>" not in html
    assert EVIL in "".join(p.text) and "<moov> atom not found" in "".join(p.text)
    assert len(p.imgs) == 4 + 3  # thumbnails never exceed the frames there are
    for src in p.imgs:
        assert src.startswith("data:image/jpeg;base64,")
        img = cv2.imdecode(np.frombuffer(base64.b64decode(src.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)
        assert img.shape == (64, 85, 3)  # 160x120 scaled to 64 px high
    assert re.search(r'<th data-col="4" data-type="num">score</th>', html)


def test_thumbnails_come_from_the_frames():
    frames = np.zeros((3, 24, 32, 3), np.uint8)
    frames[1, :, :, 0] = 255  # the middle frame is pure red (RGB)
    (a, b, c) = make_thumbnails(frames, 3, 64)  # never upscaled: 24 px high stays 24
    red = cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR)  # BGR
    assert red.shape == (24, 32, 3) and red[..., 2].mean() > 240 and red[..., :2].mean() < 15
    assert cv2.imdecode(np.frombuffer(a, np.uint8), cv2.IMREAD_COLOR).max() < 15


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(_chromium() is None, reason="Chromium is not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(tmp_path):
    path = tmp_path / "report.html"
    write_report(path, _predictions())
    dom = _dom_sorted_by_score(path, tmp_path)
    p = _Collect()
    p.feed(dom)
    assert [cells[1] for _, cells in p.rows] == [EVIL, "clips/a.mp4", "clips/broken.avi"]  # 0.9, 0.7, none
    assert len(p.imgs) == 7 and all(s.startswith("data:image/jpeg") for s in p.imgs)
    shot = tmp_path / "report.png"
    subprocess.run(_chromium_flags(tmp_path) + ["--window-size=1200,600", f"--screenshot={shot}", path.as_uri()],
                   capture_output=True, timeout=60)
    img = cv2.imread(str(shot))
    assert img is not None and img.shape[:2] == (600, 1200)
    assert (img.std(axis=(0, 1)) > 10).all()  # not a blank page
    # The error row is highlighted: its light red (BGR ~ (232, 232, 253)) covers part of the page.
    pink = (np.abs(img.astype(int) - (232, 232, 253)).sum(axis=2) < 12).mean()
    assert pink > 0.01


# --- the timeline strip (Prediction.segments) ---------------------------------------------------

class _Timeline(HTMLParser):
    """Per timeline row: the strip's viewBox, its rects (attrs, hover text) and the legend entries
    (title attribute, text). Row classes in order, to see where a timeline row sits."""

    def __init__(self):
        super().__init__()
        self.row_classes, self.strips, self.tags = [], [], []
        self._in = None  # "title" | "legend" | None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        a = dict(attrs)
        if tag == "tr":
            self.row_classes.append(a.get("class"))
        if tag == "svg" and a.get("class") == "tl":
            self.strips.append({"viewBox": a["viewbox"], "rects": [], "legend": []})
        if tag == "rect":
            self.strips[-1]["rects"].append([a, ""])
        if tag == "title" and self.strips and self._in is None:
            self._in = "title"
        if tag == "span" and self.strips and "title" in a and self._in is None:
            self.strips[-1]["legend"].append([a["title"], a, ""])
            self._in = "legend"
        if tag == "i" and self._in == "legend":
            self.strips[-1]["legend"][-1][1] = a  # the swatch's style

    def handle_endtag(self, tag):
        if (tag, self._in) in (("title", "title"), ("span", "legend")):
            self._in = None

    def handle_data(self, data):
        if self._in == "title":
            self.strips[-1]["rects"][-1][1] += data
        elif self._in == "legend":
            self.strips[-1]["legend"][-1][2] += data


def _parse(html):
    p = _Timeline()
    p.feed(html)
    return p


def _video(path, duration, segments, order=0):
    return Prediction(path, "video", (order, 0), labels=[("walk", 0.6), ("run", 0.3)], frames=int(duration * 25),
                      duration=duration, segments=segments)


def _segs(starts, length, tops, total):
    """Segments [start, start + length) cut at `total`; each top label gets a different second label
    (so colouring by anything but the top label shows)."""
    return [SegmentScores(s, min(s + length, total), [(top, 0.9 - 0.01 * j), (f"second{j}", 0.05)])
            for j, (s, top) in enumerate(zip(starts, tops))]


def _fill(rect):
    return rect[0]["fill"]


def test_timeline_strip_colours_positions_and_hover():
    tops = ["walk", "walk", "run", "walk", "swim", "run"]
    video = _video("long.mp4", 60.0, _segs([0, 10, 20, 30, 40, 50], 10, tops, 60.0))
    other = _video("other.mp4", 20.0, _segs([0, 10], 10, ["swim", "walk"], 20.0), order=1)
    p = _parse(render_report([video, other]))
    assert p.row_classes == [None, "ok", "timeline", "ok", "timeline"]  # header, then each video's pair
    strip, strip2 = p.strips
    rects = strip["rects"]
    assert len(rects) == 6  # one element per segment
    # colour = the top label: same label same colour, different labels different colours, in both videos
    colour = {}
    for rect, top in zip(rects + strip2["rects"], tops + ["swim", "walk"]):
        assert colour.setdefault(top, _fill(rect)) == _fill(rect)
    assert len(set(colour.values())) == 3 and all(re.fullmatch(r"#[0-9a-f]{6}", c) for c in colour.values())
    # positions proportional to time: x / strip length == start / duration
    _, _, length, _ = map(float, strip["viewBox"].split())
    for rect, start in zip(rects, [0, 10, 20, 30, 40, 50]):
        assert float(rect[0]["x"]) / length == pytest.approx(start / 60.0)
        assert float(rect[0]["width"]) / length == pytest.approx(10 / 60.0)
    # hover: the segment's range and its labels with scores
    assert rects[2][1].splitlines() == ["0:20\u20130:30", "run 0.880", "second2 0.050"]
    # legend: the labels of this strip, their colour and the share of the time they top
    legend = {text.rsplit(" ", 1)[0]: (swatch["style"], text.rsplit(" ", 1)[1]) for _, swatch, text in strip["legend"]}
    assert legend == {label: (f"background:{colour[label]}", share)
                      for label, share in [("walk", "50%"), ("run", "33%"), ("swim", "17%")]}


def test_timeline_hover_gives_hours_for_long_videos():
    labels = [("walk", 0.5), ("run", 0.2), ("sit", 0.1), ("jump", 0.05), ("swim", 0.01)]
    seg = SegmentScores(3725.5, 3735.5, labels)
    p = _parse(render_report([_video("2h.mp4", 7200.0, [seg])]))
    hover = ["1:02:05.5\u20131:02:15.5", "walk 0.500", "run 0.200", "sit 0.100"]  # the top 3
    assert p.strips[0]["rects"][0][1].splitlines() == hover


def test_timeline_overlaps_are_cut_at_the_next_start_and_gaps_stay_empty():
    # S < L: segments [0,10) [4,14) [8,18) [12,20): each drawn up to the next start, the last to its end
    over = _video("over.mp4", 20.0, _segs([0, 4, 8, 12], 10, ["a", "b", "a", "b"], 20.0))
    # S > L: segments [0,5) [8,13) [16,20): drawn as they are, the gaps left to the background
    gaps = _video("gaps.mp4", 20.0, _segs([0, 8, 16], 5, ["a", "b", "a"], 20.0), order=1)
    p = _parse(render_report([over, gaps]))
    spans = [[(float(r[0]["x"]), float(r[0]["width"])) for r in s["rects"]] for s in p.strips]
    assert spans == [[(0, 4), (4, 4), (8, 4), (12, 8)], [(0, 5), (8, 5), (16, 4)]]
    assert p.strips[0]["rects"][1][1].startswith("0:04\u20130:14\n")  # hover keeps the segment's own range


def test_timeline_escapes_hostile_labels_in_text_and_attributes():
    segs = [SegmentScores(0, 5, [(HOSTILE, 0.7), ("<img src=x onerror=alert(1)>", 0.2)]),
            SegmentScores(5, 10, [("walk", 0.6)])]
    html = render_report([_video(EVIL, 10.0, segs)])
    assert HOSTILE not in html and "<img src=x" not in html and "<script>alert(" not in html
    p = _parse(html)
    assert p.tags.count("script") == 1 and "img" not in p.tags  # only the page's own sorting script
    (strip,) = p.strips
    assert strip["rects"][0][1].splitlines()[1:] == [f"{HOSTILE} 0.700", "<img src=x onerror=alert(1)> 0.200"]
    titles = [t for t, _, _ in strip["legend"]]
    texts = [text for _, _, text in strip["legend"]]
    assert titles[0] == f"{HOSTILE}: tops 50.0% of the time"  # the attribute, unescaped by the parser, whole
    assert texts[0] == f"{HOSTILE} 50%"
    assert all(set(a) <= {"x", "width", "height", "fill"} for a, _ in strip["rects"])  # nothing injected


def test_no_segments_no_strip():
    plain = _predictions()
    html = render_report(plain)
    p = _parse(html)
    assert "svg" not in p.tags and "timeline" not in p.row_classes and 'class="tl-' not in html
    # a video without segments renders the same row whether or not another has a timeline
    rows = re.findall(r"<tr.*?</tr>", html.split("<tbody>")[1], re.S)
    long = _video("long.mp4", 30.0, _segs([0, 10, 20], 10, ["a", "b", "c"], 30.0), order=3)
    rows2 = re.findall(r"<tr.*?</tr>", render_report(plain + [long]).split("<tbody>")[1], re.S)
    assert rows2[:3] == rows and len(rows2) == 5
    assert rows2[3].startswith('<tr class="ok">') and rows2[4].startswith('<tr class="timeline">')


def test_thousand_segment_strip_stays_small():
    # a 2-hour video, 1,000 overlapping segments (S = 7.2 s, L = 10 s), top 5 of a 40-label vocabulary
    rng = np.random.default_rng(1)
    vocab = [f"some fairly long label name number {i}" for i in range(40)]
    segs = []
    for j in range(1000):
        picks = rng.choice(40, 5, replace=False)
        labels = [(vocab[k], 0.5 / (r + 1)) for r, k in enumerate(picks)]
        segs.append(SegmentScores(j * 7.2, min(j * 7.2 + 10, 7200.0), labels))
    html = render_report([_video("2h.mp4", 7200.0, segs)])
    row = html[html.index('<tr class="timeline">'):html.index("</tbody>")]
    assert len(row.encode()) < 500_000 and len(html.encode()) < 600_000
    p = _parse(html)
    (strip,) = p.strips
    assert len(strip["rects"]) == 1000
    assert sum(float(r[0]["width"]) for r in strip["rects"]) == pytest.approx(7200.0, abs=0.01)  # covers it once
    assert len({_fill(r) for r in strip["rects"]}) == len({s.labels[0][0] for s in segs})


@pytest.mark.skipif(_chromium() is None, reason="Chromium is not installed (apt-get install chromium)")
def test_timeline_renders_and_sorts_in_headless_chromium(tmp_path):
    path = tmp_path / "report.html"
    tops = ["walk", "run", "walk", "swim"] * 25
    long = _video("long.mp4", 1000.0, _segs([10 * j for j in range(100)], 10, tops, 1000.0))
    long.labels = [("walk", 0.95)]
    write_report(path, _predictions() + [long])
    dom = _dom_sorted_by_score(path, tmp_path)
    p = _Collect()
    p.feed(dom)
    assert [cells[1] for _, cells in p.rows] == ["long.mp4", EVIL, "clips/a.mp4", "clips/broken.avi"]
    assert _parse(dom).row_classes == [None, "ok", "timeline", "ok", "ok", "error"]  # the strip moved with it
    shot = tmp_path / "report.png"
    subprocess.run(_chromium_flags(tmp_path) + ["--window-size=1200,700", f"--screenshot={shot}", path.as_uri()],
                   capture_output=True, timeout=60)
    img = cv2.imread(str(shot)).astype(int)
    colours = label_colours([long])
    for label in ("walk", "run", "swim"):  # each label's colour is on screen (BGR)
        rgb = [int(colours[label][i:i + 2], 16) for i in (1, 3, 5)]
        assert (np.abs(img - rgb[::-1]).sum(axis=2) < 12).mean() > 0.002, label


def _dom_sorted_by_score(path, tmp_path) -> str:
    """The DOM headless Chromium dumps for a copy of the page with a script that clicks the "score"
    header twice (descending sort): it shows whether the report's own sorting script works."""
    clicked = tmp_path / "clicked.html"
    clicks = '<script>var h = document.querySelector(\'th[data-col="4"]\'); h.click(); h.click();</script>'
    clicked.write_text(path.read_text(encoding="utf-8").replace("</body>", clicks + "</body>"), encoding="utf-8")
    return subprocess.run(
        _chromium_flags(tmp_path) + ["--virtual-time-budget=2000", "--dump-dom", clicked.as_uri()],
        capture_output=True, text=True, timeout=60,
    ).stdout


def _chromium_flags(tmp_path) -> list[str]:
    return [
        _chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
    ]
