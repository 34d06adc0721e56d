"""Chapter 11's KV-cache memory explorer in headless Chromium, offline.

Against the one-page build:
    scripts/build_page.sh book/11-serving-at-scale.ipynb
    ATTNKIT_SITE=/tmp/page-11-serving-at-scale/_build/html \
        .venv/bin/python -m pytest tests/browser/test_ch11_memory.py
"""

from __future__ import annotations

from conftest import open_page, screenshot

PAGE = "book/11-serving-at-scale.html"
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


def test_memory_explorer_works_offline(page, site_url: str) -> None:
    failed = open_page(page, site_url, PAGE, widgets=False)

    text = " ".join(page.locator("main p, main li, main figcaption").all_inner_texts())
    for raw in ("$$", "\\operatorname", "\\frac"):
        assert raw not in text, f"raw TeX {raw!r} left on the page"
    assert page.locator(".proof").count() >= 2  # the reach of windows, the exact merge
    images = page.evaluate(
        "Array.from(document.querySelectorAll('main img')).map(i => [i.src, i.naturalWidth])")
    assert len(images) >= 2 and all(w > 0 for _, w in images), images

    explorer = page.locator(EXPLORER).first
    explorer.scroll_into_view_if_needed()
    start = _result(page)
    assert start["per_seq"].endswith("GiB") and start["fits"] in ("yes", "no")

    # LLaMA-2 7B (first model), H100, 4,096 tokens, batch 16, 16-bit: 2 GiB per sequence.
    page.select_option(f"{EXPLORER} select[data-key='model']", "0")
    page.select_option(f"{EXPLORER} select[data-key='context']", "1")
    page.select_option(f"{EXPLORER} select[data-key='batch']", "3")
    page.select_option(f"{EXPLORER} select[data-key='format']", "0")
    base = _result(page)
    assert base["per_seq"] == "2.00 GiB" and base["kv"] == "32.00 GiB", base

    # A longer context: the cache grows eightfold (32,768 tokens) and fewer sequences fit.
    page.select_option(f"{EXPLORER} select[data-key='context']", "3")
    longer = _result(page)
    assert _gib(longer["per_seq"]) == 8 * _gib(base["per_seq"])
    assert int(longer["max_seqs"].replace(",", "")) < int(base["max_seqs"].replace(",", ""))
    assert longer["fits"] == "no"

    # 4-bit: about a quarter of the 16-bit cache (plus the scales).
    page.select_option(f"{EXPLORER} select[data-key='format']", "2")
    four = _result(page)
    assert 0.25 < _gib(four["per_seq"]) / _gib(longer["per_seq"]) < 0.28
    screenshot(page, "ch11-memory-explorer")

    # Mistral 7B (second model): its window caps the cache, so 4,096 and 32,768 tokens agree.
    page.select_option(f"{EXPLORER} select[data-key='model']", "1")
    page.select_option(f"{EXPLORER} select[data-key='format']", "0")
    capped = _result(page)
    page.select_option(f"{EXPLORER} select[data-key='context']", "1")
    assert _result(page)["per_seq"] == capped["per_seq"]

    assert not page.offsite_requests, page.offsite_requests
    assert not failed, failed
