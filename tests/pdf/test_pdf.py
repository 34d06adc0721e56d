"""The PDF of the whole book (``make pdf``; ``make test`` builds it and runs these).

Read with poppler's ``pdftotext`` and ``pdffonts`` (Debian's poppler-utils, installed
by ``make pdf-deps``): every chapter, the notation page, the bibliography and the
exercises are in it; no reference is left unresolved ("??" is what LaTeX prints for
one); every font is embedded; the equations and theorems carry the numbers the
website shows; the explorers are printed as a static view with a link; figures carry
their alt text where the notebook gave it; the XeLaTeX log has no missing glyph. A
theorem's page and an explorer's printed page are drawn into artifacts/screenshots/.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LATEX = ROOT / "_build" / "latex"
PDF = LATEX / "attention-book.pdf"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.fail(f"{name} is not installed; `make pdf-deps` installs poppler-utils")
    return path


@cache
def _text() -> str:
    if not PDF.exists():
        pytest.fail(f"no PDF at {PDF}; run `make pdf`")
    out = subprocess.run([_tool("pdftotext"), "-enc", "UTF-8", str(PDF), "-"],
                         check=True, capture_output=True, text=True).stdout
    return out


def _flat(text: str) -> str:
    """Text with line breaks, hyphenation at line ends and repeated spaces removed."""
    return " ".join(re.sub(r"-\n", "", text).split())


def _toc_titles() -> list[tuple[str, str]]:
    """(file, title) of every page in _toc.yml, the title being its first heading."""
    import nbformat
    from sphinx_external_toc.parsing import parse_toc_yaml  # how Jupyter Book reads it

    site_map = parse_toc_yaml(ROOT / "_toc.yml")
    files = [f for f in site_map if f != site_map.root.docname]
    titles = []
    for f in files:
        path = next(ROOT / f"{f}{ext}" for ext in (".ipynb", ".md", ".rst") if (ROOT / f"{f}{ext}").exists())
        if path.suffix == ".ipynb":
            cells = nbformat.read(path, as_version=4).cells
            text = "\n".join(c.source for c in cells if c.cell_type == "markdown")
        else:
            text = path.read_text(encoding="utf-8")
        heading = re.search(r"^# (.+)$", text, re.M) or re.search(r"^(.+)\n=+$", text, re.M)
        assert heading, f"{f}: no title"
        titles.append((f, heading.group(1).strip()))
    return titles


def _plain(title: str) -> str:
    """A title as the PDF's text layer has it: MyST/TeX markup and subscript letters removed."""
    title = re.sub(r"\$([^$]*)\$", r"\1", title)
    title = re.sub(r"\\sqrt\{([^}]*)\}", r"√\1", title)
    title = title.replace("_", "").replace("{", "").replace("}", "").replace("`", "")
    return re.sub(r"[ₖᵢⱼₙₘₜ]", "", title)


@pytest.mark.parametrize(("page", "title"), _toc_titles(), ids=lambda v: v if "/" in str(v) else "")
def test_every_page_of_the_book_is_in_the_pdf(page: str, title: str) -> None:
    words = [w for w in re.split(r"[^\w√]+", _plain(title)) if len(w) > 1 or w.isdigit()]
    text = _flat(_text())
    assert words and all(w in text for w in words), f"{page}: title {title!r} not found in the PDF"
    pattern = r"\W+".join(re.escape(w) for w in words)
    assert re.search(pattern, text), f"{page}: title {title!r} not in the PDF as one heading"


def test_the_pdf_has_the_bibliography_and_the_exercises() -> None:
    text = _flat(_text())
    assert "Bibliography" in text and "Vaswani" in text and "Attention is all you need" in text
    assert text.count("Exercises for Chapter") >= 12 or text.count("Exercises") >= 24


def test_no_unresolved_reference() -> None:
    text = _text()
    where = [text[max(m.start() - 40, 0):m.end() + 10] for m in re.finditer(r"\?\?", text)]
    assert not where, f"unresolved references: {where[:5]}"
    log = (LATEX / "attention-book.log").read_text(errors="replace")
    undefined = re.findall(r"(?:Reference|Citation|Hyper reference) `([^']+)' .*undefined", log)
    assert not undefined, f"undefined in the last LaTeX run: {undefined[:5]}"


