"""The site's browser check (docs/check_site.py) finds what it is meant to find.

Small hand-made pages in the pydata theme's layout: a clean one passes; a content column
overflowed by a wide element, a broken image, a console error and a script from the network
are each reported; a wide code block that scrolls inside itself is not. The browser tests run
where Chromium, chromedriver and selenium are installed (CI installs them) and skip elsewhere.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("check_site", ROOT / "docs" / "check_site.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["check_site"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


check_site = _load()

PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8">{head}
<style>
body {{ margin: 0; }}
.bd-article-container {{ width: 600px; overflow-x: auto; }}
pre {{ overflow-x: auto; }}
</style></head>
<body><div class="bd-article-container"><article class="bd-article">
<h1>Page</h1><p>Some text.</p>{body}
</article></div></body></html>
"""
# a 1x1 transparent PNG
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)


def _site(tmp_path: Path, pages: dict[str, str]) -> Path:
    html = tmp_path / "html"
    html.mkdir()
    (html / "ok.png").write_bytes(PNG)
    for name, (head, body) in pages.items():
        (html / name).write_text(PAGE.format(head=head, body=body))
    return html


def test_remote_assets_found_and_links_ignored(tmp_path):
    html = _site(
        tmp_path,
        {
            "index.html": ('<script src="https://cdn.example.org/mathjax.js"></script>', ""),
            "a.html": (
                '<link rel="stylesheet" href="//cdn.example.org/x.css">'
                '<link rel="canonical" href="https://example.org/a.html">',
                '<a href="https://github.com/curvlab/curvlab">source</a>'
                '<script src="_static/local.js"></script>',
            ),
        },
    )
    found = check_site.remote_assets(html)
    assert found == [
        "a.html: //cdn.example.org/x.css",
        "index.html: https://cdn.example.org/mathjax.js",
    ]


def test_pages_to_open(tmp_path):
    html = _site(tmp_path, {"index.html": ("", ""), "benchmarks.html": ("", "")})
    study = html / "auto_examples" / "study_a"
    study.mkdir(parents=True)
    (study / "plot_a1.html").write_text("<html></html>")
    (html / "auto_examples" / "plot_hvp_basics.html").write_text("<html></html>")
    pages = [p.relative_to(html).as_posix() for p in check_site.pages_to_open(html)]
    assert pages[0] == "index.html"
    assert "benchmarks.html" in pages and "auto_examples/study_a/plot_a1.html" in pages
    assert "auto_examples/plot_hvp_basics.html" not in pages
    every = [
        p.relative_to(html).as_posix() for p in check_site.pages_to_open(html, everything=True)
    ]
    assert "auto_examples/plot_hvp_basics.html" in every


def _browser():
    chromium = check_site.find_binary(None, ["chromium", "chromium-browser", "google-chrome"])
    driver = check_site.find_binary(None, ["chromedriver"])
    if not chromium or not driver or importlib.util.find_spec("selenium") is None:
        pytest.skip("needs Chromium, chromedriver and selenium (CI installs them)")
    return check_site.start_browser(chromium, driver)


@pytest.fixture(scope="module")
def browser():
    driver = _browser()
    yield driver
    driver.quit()


def test_browser_check_finds_each_problem(tmp_path, browser):
    wide = "x" * 400
    html = _site(
        tmp_path,
        {
            "clean.html": (
                "",
                '<img src="ok.png" alt="">'
                # wider than the column, but scrolls inside its own block: fine
                f"<pre>{wide}</pre>",
            ),
            "overflow.html": ("", '<div style="width: 1200px">too wide</div>'),
            "image.html": ("", '<img src="missing.png" alt="">'),
            "console.html": ("<script>console.error('boom from the page')</script>", ""),
        },
    )
    report = {
        name: check_site.check_page(browser, html / name, html)
        for name in ("clean.html", "overflow.html", "image.html", "console.html")
    }
    assert report["clean.html"].ok, report["clean.html"].problems
    (over,) = report["overflow.html"].problems
    assert "content column overflows" in over and "div" in over
    assert any("broken image missing.png" in p for p in report["image.html"].problems)
    assert any(
        "console error" in p and "boom from the page" in p for p in report["console.html"].problems
    )


def test_screenshot_is_a_full_page_png(tmp_path, browser):
    html = _site(tmp_path, {"long.html": ("", '<div style="height: 3000px">tall</div>')})
    shots = tmp_path / "shots"
    assert check_site.check_page(browser, html / "long.html", html, shots).ok
    png = (shots / "long.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    height = int.from_bytes(png[20:24], "big")
    assert height > 3000


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Chromium")
def test_main_reports_missing_site(tmp_path, capsys):
    assert check_site.main(["--html", str(tmp_path)]) == 2
    assert "no built site" in capsys.readouterr().err
