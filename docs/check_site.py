"""Check the built site in a real headless browser (Chromium driven by Selenium).

Opens pages of ``docs/_build/html`` through ``file://`` URLs in a 1400 px wide window and
fails on:

* a horizontal overflow: of the document, or of the content column (the theme's article
  container scrolls sideways when something inside it is wider than the column). Elements
  that scroll inside themselves (code blocks, output blocks and table containers with
  ``overflow-x: auto``) are fine;
* a broken image (not ``complete`` or ``naturalWidth == 0`` once loaded);
* a console error (a ``SEVERE`` entry of the browser log: a failed script, a missing file, an
  exception).

It also scans every HTML file of the site (not only the opened ones) for scripts or
stylesheets loaded from the network (``http://``, ``https://``, ``//``): the site must work
offline, math included.

Pages opened by default: the index, the site's own pages (installation, FAQ, GPU and memory,
changelog, citation), the benchmarks page and every study page
(``auto_examples/study_*/*.html``); ``--all`` opens every page. ``--screenshots DIR`` saves
a full-page PNG of each page opened.

Usage::

    python docs/check_site.py [--html docs/_build/html] [--screenshots DIR] [--all]

Chromium and its driver are the system's (Debian: ``apt-get install chromium
chromium-driver``); ``--chromium`` and ``--chromedriver`` give other paths. Exit status 0 when
every page passes, 1 otherwise (each problem printed), 2 when the browser cannot start.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

DOCS = Path(__file__).resolve().parent
WIDTH, HEIGHT = 1400, 1000
#: the site's own pages, opened besides the index, the benchmarks and the studies
SITE_PAGES = ["installation", "faq", "gpu_memory", "changelog", "citation"]
#: Chrome cannot paint taller screenshots
MAX_SCREENSHOT_HEIGHT = 16000

# Runs in the page: every horizontal overflow that is not scrolled inside an element of its own.
# Returns {"document": [scrollWidth, clientWidth], "content": [...] or null, "culprits": [...]}.
_OVERFLOW_JS = r"""
const doc = document.documentElement;
const content = document.querySelector('.bd-article-container')
    || document.querySelector('main') || document.body;
const scrolls = (el) => {
  const s = getComputedStyle(el);
  return ['auto', 'scroll', 'hidden', 'clip'].includes(s.overflowX);
};
const right = content.getBoundingClientRect().right;
const culprits = [];
for (const el of content.querySelectorAll('*')) {
  const r = el.getBoundingClientRect();
  if (r.width === 0 || r.right <= right + 1) continue;
  // inside an element that scrolls (or clips) by itself: fine
  let p = el.parentElement, inner = false;
  while (p && p !== content) { if (scrolls(p)) { inner = true; break; } p = p.parentElement; }
  if (inner) continue;
  const name = el.tagName.toLowerCase() + (el.id ? '#' + el.id : '')
      + (el.classList.length ? '.' + [...el.classList].slice(0, 3).join('.') : '');
  culprits.push(name + ' (' + Math.round(r.right - right) + ' px too wide)');
  if (culprits.length >= 5) break;
}
return {document: [doc.scrollWidth, doc.clientWidth],
        content: [content.scrollWidth, content.clientWidth],
        culprits: culprits};
"""

_IMAGES_JS = r"""
return [...document.images].map(img => ({
  src: img.getAttribute('src'), complete: img.complete, width: img.naturalWidth}));
