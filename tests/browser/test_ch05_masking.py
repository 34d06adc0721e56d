"""Chapter 5 (masking) in headless Chromium, offline.

The mask explorer switches views without a kernel, its cells explain themselves, math and figures render.
"""

from __future__ import annotations

from conftest import open_page, screenshot, visible_widget_html

PAGE = "book/05-masking.html"


def _rows(view: str) -> dict[str, list[str]]:
    """The heatmap rows of a view's text: {query token: [cell, ...]}."""
    rows = {}
    for line in view.splitlines():
        cells = line.split("\t")
        if len(cells) == 6 and cells[0] in ("The", "cat", "sat", "on", "mat"):
            rows[cells[0]] = cells[1:]
    return rows


def test_ch05_mask_explorer_switches_client_side(page, site_url: str) -> None:
    failed = open_page(page, site_url, PAGE)

    # Math is typeset, no raw source is left, both figures have loaded.
    assert page.locator("mjx-container").count() >= 10
    text = page.inner_text("main")
    for raw in ("$$", "\\begin{cases}", "\\operatorname", "{glue:"):
        assert raw not in text, f"raw source {raw!r} left on the page"
    assert "0.2447" in text  # the worked question's answer, glued into the prose
    images = page.evaluate(
        "Array.from(document.querySelectorAll('main img')).map(i => [i.src, i.naturalWidth])")
    assert len(images) >= 2 and all(w > 0 for _, w in images), images

    explorer = page.locator(".attnkit-explorer").first
    explorer.scroll_into_view_if_needed()
    first = visible_widget_html(page)
    rows = _rows(first)
    assert first.startswith("no mask") and len(rows) == 5
    assert all(float(c) > 0 for c in rows["The"])  # no mask: every weight positive
    screenshot(page, "ch05-masking-nomask")

    explorer.locator(".widget-toggle-button", has_text="causal").first.click()
    page.wait_for_timeout(300)
    second = visible_widget_html(page)
    assert second != first and second.startswith("causal mask")
    rows = _rows(second)
    assert rows["The"] == ["1.000", "0.000", "0.000", "0.000", "0.000"]
    assert all(float(c) > 0 for c in rows["mat"])  # the last query sees every key
    # a masked cell explains itself on a click (its details line appears)
    cell = explorer.locator(".attnkit-stack td.attnkit-cell").filter(
        has=page.locator(".attnkit-detail", has_text="query The → key cat"))
    visible_cells = [cell.nth(i) for i in range(cell.count()) if cell.nth(i).is_visible()]
    assert visible_cells
    visible_cells[0].click()
    detail = visible_cells[0].locator(".attnkit-detail")
    detail.wait_for(state="visible", timeout=3_000)
    assert "masked" in detail.inner_text()
    screenshot(page, "ch05-masking-causal")

    explorer.locator(".widget-toggle-button", has_text="padding").first.click()
    page.wait_for_timeout(300)
    third = visible_widget_html(page)
    assert third not in (first, second) and "<pad>" in third
    rows = _rows(third)
    assert all(r[3:] == ["0.000", "0.000"] for r in rows.values())  # padding keys unused
    screenshot(page, "ch05-masking-padding")

    assert not page.offsite_requests, page.offsite_requests
    assert not failed, failed
