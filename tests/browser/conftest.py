"""Fixtures for the real-browser tests: the built site on 127.0.0.1, headless Chromium.

The site (``_build/html``, made by ``make book``) is served by a thread on a free
loopback port. Chromium is Debian's ``/usr/bin/chromium`` driven by Playwright; every
request that is not for that server is aborted, so the test proves the pages work
with no network. Screenshots go to ``artifacts/screenshots/``, the accessibility
report (axe-core) to ``artifacts/accessibility/``.

Every page a test opens is watched for console errors and uncaught exceptions: a test
that saw one fails (at its teardown), whatever else it checked. ``page`` is a desktop
page (1280 x 900); ``make_page`` opens others (a phone, dark mode, touch).

A chapter's test starts from ``open_chapter`` (one fixture for what every chapter test
checks first: the page loads offline, its math is typeset, no raw source is left in
the prose, every figure has loaded, the explorer is on screen) and gets a
:class:`Chapter` whose teardown fails the test on an off-site or failed request.
A chapter test also runs against the one-page build of that chapter:

    scripts/build_page.sh book/08-flashattention.ipynb
    ATTNKIT_SITE=/tmp/page-08-flashattention/_build/html \
        .venv/bin/python -m pytest tests/browser/test_ch08_flash.py
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
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


@pytest.fixture(scope="session", autouse=True)
def accessibility_report() -> Iterator[None]:
    """After the session: every page's axe-core findings in artifacts/accessibility/.

    On several pytest-xdist workers each writes the pages it checked into its own
    folder (artifacts/accessibility/gw0/, ...).
    """
    yield
    from a11y import write_report

    worker = os.environ.get("PYTEST_XDIST_WORKER")
    write_report(ROOT / "artifacts" / "accessibility" / (worker or ""))


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
    """Wait until MathJax has typeset the whole page and its fonts have loaded.

    The first formula appears before the last is typeset, and a formula's width changes
    when MathJax's fonts arrive: a page measured before both would be measured wrong
    (under load, a check of widths or of axe could see a half-typeset page).
    """
    page.wait_for_function(  # type: ignore[attr-defined]
        "() => window.MathJax && MathJax.startup && MathJax.startup.promise"
        " && document.querySelectorAll('mjx-container').length > 0",
        timeout=timeout,
    )
    page.evaluate(  # type: ignore[attr-defined]
        """() => Promise.all([MathJax.startup.promise, document.fonts.ready])
                 .then(() => new Promise(r => requestAnimationFrame(() => setTimeout(r, 0))))""")


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


#: TeX or MyST source that would be visible only if the page had not been rendered.
RAW_SOURCE = ("$$", "\\frac", "\\operatorname", "{glue:")


class Chapter:
    """A chapter page opened by ``open_chapter``: its explorer and the view it shows.

    ``view()`` is the visible text of the explorer's stack of views (what a reader
    sees now); ``click(text)`` and ``press(key, times)`` act like a reader and return
    the view afterwards.
    """

    def __init__(self, page: object, failed: list[str], explorer: str | None) -> None:
        self.page = page
        self.failed = failed
        self.selector = explorer
        self.explorer = page.locator(explorer).first if explorer else None  # type: ignore[attr-defined]
        self.stack = f"{explorer} .attnkit-stack" if explorer else ".attnkit-stack"

    def view(self) -> str:
        """The view on screen now."""
        return visible_widget_html(self.page, self.stack)

    def click(self, text: str, *, first: bool = True) -> str:
        """Click the explorer's toggle button labelled ``text``; return the new view."""
        button = self.explorer.locator(".widget-toggle-button", has_text=text)  # type: ignore[union-attr]
        (button.first if first else button).click()
        self.page.wait_for_timeout(300)  # type: ignore[attr-defined]
        return self.view()

    def press(self, key: str, times: int = 1, *, focus: str | None = None) -> str:
        """Press ``key`` ``times`` times (after focusing ``focus`` in the explorer); the new view."""
        if focus:
            self.explorer.locator(focus).first.focus()  # type: ignore[union-attr]
        for _ in range(times):
            self.page.keyboard.press(key)  # type: ignore[attr-defined]
        self.page.wait_for_timeout(300)  # type: ignore[attr-defined]
        return self.view()

    # ------------------------------------------------------------ keyboard only
    # A reader without a mouse: focus starts just before the explorer (where a heading
    # or the previous paragraph would leave it) and moves with Tab alone; every
    # control reached must show a visible focus indicator.

    def tab_to(self, target: str, *, max_tabs: int = 80) -> None:
        """Press Tab from just before the explorer until ``target`` (JS predicate) has focus.

        ``target`` is the body of a JavaScript function of the focused element ``a``,
        e.g. ``"a.matches('[role=slider]')"``. Fails if Tab never reaches it or if the
        focused control shows no focus indicator.
        """
        self.page.evaluate(  # type: ignore[attr-defined]
            """s => { const box = document.querySelector(s);
                      let start = document.getElementById('attnkit-test-start');
                      if (!start) { start = document.createElement('span');
                                    start.id = 'attnkit-test-start'; start.tabIndex = -1; }
                      box.parentNode.insertBefore(start, box); start.focus(); }""", self.selector)
        test = ("([box]) => { const a = document.activeElement; "
                f"return !!a && !!a.closest(box) && ({target}); }}")
        for _ in range(max_tabs):
            self.page.keyboard.press("Tab")  # type: ignore[attr-defined]
            if self.page.evaluate(test, [self.selector]):  # type: ignore[attr-defined]
                assert_focus_visible(self.page)
                return
        raise AssertionError(f"Tab never reached {target!r} in {self.selector}")

    def key_choose(self, text: str) -> str:
        """Choose the option ``text`` of a row of buttons with Tab and the arrow keys; the new view."""
        group = (f"a.closest('[role=group]') && Array.from(a.closest('[role=group]')"
                 f".querySelectorAll('button')).some(b => b.innerText.trim() === {text!r})")
        self.tab_to(f"a.matches('button.widget-toggle-button') && {group}")
        names = self.page.evaluate(  # type: ignore[attr-defined]
            "() => Array.from(document.activeElement.closest('[role=group]')"
            ".querySelectorAll('button')).map(b => b.innerText.trim())")
        focused = self.page.evaluate("() => document.activeElement.innerText.trim()")  # type: ignore[attr-defined]
        here = names.index(focused)
        there = names.index(text)
        step = 1 if there > here else -1
        for k in range(here + step, there + step, step):  # one key at a time, as a reader
            self.page.keyboard.press("ArrowRight" if step > 0 else "ArrowLeft")  # type: ignore[attr-defined]
            self._wait_pressed(names[k], "arrow keys")
            self.page.wait_for_timeout(300)  # type: ignore[attr-defined]  # the view follows
        assert_focus_visible(self.page)
        return self.view()

    def key_enter(self, text: str) -> str:
        """Tab to the button ``text`` and press Enter; the new view."""
        self.tab_to(f"a.matches('button') && a.innerText.trim() === {text!r}")
        self.page.keyboard.press("Enter")  # type: ignore[attr-defined]
        self._wait_pressed(text, "Enter")
        return self.view()

    def _wait_pressed(self, text: str, how: str) -> None:
        """Wait until the focused button is ``text`` and pressed (the site marks it on the next frame)."""
        try:
            self.page.wait_for_function(  # type: ignore[attr-defined]
                """t => { const a = document.activeElement;
                          return a.innerText.trim() === t && a.getAttribute('aria-pressed') === 'true'; }""",
                arg=text, timeout=5_000)
        except Exception as exc:  # noqa: BLE001 - say what the keyboard left
            state = self.page.evaluate(  # type: ignore[attr-defined]
                "() => { const a = document.activeElement;"
                " return [a.innerText.trim(), a.getAttribute('aria-pressed')]; }")
            raise AssertionError(f"{how} did not choose {text!r}: focus on {state}") from exc
        self.page.wait_for_timeout(200)  # type: ignore[attr-defined]
        assert_focus_visible(self.page)

    def key_slider(self, key: str, times: int = 1) -> str:
        """Tab to the explorer's slider and press ``key`` ``times`` times; the new view."""
        self.tab_to("a.matches('[role=slider]')")
        for _ in range(times):
            self.page.keyboard.press(key)  # type: ignore[attr-defined]
        self.page.wait_for_timeout(300)  # type: ignore[attr-defined]
        return self.view()


