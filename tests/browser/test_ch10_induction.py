"""Chapter 10's explorer of the trained heads in headless Chromium, offline.

Against the one-page build:
    scripts/build_page.sh book/10-transformer-block.ipynb
    ATTNKIT_SITE=/tmp/page-10-transformer-block/_build/html \
        .venv/bin/python -m pytest tests/browser/test_ch10_induction.py
"""

from __future__ import annotations

import re

from conftest import open_page, screenshot, visible_widget_html

PAGE = "book/10-transformer-block.html"
EXPLORER = ".attnkit-explorer"
STACK = f"{EXPLORER} .attnkit-stack"


def _query(view: str) -> tuple[int, int]:
    m = re.search(r"Query at position (\d+) \(token \w\), layer (\d)", view)
    assert m, view[:300]
    return int(m.group(1)), int(m.group(2))


def test_head_explorer_works_offline(page, site_url: str) -> None:
    failed = open_page(page, site_url, PAGE)

    # Math typeset, the proposition and the figures (loss curve, maps) present.
    text = " ".join(page.locator("main p, main li, main figcaption").all_inner_texts())
    for raw in ("$$", "\\operatorname", "\\frac"):
        assert raw not in text, f"raw TeX {raw!r} left on the page"
    assert page.locator(".proof, .proposition, .theorem").count() >= 1
    images = page.evaluate(
        "Array.from(document.querySelectorAll('main img')).map(i => [i.src, i.naturalWidth])")
    assert len(images) >= 4 and all(w > 0 for _, w in images), images

    explorer = page.locator(EXPLORER).first
    explorer.scroll_into_view_if_needed()
    page.wait_for_selector(f"{EXPLORER} .widget-toggle-button", timeout=20_000)

    # Start: layer 1, query 0.
    first = visible_widget_html(page, STACK)
    assert _query(first) == (0, 1)

    # Move the query slider to the last position: still layer 1, another view.
    handle = explorer.locator(".ui-slider-handle, .noUi-handle, .slider-handle").first
    handle.focus()
    page.keyboard.press("End")
    page.wait_for_timeout(300)
    if _query(visible_widget_html(page, STACK))[0] != 15:  # a slider without End support
        for _ in range(15):
            page.keyboard.press("ArrowRight")
        page.wait_for_timeout(300)
    assert _query(visible_widget_html(page, STACK)) == (15, 1)
    page.keyboard.press("ArrowLeft")  # position 14: its next token is predictable
    page.wait_for_timeout(300)
    last_l1 = visible_widget_html(page, STACK)
    assert last_l1 != first and _query(last_l1) == (14, 1)
    assert "previous" in last_l1

    # Switch to the induction head: the same query, layer 2, predictable by induction.
    explorer.locator(".widget-toggle-button", has_text="layer 2").click()
    page.wait_for_timeout(300)
    last_l2 = visible_widget_html(page, STACK)
    assert _query(last_l2) == (14, 2)
    assert "to copy" in last_l2 and "predictable by induction" in last_l2
    screenshot(page, "ch10-induction-explorer")

    # And back to layer 1: the earlier view returns unchanged (client-side only).
    explorer.locator(".widget-toggle-button", has_text="layer 1").click()
    page.wait_for_timeout(300)
    assert visible_widget_html(page, STACK) == last_l1

    assert not page.offsite_requests, page.offsite_requests
    assert not failed, failed
