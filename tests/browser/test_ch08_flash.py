"""Chapter 8's tile stepper in headless Chromium, offline, by keyboard only."""

from __future__ import annotations

from conftest import screenshot

EXPLORER = ".attnkit-flash-tiles"


def test_tile_stepper_by_keyboard(open_chapter) -> None:
    # The proof and the figures are on the page (figures from glue, loaded).
    ch = open_chapter("book/08-flashattention.html", explorer=EXPLORER, min_images=2,
                      blocks=".proof, .theorem")

    first = ch.view()
    assert "Tile: queries The, cat" in first and "keys The, cat" in first, first[:300]
    assert "m_i after" in first

    # Step 3: the last (shorter) key block of the first query block.
    third = ch.key_choose("3")
    assert third != first
    assert "keys mat" in third and "last key block" in third, third[:400]
    screenshot(ch.page, "ch08-tiles")

    # The last step: the last query ("mat") against the last key block.
    last = ch.key_enter("9")
    assert last not in (first, third)
    assert "Tile: queries mat" in last

    # Back to the first step with Enter: the first view returns unchanged (client-side only).
    assert ch.key_enter("1") == first
