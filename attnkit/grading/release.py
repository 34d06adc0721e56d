"""Release: the student notebooks and the worked solutions, made from the sources.

``python -m attnkit.grading release --out book/exercises [--mode self-study|course]``
(``make student-notebooks``) writes ``chNN.ipynb`` for every set: solutions replaced by
``raise NotImplementedError()``, hidden tests and outputs removed, the grader's cells
locked (nbgrader's ``generate_assignment``). The book publishes exactly these files
(``book/exercises``), so what the website shows and offers for download is what a
student gets. The notebooks carry ``"mystnb": {"execution_mode": "off"}``: the book
shows them unexecuted.

**Two releases from one source.** A check cell of a source has up to three parts::

    # Check share-check (1 point)
    with quiet():
        check_number("share", share, low=0, high=1)         # form: always public
        ### BEGIN VALUE CHECKS
        check("share", share, 0.9 ** 7)                     # the value
        ### END VALUE CHECKS
        ### BEGIN HIDDEN TESTS
        ...                                                 # never published
        ### END HIDDEN TESTS

* ``mode="self-study"`` (solutions published): the value checks stay in the public
  check, which says what was expected and what was got;
* ``mode="course"`` (solutions hidden): the value checks join the hidden tests, so
  a public check contains no computation of the answer and prints no expected value:
  it tests only form (:data:`attnkit.grading.checks.FORM_CHECKS`: type, shape,
  range, units). ``tests/test_exercises.py`` scans every course release for leaks.

The grader reads every check from the source (:mod:`attnkit.grading._plan`), so a
submission gets the same points from either release. Markdown cells may hold text for
one release only, between ``<!-- BEGIN COURSE -->`` and ``<!-- END COURSE -->`` (or
``SELF-STUDY``). The default mode follows the book's one switch for solutions,
``hide_solutions`` in ``_config.yml``: course when it is true, self-study otherwise.

**Worked solutions.** The same command writes one page per set
(``book/exercises/solutions/chNN.md``): each exercise's question as an ``{exercise}``
and, as its ``{solution}`` (sphinx-exercise), the reasoning with its numbers and then
the code of the solution cells. The reasoning is the displayed Markdown of the source's
cells tagged ``worked-solution`` (``explain(f"...")``: the cell computes its numbers;
the source must be executed), which the student notebooks never contain. In a course
release the page holds the questions only. Hidden tests are never on these pages.
"""

from __future__ import annotations

import copy
import os
import re
import tempfile
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nbformat
import yaml

from ._course import Course
from .sets import (
    MARKERS,
    MODES,
    VALUE_CHECKS,
    WORKED_TAG,
    default_source_dir,
    exercise_sets,
    source_notebook,
)

__all__ = ["MODES", "default_mode", "prepare_source", "release", "solutions_page",
           "student_notebook"]

_MODE_BLOCK = re.compile(r"<!--\s*BEGIN (COURSE|SELF-STUDY)\s*-->\n?(.*?)<!--\s*END \1\s*-->\n?",
                         re.S)


def _check_mode(mode: str) -> str:
    if not isinstance(mode, str):
        raise TypeError(f"mode must be a str, one of {', '.join(MODES)}; got {type(mode).__name__}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    return mode


def default_mode(source_dir: str | os.PathLike[str] | None = None) -> str:
    """``"course"`` when the book's ``_config.yml`` hides the worked solutions, else ``"self-study"``.

    The book is the checkout that holds ``source_dir`` (its ``_config.yml``, two levels
    up from ``exercises/source``); without one, ``"self-study"``.
    """
    src = Path(source_dir) if source_dir is not None else default_source_dir()
    config = src.resolve().parents[1] / "_config.yml" if len(src.resolve().parents) > 1 else None
    if config is None or not config.is_file():
        return "self-study"
    try:
        cfg = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
        hide = cfg.get("sphinx", {}).get("config", {}).get("hide_solutions", False)
    except (OSError, yaml.YAMLError, AttributeError):
        return "self-study"
    return "course" if hide is True else "self-study"


def _mode_text(text: str, mode: str) -> str:
    """Markdown with the blocks of the other mode removed (and this mode's markers)."""
    keep = "COURSE" if mode == "course" else "SELF-STUDY"
    return _MODE_BLOCK.sub(lambda m: m.group(2) if m.group(1) == keep else "", text)


_RELATIVE_LINK = re.compile(r"\]\((?![a-z][a-z0-9+.-]*:|#|/)([^)\s]+)\)")


def _rebase_links(markdown: str) -> str:
    """Relative links of a set's text, rewritten for a page one directory deeper.

    Example:
        >>> _rebase_links("[Chapter 7](../07-implementations.ipynb), [web](https://a.b)")
        '[Chapter 7](../../07-implementations.ipynb), [web](https://a.b)'
    """
    return _RELATIVE_LINK.sub(lambda m: f"](../{m.group(1)})", markdown)


def _tags(cell: Any) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []) or [])


