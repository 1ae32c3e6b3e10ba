"""The search page at ``/``, rendered by headless Chromium against a real server: the hits
must appear in the DOM the page's script builds, not merely in the HTML the server sends."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from selectolax.lexbor import LexborHTMLParser as HTMLParser

from ragkit.server import create_app, serve_in_thread

CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium on PATH (apt-get install -y chromium); the page is not rendered",
)


def chromium(*args: str) -> str:
    assert CHROMIUM is not None
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--window-size=1100,900",
            "--virtual-time-budget=15000",  # run the page's fetches to completion first
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture
def page_url(workspace, docs) -> Iterator[str]:  # type: ignore[no-untyped-def]
    workspace.ingest(docs)
    with serve_in_thread(create_app(workspace)) as url:
        yield url


def rendered(url: str, **params: str) -> HTMLParser:
    return HTMLParser(chromium("--dump-dom", f"{url}/?{urlencode(params)}"))


def test_hits_appear_with_source_headings_and_snippet(page_url: str) -> None:
    dom = rendered(page_url, q="dog pear", k="2")
    assert dom.css_first("body").attributes.get("data-state") == "done"
    hits = dom.css("li.hit")
    assert len(hits) == 2
    first = hits[0]
    assert first.css_first(".source").text() == "pets.md"
    assert first.css_first(".headings").text() == "Pets › Dogs"
    assert "dog ate a green pear" in first.css_first(".snippet").text()
    assert [m.text() for m in first.css(".snippet mark")] == ["dog", "pear"]
    assert dom.css_first("#status").text().startswith("2 hits · hybrid")
    options = [o.attributes["value"] for o in dom.css("#collection option")]
    assert options == ["default"]


def test_mode_and_filters_reach_the_api_and_errors_show(page_url: str) -> None:
    dom = rendered(page_url, q="dog pear", mode="dense", where="format=txt")
    assert [h.css_first(".source").text() for h in dom.css("li.hit")] == ["fruit.txt"]
    assert "dense" in dom.css_first("#status").text()
    bad = rendered(page_url, q="dog", where="not a filter")
    assert bad.css("li.hit") == []
    status = bad.css_first("#status")
    assert status.attributes.get("class") == "error"
    assert status.text().startswith("400: filter 'not a filter' is not KEY OP VALUE")


def test_screenshot_shows_the_page(page_url: str, tmp_path: Path) -> None:
    shot = tmp_path / "page.png"
    chromium(f"--screenshot={shot}", f"{page_url}/?q=dog+pear&k=3")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
