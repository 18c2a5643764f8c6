"""report.html in a real browser: headless Chromium, driven over the DevTools protocol.

Two real runs (studies/quickstart.yaml, and a study whose second stage fails) are rendered in Chromium;
every embedded figure must have loaded and have a size, every in-page link must have its target, nothing
may be fetched from outside the file, and the page must not scroll sideways on a phone-sized window.
Full-page screenshots are kept in ``test-artifacts/`` (git-ignored) for a person to look at.

The tests use the first of ``chromium``, ``chromium-browser``, ``google-chrome`` or ``google-chrome-stable`` on
the PATH (Debian: ``apt-get install chromium``) and the ``websocket-client`` package (the dev extra). Without
them they are skipped, saying what to install: a test never installs system packages.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
from _report_studies import FAILING_STUDY, run_keeping_failures

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")



# What the page reports about itself once loaded (no script is added to the report for the test).
PAGE_STATE = """JSON.stringify({
  images: document.images.length,
  loaded: Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0 && i.naturalHeight > 0).length,
  shown: Array.from(document.images).filter(i => i.getBoundingClientRect().width > 0).length,
  brokenLinks: Array.from(document.querySelectorAll('a[href^="#"]'))
      .map(a => a.getAttribute('href').slice(1)).filter(id => !document.getElementById(id)),
  fetched: performance.getEntriesByType('resource').map(r => r.name).filter(n => !n.startsWith('data:')),
  scripts: document.scripts.length,
  title: document.title,
  h1: document.querySelector('h1') && document.querySelector('h1').textContent,
  sections: Array.from(document.querySelectorAll('section.stage')).map(s => s.id),
  errorBoxes: Array.from(document.querySelectorAll('.error')).map(e => e.textContent),
  pageWidth: document.documentElement.scrollWidth,
  viewWidth: window.innerWidth,
  height: document.documentElement.scrollHeight,
})"""


def _find_browser() -> str | None:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="session")
def chromium() -> str:
    """The path of a Chromium binary; the tests are skipped, saying how to get one, when there is none."""
    found = _find_browser()
    if found is None:
        pytest.skip(f"no Chromium on the PATH (looked for {', '.join(BROWSERS)}): the browser tests of report.html "
                    "need one; on Debian or Ubuntu: apt-get install chromium (see README.md, Set up)")
    pytest.importorskip("websocket", reason="the browser tests of report.html need websocket-client "
                                            "(pip install -e '.[dev]')")
    return found


class Browser:
    """One headless Chromium and a minimal DevTools-protocol client for its first page."""

    def __init__(self, binary: str, profile: Path):
        import websocket  # websocket-client, in the dev extra

        self.proc = subprocess.Popen(
            [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--hide-scrollbars",
             "--remote-debugging-port=0", "--remote-allow-origins=*", f"--user-data-dir={profile}",
             "--window-size=1280,900", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError("Chromium did not open its DevTools port")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        pages = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
        url = next(p["webSocketDebuggerUrl"] for p in pages if p.get("type") == "page")
        self.ws = websocket.create_connection(url, timeout=60, suppress_origin=True)
        self._id = 0

    def call(self, method: str, **params):
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:  # events arrive in between; wait for the answer to this call
            message = json.loads(self.ws.recv())
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def open(self, path: Path, width: int = 1280, height: int = 900) -> dict:
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                  mobile=False)
        self.call("Page.navigate", url=path.resolve().as_uri())
        deadline = time.monotonic() + 60
        while self.evaluate("document.readyState") != "complete":
            assert time.monotonic() < deadline, f"{path} did not finish loading in 60 s"
            time.sleep(0.05)
        return json.loads(self.evaluate(PAGE_STATE))

    def screenshot(self, path: Path, width: int = 1280) -> None:
        height = min(int(self.evaluate("document.documentElement.scrollHeight")), 16000)
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                  mobile=False)
        shot = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        ws = getattr(self, "ws", None)
        if ws is not None:
            ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def browser(chromium, tmp_path_factory):
    pytest.importorskip("websocket", reason="websocket-client (dev extra) is needed to drive Chromium")
    b = Browser(chromium, tmp_path_factory.mktemp("chromium-profile"))
    yield b
    b.close()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("report-browser")
    failing = base / "failing.yaml"
    failing.write_text(textwrap.dedent(FAILING_STUDY).lstrip())
    return {"quickstart": run_keeping_failures(REPO / "studies" / "quickstart.yaml", base / "runs"),
            "failing": run_keeping_failures(failing, base / "runs")}


@pytest.mark.parametrize("name", ["quickstart", "failing"])
def test_report_renders_every_figure_in_chromium(browser, runs, name):
    run_dir = runs[name]
    pngs = sorted(run_dir.glob("*/*.png"))
    assert pngs, f"the {name} run drew no figures"
    t0 = time.monotonic()
    state = browser.open(run_dir / "report.html")
    seconds = time.monotonic() - t0

    assert state["images"] == len(pngs), f"{state['images']} <img> for {len(pngs)} PNG files"
    assert state["loaded"] == len(pngs), f"only {state['loaded']} of {len(pngs)} figures decoded"
    assert state["shown"] == len(pngs), "a figure has no size on the page"
    assert state["brokenLinks"] == [], f"links to missing anchors: {state['brokenLinks']}"
    assert state["fetched"] == [], f"the report fetched something from outside itself: {state['fetched']}"
    assert state["scripts"] == 0
    assert state["pageWidth"] <= state["viewWidth"]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert state["h1"] == manifest["study"]
    assert state["sections"] == [f"stage-{s}" for s in manifest["stages"]]
    if name == "failing":
        assert len(state["errorBoxes"]) == 1 and "no_such_factor_mm" in state["errorBoxes"][0]
    else:
        assert state["errorBoxes"] == []
    assert seconds < 30, f"the report took {seconds:.1f} s to load"

    shot = ARTIFACTS / f"report-{name}.png"
    browser.screenshot(shot)
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width == 1280 and height >= min(state["height"], 16000) - 1


def test_report_fits_a_phone_screen(browser, runs):
    """Figures and tables shrink or scroll inside the page: no sideways scrolling at 420 px."""
    state = browser.open(runs["quickstart"] / "report.html", width=420, height=800)
    assert state["pageWidth"] <= state["viewWidth"], f"page is {state['pageWidth']} px wide in a 420 px window"
    assert state["loaded"] == state["images"] > 0
    browser.screenshot(ARTIFACTS / "report-quickstart-phone.png", width=420)
