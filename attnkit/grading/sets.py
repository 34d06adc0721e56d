"""Exercise sets on disk: where the sources live, their names, their nbgrader cells.

An exercise set ``chNN`` is one nbgrader *source* notebook ``chNN.ipynb`` (solutions
and hidden tests included) in the source directory. The sources are not part of the
installed package (a wheel carries no hidden tests, and the grader's sandbox shows the
package to student code): the directory is ``--source DIR``, or ``$ATTNKIT_EXERCISES``,
or ``exercises/source`` of the repository checkout that the current directory is in
(or that attnkit was installed from with ``pip install -e``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

__all__ = [
    "MARKERS",
    "MODES",
    "SET_NAME",
    "VALUE_CHECKS",
    "WORKED_TAG",
    "default_source_dir",
    "exercise_sets",
    "grade_ids",
    "source_notebook",
]

#: Exercise-set names: ``ch01`` ... ``ch99``.
SET_NAME = re.compile(r"^ch\d{2}$")

#: The two releases of a set: solutions published (checks show expected values) or a
#: course (solutions hidden; public checks test only the form of an answer).
MODES = ("self-study", "course")

#: The region of a check cell that compares with the right value: public in a
#: self-study release, moved into the hidden tests in a course release.
VALUE_CHECKS = ("### BEGIN VALUE CHECKS", "### END VALUE CHECKS")

#: The tag of a source cell that explains a worked solution (never released).
WORKED_TAG = "worked-solution"

#: The markers of the sources (nbgrader's and attnkit's own: value checks, and the
#: ``<!-- BEGIN COURSE -->`` / ``<!-- BEGIN SELF-STUDY -->`` blocks of markdown cells);
#: a released or published file must contain none of them.
MARKERS = (
    "BEGIN SOLUTION",
    "END SOLUTION",
    "BEGIN HIDDEN TESTS",
    "END HIDDEN TESTS",
    "BEGIN VALUE CHECKS",
    "END VALUE CHECKS",
    "BEGIN SELF-STUDY",
    "END SELF-STUDY",
    "BEGIN COURSE",
    "END COURSE",
)


def _is_checkout(d: Path) -> bool:
    return (d / "exercises" / "source").is_dir() and (d / "attnkit" / "__init__.py").is_file()


def _editable_project() -> Path | None:
    """The project directory of an editable install of attnkit (pip's ``direct_url.json``)."""
    import json
    from importlib import metadata

    try:
        text = metadata.distribution("attnkit").read_text("direct_url.json")
        info = json.loads(text or "{}")
    except (metadata.PackageNotFoundError, ValueError, OSError):
        return None
    url = str(info.get("url", ""))
    if info.get("dir_info", {}).get("editable") and url.startswith("file://"):
        return Path(url[len("file://"):])
    return None


def default_source_dir() -> Path:
    """The directory of the source notebooks.

    In order: ``$ATTNKIT_EXERCISES``; ``exercises/source`` of the repository checkout
    that contains the current directory; that of the checkout attnkit was installed
    from in editable mode.

    Raises:
        ValueError: none of these exists (attnkit installed from a wheel, outside a
            checkout); the message says to pass ``--source`` or set the variable.
    """
    env = os.environ.get("ATTNKIT_EXERCISES")
    if env:
        return Path(env)
    here = Path.cwd().resolve()
    for d in (here, *here.parents):
        if _is_checkout(d):
            return d / "exercises" / "source"
    project = _editable_project()
    if project is not None and _is_checkout(project):
        return project / "exercises" / "source"
    raise ValueError(
        "source_dir: no exercise sources found: pass --source DIR (a directory of chNN.ipynb "
        "source notebooks) or set ATTNKIT_EXERCISES, or run from a checkout of the book's "
        "repository (its exercises/source)"
    )


def exercise_sets(source_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """The names of the exercise sets in ``source_dir``, sorted (``["ch01", ...]``).

    Raises:
        ValueError: ``source_dir`` is not a directory.
    """
    d = Path(source_dir) if source_dir is not None else default_source_dir()
    if not d.is_dir():
        raise ValueError(f"source_dir must be a directory of chNN.ipynb files; got {str(d)!r}")
    return sorted(p.stem for p in d.glob("*.ipynb") if SET_NAME.match(p.stem))


def source_notebook(exercise_set: str, source_dir: str | os.PathLike[str] | None = None) -> Path:
    """The source notebook of ``exercise_set``.

    Raises:
        TypeError: ``exercise_set`` is not a string.
        ValueError: no such exercise set (the message lists the known ones).
    """
    if not isinstance(exercise_set, str):
        raise TypeError(f"exercise_set must be a str like 'ch05'; got {type(exercise_set).__name__}")
    d = Path(source_dir) if source_dir is not None else default_source_dir()
    known = exercise_sets(d)
    if exercise_set not in known:
        raise ValueError(
            f"exercise_set must be one of {', '.join(known) or '(none found)'} "
            f"(sources in {d}); got {exercise_set!r}"
        )
    return d / f"{exercise_set}.ipynb"


def grade_ids(nb: Any) -> list[str]:
    """The nbgrader ``grade_id`` of every cell that has one, in notebook order."""
    ids = []
    for cell in nb.get("cells", []):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if isinstance(meta, dict) and meta.get("grade_id"):
            ids.append(str(meta["grade_id"]))
    return ids
