"""Every page of the built site, in headless Chromium with no network.

For each page listed in ``_toc.yml`` and each page Sphinx adds (index, search, the
theorem index, the API reference): it loads with no failed and no off-site request,
its math is typeset (no raw TeX left in the text) with the MathML a screen reader
reads, every image has loaded, and axe-core finds no serious or critical violation of
WCAG 2.2 AA in light mode and, switched on the same page, in dark mode (``a11y.py``;
the moderate and minor ones are listed in ``artifacts/accessibility/axe-report.md``).

Without a browser: every figure has alt text that describes it, and the colours of
code contrast with its background in both modes.
"""

from __future__ import annotations

import html.parser
import re
from pathlib import Path

import pytest
import yaml
from a11y import audit, describes, failures, simplify_for_audit
from conftest import ROOT, SITE, screenshot, wait_for_math, wait_for_widgets

#: TeX that would be visible only if MathJax had not typeset the page (or if math
#: had reached the page outside a math element: $...$ holding a macro).
RAW_TEX = re.compile(r"\$\$|\\\(|\\\[|\\(?:frac|sqrt|operatorname|mathrm|sum|exp|log|begin)\b"
                     r"|\$[^$\n]*\\[A-Za-z]+[^$\n]*\$")

#: Pages Sphinx writes beside those of the table of contents.
GENERATED = ["genindex.html", "search.html", "prf-prf.html", "py-modindex.html"]


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


def _all_pages() -> list[str]:
    pages = _pages()
    extra = [p for p in GENERATED if p not in pages]
    return pages + extra


def _switch_to_dark(page) -> None:
    """The reader's system turns dark; the theme follows it (colours measured once settled)."""
    page.add_style_tag(content="*, *::before, *::after { transition: none !important; }")
    page.emulate_media(color_scheme="dark")
    page.wait_for_function("() => document.documentElement.dataset.theme === 'dark'", timeout=5_000)
    page.wait_for_timeout(100)