def test_every_font_is_embedded() -> None:
    out = subprocess.run([_tool("pdffonts"), str(PDF)], check=True, capture_output=True, text=True).stdout
    rows = [line.split() for line in out.splitlines()[2:] if line.strip()]
    assert rows, out
    # Columns from the right: object ID (2 fields), uni, sub, emb.
    not_embedded = [r[0] for r in rows if r[-5] != "yes"]
    assert not not_embedded, f"fonts not embedded: {not_embedded}"


def test_no_missing_glyph() -> None:
    log = (LATEX / "attention-book.log").read_text(errors="replace")
    missing = sorted(set(re.findall(r"Missing character: There is no (.) \(U\+([0-9A-F]+)\)", log)))
    assert not missing, f"characters printed as nothing: {missing}"


def test_equations_and_theorems_are_numbered_as_on_the_site() -> None:
    tex = (LATEX / "attention-book.tex").read_text(encoding="utf-8")
    # Each numbered equation starts from the number before the site's (LaTeX adds one).
    numbers = [int(n) + 1 for n in re.findall(
        r"\\setcounter\{equation\}\{(\d+)\}\s*\\begin\{(?:equation|align)\}\\label\{equation:", tex)]
    labels = re.findall(r"\\begin\{(?:equation|align)\}\\label\{equation:", tex)
    assert numbers and len(numbers) == len(labels), (len(numbers), len(labels))
    assert numbers == list(range(1, len(numbers) + 1)), numbers
    text = _flat(_text())
    # Figures count through the book ("Fig. 6"), as on the site, not per chapter ("Fig. 2.2").
    assert re.search(r"Fig\. \d+\b", text) and not re.search(r"Fig\. \d+\.\d", text)
    # sphinx-proof's numbers, one count per kind through the book as on the website.
    found = re.findall(r"\{note\}\{(Theorem|Proposition|Lemma|Definition) (\d+)", tex)
    assert found
    for kind in {k for k, _ in found}:
        numbers = [int(n) for k, n in found if k == kind]
        assert numbers == list(range(1, len(numbers) + 1)), (kind, numbers)
        assert f"{kind} {numbers[-1]}" in text


def test_explorers_are_printed_as_a_static_view_and_a_link() -> None:
    text = _flat(_text())
    assert "IPython.core.display.HTML object" not in text and "VBox(children" not in text
    notes = text.count("An interactive explorer")
    assert notes >= 9, f"{notes} explorers printed with their link"
    # Each printed with its controls (the options, the one shown) before the note.
    assert text.count("(shown: ") >= notes - 1, text.count("(shown: ")
    assert "colab.research.google.com/github/" in text


def test_figures_carry_their_alt_text() -> None:
    """Each alt text the notebooks give wraps its image as the PDF's alternative text."""
    tex = (LATEX / "attention-book.tex").read_text(encoding="utf-8")
    assert len(re.findall(r"\\sphinxincludegraphics", tex)) >= 20
    # Alt text is added to the notebooks figure by figure (tests/browser/test_site.py
    # lists the figures waiting for theirs); every one given is in the PDF.
    wrapper = r"\\BeginAccSupp\{method=pdfstringdef,Alt=\{(.*?)\}\}(.{0,400}?)\\EndAccSupp"
    for m in re.finditer(wrapper, tex, re.S):
        alt, wrapped = m.groups()
        assert len(alt) >= 12 and "\\sphinxincludegraphics" in wrapped, m.group(0)[:300]


def _first_page_with(words: str) -> int:
    """The 1-based number of the first page whose text holds ``words`` (pdftotext's pages)."""
    for number, page in enumerate(_text().split("\f"), start=1):
        if words in _flat(page):
            return number
    pytest.fail(f"no page of the PDF holds {words!r}")


@pytest.mark.parametrize("name,words", [("pdf-theorem-page", "Theorem 1"),
                                        ("pdf-explorer-static-view", "An interactive explorer")])
def test_pages_are_drawn_into_the_artifacts(name: str, words: str) -> None:
    """Two printed pages as a reader sees them, in artifacts/screenshots/ (poppler's pdftoppm)."""
    shots = ROOT / "artifacts" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    number = _first_page_with(words)
    subprocess.run([_tool("pdftoppm"), "-f", str(number), "-l", str(number), "-r", "70", "-png",
                    "-singlefile", str(PDF), str(shots / name)], check=True, timeout=120)
    image = (shots / f"{name}.png").read_bytes()
    assert image[:8] == b"\x89PNG\r\n\x1a\n" and len(image) > 20_000, len(image)
