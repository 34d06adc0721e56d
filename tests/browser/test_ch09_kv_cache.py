"""Chapter 9's KV-cache explorer in headless Chromium, offline."""

from __future__ import annotations

from conftest import open_page, screenshot, visible_widget_html

PAGE = "book/09-beyond-one-head.html"


def test_kv_cache_explorer_steps_client_side(page, site_url: str) -> None:
    failed = open_page(page, site_url, PAGE)

    # Math is typeset and the figures have loaded.
    text = page.inner_text("main")
    for raw in ("$$", "\\operatorname", "\\begin{pmatrix}"):
        assert raw not in text, f"raw TeX {raw!r} left on the page"
    images = page.evaluate(
        "Array.from(document.querySelectorAll('main img')).map(i => [i.src, i.naturalWidth])")
    assert len(images) >= 5, images
    assert all(w > 0 for _, w in images), images

    # The explorer starts at step 1 (one cached position) ...
    explorer = page.locator(".attnkit-explorer").first
    explorer.scroll_into_view_if_needed()
    container = ".attnkit-explorer .attnkit-stack"
    first = visible_widget_html(page, container)
    assert "Step 1 of 5" in first and "“The”" in first, first
    assert "equal to row 0 of full causal attention: yes" in first

    # ... and moving the control switches the view in the browser, with no kernel.
    explorer.locator(".widget-toggle-button", has_text="mat").click()
    page.wait_for_timeout(300)
    last = visible_widget_html(page, container)
    assert last != first
    assert "Step 5 of 5" in last and "“mat”" in last, last
    assert "holds 5 position(s)" in last and "row 4 of full causal attention: yes" in last
    assert "25 scores" in last  # recomputing 5 tokens without a cache
    explorer.locator(".widget-toggle-button", has_text="sat").click()
    page.wait_for_timeout(300)
    assert "Step 3 of 5" in visible_widget_html(page, container)
    screenshot(page, "ch09-kv-cache-explorer")

    assert not page.offsite_requests, page.offsite_requests
    assert not failed, failed
