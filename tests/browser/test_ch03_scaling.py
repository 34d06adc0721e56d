"""Chapter 3's scaling explorer in headless Chromium, offline: d_k slider and scaling toggle."""

from __future__ import annotations

import re

from conftest import open_page, screenshot, visible_widget_html

PAGE = "book/03-why-scale.html"
EXPLORER = ".attnkit-scaling-explorer"
STACK = f"{EXPLORER} .attnkit-stack"


def _entropy(view: str) -> float:
    match = re.search(r"Entropy ([0-9.]+) nats", view)
    assert match, f"no entropy in the shown view: {view[:200]!r}"
    return float(match.group(1))


def test_scaling_explorer_works_offline(page, site_url: str) -> None:
    failed = open_page(page, site_url, PAGE)

    # Math is typeset (no raw TeX left in the prose; code cells may show TeX strings)
    # and the figures have loaded.
    assert page.locator("mjx-container").count() >= 10
    text = " ".join(page.locator("main p, main li, main figcaption").all_inner_texts())
    for raw in ("$$", "\\frac", "\\operatorname", "\\sqrt{d_k}"):
        assert raw not in text, f"raw TeX {raw!r} left on the page"
    images = page.evaluate(
        "Array.from(document.querySelectorAll('main img')).map(i => [i.src, i.naturalWidth])")
    assert len(images) >= 2 and all(w > 0 for _, w in images), images

    explorer = page.locator(EXPLORER).first
    explorer.scroll_into_view_if_needed()
    page.wait_for_selector(f"{EXPLORER} .widget-toggle-button", timeout=20_000)

    # Start: d_k = 1, scaled (where scaling changes nothing).
    first = visible_widget_html(page, STACK)
    assert "d_k = 1," in first and "divided by sqrt(1)" in first
    screenshot(page, "ch03-scaling-explorer")

    # Move the d_k slider to the right end (1024).
    handle = explorer.locator(".ui-slider-handle, .noUi-handle, .slider-handle").first
    handle.focus()
    page.keyboard.press("End")
    page.wait_for_timeout(300)
    if "d_k = 1024" not in visible_widget_html(page, STACK):  # a slider without End support
        for _ in range(10):
            page.keyboard.press("ArrowRight")
        page.wait_for_timeout(300)
    scaled = visible_widget_html(page, STACK)
    assert scaled != first
    assert "d_k = 1024" in scaled and "divided by sqrt(1024)" in scaled
    screenshot(page, "ch03-scaling-explorer-dk1024-scaled")

    # Toggle the scaling off: same d_k, a different (saturated) view.
    explorer.locator(".widget-toggle-button", has_text="unscaled").click()
    page.wait_for_timeout(300)
    unscaled = visible_widget_html(page, STACK)
    assert unscaled != scaled
    assert "d_k = 1024" in unscaled and "not scaled" in unscaled
    assert _entropy(unscaled) < _entropy(scaled)
    screenshot(page, "ch03-scaling-explorer-dk1024-unscaled")

    # And back: the scaled view returns unchanged.
    explorer.locator(".widget-toggle-button", has_text="scaled by").click()
    page.wait_for_timeout(300)
    assert visible_widget_html(page, STACK) == scaled

    assert not page.offsite_requests, page.offsite_requests
    assert not failed, failed
