"""Release: the student notebooks, made from the sources by nbgrader's ``generate_assignment``.

``python -m attnkit.grading release --out book/exercises`` (``make student-notebooks``)
writes ``chNN.ipynb`` for every set: solutions replaced by ``raise
NotImplementedError()``, hidden tests and outputs removed, the grader's cells locked.
The book publishes exactly these files (``book/exercises``), so what the website
shows and offers for download is what a student gets. The notebooks carry
``"mystnb": {"execution_mode": "off"}``: the book shows them unexecuted.

The same command writes the worked solutions, one page per set
(``book/exercises/solutions/chNN.md``): each exercise's question as an ``{exercise}``
and the code of its solution cells as a ``{solution}`` (sphinx-exercise). The book's
one switch, ``hide_solutions`` in ``_config.yml``, decides whether the website shows
them (``false``, for readers who learn alone) or drops every solution from the pages
(``true``, for an instructor's copy). Hidden tests are never on these pages.
"""

from __future__ import annotations

import os
import re
import tempfile
import textwrap
from collections.abc import Sequence
from pathlib import Path

import nbformat

from ._course import Course
from .sets import MARKERS, default_source_dir, exercise_sets, source_notebook

__all__ = ["release", "solutions_page", "student_notebook"]


def student_notebook(
    exercise_set: str,
    source_dir: str | os.PathLike[str] | None = None,
    *,
    workdir: str | os.PathLike[str] | None = None,
) -> nbformat.NotebookNode:
    """The student version of ``exercise_set``, as nbgrader's ``generate_assignment`` makes it.

    Execution timestamps are dropped, so the result depends only on the source's
    cells: releasing twice gives the same bytes.

    Args:
        exercise_set: e.g. ``"ch05"``.
        source_dir: the source notebooks (default :func:`default_source_dir`).
        workdir: a directory for nbgrader's course layout (default: a temporary one).

    Raises:
        ValueError: unknown exercise set.
        RuntimeError: nbgrader failed, or a solution or hidden-test marker survived
            (nothing is returned that could leak them).
    """
    source = source_notebook(exercise_set, source_dir)
    with tempfile.TemporaryDirectory(prefix="attnkit-release-") as tmp:
        root = Path(workdir) if workdir is not None else Path(tmp)
        released = Course(root, exercise_set).generate(source)
        nb = nbformat.read(released, as_version=4)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    nb.metadata["mystnb"] = {"execution_mode": "off"}
    text = nbformat.writes(nb)
    leaked = [m for m in MARKERS if m in text]
    if leaked:
        raise RuntimeError(f"the student version of {exercise_set} still contains {leaked}")
    return nb


def _solution_code(source: str) -> str:
    out, inside = [], False
    for line in source.splitlines():
        if "BEGIN SOLUTION" in line:
            inside = True
        elif "END SOLUTION" in line:
            inside = False
        elif inside:
            out.append(line)
    return textwrap.dedent("\n".join(out)).strip("\n")


def solutions_page(exercise_set: str, source_dir: str | os.PathLike[str] | None = None) -> str:
    """The worked-solutions page of ``exercise_set`` (MyST markdown).

    Each section of the source (a markdown cell starting with ``## ``) becomes an
    ``{exercise}`` with that text; the solution regions of the code cells that follow
    it become its ``{solution}``. Check cells (and their hidden tests) are left out.

    Raises:
        ValueError: unknown exercise set.

    Example:
        >>> text = solutions_page("ch05")   # doctest: +SKIP
    """
    source = source_notebook(exercise_set, source_dir)
    nb = nbformat.read(source, as_version=4)
    title = next((c.source.splitlines()[0].lstrip("# ").strip() for c in nb.cells
                  if c.cell_type == "markdown" and c.source.startswith("# ")), exercise_set)
    title = title.replace("Exercises for", "Worked solutions:")
    parts = [f"# {title}", "",
             f"The worked solutions of [exercise set {exercise_set}](../{exercise_set}.ipynb). "
             "Try each exercise first and run its check cell; then compare.", ""]
    sections: list[tuple[str, list[str]]] = []
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {}) or {}
        if cell.cell_type == "markdown" and cell.source.startswith("## "):
            sections.append((cell.source, []))
        elif cell.cell_type == "code" and meta.get("solution") and sections:
            code = _solution_code(cell.source)
            if code:
                sections[-1][1].append(code)
    for i, (question, codes) in enumerate(sections, start=1):
        if not codes:
            continue
        label = f"{exercise_set}-solution-{i}"
        heading, _, body = question.partition("\n")
        name = re.sub(r"^\d+\.\s*", "", heading.lstrip("# ").strip())
        parts += [f"::::{{exercise}} {name}", f":label: {label}", "",
                  body.strip(), "::::", "", f"::::{{solution}} {label}", ":class: dropdown", ""]
        for code in codes:
            parts += ["```python", code, "```", ""]
        parts += ["::::", ""]
    return "\n".join(parts).rstrip("\n") + "\n"


def release(
    out: str | os.PathLike[str],
    sets: Sequence[str] | None = None,
    source_dir: str | os.PathLike[str] | None = None,
) -> list[Path]:
    """Write the student notebook of each set in ``sets`` (default: all) to ``out/chNN.ipynb``.

    Args:
        out: the output directory (created if needed).
        sets: exercise-set names such as ``["ch05"]``; all sets when omitted.
        source_dir: the source notebooks (default :func:`default_source_dir`).

    Returns:
        The paths written: ``out/chNN.ipynb`` and ``out/solutions/chNN.md`` per set.

    Example:
        >>> paths = release("/tmp/student", ["ch05"])   # doctest: +SKIP
    """
    src = Path(source_dir) if source_dir is not None else default_source_dir()
    names = list(sets) if sets else exercise_sets(src)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory(prefix="attnkit-release-") as tmp:
        for name in names:  # one course directory, one gradebook for all sets
            nb = student_notebook(name, src, workdir=tmp)
            path = out_dir / f"{name}.ipynb"
            nbformat.write(nb, path)
            written.append(path)
            sol = out_dir / "solutions" / f"{name}.md"
            sol.parent.mkdir(exist_ok=True)
            sol.write_text(solutions_page(name, src), encoding="utf-8")
            written.append(sol)
    return written
