"""The reader's experience on phones, in dark mode and in the back matter.

Headless Chromium, offline, against the one built site (``make book``):

* the navigation opens on a phone (390 x 844) and on a tablet-width window;
* no display equation is wider than its container on a phone;
* the bibliography has author-year labels and no raw TeX; a citation link lands on a
  highlighted entry; search results show no raw TeX;
* every explorer works by tapping on a phone, in light and in dark mode, and stays
  inside the screen; a heatmap cell explains itself when tapped;
* each exercise page has its own download button;
* a text page and a widget page stay within a byte budget.

Every page also fails its test on any console error (see ``conftest.py``).
Screenshots go to ``artifacts/screenshots/``.
"""

from __future__ import annotations

import re

import pytest
from conftest import PHONE, screenshot, wait_for_math, wait_for_widgets
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from test_site import RAW_TEX, _pages

CHAPTERS = [p for p in _pages() if re.match(r"book/\d\d-", p)]


def _open(pg: object, site_url: str, path: str) -> None:
    pg.goto(f"{site_url}/{path}")  # type: ignore[attr-defined]
    pg.wait_for_load_state("networkidle")  # type: ignore[attr-defined]
    if pg.locator("mjx-container, span.math, div.math").count():  # type: ignore[attr-defined]
        wait_for_math(pg)


@pytest.mark.parametrize("width", [390, 800])
def test_navigation_opens_on_a_phone_and_a_tablet(make_page, site_url: str, width: int) -> None:
    pg = make_page(viewport={"width": width, "height": 844}, touch=True)
    _open(pg, site_url, "book/03-why-scale.html")
    link = pg.locator(".bd-sidebar-primary a.reference", has_text="Masking").first
    assert not link.is_visible(), "the navigation should start closed on a narrow screen"
    toggles = [t for t in pg.locator(".primary-toggle").all() if t.is_visible()]
    assert toggles, "no visible button opens the navigation"
    toggles[0].tap()
    link.wait_for(state="visible", timeout=5_000)
    box = link.bounding_box()
    assert box and 0 <= box["x"] < width, box
    screenshot(pg, f"nav-open-{width}px")
    link.tap()
    pg.wait_for_url("**/05-masking.html")


def test_hamburger_collapses_the_sidebar_on_a_desktop(page, site_url: str) -> None:
    _open(page, site_url, "book/03-why-scale.html")
    sidebar = page.locator(".bd-sidebar-primary")
    assert sidebar.is_visible()
    page.locator(".primary-toggle").first.click()
    page.wait_for_timeout(600)
    box = sidebar.bounding_box()
    assert box is None or box["x"] + box["width"] <= 1, box


@pytest.mark.parametrize("path", CHAPTERS)
def test_no_equation_wider_than_its_container_on_a_phone(make_page, site_url: str, path: str) -> None:
    pg = make_page(viewport=PHONE)
    _open(pg, site_url, path)
    wide = pg.evaluate(
        """() => Array.from(document.querySelectorAll('mjx-container[display="true"]'))
            .map(c => { const m = c.querySelector('mjx-math');
                        return [m ? m.getBoundingClientRect().width : 0,
                                c.getBoundingClientRect().width,
                                (c.querySelector('mjx-assistive-mml') || c).textContent.slice(0, 60)]; })
            .filter(([w, box]) => w > box + 1)""")
    assert not wide, f"{path}: equations wider than the text column at 390 px: {wide}"


def test_bibliography_is_author_year_without_raw_tex(page, site_url: str) -> None:
    _open(page, site_url, "book/bibliography.html")
    text = page.inner_text("main")
    assert not RAW_TEX.findall(text) and "$" not in text, "raw TeX on the bibliography page"
    labels = page.eval_on_selector_all(".citation .label, dl.citation > dt",
                                       "els => els.map(e => e.innerText.trim())")
    assert labels, "no bibliography entries"
    for label in labels:
        assert re.fullmatch(r"\[?[^\[\]]+, (\d{4}[a-z]?|n\.d\.)\]?", label), f"not author-year: {label!r}"
    assert any("Vaswani et al., 2017" in lab for lab in labels), labels


