"""Chapter 6 (complexity) in headless Chromium, offline.

The operation counter works without a kernel, the math is typeset and the figure has loaded.
"""

from __future__ import annotations

from conftest import open_page, screenshot, visible_widget_html

PAGE = "book/06-complexity.html"


def _press(page, key: str, times: int = 1) -> None:
    for _ in range(times):
        page.keyboard.press(key)
    page.wait_for_timeout(300)


def test_ch06_opcounter_steps_client_side(page, site_url: str) -> None:
    failed = open_page(page, site_url, PAGE)

    # Math is typeset and no raw TeX is left; the theorem and the figure are there.
    assert page.locator("mjx-container").count() >= 10
    text = page.inner_text("main")
    for raw in ("$$", "\\underbrace", "\\operatorname", "{glue:"):
        assert raw not in text, f"raw source {raw!r} left on the page"
    assert "The cost of attention as written" in text
    images = page.evaluate(
        "Array.from(document.querySelectorAll('main img')).map(i => [i.src, i.naturalWidth])")
    assert images and all(w > 0 for _, w in images), images

    # The explorer: step 1 is the first score; moving the slider changes the view.
    explorer = page.locator(".attnkit-explorer").first
    explorer.scroll_into_view_if_needed()
    first = visible_widget_html(page)
    assert "step 1 of 25" in first and "compare" in first
    assert "r[0,0]" in first
    screenshot(page, "ch06-opcounter-step01")

    handle = explorer.locator(".noUi-handle, .ui-slider-handle, .slider-handle").first
    handle.focus()
    _press(page, "ArrowRight", 10)  # step 11: the softmax of the first row
    second = visible_widget_html(page)
    assert second != first
    assert "step 11 of 25" in second and "normalise" in second
    screenshot(page, "ch06-opcounter-step11")

    _press(page, "ArrowRight", 14)  # step 25: the last output entry, the full tally
    third = visible_widget_html(page)
    assert third not in (first, second)
    assert "step 25 of 25" in third and "aggregate" in third
    # running count at the end: 72 multiply-adds of 72 (n^2 (d + d_v) = 9 * 8)
    assert "multiply-add\t72\t72" in third
    screenshot(page, "ch06-opcounter-step25")

    assert not page.offsite_requests, page.offsite_requests
    assert not failed, failed