"""

_REMOTE = re.compile(
    r"<(?:script[^>]*\bsrc|link[^>]*\bhref)\s*=\s*[\"']((?:https?:)?//[^\"']+)[\"'][^>]*>",
    re.IGNORECASE,
)


@dataclass
class PageReport:
    """What the check found on one page."""

    page: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def remote_assets(html_dir: Path) -> list[str]:
    """``file: url`` for every script or stylesheet of the site loaded from the network
    (stylesheet links only; a plain hyperlink to another site is fine)."""
    found = []
    for path in sorted(html_dir.rglob("*.html")):
        text = path.read_text(errors="replace")
        for m in _REMOTE.finditer(text):
            tag = m.group(0).lower()
            if tag.startswith("<link") and "stylesheet" not in tag and "preload" not in tag:
                continue
            found.append(f"{path.relative_to(html_dir)}: {m.group(1)}")
    return found


def pages_to_open(html_dir: Path, *, everything: bool = False) -> list[Path]:
    """The index, the site's own pages, the benchmarks page and every study page (or every
    page with ``everything``); pages that do not exist are reported by :func:`main`."""
    if everything:
        skip = {"genindex.html", "search.html", "py-modindex.html"}
        return [
            p
            for p in sorted(html_dir.rglob("*.html"))
            if p.name not in skip and "_modules" not in p.parts and "_static" not in p.parts
        ]
    pages = [html_dir / "index.html"]
    pages += [html_dir / f"{name}.html" for name in SITE_PAGES]
    pages.append(html_dir / "benchmarks.html")
    pages += sorted((html_dir / "auto_examples").glob("study_*/*.html"))
    return pages


def find_binary(explicit: str | None, names: list[str]) -> str | None:
    if explicit:
        return explicit
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


def start_browser(chromium: str, chromedriver: str, width: int = WIDTH, height: int = HEIGHT):
    """A headless Chromium (the system's) with its browser log recorded."""
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager download drivers
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--window-size={width},{height}",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=opts)
    driver.set_window_size(width, height)
    driver.set_page_load_timeout(60)
    return driver


def _wait_loaded(driver, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if driver.execute_script("return document.readyState") == "complete":
            break
        time.sleep(0.1)
    # lazy images load only near the viewport: load them all, then wait for them
    driver.execute_script("for (const i of document.images) i.loading = 'eager';")
    while time.monotonic() < end:
        if driver.execute_script("return [...document.images].every(i => i.complete)"):
            break
        time.sleep(0.1)
    # MathJax typesets after load; let it finish so that its layout is the one checked
    while time.monotonic() < end:
        done = driver.execute_script(
            "return !window.MathJax || !MathJax.startup || !MathJax.startup.promise"
            " || window.__curvlab_mj === true"
        )
        if done:
            break
        driver.execute_script(
            "if (window.__curvlab_mj === undefined) { window.__curvlab_mj = false;"
            " MathJax.startup.promise.then(() => { window.__curvlab_mj = true; }); }"
        )
        time.sleep(0.1)


def check_page(driver, path: Path, html_dir: Path, screenshots: Path | None = None) -> PageReport:
    """Open ``path`` and report its overflows, broken images and console errors."""
    name = str(path.relative_to(html_dir))
    report = PageReport(name)
    driver.get_log("browser")  # drop entries of earlier pages
    driver.get(path.resolve().as_uri())
    _wait_loaded(driver)

    over = driver.execute_script(_OVERFLOW_JS)
    sw, cw = over["document"]
    if sw > cw + 1:
        report.problems.append(f"the page scrolls sideways ({sw} px wide in a {cw} px window)")
    if over["content"] is not None:
        sw, cw = over["content"]
        if sw > cw + 1:
            report.problems.append(
                f"the content column overflows ({sw} px of content in {cw} px)"
                + (": " + "; ".join(over["culprits"]) if over["culprits"] else "")
            )
    for img in driver.execute_script(_IMAGES_JS):
        if not (img["complete"] and img["width"] > 0):
            report.problems.append(f"broken image {img['src']}")
    for entry in driver.get_log("browser"):
        if entry.get("level") == "SEVERE":
            report.problems.append(f"console error: {entry.get('message', '')[:300]}")

    if screenshots is not None:
        out = screenshots / (name.replace("/", "__").removesuffix(".html") + ".png")
        save_screenshot(driver, out)
    return report


def save_screenshot(driver, out: Path) -> None:
    """A full-page PNG (up to :data:`MAX_SCREENSHOT_HEIGHT` px tall) at the window's width."""
    out.parent.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    width = driver.execute_script("return document.documentElement.clientWidth")
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {
                "x": 0,
                "y": 0,
                "width": width,
                "height": min(height, MAX_SCREENSHOT_HEIGHT),
                "scale": 1,
            },
        },
    )
    out.write_bytes(base64.b64decode(shot["data"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--html", type=Path, default=DOCS / "_build" / "html")
    parser.add_argument("--screenshots", type=Path, default=None, metavar="DIR")
    parser.add_argument("--all", action="store_true", help="open every page of the site")
    parser.add_argument("--chromium", default=None)
    parser.add_argument("--chromedriver", default=None)
    parser.add_argument("--width", type=int, default=WIDTH)
    args = parser.parse_args(argv)

    html_dir = args.html.resolve()
    if not (html_dir / "index.html").is_file():
        print(f"check_site: no built site in {html_dir} (run make docs first)", file=sys.stderr)
        return 2
    chromium = find_binary(args.chromium, ["chromium", "chromium-browser", "google-chrome"])
    chromedriver = find_binary(args.chromedriver, ["chromedriver"])
    if not chromium or not chromedriver:
        print(
            "check_site: Chromium or chromedriver not found "
            "(Debian: apt-get install chromium chromium-driver)",
            file=sys.stderr,
        )
        return 2

    problems = 0
    for asset in remote_assets(html_dir):
        print(f"FAIL {asset}: loaded from the network (the site must work offline)")
        problems += 1

    pages = pages_to_open(html_dir, everything=args.all)
    try:
        driver = start_browser(chromium, chromedriver, width=args.width)
    except Exception as err:  # the browser itself did not start: not a finding about the site
        print(f"check_site: the browser did not start: {err}", file=sys.stderr)
        return 2
    try:
        for path in pages:
            if not path.is_file():
                print(f"FAIL {path.relative_to(html_dir)}: missing")
                problems += 1
                continue
            report = check_page(driver, path, html_dir, args.screenshots)
            if report.ok:
                print(f"ok   {report.page}")
            for p in report.problems:
                print(f"FAIL {report.page}: {p}")
            problems += len(report.problems)
    finally:
        driver.quit()
    opened = sum(p.is_file() for p in pages)
    print(
        f"check_site: {opened} pages opened at {args.width} px, {problems} problem(s)"
        + (f"; screenshots in {args.screenshots}" if args.screenshots else "")
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
