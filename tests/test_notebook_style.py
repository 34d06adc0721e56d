"""The code a reader sees in the book fits on the page; glued prose shows no TeX.

Every line of a visible code cell in ``book/*.ipynb`` is at most :data:`MAX_COLUMNS`
characters long (the house style aims at 80), so that no code block on the site needs
a horizontal scroll bar at desktop width. Cells whose input the page hides (tags
``remove-input``, ``remove-cell``, ``hide-input``, and the Colab set-up cell) are not
checked.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Longest visible code line allowed, in characters.
MAX_COLUMNS = 88
#: Cells with one of these tags do not show their input on the page.
HIDDEN_INPUT_TAGS = frozenset({"remove-input", "remove-cell", "hide-input", "attnkit-setup"})
NOTEBOOKS = sorted(ROOT.glob("book/*.ipynb"))


def long_lines(path: Path, limit: int = MAX_COLUMNS) -> list[str]:
    """Return ``"cell C, line N (W chars): text"`` for each visible code line over ``limit``."""
    notebook = json.loads(Path(path).read_text(encoding="utf-8"))
    found = []
    for c, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "code":
            continue
        if HIDDEN_INPUT_TAGS & set(cell.get("metadata", {}).get("tags", [])):
            continue
        for n, line in enumerate("".join(cell["source"]).split("\n"), start=1):
            if len(line) > limit:
                found.append(f"cell {c}, line {n} ({len(line)} chars): {line.strip()}")
    return found


def test_the_book_has_notebooks_to_check():
    assert len(NOTEBOOKS) >= 10, [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_visible_code_lines_fit_the_page(path: Path):
    too_long = long_lines(path)
    assert not too_long, f"{path.name}: lines over {MAX_COLUMNS} characters:\n" + "\n".join(too_long)


def test_the_check_finds_a_long_line(tmp_path: Path):
    cell = {"cell_type": "code", "metadata": {}, "source": ["x = 1\n", "y = " + "1 + " * 30 + "1"]}
    hidden = {**cell, "metadata": {"tags": ["remove-input"]}}
    nb = tmp_path / "nb.ipynb"
    nb.write_text(json.dumps({"cells": [cell, hidden]}), encoding="utf-8")
    assert [line.split(":")[0] for line in long_lines(nb)] == ["cell 0, line 2 (125 chars)"]


#: Where a glued Markdown value is stored in a notebook's outputs.
GLUED_MARKDOWN = "application/papermill.record/text/markdown"


def inline_glued_math(path: Path) -> list[str]:
    """Return ``"cell C: KEY: value"`` for each glued Markdown shown inside a sentence with $-math.

    A ``{glue:md}`KEY``` inside a line of prose is parsed as inline Markdown, where
    MyST looks for no ``$...$`` math: the reader would see the TeX source. (Alone on
    its line, a glued value is parsed as blocks, math included.)
    """
    notebook = json.loads(Path(path).read_text(encoding="utf-8"))
    values = {}
    for cell in notebook["cells"]:
        for out in cell.get("outputs", []):
            name = out.get("metadata", {}).get("scrapbook", {}).get("name")
            value = out.get("data", {}).get(GLUED_MARKDOWN)
            if name and value is not None:
                values[name] = "".join(value) if isinstance(value, list) else value
    found = []
    for c, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        for line in "".join(cell["source"]).split("\n"):
            for m in re.finditer(r"\{glue:md\}`([^`:]+)[^`]*`", line):
                value = values.get(m.group(1), "")
                if line.strip() != m.group(0) and re.search(r"\$[^$]+\$", value):
                    found.append(f"cell {c}: {m.group(1)}: {value[:80]}")
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_math_in_glued_markdown_inside_a_sentence(path: Path):
    found = inline_glued_math(path)
    assert not found, f"{path.name}: $-math in inline glued Markdown (shown as TeX):\n" + "\n".join(found)


def test_the_check_finds_inline_glued_math(tmp_path: Path):
    glued = {"output_type": "display_data", "metadata": {"scrapbook": {"name": "k"}},
             "data": {GLUED_MARKDOWN: "a row of $-\\infty$"}}
    nb = tmp_path / "nb.ipynb"
    nb.write_text(json.dumps({"cells": [
        {"cell_type": "code", "metadata": {}, "source": [], "outputs": [glued]},
        {"cell_type": "markdown", "metadata": {}, "source": ["It gives {glue:md}`k`.\n"]},
        {"cell_type": "markdown", "metadata": {}, "source": ["{glue:md}`k`\n"]}]}), encoding="utf-8")
    assert inline_glued_math(nb) == ["cell 1: k: a row of $-\\infty$"]
