"""Find solutions or hidden tests in published files (used by the tests of the website).

A *secret* is a line of a source notebook inside a solution region or a hidden-test
region that does not also appear in a released student notebook (a line such as
``return out`` can be in both). Published text is compared with all whitespace
removed, so code highlighted into HTML spans is still found.

>>> import nbformat
>>> from attnkit.grading.leaks import secrets, find_leaks
>>> src = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
...     "x = None\\n### BEGIN SOLUTION\\nx = 'the answer is B'\\n### END SOLUTION")])
>>> find_leaks("print(1); x  =  'the answer is B'", secrets(src))
["x = 'the answer is B'"]
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .sets import MARKERS

__all__ = ["find_leaks", "published_text", "secrets"]

_REGIONS = (("BEGIN SOLUTION", "END SOLUTION"), ("BEGIN HIDDEN TESTS", "END HIDDEN TESTS"))


def _squash(text: str) -> str:
    return "".join(text.split())


def _lines_in_regions(source: str, begin: str, end: str) -> list[str]:
    out, inside = [], False
    for line in source.splitlines():
        if begin in line:
            inside = True
        elif end in line:
            inside = False
        elif inside:
            out.append(line.strip())
    return out


def secrets(
    source_nb: Any,
    public_nbs: Iterable[Any] = (),
    *,
    hidden_only: bool = False,
    min_length: int = 12,
) -> set[str]:
    """The lines of ``source_nb`` that a published file must not contain.

    Args:
        source_nb: an nbgrader source notebook (a ``NotebookNode`` or dict).
        public_nbs: notebooks that are published anyway (the student versions of
            every set); a line that also occurs in one of them is not secret.
        hidden_only: only hidden-test lines, not solution lines.
        min_length: shorter lines (without whitespace) are ignored as too generic.
    """
    public = "\n".join(_squash(_source(c)) for nb in public_nbs for c in nb["cells"])
    found = set()
    regions = _REGIONS[1:] if hidden_only else _REGIONS
    for cell in source_nb["cells"]:
        for begin, end in regions:
            for line in _lines_in_regions(_source(cell), begin, end):
                key = _squash(line)
                if len(key) >= min_length and key not in public and not line.startswith("#"):
                    found.add(line)
    return found


def _source(cell: Any) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def published_text(path: str | Path) -> str:
    """The text a reader can get from a published file.

    HTML loses its tags and entities; a notebook gives its cells' sources and text
    outputs; anything else is read as UTF-8 (undecodable bytes dropped).
    """
    p = Path(path)
    raw = p.read_bytes().decode("utf-8", errors="ignore")
    if p.suffix in (".html", ".htm"):
        return html.unescape(re.sub(r"<[^>]+>", "", raw))
    if p.suffix == ".ipynb":
        try:
            nb = json.loads(raw)
        except ValueError:
            return raw
        parts = []
        for cell in nb.get("cells", []):
            parts.append(_source(cell))
            for out in cell.get("outputs", []):
                text = out.get("text") or out.get("data", {}).get("text/plain", "")
                parts.append("".join(text) if isinstance(text, list) else str(text))
        return "\n".join(parts) + "\n" + raw
    return raw


def find_leaks(text: str, secret_lines: Iterable[str]) -> list[str]:
    """The nbgrader markers and the secret lines that occur in ``text``, sorted."""
    hay = _squash(text)
    hits = [m for m in MARKERS if _squash(m) in hay]
    hits += [s for s in secret_lines if _squash(s) in hay]
    return sorted(set(hits))
