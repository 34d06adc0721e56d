"""Chapter 3's scaling explorer in headless Chromium, offline, by keyboard only.

The d_k slider (Tab, then End or the arrow keys) and the scaling buttons (arrow keys,
Enter) switch precomputed views in the browser, with no kernel.
"""

from __future__ import annotations

import re

from conftest import screenshot

PAGE = "book/03-why-scale.html"
EXPLORER = ".attnkit-scaling-explorer"


def _entropy(view: str) -> float:
    match = re.search(r"Entropy ([0-9.]+) nats", view)
    assert match, f"no entropy in the shown view: {view[:200]!r}"
    return float(match.group(1))


def test_scaling_explorer_by_keyboard(open_chapter) -> None:
    # Code cells legitimately show TeX strings (matplotlib labels): check the prose.
    ch = open_chapter(PAGE, explorer=EXPLORER, min_math=10, min_images=2, prose_only=True,
                      raw=("$$", "\\frac", "\\operatorname", "\\sqrt{d_k}"))

    # Start: d_k = 1, scaled (where scaling changes nothing).
    first = ch.view()
    assert "d_k = 1," in first and "divided by sqrt(1)" in first
    screenshot(ch.page, "ch03-scaling-explorer")

    # The d_k slider to its right end (1024).
    scaled = ch.key_slider("End")
    if "d_k = 1024" not in scaled:  # a slider without End support
        scaled = ch.key_slider("ArrowRight", 10)
    assert scaled != first
    assert "d_k = 1024" in scaled and "divided by sqrt(1024)" in scaled
    screenshot(ch.page, "ch03-scaling-explorer-dk1024-scaled")

    # Scaling off with the arrow keys: same d_k, a different (saturated) view.
    unscaled = ch.key_choose("unscaled")
    assert unscaled != scaled
    assert "d_k = 1024" in unscaled and "not scaled" in unscaled
    assert _entropy(unscaled) < _entropy(scaled)
    screenshot(ch.page, "ch03-scaling-explorer-dk1024-unscaled")

    # And back with Enter: the scaled view returns unchanged.
    assert ch.key_enter("scaled by 1/sqrt(d_k)") == scaled
