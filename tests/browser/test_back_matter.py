"""The back matter a reader reaches from every page: the API reference and the PDF.

* Every public function, class and module of each module the reference documents
  (``book/api/*.md``, its ``automodule`` directives) has an entry, as ``MODULE.NAME``
  or, for the names importable from the package itself, ``attnkit.NAME``.
* ``attnkit.<name>`` typed in the site's search box finds the entry.
* The reference's own example of a chapter's link (``{py:func}`attnkit.attention```)
  lands on the entry.
* The sidebar's "PDF of the whole book" link serves the PDF (``make pdf`` put it there).
"""

from __future__ import annotations

import importlib
import inspect
import re
from urllib.parse import urljoin

import pytest
from conftest import ROOT, SITE, screenshot

API = ROOT / "book" / "api"


def _documented_modules() -> list[tuple[str, str]]:
    """(page, module) for each ``automodule`` of the API pages."""
    found = []
    for page in sorted(API.glob("*.md")):
        found += [(page.stem, m) for m in re.findall(r"\.\. automodule:: ([\w.]+)", page.read_text())]
    return found


def _public(module: str) -> list[str]:
    """The module's public functions, classes and submodules (its ``__all__``).

    Constants re-exported by a package (``attnkit.serving.GPUS``) are left out: autodoc
    documents a constant only in the module that defines it with a ``#:`` comment.
    """
    mod = importlib.import_module(module)
    if hasattr(mod, "__all__"):
        return [n for n in mod.__all__
                if callable(getattr(mod, n, None)) or inspect.ismodule(getattr(mod, n, None))]
    return [n for n, v in vars(mod).items()
            if not n.startswith("_") and getattr(v, "__module__", "") == module and callable(v)]


# Pages and modules whose reference entries are known to be missing (none now). Strict, so
# the test says when fixed.
AWAITING_ENTRIES: set[tuple[str, str]] = set()


def _entry_params() -> list:
    return [pytest.param(*pm, marks=pytest.mark.xfail(strict=True, reason="entries missing: known defect"))
            if pm in AWAITING_ENTRIES else pm for pm in _documented_modules()]


@pytest.mark.parametrize(("page", "module"), _entry_params())
def test_every_public_name_has_an_entry(page: str, module: str) -> None:
    import attnkit

    html = (SITE / "book" / "api" / f"{page}.html").read_text(encoding="utf-8")
    ids = set(re.findall(r'<dt class="sig sig-object py" id="([^"]+)"', html))
    if module != "attnkit":
        ids |= set(re.findall(r'<dt class="sig sig-object py" id="([^"]+)"',
                              (SITE / "book" / "api" / "attnkit.html").read_text(encoding="utf-8")))
    ids |= {i.removeprefix("module-") for i in re.findall(r'id="(module-[\w.]+)"', html)}
    missing = []
    for name in _public(module):
        if name.startswith("__"):
            continue
        top = module != "attnkit" and name in attnkit.__all__ and getattr(attnkit, name, None) is getattr(
            importlib.import_module(module), name, object())
        if f"{module}.{name}" not in ids and not (top and f"attnkit.{name}" in ids):
            missing.append(name)
    assert not missing, f"{module}: public names without an entry on {page}.html: {missing}"


@pytest.mark.parametrize("name", ["attention", "MultiHeadAttention", "causal_mask"])
def test_attnkit_names_are_found_by_the_search(page, site_url: str, name: str) -> None:
    page.goto(f"{site_url}/search.html?q=attnkit.{name}")
    page.wait_for_selector("#search-results ul.search li", timeout=20_000)
    hrefs = page.eval_on_selector_all("#search-results ul.search li a", "els => els.map(a => a.href)")
    assert any(h.endswith(f"book/api/attnkit.html#attnkit.{name}") for h in hrefs), hrefs[:5]
    if name == "attention":
        screenshot(page, "search-attnkit-attention")


def test_the_reference_links_a_name_to_its_entry(page, site_url: str) -> None:
    page.goto(f"{site_url}/book/api/index.html")
    link = page.locator("main a[href*='#attnkit.attention']").first
    assert link.count(), "the API reference's intro has no link to attnkit.attention"
    link.click()
    page.wait_for_url("**/book/api/attnkit.html#attnkit.attention")
    assert page.locator("dt#attnkit\\.attention").is_visible()
    screenshot(page, "api-reference-attention")


def test_the_sidebar_offers_the_pdf(page, site_url: str) -> None:
    page.goto(f"{site_url}/book/03-why-scale.html")
    link = page.locator(".bd-sidebar-primary a.attnkit-pdf-link")
    assert link.is_visible() and "PDF" in link.inner_text()
    response = page.request.get(urljoin(page.url, link.get_attribute("href")))
    assert response.status == 200 and response.body()[:5] == b"%PDF-", response.status
