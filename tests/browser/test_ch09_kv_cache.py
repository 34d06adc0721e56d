"""Chapter 9's KV-cache explorer in headless Chromium, offline, by keyboard only."""

from __future__ import annotations

from conftest import screenshot


def test_kv_cache_explorer_by_keyboard(open_chapter) -> None:
    ch = open_chapter("book/09-beyond-one-head.html", min_images=5,
                      raw=("$$", "\\operatorname", "\\begin{pmatrix}"))

    # The explorer starts at step 1 (one cached position) ...
    first = ch.view()
    assert "Step 1 of 5" in first and "“The”" in first, first
    assert "equal to row 0 of full causal attention: yes" in first

    # ... and the keyboard switches the view in the browser, with no kernel.
    last = ch.key_choose("mat")
    assert last != first
    assert "Step 5 of 5" in last and "“mat”" in last, last
    assert "holds 5 position(s)" in last and "row 4 of full causal attention: yes" in last
    assert "25 scores" in last  # recomputing 5 tokens without a cache
    assert "Step 3 of 5" in ch.key_enter("sat")
    screenshot(ch.page, "ch09-kv-cache-explorer")
