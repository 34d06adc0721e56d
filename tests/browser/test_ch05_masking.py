"""Chapter 5 (masking) in headless Chromium, offline, by keyboard only.

The mask explorer switches views without a kernel, its cells explain themselves when
reached with Tab, math and figures render.
"""

from __future__ import annotations

from conftest import screenshot

PAGE = "book/05-masking.html"


def _rows(view: str) -> dict[str, list[str]]:
    """The heatmap rows of a view's text: {query token: [cell, ...]}."""
    rows = {}
    for line in view.splitlines():
        cells = line.split("\t")
        if len(cells) == 6 and cells[0] in ("The", "cat", "sat", "on", "mat"):
            rows[cells[0]] = cells[1:]
    return rows


def test_ch05_mask_explorer_by_keyboard(open_chapter) -> None:
    ch = open_chapter(PAGE, min_math=10, min_images=2,
                      raw=("$$", "\\begin{cases}", "\\operatorname", "{glue:"))
    assert "0.2447" in ch.page.inner_text("main")  # the worked question's answer, glued into the prose

    first = ch.view()
    rows = _rows(first)
    assert first.startswith("no mask") and len(rows) == 5
    assert all(float(c) > 0 for c in rows["The"])  # no mask: every weight positive
    screenshot(ch.page, "ch05-masking-nomask")

    second = ch.key_choose("causal")
    assert second != first and second.startswith("causal mask")
    rows = _rows(second)
    assert rows["The"] == ["1.000", "0.000", "0.000", "0.000", "0.000"]
    assert all(float(c) > 0 for c in rows["mat"])  # the last query sees every key
    # A masked cell explains itself when Tab reaches it (its details line appears).
    ch.tab_to("a.matches('td.attnkit-cell') && a.offsetParent !== null"
              " && a.innerText.includes('query The → key cat')")
    detail = ch.page.evaluate("() => document.activeElement.querySelector('.attnkit-detail').innerText")
    assert "masked" in detail, detail
    screenshot(ch.page, "ch05-masking-causal")

    third = ch.key_enter("padding")
    assert third not in (first, second) and "<pad>" in third
    rows = _rows(third)
    assert all(r[3:] == ["0.000", "0.000"] for r in rows.values())  # padding keys unused
    screenshot(ch.page, "ch05-masking-padding")