def prepare_source(source_nb: Any, mode: str) -> nbformat.NotebookNode:
    r"""The source notebook as nbgrader should see it for a release in ``mode``.

    Worked-solution cells are dropped; value-check regions become hidden-test regions
    (course) or plain code (self-study); markdown blocks for the other mode are dropped.

    Raises:
        ValueError: an unknown mode, or a value-check region that is not closed.

    Example:
        >>> nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        ...     "with quiet():\n    check_shape('w', w, (2,))\n"
        ...     "    ### BEGIN VALUE CHECKS\n    check('w', w, [1, 2])\n    ### END VALUE CHECKS")])
        >>> print(prepare_source(nb, "self-study").cells[0].source)
        with quiet():
            check_shape('w', w, (2,))
            check('w', w, [1, 2])
    """
    _check_mode(mode)
    nb = copy.deepcopy(nbformat.from_dict(source_nb))
    begin, end = VALUE_CHECKS
    cells = []
    for cell in nb.cells:
        if WORKED_TAG in _tags(cell):
            continue
        if cell.cell_type == "code" and begin in cell.source:
            lines, inside = [], False
            for line in cell.source.splitlines():
                if begin in line or end in line:
                    if (begin in line) == inside:
                        raise ValueError(f"unbalanced value-check markers in cell "
                                         f"{cell.metadata.get('nbgrader', {}).get('grade_id')}")
                    inside = begin in line
                    if mode == "course":
                        lines.append(line.replace("VALUE CHECKS", "HIDDEN TESTS"))
                    continue
                lines.append(line)
            if inside:
                raise ValueError("a value-check region is not closed")
            cell.source = "\n".join(lines)
        elif cell.cell_type == "markdown" and "<!--" in cell.source:
            cell.source = _mode_text(cell.source, mode).strip("\n")
        cells.append(cell)
    nb.cells = cells
    return nb


def student_notebook(
    exercise_set: str,
    source_dir: str | os.PathLike[str] | None = None,
    *,
    mode: str | None = None,
    workdir: str | os.PathLike[str] | None = None,
) -> nbformat.NotebookNode:
    """The student version of ``exercise_set``, as nbgrader's ``generate_assignment`` makes it.

    Execution timestamps are dropped, so the result depends only on the source's
    cells: releasing twice gives the same bytes.

    Args:
        exercise_set: e.g. ``"ch05"``.
        source_dir: the source notebooks (default :func:`default_source_dir`).
        mode: ``"self-study"`` or ``"course"`` (default :func:`default_mode`).
        workdir: a directory for nbgrader's course layout (default: a temporary one).

    Raises:
        ValueError: unknown exercise set or mode.
        RuntimeError: nbgrader failed, or a marker survived (nothing is returned that
            could leak a solution or a hidden test).
    """
    source = source_notebook(exercise_set, source_dir)
    mode = _check_mode(mode if mode is not None else default_mode(source.parent))
    prepared = prepare_source(nbformat.read(source, as_version=4), mode)
    with tempfile.TemporaryDirectory(prefix="attnkit-release-") as tmp:
        root = Path(workdir) if workdir is not None else Path(tmp)
        staged = Path(tmp) / "staged" / f"{exercise_set}.ipynb"
        staged.parent.mkdir()
        nbformat.write(prepared, staged)
        released = Course(root, exercise_set).generate(staged)
        nb = nbformat.read(released, as_version=4)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    nb.metadata["mystnb"] = {"execution_mode": "off"}
    text = nbformat.writes(nb)
    leaked = [m for m in MARKERS if m in text]
    if leaked:
        raise RuntimeError(f"the student version of {exercise_set} still contains {leaked}")
    return nb


_PLACEHOLDER = re.compile(r"^\s*[A-Za-z_]\w*\s*=\s*None\s*$")


def _solution_code(source: str) -> str:
    """A solution cell as its worked solution shows it: the whole cell, solutions filled in.

    The markers go, and so do the placeholders outside the solution regions
    (``answer = None``) that the solution assigns again; function headers and
    docstrings stay, so that a solution reads as the function it completes.
    """
    out, inside, any_solution = [], False, False
    for line in source.splitlines():
        if "BEGIN SOLUTION" in line:
            inside, any_solution = True, True
        elif "END SOLUTION" in line:
            inside = False
        elif inside or not _PLACEHOLDER.match(line):
            out.append(line)
    if not any_solution:
        return ""
    return textwrap.dedent("\n".join(out)).strip("\n")


