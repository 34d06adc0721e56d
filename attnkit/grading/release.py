"""Release: the student notebooks, made from the sources by nbgrader's ``generate_assignment``.

``python -m attnkit.grading release --out book/exercises`` (``make student-notebooks``)
writes ``chNN.ipynb`` for every set: solutions replaced by ``raise
NotImplementedError()``, hidden tests and outputs removed, the grader's cells locked.
The book publishes exactly these files (``book/exercises``), so what the website
shows and offers for download is what a student gets. The notebooks carry
``"mystnb": {"execution_mode": "off"}``: the book shows them unexecuted.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import nbformat

from ._course import Course
from .sets import MARKERS, default_source_dir, exercise_sets, source_notebook

__all__ = ["release", "student_notebook"]


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
        The paths written.

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
    return written
