"""The code a reader sees in the book fits on the page.

Every line of a visible code cell in ``book/*.ipynb`` is at most :data:`MAX_COLUMNS`
characters long (the house style aims at 80), so that no code block on the site needs
a horizontal scroll bar at desktop width. Cells whose input the page hides (tags
``remove-input``, ``remove-cell``, ``hide-input``, and the Colab set-up cell) are not
checked.
"""

from __future__ import annotations

import json
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