def _worked_text(cell: Any, exercise_set: str) -> str:
    """The Markdown a worked-solution cell displayed when the source was executed."""
    for out in cell.get("outputs", []):
        data = out.get("data", {})
        if "text/markdown" in data:
            text = data["text/markdown"]
            return ("".join(text) if isinstance(text, list) else str(text)).strip("\n")
    raise RuntimeError(
        f"exercises/source/{exercise_set}.ipynb: a worked-solution cell has no Markdown output "
        f"(it starts {cell.source[:60]!r}); execute the source first "
        f"(jupyter execute --inplace exercises/source/{exercise_set}.ipynb)")


def solutions_page(
    exercise_set: str,
    source_dir: str | os.PathLike[str] | None = None,
    *,
    mode: str | None = None,
) -> str:
    """The worked-solutions page of ``exercise_set`` (MyST markdown).

    Each section of the source (a markdown cell starting with ``## ``) becomes an
    ``{exercise}`` with that text; the worked-solution text of the cells that follow it
    (its reasoning and numbers) and the solution regions of its code cells become its
    ``{solution}``. Check cells (and their hidden tests) are left out. In a course
    release (``mode="course"``) the page holds the exercises only.

    Raises:
        ValueError: unknown exercise set or mode.
        RuntimeError: a worked-solution cell has no output (the source is not executed).

    Example:
        >>> text = solutions_page("ch05")   # doctest: +SKIP
    """
    source = source_notebook(exercise_set, source_dir)
    mode = _check_mode(mode if mode is not None else default_mode(source.parent))
    nb = nbformat.read(source, as_version=4)
    title = next((c.source.splitlines()[0].lstrip("# ").strip() for c in nb.cells
                  if c.cell_type == "markdown" and c.source.startswith("# ")), exercise_set)
    title = title.replace("Exercises for", "Worked solutions:")
    intro = ("Try each exercise first and run its check cell; then compare." if mode == "self-study"
             else "This is a course release: the worked solutions are not published with it.")
    parts = [f"# {title}", "",
             f"The worked solutions of [exercise set {exercise_set}](../{exercise_set}.ipynb). "
             + intro, ""]
    sections: list[tuple[str, list[str], list[str]]] = []
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {}) or {}
        if cell.cell_type == "markdown" and cell.source.startswith("## "):
            sections.append((_mode_text(cell.source, mode), [], []))
        elif cell.cell_type == "code" and WORKED_TAG in _tags(cell) and sections:
            sections[-1][1].append(_worked_text(cell, exercise_set))
        elif cell.cell_type == "code" and meta.get("solution") and sections:
            code = _solution_code(cell.source)
            if code:
                sections[-1][2].append(code)
    for i, (question, texts, codes) in enumerate(sections, start=1):
        if not codes and not texts:
            continue
        label = f"{exercise_set}-solution-{i}"
        heading, _, body = question.partition("\n")
        name = re.sub(r"^\d+\.\s*", "", heading.lstrip("# ").strip())
        parts += [f"::::{{exercise}} {name}", f":label: {label}", "", _rebase_links(body.strip()),
                  "::::", ""]
        if mode == "course":
            continue
        parts += [f"::::{{solution}} {label}", ":class: dropdown", ""]
        for text in texts:
            parts += [_rebase_links(text), ""]
        if codes and texts:
            parts += ["In code:", ""]
        for code in codes:
            parts += ["```python", code, "```", ""]
        parts += ["::::", ""]
    return "\n".join(parts).rstrip("\n") + "\n"


def release(
    out: str | os.PathLike[str],
    sets: Sequence[str] | None = None,
    source_dir: str | os.PathLike[str] | None = None,
    *,
    mode: str | None = None,
) -> list[Path]:
    """Write the student notebook of each set in ``sets`` (default: all) to ``out/chNN.ipynb``.

    Args:
        out: the output directory (created if needed).
        sets: exercise-set names such as ``["ch05"]``; all sets when omitted.
        source_dir: the source notebooks (default :func:`default_source_dir`).
        mode: ``"self-study"`` or ``"course"`` (default :func:`default_mode`).

    Returns:
        The paths written: ``out/chNN.ipynb`` and ``out/solutions/chNN.md`` per set.

    Raises:
        ValueError: unknown exercise set or mode.

    Example:
        >>> paths = release("/tmp/student", ["ch05"], mode="course")   # doctest: +SKIP
    """
    src = Path(source_dir) if source_dir is not None else default_source_dir()
    mode = _check_mode(mode if mode is not None else default_mode(src))
    names = list(sets) if sets else exercise_sets(src)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory(prefix="attnkit-release-") as tmp:
        for name in names:  # one course directory, one gradebook for all sets
            nb = student_notebook(name, src, mode=mode, workdir=tmp)
            path = out_dir / f"{name}.ipynb"
            nbformat.write(nb, path)
            written.append(path)
            sol = out_dir / "solutions" / f"{name}.md"
            sol.parent.mkdir(exist_ok=True)
            sol.write_text(solutions_page(name, src, mode=mode), encoding="utf-8")
            written.append(sol)
    return written