def test_a_citation_link_lands_on_a_highlighted_entry(page, site_url: str) -> None:
    _open(page, site_url, "book/02-queries-keys-values.html")
    cite = page.locator("main a[href*='bibliography.html#']").first
    assert cite.count(), "chapter 2 cites nothing"
    cite.click()
    page.wait_for_url("**/bibliography.html#*")
    # The theme scrolls smoothly, and the site scrolls to the target again once MathJax
    # and the images are done: wait (up to 5 s) for the entry to come on screen.
    page.evaluate("() => (window.MathJax && MathJax.startup && MathJax.startup.promise) || null")
    try:
        page.wait_for_function(
            """() => { const t = document.querySelector(':target');
                       if (!t) return false;
                       const top = t.getBoundingClientRect().top;
                       return top >= 60 && top < window.innerHeight - 40; }""", timeout=5_000)
    except PlaywrightTimeout:
        pass  # the assertions below say where the entry ended up
    page.wait_for_timeout(300)
    target = page.evaluate(
        """() => { const t = document.querySelector(':target');
                   if (!t) return null;
                   const r = t.getBoundingClientRect(), s = getComputedStyle(t);
                   return {top: r.top, bg: s.backgroundColor, outline: s.outlineStyle}; }""")
    assert target, "the link did not land on an entry"
    # On screen, below the sticky header (an entry near the end cannot reach the top).
    assert 60 <= target["top"] < 900 - 40, target
    assert target["bg"] not in ("rgba(0, 0, 0, 0)", "transparent") or target["outline"] != "none", target
    screenshot(page, "bibliography-target")


@pytest.mark.parametrize("query", ["softmax", "variance", "memory"])
def test_search_results_show_no_raw_tex(page, site_url: str, query: str) -> None:
    page.goto(f"{site_url}/search.html?q={query}")
    page.wait_for_selector("#search-results ul.search li", timeout=20_000)
    page.wait_for_function(
        "() => document.querySelectorAll('#search-results p.context').length > 0", timeout=20_000)
    page.wait_for_timeout(1_500)  # every snippet is fetched
    snippets = page.eval_on_selector_all("#search-results p.context", "els => els.map(e => e.innerText)")
    assert snippets
    for s in snippets:
        assert not RAW_TEX.findall(s) and "\\" not in s and "$" not in s, f"raw TeX in a snippet: {s!r}"
    screenshot(page, f"search-{query}")


