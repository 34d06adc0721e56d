"""Chapter 12's ring explorer in headless Chromium, offline, by keyboard only."""

from __future__ import annotations

from conftest import screenshot

EXPLORER = ".attnkit-ring"


def test_ring_stepper_by_keyboard(open_chapter) -> None:
    # The theorem and its proof are on the page, with no raw TeX left.
    ch = open_chapter("book/12-beyond-one-device.html", explorer=EXPLORER,
                      raw=("$$", "\\mathrm{lse}", "\\sum_"), blocks=".proof, .theorem")

    first = ch.view()
    assert "Step 1 of 2" in first and "rank 0" in first and "rank 1" in first, first[:400]
    assert "merged lse" in first

    # The step slider one to the right: step 2 of 2, the last step.
    second = ch.key_slider("ArrowRight")
    assert second != first
    assert "Step 2 of 2" in second and "Last step" in second, second[:400]

    # Three ranks, zigzag, causal: the view switches client-side to three ranks.
    third = ch.key_choose("3 ranks, zigzag, causal")
    assert third not in (first, second)
    assert "of 3" in third and "rank 2" in third, third[:400]
    screenshot(ch.page, "ch12-ring")

    # Back to two ranks with Enter: the second step's view returns unchanged.
    assert ch.key_enter("2 ranks, contiguous") == second
