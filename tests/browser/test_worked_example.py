"""The worked example (chapter 4) in headless Chromium, offline, by keyboard only."""

from __future__ import annotations

from conftest import screenshot

PAGE = "book/04-worked-example.html"


def test_worked_example_by_keyboard(open_chapter) -> None:
    ch = open_chapter(PAGE, min_math=5, min_images=1,
                      raw=("$$", "\\frac", "\\operatorname", "\\sqrt{d_k}"))
    page = ch.page

    # The heatmap: 25 cells, each explaining its computation on a details line when
    # hovered, clicked, tapped (test_reader.py taps one on a phone) or reached with Tab.
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
    page.mouse.move(0, 0)

    # The explorer works client-side: change the token, then the stage.
    first = ch.view()
    assert "Compare" in first and "“The”" in first
    second = ch.key_choose("cat")
    assert second != first and "“cat”" in second
    third = ch.key_slider("ArrowRight", 3)
    assert "Aggregate" in third and third != second
    screenshot(page, "ch04-worked-example-explorer")
    page.locator("table.attnkit-heatmap").scroll_into_view_if_needed()
    screenshot(page, "ch04-worked-example-heatmap")


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
