"""The worked example (chapter 4) in headless Chromium, offline."""

from __future__ import annotations

from conftest import open_page, screenshot, visible_widget_html

PAGE = "book/04-worked-example.html"


def test_worked_example_renders_offline(page, site_url: str) -> None:
    failed = open_page(page, site_url, PAGE)

    # Math is typeset: MathJax containers exist and no raw TeX delimiters are left.
    assert page.locator("mjx-container").count() >= 5
    text = page.inner_text("main")
    for raw in ("$$", "\\frac", "\\operatorname", "\\sqrt{d_k}"):
        assert raw not in text, f"raw TeX {raw!r} left on the page"

    # Figures: every image has loaded.
    images = page.evaluate(
        "Array.from(document.querySelectorAll('main img')).map(i => [i.src, i.naturalWidth])")
    assert images, "no figure on the page"
    assert all(w > 0 for _, w in images), images

    # The heatmap: 25 cells, each explaining its computation on a details line when
    # hovered, clicked or tapped (test_reader.py taps one on a phone).
    cells = page.locator("table.attnkit-heatmap td")
    assert cells.count() == 25
    cat_the = cells.nth(5)  # query "cat", key "The"
    detail = cat_the.locator(".attnkit-detail")
    assert not detail.is_visible()
    cat_the.hover()
    detail.wait_for(state="visible", timeout=3_000)
    tip = detail.inner_text()
    assert tip.startswith("cat → The") and "q·k = 0·0 + 2·1 + 0·0 + 1·1 = 3" in tip
    assert "4.4817 / 11.1327 = 0.4026" in tip and "1.0000 / 2.4840" in tip

    # The explorer works client-side: change the token, then the stage.
    explorer = page.locator(".attnkit-explorer").first
    explorer.scroll_into_view_if_needed()
    first = visible_widget_html(page)
    assert "Compare" in first and "“The”" in first
    explorer.locator(".widget-toggle-button", has_text="cat").click()
    page.wait_for_timeout(300)
    second = visible_widget_html(page)
    assert second != first and "“cat”" in second
    handle = explorer.locator(".ui-slider-handle, .noUi-handle, .slider-handle").first
    handle.focus()
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    page.wait_for_timeout(300)
    third = visible_widget_html(page)
    assert "Aggregate" in third and third != second
    screenshot(page, "ch04-worked-example-explorer")
    page.locator("table.attnkit-heatmap").scroll_into_view_if_needed()
    screenshot(page, "ch04-worked-example-heatmap")

    assert not page.offsite_requests, page.offsite_requests
    assert not failed, failed


def test_download_button_gives_the_executed_notebook(page, site_url: str) -> None:
    import json

    page.goto(f"{site_url}/{PAGE}")
    href = page.get_attribute(".btn-download-source-button", "href")
    assert href and href.endswith("04-worked-example.ipynb"), href
    response = page.request.get(page.url.rsplit("/", 1)[0] + "/" + href)
    assert response.status == 200
    nb = json.loads(response.body())
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    assert outputs, "the downloaded notebook should carry the outputs the page shows"
