"""Chapter 8's tile stepper in headless Chromium, offline: clicking a tile changes the view.

Against the one-page build:
    scripts/build_page.sh book/08-flashattention.ipynb
    ATTNKIT_SITE=/tmp/page-08-flashattention/_build/html \
        .venv/bin/python -m pytest tests/browser/test_ch08_flash.py
"""

from __future__ import annotations

from conftest import open_page, screenshot, visible_widget_html

PAGE = "book/08-flashattention.html"
EXPLORER = ".attnkit-flash-tiles"
STACK = f"{EXPLORER} .attnkit-stack"


def test_tile_stepper_works_offline(page, site_url: str) -> None:
    failed = open_page(page, site_url, PAGE)

    # The proof and the figures are on the page (figures from glue, loaded).
    assert page.locator(".proof, .theorem").count() >= 1
    images = page.evaluate(
        "Array.from(document.querySelectorAll('main img')).map(i => [i.src, i.naturalWidth])")
    assert len(images) >= 2 and all(w > 0 for _, w in images), images

    explorer = page.locator(EXPLORER).first
    explorer.scroll_into_view_if_needed()
    page.wait_for_selector(f"{EXPLORER} .widget-toggle-button", timeout=20_000)

    first = visible_widget_html(page, STACK)
    assert "Tile: queries The, cat" in first and "keys The, cat" in first, first[:300]
    assert "m_i after" in first

    # Step 3: the last (shorter) key block of the first query block.
    explorer.locator(".widget-toggle-button", has_text="3").first.click()
    page.wait_for_timeout(300)
    third = visible_widget_html(page, STACK)
    assert third != first
    assert "keys mat" in third and "last key block" in third, third[:400]
    screenshot(page, "ch08-tiles")

    # The last step: the last query ("mat") against the last key block.
    explorer.locator(".widget-toggle-button", has_text="9").click()
    page.wait_for_timeout(300)
    last = visible_widget_html(page, STACK)
    assert last not in (first, third)
    assert "Tile: queries mat" in last

    # Back to the first step: the first view returns unchanged (client-side only).
    explorer.locator(".widget-toggle-button", has_text="1").first.click()
    page.wait_for_timeout(300)
    assert visible_widget_html(page, STACK) == first

    assert not page.offsite_requests, page.offsite_requests
    assert not failed, failed
