"""Alt text of figures: written in the notebook beside the code, carried to the page and the PDF.

An example page: a notebook whose figures are described the way the book's chapters
describe theirs (``show(fig, alt=...)`` for a cell's output, ``glue(name, fig,
alt=...)`` for a figure pasted into the prose with ``{glue:figure}``), its outputs
made here as a kernel would store them, built with the book's own extensions
(``book/_ext``) by Sphinx's HTML and LaTeX builders. The image on the page has the
alt text; in the LaTeX it is the image's PDF alternative text (``accsupp``). The
browser tests check the same on every page of the built site.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
import pytest

matplotlib = pytest.importorskip("matplotlib")
pytest.importorskip("myst_nb")

from attnkit.teaching import check_alt, described, figure  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHOWN = "Line plot of the weight of key 1 falling from 0.9 to 0.1 as the score gap closes."
GLUED = "Bar chart of five attention weights; the second key takes 0.40, the most."


def _display_output(value: object, *, glue_name: str | None = None) -> nbformat.NotebookNode:
    """The output a kernel stores for ``display(value)`` (or ``glue(name, value)``)."""
    data, metadata = value._repr_mimebundle_()  # type: ignore[attr-defined]
    data = {k: v for k, v in data.items() if k in ("image/png", "application/pdf", "text/plain")}
    if glue_name is not None:
        prefix = "application/papermill.record/"
        data = {prefix + k: v for k, v in data.items()}
        metadata = {**metadata, "scrapbook": {"name": glue_name, "mime_prefix": prefix}}
    import base64

    for k, v in data.items():
        if isinstance(v, bytes):
            data[k] = base64.b64encode(v).decode()
    return nbformat.v4.new_output("display_data", data=data, metadata=metadata)


def _notebook() -> nbformat.NotebookNode:
    matplotlib.use("agg")
    fig, ax = figure(4.0, 2.4)
    ax.plot([0.9, 0.5, 0.1])
    shown = described(fig, SHOWN)
    fig2, ax2 = figure(4.0, 2.4)
    ax2.bar(range(5), [0.1, 0.4, 0.2, 0.2, 0.1])
    glued = described(fig2, GLUED)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    code = nbformat.v4.new_code_cell('show(fig, alt="...")')
    code.outputs = [_display_output(shown)]
    glue_cell = nbformat.v4.new_code_cell('glue("fig_weights", fig2, display=False, alt="...")')
    glue_cell.outputs = [_display_output(glued, glue_name="fig_weights")]
    nb.cells = [nbformat.v4.new_markdown_cell("# Figures described"), code, glue_cell,
                nbformat.v4.new_markdown_cell(":::{glue:figure} fig_weights\n:name: fig-weights\n\n"
                                              "The weights.\n:::")]
    return nb


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from sphinx.application import Sphinx
    from sphinx.util.docutils import docutils_namespace

    src = tmp_path_factory.mktemp("alt-book")
    nbformat.write(_notebook(), src / "index.ipynb")
    (src / "conf.py").write_text(
        f"import sys\nsys.path.insert(0, {str(ROOT / 'book' / '_ext')!r})\n"
        "extensions = ['myst_nb', 'attnkit_site', 'attnkit_pdf']\n"
        "nb_execution_mode = 'off'\nmyst_enable_extensions = ['colon_fence']\n"
        "exclude_patterns = ['_build']\nlatex_engine = 'xelatex'\n"
        "latex_documents = [('index', 'alt.tex', 'Alt', 'attnkit', 'manual')]\n")
    out = {}
    for builder in ("html", "latex"):
        dest = src / "_build" / builder
        with docutils_namespace():  # two applications in one process, as Sphinx's own tests
            app = Sphinx(str(src), str(src), str(dest), str(src / "_build" / ".doctrees"), builder,
                         status=None, warning=sys.stderr, warningiserror=True, keep_going=False)
            app.build()
        out[builder] = dest
    return out


def test_the_page_gives_each_figure_its_alt_text(built: dict[str, Path]) -> None:
    page = (built["html"] / "index.html").read_text(encoding="utf-8")
    alts = re.findall(r'<img [^>]*alt="([^"]*)"', page)
    assert SHOWN in alts and GLUED in alts, alts


def test_the_pdf_gives_each_figure_its_alt_text(built: dict[str, Path]) -> None:
    tex = (built["latex"] / "alt.tex").read_text(encoding="utf-8")
    wrapped = re.findall(r"\\BeginAccSupp\{method=pdfstringdef,Alt=\{([^}]*)\}\}(.{0,300}?)\\EndAccSupp",
                         tex, re.S)
    assert {alt for alt, _ in wrapped} == {SHOWN, GLUED}, wrapped
    assert all("\\sphinxincludegraphics" in body for _, body in wrapped)
    # The vector copy of each figure is what the PDF prints.
    assert all(".pdf}" in body for _, body in wrapped), wrapped


@pytest.mark.parametrize("bad", ["", "   ", "figure.png", "_images/3f2a9c.png",
                                 "0b5de2212adf72ca52187e58a92d2c46c8c5fe5d852fbb4c2d55040763b82a91.png",
                                 "a plot"])
def test_alt_text_must_describe(bad: str) -> None:
    with pytest.raises(ValueError, match="alt must describe"):
        check_alt(bad)


def test_alt_text_must_be_a_string() -> None:
    with pytest.raises(TypeError, match="alt must be a string; got int"):
        check_alt(3)
