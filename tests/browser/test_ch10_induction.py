"""Chapter 10's explorer of the trained heads in headless Chromium, offline, by keyboard only."""

from __future__ import annotations

import re

from conftest import screenshot


def _query(view: str) -> tuple[int, int]:
    m = re.search(r"Query at position (\d+) \(token \w\), layer (\d)", view)
    assert m, view[:300]
    return int(m.group(1)), int(m.group(2))


def test_head_explorer_by_keyboard(open_chapter) -> None:
    # Math typeset, the proposition and the figures (loss curve, maps) present.
    ch = open_chapter("book/10-transformer-block.html", min_images=4, prose_only=True,
                      raw=("$$", "\\operatorname", "\\frac"), blocks=".proof, .proposition, .theorem")

    # Start: layer 1, query 0.
    first = ch.view()
    assert _query(first) == (0, 1)

    # The query slider to the last position: still layer 1, another view.
    end = ch.key_slider("End")
    if _query(end)[0] != 15:  # a slider without End support
        end = ch.key_slider("ArrowRight", 15)
    assert _query(end) == (15, 1)
    ch.page.keyboard.press("ArrowLeft")  # position 14: its next token is predictable
    ch.page.wait_for_timeout(300)
    last_l1 = ch.view()
    assert last_l1 != first and _query(last_l1) == (14, 1)
    assert "previous" in last_l1

    # The induction head: the same query, layer 2, predictable by induction.
    last_l2 = ch.key_choose("layer 2 (induction head)")
    assert _query(last_l2) == (14, 2)
    assert "to copy" in last_l2 and "predictable by induction" in last_l2
    screenshot(ch.page, "ch10-induction-explorer")

    # And back to layer 1 with Enter: the earlier view returns unchanged.
    assert ch.key_enter("layer 1 (previous-token head)") == last_l1
