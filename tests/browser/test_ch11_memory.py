"""Chapter 11's KV-cache memory explorer in headless Chromium, offline, by keyboard only.

The explorer is plain HTML (``select`` controls, a result table, a lookup script): Tab
reaches each control and the arrow keys change it.
"""

from __future__ import annotations

from conftest import screenshot

EXPLORER = ".attnkit-memory-explorer"


def _result(page) -> dict[str, str]:
    return page.evaluate(
        """(sel) => Object.fromEntries(Array.from(
            document.querySelector(sel).querySelectorAll('td[data-field]'))
            .map(td => [td.getAttribute('data-field'), td.textContent]))""",
        EXPLORER,
    )


def _gib(text: str) -> float:
    return float(text.replace(" GiB", "").replace(",", ""))


def _choose(ch, key: str, index: int) -> dict[str, str]:
    """Tab to the control ``key`` and choose its option ``index`` with Home and ArrowDown."""
    ch.tab_to(f"a.matches(\"select[data-key='{key}']\")")
    ch.page.keyboard.press("Home")
    for _ in range(index):
        ch.page.keyboard.press("ArrowDown")
    ch.page.wait_for_timeout(200)
    assert ch.page.evaluate("() => document.activeElement.value") == str(index)
    return _result(ch.page)


def test_memory_explorer_by_keyboard(open_chapter) -> None:
    ch = open_chapter("book/11-serving-at-scale.html", explorer=EXPLORER, widgets=False,
                      min_images=2, prose_only=True, raw=("$$", "\\operatorname", "\\frac"))
    assert ch.page.locator(".proof").count() >= 2  # the reach of windows, the exact merge
    start = _result(ch.page)
    assert start["per_seq"].endswith("GiB") and start["fits"] in ("yes", "no")

    # LLaMA-2 7B (first model), H100, 4,096 tokens, batch 16, 16-bit: 2 GiB per sequence.
    _choose(ch, "model", 0)
    _choose(ch, "context", 1)
    _choose(ch, "batch", 3)
    base = _choose(ch, "format", 0)
    assert base["per_seq"] == "2.00 GiB" and base["kv"] == "32.00 GiB", base

    # A longer context: the cache grows eightfold (32,768 tokens) and fewer sequences fit.
    longer = _choose(ch, "context", 3)
    assert _gib(longer["per_seq"]) == 8 * _gib(base["per_seq"])
    assert int(longer["max_seqs"].replace(",", "")) < int(base["max_seqs"].replace(",", ""))
    assert longer["fits"] == "no"

    # 4-bit: about a quarter of the 16-bit cache (plus the scales).
    four = _choose(ch, "format", 2)
    assert 0.25 < _gib(four["per_seq"]) / _gib(longer["per_seq"]) < 0.28
    screenshot(ch.page, "ch11-memory-explorer")

    # Mistral 7B (second model): its window caps the cache, so 4,096 and 32,768 tokens agree.
    _choose(ch, "model", 1)
    capped = _choose(ch, "format", 0)
    assert _choose(ch, "context", 1)["per_seq"] == capped["per_seq"]
