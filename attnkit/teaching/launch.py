"""The set-up cell that opens every notebook, so that Colab and Binder can run it.

A chapter opened from the website's Colab button starts in a runtime without
attnkit. A cell at the top of every notebook (after the title; left off the website) installs
attnkit with the packages the chapters use when ``import attnkit`` would fail, and
does nothing at all when attnkit is already importable (a local checkout, the
book's own build, nbval, Binder). ``python -m attnkit.teaching.launch FILE...``
puts the cell at the top of notebooks, or brings an existing one up to date.

``ATTNKIT_SOURCE`` overrides where the cell installs from (the tests install from
the local checkout instead of the repository).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["REPOSITORY", "SETUP_SOURCE", "SETUP_TAG", "add_setup_cell", "main"]

#: Where the cell installs attnkit from, unless ``ATTNKIT_SOURCE`` is set.
REPOSITORY = "git+https://github.com/attnkit/attention-book@main"

#: The tag that marks the cell (and hides its input on the website).
SETUP_TAG = "attnkit-setup"

#: The cell's code. Keep it short: it is the first thing a Colab reader sees.
SETUP_SOURCE = f"""\
# Set-up for Colab and other fresh runtimes: install attnkit and the packages the
# book uses if they are missing. Where attnkit is installed this does nothing.
import importlib, importlib.util, os, subprocess, sys
if importlib.util.find_spec("attnkit") is None:
    _source = os.environ.get("ATTNKIT_SOURCE", "{REPOSITORY}")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet",
                    f"attnkit[book] @ {{_source}}"], check=True)
    importlib.invalidate_caches()"""


def _setup_cell() -> dict[str, Any]:
    return {
        "cell_type": "code",
        "execution_count": None,
        "metadata": {"tags": [SETUP_TAG, "remove-cell"]},
        "outputs": [],
        "source": SETUP_SOURCE,
    }


def add_setup_cell(nb: dict[str, Any]) -> bool:
    """Give notebook ``nb`` the set-up cell, up to date; ``True`` if ``nb`` changed.

    A cell tagged :data:`SETUP_TAG` is replaced when its code differs from
    :data:`SETUP_SOURCE`. A notebook without one gets it after its title cell (a
    first Markdown cell that starts with ``#``), else at the very top.

    Args:
        nb: a notebook as a dict (``json.load``) or an ``nbformat`` node; modified in place.

    Raises:
        ValueError: ``nb`` has no list of cells.
    """
    cells = nb.get("cells") if isinstance(nb, dict) else None
    if not isinstance(cells, list):
        raise ValueError("nb must be a notebook with a list of 'cells'")
    for i, cell in enumerate(cells):
        if SETUP_TAG in cell.get("metadata", {}).get("tags", []):
            source = cell.get("source", "")
            if ("".join(source) if isinstance(source, list) else source) == SETUP_SOURCE:
                return False
            new = _setup_cell()
            if "id" in cell:
                new["id"] = cell["id"]
            cells[i] = new
            return True
    new = _setup_cell()
    if any("id" in c for c in cells):
        new["id"] = "attnkit-setup"
    first = cells[0] if cells else {}
    source = first.get("source", "")
    text = "".join(source) if isinstance(source, list) else source
    at = 1 if first.get("cell_type") == "markdown" and text.lstrip().startswith("#") else 0
    cells.insert(at, new)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """Add or update the set-up cell in each notebook named on the command line."""
    import json

    paths = list(sys.argv[1:] if argv is None else argv)
    if not paths:
        print("usage: python -m attnkit.teaching.launch NOTEBOOK.ipynb ...", file=sys.stderr)
        return 2
    for name in paths:
        path = Path(name)
        if path.suffix != ".ipynb" or not path.is_file():
            print(f"not a notebook file: {name}", file=sys.stderr)
            return 2
        nb = json.loads(path.read_text(encoding="utf-8"))
        if add_setup_cell(nb):
            path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
            print(f"set-up cell written: {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
