"""The HTML gallery opened in headless Chromium: it renders, and its filters change what is shown.

Chromium is Debian's `chromium`; when it is missing and we are root, the set-up installs it
with apt-get; otherwise (or when that fails) the tests skip with the reason.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from test_viz_fixtures import small_output

_PROFILE: dict = {}  # one browser profile folder for the module (a fresh one costs seconds per start)
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _find_browser() -> str | None:
    return next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)


@pytest.fixture(scope="module")
def chromium() -> str:
    exe = _find_browser()
    if exe is None and shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for cmd in (["apt-get", "install", "-y", "-q", "chromium"], ["apt-get", "update", "-q"],
                    ["apt-get", "install", "-y", "-q", "chromium"]):
            try:
                subprocess.run(cmd, env=env, capture_output=True, timeout=900, check=False)
            except (OSError, subprocess.TimeoutExpired):
                break
            exe = _find_browser()
            if exe:
                break
    if exe is None:
        pytest.skip("headless Chromium is not installed and could not be installed with apt-get "
                    "(needs root and Debian's package lists): `apt-get install -y chromium`")
    return exe


def _run(exe: str, args: list[str], tmp: Path) -> subprocess.CompletedProcess:
    base = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
            "--no-first-run", "--mute-audio", f"--user-data-dir={_PROFILE.get('dir', tmp / 'chrome-profile')}",
            "--virtual-time-budget=5000", "--window-size=1280,900"]
    return subprocess.run(base + args, capture_output=True, timeout=120, check=False)


class _Cards(HTMLParser):
    """Collects the keys of the rendered gallery cards and the #count / #probe texts."""

    def __init__(self):
        super().__init__()
        self.keys: list[str] = []
        self.texts: dict[str, str] = {}
        self._in: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "div" and "card" in (a.get("class") or "").split():
            self.keys.append(a.get("data-key"))
        if a.get("id") in ("count", "probe"):
            self._in = a["id"]
            self.texts[self._in] = ""

    def handle_endtag(self, tag):
        self._in = None

    def handle_data(self, data):
        if self._in:
            self.texts[self._in] += data


def _dom(exe: str, url: str, tmp: Path) -> _Cards:
    res = _run(exe, ["--dump-dom", url], tmp)
    assert res.returncode == 0, res.stderr.decode(errors="replace")[-2000:]
    p = _Cards()
    p.feed(res.stdout.decode("utf-8"))
    return p


@pytest.fixture(scope="module")
def gallery(tmp_path_factory) -> Path:
    from pipelines.cli import main

    tmp = tmp_path_factory.mktemp("gallery")
    _PROFILE["dir"] = tmp / "chrome-profile"
    out = small_output(tmp / "out")
    assert main(["viz", "--repository", str(out), "--out", str(tmp / "g")]) == 0
    return tmp / "g" / "index.html"


def test_gallery_screenshot_is_not_blank(chromium, gallery, tmp_path):
    shot = tmp_path / "shot.png"
    res = _run(chromium, [f"--screenshot={shot}", gallery.as_uri()], tmp_path)
    assert shot.is_file(), res.stderr.decode(errors="replace")[-2000:]
    a = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert a.shape[0] >= 800 and a.shape[1] >= 1200
    assert a.std() > 20  # not a flat page
    assert len(np.unique(a.reshape(-1, 3), axis=0)) > 500  # photos and plots, not just text
    # the rendered panels (photo gradient colours) are on the page: many saturated pixels
    sat = a.max(axis=2) - a.min(axis=2)
    assert (sat > 80).mean() > 0.02


def test_gallery_url_fragment_filters(chromium, gallery, tmp_path):
    url = gallery.as_uri()
    assert sorted(_dom(chromium, url, tmp_path).keys) == ["omni3d_1", "omni3d_2", "omni3d_3"]
    d = _dom(chromium, f"{url}#category=chair", tmp_path)
    assert sorted(d.keys) == ["omni3d_1", "omni3d_3"]
    assert d.texts["count"].startswith("2 of 3")


#: fragment -> the image keys it must show (one page load, see the probe below)
FRAGMENT_CASES = {
    "category=sofa": ["omni3d_2"],
    "family=distance": ["omni3d_1"],
    "family=count": ["omni3d_2"],
    "reason=depth_missing": ["omni3d_3"],
    "status=image_rejected": ["omni3d_3"],
    "status=all_kept": [],
    "q=_2": ["omni3d_2"],
    "category=chair&family=count": [],
}


def test_gallery_filter_controls_change_what_is_shown(chromium, gallery, tmp_path):
    """Drive the <select> controls as a user would (set value + change event) and record
    what the page shows after each step, plus whether the PNG panels loaded from disk."""
    probe = """
<script>
window.addEventListener("load", () => {
  const keys = () => [...document.querySelectorAll("#grid .card")].map(c => c.dataset.key).sort().join(",");
  const set = (id, v) => { const s = document.getElementById(id); s.value = v; s.dispatchEvent(new Event("change")); };
  const log = {all: keys()};
  set("f-category", "table"); log.table = keys(); log.hash = location.hash;
  set("f-category", ""); set("f-family", "count"); log.count = keys();
  set("f-family", ""); set("f-status", "has_rejected"); set("f-reason", "proj_iou_low"); log.reason = keys();
  log.images = [...document.images].map(i => i.naturalWidth);
  log.fragments = {};
  for (const f of FRAGMENTS) { location.hash = f; render(); log.fragments[f] = keys(); }
  document.body.insertAdjacentHTML("beforeend", '<pre id="probe">' + JSON.stringify(log) + '</pre>');
});
</script></body>"""
    page = gallery.read_text(encoding="utf-8")
    harness = gallery.parent / "probe.html"
    probe = probe.replace("FRAGMENTS", json.dumps(list(FRAGMENT_CASES)))
    harness.write_text(page[: page.rindex("</body>")] + probe + "</html>", encoding="utf-8")
    log = json.loads(_dom(chromium, harness.as_uri(), tmp_path).texts["probe"])
    assert log["all"] == "omni3d_1,omni3d_2,omni3d_3"
    assert log["table"] == "omni3d_1" and log["hash"] == "#category=table"
    assert log["count"] == "omni3d_2"
    assert log["reason"] == "omni3d_2"
    assert len(log["images"]) == 1 and log["images"][0] > 300  # the PNG panel loaded from the folder
    for frag, want in FRAGMENT_CASES.items():
        assert log["fragments"][frag] == ",".join(want), frag
