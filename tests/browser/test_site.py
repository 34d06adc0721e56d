"""Every page of the built site, in headless Chromium with no network.

For each page listed in ``_toc.yml``: it loads with no failed and no off-site request,
its math is typeset (no raw TeX left in the text), and every image has loaded.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, SITE, screenshot, wait_for_math

#: TeX that would be visible only if MathJax had not typeset the page.
RAW_TEX = re.compile(r"\$\$|\\\(|\\\[|\\(frac|sqrt|operatorname|mathrm|sum|exp|log|begin)\b")


def _pages() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries: list[dict]) -> None:
        for e in entries:
            if "file" in e:
                files.append(e["file"])
            for key in ("chapters", "sections"):
                walk(e.get(key, []))

    walk(toc.get("parts", []))
    return [f"{Path(f).with_suffix('')}.html" for f in files]


@pytest.mark.parametrize("page_path", _pages())
def test_page_renders_offline(page, site_url: str, page_path: str) -> None:
    assert (SITE / page_path).exists(), f"{page_path} was not built"
    failed: list[str] = []
    page.on("response", lambda r: r.status >= 400 and failed.append(f"{r.status} {r.url}"))
    page.goto(f"{site_url}/{page_path}")
    page.wait_for_load_state("networkidle")
    if page.locator(".math, .MathJax, mjx-container, span.math").count():
        wait_for_math(page)
    # The prose only: code cells legitimately contain TeX (e.g. matplotlib labels).
    text = page.evaluate(
        """() => { const m = document.querySelector('main').cloneNode(true);
                   m.querySelectorAll('pre, code, .highlight, mjx-container')
                    .forEach(e => e.remove());
                   document.body.appendChild(m); const t = m.innerText; m.remove(); return t; }""")
    leftover = RAW_TEX.findall(text)
    assert not leftover, f"raw TeX on {page_path}: {leftover[:5]}"
    broken = page.evaluate(
        "Array.from(document.querySelectorAll('main img'))"
        ".filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
    assert not broken, f"images that did not load on {page_path}: {broken}"
    assert not page.offsite_requests, page.offsite_requests
    assert not failed, failed
    screenshot(page, "page-" + page_path.replace("/", "-").removesuffix(".html"))
