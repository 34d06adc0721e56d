"""Chapter 12's ring explorer in headless Chromium, offline: buttons and slider change the view.

Against the one-page build:
    scripts/build_page.sh book/12-beyond-one-device.ipynb
    ATTNKIT_SITE=/tmp/page-12-beyond-one-device/_build/html \
        .venv/bin/python -m pytest tests/browser/test_ch12_ring.py
"""

from __future__ import annotations

from conftest import open_page, screenshot, visible_widget_html

PAGE = "book/12-beyond-one-device.html"
EXPLORER = ".attnkit-ring"
STACK = f"{EXPLORER} .attnkit-stack"


def test_ring_stepper_works_offline(page, site_url: str) -> None:
    failed = open_page(page, site_url, PAGE)

    # The theorem and its proof are on the page, with no raw TeX left.
    assert page.locator(".proof, .theorem").count() >= 1
    text = page.inner_text("main")
    for raw in ("$$", "\\mathrm{lse}", "\\sum_"):
        assert raw not in text, f"raw TeX {raw!r} left on the page"

    explorer = page.locator(EXPLORER).first
    explorer.scroll_into_view_if_needed()
    page.wait_for_selector(f"{EXPLORER} .widget-toggle-button", timeout=20_000)

    first = visible_widget_html(page, STACK)
    assert "Step 1 of 2" in first and "rank 0" in first and "rank 1" in first, first[:400]
    assert "merged lse" in first

    # Move the step slider one to the right: step 2 of 2, the last step.
    handle = explorer.locator(".ui-slider-handle, .noUi-handle, .slider-handle").first
    handle.focus()
    page.keyboard.press("ArrowRight")
    page.wait_for_timeout(300)
    second = visible_widget_html(page, STACK)
    assert second != first
    assert "Step 2 of 2" in second and "Last step" in second, second[:400]

    # Three ranks, zigzag, causal: the view switches client-side to three ranks.
    explorer.locator(".widget-toggle-button", has_text="zigzag").click()
    page.wait_for_timeout(300)
    third = visible_widget_html(page, STACK)
    assert third not in (first, second)
    assert "of 3" in third and "rank 2" in third, third[:400]
    screenshot(page, "ch12-ring")

    # Back to two ranks: the second step's view returns unchanged.
    explorer.locator(".widget-toggle-button", has_text="2 ranks").click()
    page.wait_for_timeout(300)
    assert visible_widget_html(page, STACK) == second

    assert not page.offsite_requests, page.offsite_requests
    assert not failed, failed
