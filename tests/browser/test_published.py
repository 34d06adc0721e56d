"""The built website never publishes hidden tests; solutions only where the switch allows.

Runs after the site build (``make test``); needs no browser. Every text file under
the site (pages, sources, downloads, scripts) is searched for nbgrader's markers and
for the hidden tests of every exercise set. The worked-solutions pages
(``book/exercises/solutions``) show the solutions when ``hide_solutions`` in
``_config.yml`` is false, and none when it is true; every other exercise file (the
exercise pages, the notebooks offered for download) holds no line of a solution.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import pytest

from attnkit.grading.leaks import find_leaks, published_text, secrets

ROOT = Path(__file__).resolve().parents[2]
SITE = Path(os.environ.get("ATTNKIT_SITE", ROOT / "_build" / "html"))
SOURCES = Path(__file__).resolve().parents[2] / "exercises" / "source"
SETS = sorted(p.stem for p in SOURCES.glob("ch*.ipynb"))
TEXT = {".html", ".htm", ".ipynb", ".js", ".json", ".txt", ".md", ".css", ".py", ".csv", ".xml",
        ".svg", ".tex"}


@pytest.fixture(scope="module")
def site() -> Path:
    if not (SITE / "index.html").exists():
        pytest.fail(f"no built site at {SITE}; run `make book` first")
    return SITE


@pytest.fixture(scope="module")
def released() -> list[nbformat.NotebookNode]:
    return [nbformat.read(ROOT / "book" / "exercises" / f"{s}.ipynb", as_version=4) for s in SETS]


def _sources() -> list[nbformat.NotebookNode]:
    return [nbformat.read(ROOT / "exercises" / "source" / f"{s}.ipynb", as_version=4) for s in SETS]


def _published(site: Path) -> list[Path]:
    return [p for p in site.rglob("*") if p.is_file() and p.suffix in TEXT]


def _solutions_published() -> bool:
    import yaml

    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    return not cfg.get("sphinx", {}).get("config", {}).get("hide_solutions", False)


def _is_solutions_page(path: Path) -> bool:
    return "solutions" in path.parts and "exercises" in path.parts


def _is_exercise_file(path: Path) -> bool:
    return "exercises" in path.parts or re.fullmatch(r"ch\d\d\.ipynb", path.name) is not None


def test_every_exercise_page_is_built(site: Path) -> None:
    pages = site / "book" / "exercises"
    assert (pages / "index.html").exists()
    for s in SETS:
        assert (pages / f"{s}.html").exists(), s


def test_no_hidden_test_anywhere_on_the_site(site: Path, released: list) -> None:
    hidden = set().union(*(secrets(src, released, hidden_only=True) for src in _sources()))
    assert len(hidden) > 50
    leaks = {}
    for path in _published(site):
        found = find_leaks(published_text(path), hidden)
        if found:
            leaks[str(path.relative_to(site))] = found[:3]
    assert not leaks, leaks


def test_no_solution_in_the_published_exercises(site: Path, released: list) -> None:
    secret = set().union(*(secrets(src, released) for src in _sources()))
    files = [p for p in _published(site) if _is_exercise_file(p)
             and not (_solutions_published() and _is_solutions_page(p))]
    assert len(files) >= 2 * len(SETS)  # the pages and the notebooks offered for download
    leaks = {}
    for path in files:
        found = find_leaks(published_text(path), secret)
        if found:
            leaks[str(path.relative_to(site))] = found[:3]
    assert not leaks, leaks


def test_downloads_are_the_student_notebooks(site: Path) -> None:
    index = (site / "book" / "exercises" / "index.html").read_text(encoding="utf-8")
    links = re.findall(r'href="([^"]*_downloads/[^"]*/(ch\d\d)\.ipynb)"', index)
    assert sorted(name for _, name in links) == SETS
    for href, name in links:
        offered = (site / "book" / "exercises" / href).resolve()
        assert offered.read_bytes() == (ROOT / "book" / "exercises" / f"{name}.ipynb").read_bytes()


@pytest.mark.parametrize("number", [int(s[2:]) for s in SETS])  # every chapter with a set
def test_each_chapter_links_to_its_exercises(site: Path, number: int) -> None:
    pages = list((site / "book").glob(f"{number:02d}-*.html"))
    assert len(pages) == 1, f"chapter {number}: {pages}"
    html = pages[0].read_text(encoding="utf-8")
    article = html[html.find("<article"):html.rfind("</article>")]  # not the navigation
    assert f'href="exercises/ch{number:02d}.html' in article, f"{pages[0].name} does not link its exercises"


def test_worked_solutions_follow_the_switch(site: Path, released: list) -> None:
    pages = site / "book" / "exercises" / "solutions"
    for s in SETS:
        page = pages / f"{s}.html"
        assert page.exists(), s
        shown = find_leaks(published_text(page), secrets(_sources()[SETS.index(s)], released))
        if _solutions_published():
            assert shown, f"{s}: hide_solutions is false but its solutions page shows none"
        else:
            assert shown == [], f"{s}: hide_solutions is true but {shown[:3]} are published"
