"""Chapter 6 (complexity) in headless Chromium, offline, by keyboard only.

The operation counter works without a kernel, the math is typeset and the figure has loaded.
"""

from __future__ import annotations

from conftest import screenshot


def test_ch06_opcounter_by_keyboard(open_chapter) -> None:
    ch = open_chapter("book/06-complexity.html", min_math=10, min_images=1,
                      raw=("$$", "\\underbrace", "\\operatorname", "{glue:"))
    assert "The cost of attention as written" in ch.page.inner_text("main")  # the theorem

    # Step 1 is the first score; the slider, reached with Tab, moves with the arrow keys.
    first = ch.view()
    assert "step 1 of 25" in first and "compare" in first
    assert "r[0,0]" in first
    screenshot(ch.page, "ch06-opcounter-step01")

    second = ch.key_slider("ArrowRight", 10)  # step 11: the softmax of the first row
    assert second != first
    assert "step 11 of 25" in second and "normalise" in second
    screenshot(ch.page, "ch06-opcounter-step11")

    third = ch.key_slider("ArrowRight", 14)  # step 25: the last output entry, the full tally
    assert third not in (first, second)
    assert "step 25 of 25" in third and "aggregate" in third
    # running count at the end: 72 multiply-adds of 72 (n^2 (d + d_v) = 9 * 8)
    assert "multiply-add\t72\t72" in third
    screenshot(ch.page, "ch06-opcounter-step25")