#: The explorers: page, explorer selector, how to change the view by tapping.
EXPLORERS = [
    ("book/03-why-scale.html", ".attnkit-scaling-explorer", "unscaled"),
    ("book/04-worked-example.html", ".attnkit-explorer", "cat"),
    ("book/08-flashattention.html", ".attnkit-flash-tiles", "3"),
]


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
@pytest.mark.parametrize(("path", "selector", "button"), EXPLORERS)
def test_explorers_work_by_tap_on_a_phone(make_page, site_url: str, path: str, selector: str,
                                          button: str, dark: bool) -> None:
    pg = make_page(viewport=PHONE, dark=dark, touch=True)
    _open(pg, site_url, path)
    wait_for_widgets(pg)
    explorer = pg.locator(selector).first
    explorer.scroll_into_view_if_needed()
    stack = f"{selector} .attnkit-stack"
    before = pg.evaluate("s => document.querySelector(s).innerText", stack)

    # The explorer is inside the screen: no part of its controls is cut off.
    over = pg.evaluate(
        """s => { const box = document.querySelector(s);
                  return Array.from(box.querySelectorAll(
                      '.widget-label, .widget-readout, .widget-toggle-button, .widget-slider'))
                    .filter(e => e.offsetParent !== null)
                    .map(e => [e.className, e.getBoundingClientRect().right])
                    .filter(([, right]) => right > window.innerWidth + 1); }""", selector)
    assert not over, f"{path}: controls run off a 390-px screen: {over}"
    readouts = explorer.locator(".widget-readout")
    for i in range(readouts.count()):
        assert readouts.nth(i).is_visible(), f"{path}: a slider's readout is hidden"

    # Tapping a button changes the view (client-side, no kernel).
    explorer.locator(".widget-toggle-button", has_text=button).first.tap()
    pg.wait_for_timeout(400)
    after = pg.evaluate("s => document.querySelector(s).innerText", stack)
    assert after != before, f"{path}: tapping {button!r} changed nothing"

    # A slider, where there is one, moves by a tap on its track.
    track = explorer.locator(".widget-slider .noUi-base, .widget-slider .ui-slider").first
    if track.count():
        box = track.bounding_box()
        pg.touchscreen.tap(box["x"] + box["width"] - 2, box["y"] + box["height"] / 2)
        pg.wait_for_timeout(400)
        moved = pg.evaluate("s => document.querySelector(s).innerText", stack)
        assert moved != after, f"{path}: tapping the slider's track changed nothing"

    # In either mode every label and caption of the explorer is dark ink on white.
    pale = pg.evaluate(
        """s => { const rgb = c => (c.match(/[0-9.]+/g) || []).slice(0, 3).map(Number);
                  const box = document.querySelector(s);
                  const bg = rgb(getComputedStyle(box).backgroundColor);
                  if (Math.min(...bg) < 240) return ['background', bg];
                  return Array.from(box.querySelectorAll(
                      '.widget-label, .widget-readout, caption, .widget-html-content'))
                    .filter(e => e.offsetParent !== null && e.innerText.trim())
                    .map(e => [e.innerText.slice(0, 40), rgb(getComputedStyle(e).color)])
                    .filter(([, c]) => Math.max(...c) > 110); }""", selector)
    assert not pale, f"{path}: pale text in the explorer: {pale}"
    name = path.split("/")[-1].removesuffix(".html")
    screenshot(pg, f"phone-{name}-explorer-{'dark' if dark else 'light'}")


def test_heatmap_cell_explains_itself_on_tap(make_page, site_url: str) -> None:
    pg = make_page(viewport=PHONE, touch=True)
    _open(pg, site_url, "book/04-worked-example.html")
    cell = pg.locator("table.attnkit-heatmap td.attnkit-cell").nth(5)  # query "cat", key "The"
    cell.scroll_into_view_if_needed()
    detail = cell.locator(".attnkit-detail")
    assert not detail.is_visible()
    cell.tap()
    detail.wait_for(state="visible", timeout=3_000)
    text = detail.inner_text()
    assert text.startswith("cat → The") and "q·k = 0·0 + 2·1 + 0·0 + 1·1 = 3" in text, text
    outline = cell.evaluate("e => getComputedStyle(e).outlineStyle")
    assert outline != "none", "a tapped cell has no visible focus state"
    screenshot(pg, "phone-ch04-heatmap-tap")


@pytest.mark.parametrize("number", range(1, 10))
def test_each_exercise_page_has_its_download_button(page, site_url: str, number: int) -> None:
    name = f"ch{number:02d}"
    _open(page, site_url, f"book/exercises/{name}.html")
    button = page.locator(".attnkit-download-exercise a")
    assert button.is_visible()
    href = button.get_attribute("href")
    assert href and href.endswith(f"{name}.ipynb"), href
    response = page.request.get(page.url.rsplit("/", 1)[0] + "/" + href)
    assert response.status == 200 and b'"nbformat"' in response.body()


#: Bytes a first visit may transfer (no compression, empty cache).
BUDGET = {"book/notation.html": 2_200_000, "book/04-worked-example.html": 4_500_000}


@pytest.mark.parametrize("path", sorted(BUDGET))
def test_page_weight_within_budget(page, site_url: str, path: str) -> None:
    sizes: dict[str, int] = {}
    page.on("requestfinished", lambda r: sizes.__setitem__(r.url, r.sizes()["responseBodySize"]))
    _open(page, site_url, path)
    page.wait_for_timeout(1_000)
    total = sum(sizes.values())
    biggest = sorted(sizes.items(), key=lambda kv: -kv[1])[:3]
    assert total <= BUDGET[path], f"{path}: {total:,} bytes; largest: {biggest}"
