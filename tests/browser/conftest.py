"""Fixtures for the real-browser tests: the built site on 127.0.0.1, headless Chromium.

The site (``_build/html``, made by ``make book``) is served by a thread on a free
loopback port. Chromium is Debian's ``/usr/bin/chromium`` driven by Playwright; every
request that is not for that server is aborted, so the test proves the pages work
with no network. Screenshots go to ``artifacts/screenshots/``.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: The built site; ATTNKIT_SITE points elsewhere (e.g. a one-page build of scripts/build_page.sh).
SITE = Path(os.environ.get("ATTNKIT_SITE", ROOT / "_build" / "html"))
SHOTS = ROOT / "artifacts" / "screenshots"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # keep pytest's output clean
        pass


@pytest.fixture(scope="session")
def site_url() -> Iterator[str]:
    if not (SITE / "index.html").exists():
        pytest.fail(f"no built site at {SITE}; run `make book` first")
    handler = functools.partial(_Quiet, directory=str(SITE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _chromium() -> str:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("Debian's chromium is not installed; `make test-browser` installs it")
    return path


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=_chromium(),
            headless=True,
            args=[
                "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield b
        b.close()


@pytest.fixture()
def page(browser: object, site_url: str) -> Iterator[object]:
    """A fresh page whose requests can reach only the local site server.

    ``page.offsite_requests`` lists every request that was blocked.
    """
    context = browser.new_context(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    blocked: list[str] = []

    def route(r: object) -> None:
        url = r.request.url  # type: ignore[attr-defined]
        if url.startswith(site_url) or url.startswith("data:") or url.startswith("about:"):
            r.continue_()  # type: ignore[attr-defined]
        else:
            blocked.append(url)
            r.abort()  # type: ignore[attr-defined]

    context.route("**/*", route)
    pg = context.new_page()
    pg.offsite_requests = blocked  # type: ignore[attr-defined]
    yield pg
    context.close()


def screenshot(page: object, name: str, **kwargs: object) -> Path:
    """Save a screenshot under artifacts/screenshots/NAME.png and return its path."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), **kwargs)  # type: ignore[attr-defined]
    return path


def open_page(page: object, site_url: str, path: str, *, widgets: bool = True) -> list[str]:
    """Open ``path`` of the site, wait for its math (and widgets), return the failed requests.

    The returned list keeps filling while the test goes on: assert it is empty at the end.
    """
    failed: list[str] = []
    page.on(  # type: ignore[attr-defined]
        "response", lambda r: r.status >= 400 and failed.append(f"{r.status} {r.url}"))
    page.goto(f"{site_url}/{path}")  # type: ignore[attr-defined]
    wait_for_math(page)
    if widgets:
        wait_for_widgets(page)
    return failed


def wait_for_math(page: object, timeout: float = 20_000) -> None:
    """Wait until MathJax has typeset the page (no raw TeX left in math spans)."""
    page.wait_for_function(  # type: ignore[attr-defined]
        "() => window.MathJax && MathJax.startup && MathJax.startup.promise"
        " && document.querySelectorAll('mjx-container').length > 0",
        timeout=timeout,
    )


def wait_for_widgets(page: object, timeout: float = 20_000) -> None:
    """Wait until the embedded ipywidgets have rendered."""
    page.wait_for_selector(".attnkit-explorer .attnkit-stack", timeout=timeout)  # type: ignore[attr-defined]


def visible_widget_html(page: object, container: str = ".attnkit-stack", index: int = 0) -> str:
    """The visible text of the ``index``-th element matching ``container``.

    ``innerText`` leaves out hidden children, so for an explorer's stack of views this
    is exactly the view on screen (nested stacks included).
    """
    return page.evaluate(  # type: ignore[attr-defined]
        """([sel, i]) => {
            const el = document.querySelectorAll(sel)[i];
            return el ? el.innerText : '';
        }""",
        [container, index],
    )
