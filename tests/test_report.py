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
from app.report import render_report, write_report

EVIL = "<script>alert(1)</script>.mp4"


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
    flags = [
        _chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
    ]
    # A copy of the page with a script that clicks the "score" header twice (descending sort):
    # the DOM Chromium dumps shows whether the report's own sorting script works.
    clicked = tmp_path / "clicked.html"
    clicks = '<script>var h = document.querySelector(\'th[data-col="4"]\'); h.click(); h.click();</script>'
    clicked.write_text(path.read_text(encoding="utf-8").replace("</body>", clicks + "</body>"), encoding="utf-8")
    dom = subprocess.run(
        flags + ["--virtual-time-budget=2000", "--dump-dom", clicked.as_uri()],
        capture_output=True, text=True, timeout=60,
    ).stdout
    p = _Collect()
    p.feed(dom)
    assert [cells[1] for _, cells in p.rows] == [EVIL, "clips/a.mp4", "clips/broken.avi"]  # 0.9, 0.7, none
    assert len(p.imgs) == 7 and all(s.startswith("data:image/jpeg") for s in p.imgs)
    shot = tmp_path / "report.png"
    subprocess.run(flags + ["--window-size=1200,600", f"--screenshot={shot}", path.as_uri()],
                   capture_output=True, timeout=60)
    img = cv2.imread(str(shot))
    assert img is not None and img.shape[:2] == (600, 1200)
    assert (img.std(axis=(0, 1)) > 10).all()  # not a blank page
    # The error row is highlighted: its light red (BGR ~ (232, 232, 253)) covers part of the page.
    pink = (np.abs(img.astype(int) - (232, 232, 253)).sum(axis=2) < 12).mean()
    assert pink > 0.01