@pytest.mark.parametrize("page_path", _all_pages())
def test_page_renders_offline_and_accessibly(page, site_url: str, page_path: str) -> None:
    assert (SITE / page_path).exists(), f"{page_path} was not built"
    failed: list[str] = []
    page.on("response", lambda r: r.status >= 400 and failed.append(f"{r.status} {r.url}"))
    page.goto(f"{site_url}/{page_path}")
    page.wait_for_load_state("networkidle")
    if page.locator(".math, .MathJax, mjx-container, span.math").count():
        wait_for_math(page)
    if page.locator("script[type='application/vnd.jupyter.widget-view+json']").count():
        wait_for_widgets(page)
    if page_path == "search.html":  # a search with results, as a reader sees it
        page.goto(f"{site_url}/search.html?q=attention")
        page.wait_for_selector("#search-results ul.search li", timeout=20_000)
    # The prose only: code cells legitimately contain TeX (e.g. matplotlib labels).
    text = page.evaluate(
        """() => { const m = document.querySelector('main').cloneNode(true);
                   m.querySelectorAll('pre, code, .highlight, mjx-container')
                    .forEach(e => e.remove());
                   document.body.appendChild(m); const t = m.innerText; m.remove(); return t; }""")
    leftover = RAW_TEX.findall(text)
    assert not leftover, f"raw TeX on {page_path}: {leftover[:5]}"
    # Every formula carries the MathML that a screen reader reads; the drawing is hidden from it.
    unread = page.evaluate(
        """() => Array.from(document.querySelectorAll('mjx-container'))
            .filter(c => !c.querySelector('mjx-assistive-mml > math')
                         || (c.querySelector('mjx-math') || {getAttribute: () => 'true'})
                              .getAttribute('aria-hidden') !== 'true')
            .map(c => c.textContent.slice(0, 40))""")
    assert not unread, f"formulas without assistive MathML on {page_path}: {unread[:5]}"
    broken = page.evaluate(
        "Array.from(document.querySelectorAll('main img'))"
        ".filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
    assert not broken, f"images that did not load on {page_path}: {broken}"
    assert not page.offsite_requests, page.offsite_requests
    assert not failed, failed
    screenshot(page, "page-" + page_path.replace("/", "-").removesuffix(".html"))

    page.wait_for_timeout(50)  # the site's script names the widgets' controls on the next frame
    simplify_for_audit(page)
    problems = failures(audit(page, page_path, "light"))
    _switch_to_dark(page)
    problems += [f"dark: {p}" for p in failures(audit(page, page_path, "dark"))]
    assert not problems, f"{page_path}: serious or critical accessibility violations:\n" + "\n".join(problems)


def test_chapters_math_is_read_by_a_screen_reader(page, site_url: str) -> None:
    """A chapter's formulas as a screen reader gets them: MathML with the right symbols."""
    page.goto(f"{site_url}/book/03-why-scale.html")
    wait_for_math(page)
    page.wait_for_function("() => document.querySelectorAll('mjx-assistive-mml math').length > 10")
    mathml = page.evaluate(
        """() => Array.from(document.querySelectorAll('mjx-container[display="true"]'))
            .map(c => c.querySelector('mjx-assistive-mml').innerHTML)""")
    assert mathml and all("<math" in m for m in mathml)
    # The scaled score q·k/√d_k reads as a fraction with a square root, not as its TeX.
    assert any("<msqrt>" in m and "<mfrac>" in m for m in mathml), mathml[:3]
    assert not any("\\frac" in m or "\\sqrt" in m for m in mathml)


# --------------------------------------------------------------------------- figures

class _Images(html.parser.HTMLParser):
    """The ``<img>`` elements of a page's article: [(src, alt or None)].

    The article is the page's content; the theme's toolbar above it (launch buttons
    with their logos, described by their own alt text) and the module index's +/-
    switch are not figures.
    """

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0
        self.images: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "article":
            self.depth += 1
        elif tag == "img" and self.depth:
            a = dict(attrs)
            if "toggler" not in (a.get("class") or ""):  # the module index's hidden +/- switch
                self.images.append((a.get("src") or "", a.get("alt")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "article":
            self.depth -= 1


def _images(page_path: str) -> list[tuple[str, str | None]]:
    parser = _Images()
    parser.feed((SITE / page_path).read_text(encoding="utf-8"))
    return parser.images


#: Pages whose figures do not have their alt text yet, and which figures (notebook
#: cell; glued name). The notebooks give it with ``attnkit.teaching.show(fig, alt=...)``
#: or ``glue(name, fig, alt=...)`` beside the code that draws the figure. A page listed
#: here is expected to fail; once its figures are described the test passes, pytest
#: reports it (strict) and the page must leave this list. It ends empty.
AWAITING_ALT_TEXT = {
}


def _alt_params() -> list:
    params = []
    for p in _all_pages():
        if p in AWAITING_ALT_TEXT:
            mark = pytest.mark.xfail(strict=True, reason=f"alt text not written yet: {AWAITING_ALT_TEXT[p]}")
            params.append(pytest.param(p, marks=mark))
        else:
            params.append(p)
    return params


@pytest.mark.parametrize("page_path", _alt_params())
def test_every_figure_is_described(page_path: str) -> None:
    if not (SITE / page_path).exists():
        pytest.fail(f"{page_path} was not built")
    undescribed = [(src.rsplit("/", 1)[-1], alt) for src, alt in _images(page_path) if not describes(alt)]
    assert not undescribed, (f"{page_path}: figures whose alt text is empty, a path or a file name "
                             f"(give it with show(fig, alt=...) or glue(name, fig, alt=...)): {undescribed}")


# --------------------------------------------------------------------------- code colours

def _hex(colour: str) -> tuple[int, int, int]:
    colour = colour.lstrip("#")
    if len(colour) == 3:
        colour = "".join(c * 2 for c in colour)
    return int(colour[0:2], 16), int(colour[2:4], 16), int(colour[4:6], 16)


@pytest.mark.parametrize("mode", ["light", "dark"])
def test_code_colours_contrast(mode: str) -> None:
    """Every syntax colour of the code blocks has 4.5:1 on the code background (WCAG 1.4.3)."""
    from attnkit.teaching.html import contrast

    css = (SITE / "_static" / "pygments.css").read_text(encoding="utf-8")
    scope = re.escape(f'html[data-theme="{mode}"] .highlight')
    background = re.search(scope + r"\s*\{[^}]*background:\s*(#[0-9a-fA-F]{3,6})", css)
    assert background, f"no {mode} code background in pygments.css"
    bg = _hex(background.group(1))
    colours = re.findall(scope + r" \.[\w-]+\s*\{[^}]*?(?<![-\w])color:\s*(#[0-9a-fA-F]{3,6})", css)
    assert len(colours) > 20, colours
    low = sorted({(c, round(contrast(_hex(c), bg), 2)) for c in colours if contrast(_hex(c), bg) < 4.5})
    assert not low, f"{mode}: code colours below 4.5:1 on {background.group(1)}: {low}"
