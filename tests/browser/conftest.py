"""Fixtures for the real-browser tests: the built site on 127.0.0.1, headless Chromium.

The site (``_build/html``, made by ``make book``) is served by a thread on a free
loopback port. Chromium is Debian's ``/usr/bin/chromium`` driven by Playwright; every
request that is not for that server is aborted, so the test proves the pages work
with no network. Screenshots go to ``artifacts/screenshots/``.

Every page a test opens is watched for console errors and uncaught exceptions: a test
that saw one fails (at its teardown), whatever else it checked. ``page`` is a desktop
page (1280 x 900); ``make_page`` opens others (a phone, dark mode, touch).
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


#: A phone (iPhone 12-14 size): the viewport of the phone checks.
PHONE = {"width": 390, "height": 844}


def _new_page(browser: object, site_url: str, *, viewport: dict | None = None,
              dark: bool = False, touch: bool = False) -> tuple[object, object]:
    """A page whose requests reach only the local site; it records console errors.

    ``page.offsite_requests`` lists every request that was blocked and
    ``page.console_errors`` every console error and uncaught exception.
    """
    context = browser.new_context(  # type: ignore[attr-defined]
        viewport=viewport or {"width": 1280, "height": 900},
        color_scheme="dark" if dark else "light",
        has_touch=touch, is_mobile=touch, device_scale_factor=2 if touch else 1,
    )
    blocked: list[str] = []
    errors: list[str] = []

    def route(r: object) -> None:
        url = r.request.url  # type: ignore[attr-defined]
        if url.startswith(site_url) or url.startswith("data:") or url.startswith("about:"):
            r.continue_()  # type: ignore[attr-defined]
        else:
            blocked.append(url)
            r.abort()  # type: ignore[attr-defined]

    context.route("**/*", route)
    pg = context.new_page()
    pg.on("console", lambda m: m.type == "error" and errors.append(  # type: ignore[attr-defined]
        f"{m.text} ({m.location.get('url', '')})"))
    pg.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))  # type: ignore[attr-defined]
    pg.offsite_requests = blocked  # type: ignore[attr-defined]
    pg.console_errors = errors  # type: ignore[attr-defined]
    return context, pg


@pytest.fixture()
def page(browser: object, site_url: str) -> Iterator[object]:
    """A fresh desktop page (1280 x 900); the test fails if the page logs a console error."""
    context, pg = _new_page(browser, site_url)
    yield pg
    errors = list(pg.console_errors)  # type: ignore[attr-defined]
    context.close()
    assert not errors, f"console errors: {errors}"


@pytest.fixture()
def make_page(browser: object, site_url: str) -> Iterator[object]:
    """``make_page(viewport=PHONE, dark=True, touch=True)`` opens another kind of page.

    Every page it made fails the test if it logged a console error.
    """
    made: list[tuple[object, object]] = []

    def make(**kwargs: object) -> object:
        context, pg = _new_page(browser, site_url, **kwargs)  # type: ignore[arg-type]
        made.append((context, pg))
        return pg

    yield make
    errors = [e for _, pg in made for e in pg.console_errors]  # type: ignore[attr-defined]
    for context, _ in made:
        context.close()  # type: ignore[attr-defined]
    assert not errors, f"console errors: {errors}"


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