def assert_focus_visible(page: object) -> None:
    """The focused element draws a focus indicator: an outline of 2 px or more, or a ring."""
    style = page.evaluate(  # type: ignore[attr-defined]
        """() => { const s = getComputedStyle(document.activeElement);
                   return [s.outlineStyle, parseFloat(s.outlineWidth) || 0, s.boxShadow,
                           document.activeElement.outerHTML.slice(0, 120)]; }""")
    outline, width, shadow, html = style
    visible = (outline != "none" and width >= 2) or shadow not in ("none", "")
    assert visible, f"no visible focus on {html}: {style}"


#: The handle of an ipywidgets slider (noUiSlider in ipywidgets 8, jQuery UI before).
SLIDER_HANDLE = ".noUi-handle, .ui-slider-handle, .slider-handle"


@pytest.fixture()
def open_chapter(page: object, site_url: str) -> Iterator[Callable[..., Chapter]]:
    """``open_chapter(path, explorer=SEL, ...)`` opens a chapter and checks what every page needs.

    Keyword arguments: ``explorer`` (selector of the explorer to bring on screen, or
    None), ``widgets`` (wait for the embedded widgets), ``min_math`` (at least this many
    typeset formulas), ``min_images`` (at least this many figures, each loaded),
    ``raw`` (source strings that must not be left in the prose), ``prose_only`` (look
    for them in paragraphs, list items and captions only, not in code or outputs),
    ``blocks`` (a selector of which at least one must be there, e.g. ``.proof``).
    At teardown: no off-site request and no failed request.
    """
    opened: list[Chapter] = []

    def open_(path: str, *, explorer: str | None = ".attnkit-explorer", widgets: bool = True,
              min_math: int = 0, min_images: int = 0, raw: Sequence[str] = RAW_SOURCE,
              prose_only: bool = False, blocks: str | None = None) -> Chapter:
        failed = open_page(page, site_url, path, widgets=widgets)
        if min_math:
            assert page.locator("mjx-container").count() >= min_math  # type: ignore[attr-defined]
        if prose_only:
            text = " ".join(page.locator(  # type: ignore[attr-defined]
                "main p, main li, main figcaption").all_inner_texts())
        else:
            text = page.inner_text("main")  # type: ignore[attr-defined]
        for source in raw:
            assert source not in text, f"raw source {source!r} left on {path}"
        images = page.evaluate(  # type: ignore[attr-defined]
            "Array.from(document.querySelectorAll('main img')).map(i => [i.src, i.naturalWidth])")
        assert len(images) >= min_images and all(w > 0 for _, w in images), images
        if blocks:
            assert page.locator(blocks).count() >= 1, f"no {blocks} on {path}"  # type: ignore[attr-defined]
        chapter = Chapter(page, failed, explorer)
        if chapter.explorer is not None:
            chapter.explorer.scroll_into_view_if_needed()
        opened.append(chapter)
        return chapter

    yield open_
    for chapter in opened:
        assert not page.offsite_requests, page.offsite_requests  # type: ignore[attr-defined]
        assert not chapter.failed, chapter.failed
