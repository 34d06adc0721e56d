"""Exercise sets on disk: where the sources live, their names, their nbgrader cells.

An exercise set ``chNN`` is one nbgrader *source* notebook ``chNN.ipynb`` (solutions
and hidden tests included) in the source directory, by default ``exercises/source``
of the repository that attnkit is installed from (``pip install -e .``); an
instructor with private sources passes their own directory (``--source DIR``) or sets
``ATTNKIT_EXERCISES``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

__all__ = [
    "SET_NAME",
    "default_source_dir",
    "exercise_sets",
    "grade_ids",
    "source_notebook",
]

#: Exercise-set names: ``ch01`` ... ``ch99``.
SET_NAME = re.compile(r"^ch\d{2}$")

#: nbgrader's markers; a released or published file must contain none of them.
MARKERS = (
    "BEGIN SOLUTION",
    "END SOLUTION",
    "BEGIN HIDDEN TESTS",
    "END HIDDEN TESTS",
)


def default_source_dir() -> Path:
    """The directory of the source notebooks: ``$ATTNKIT_EXERCISES`` or ``exercises/source``."""
    env = os.environ.get("ATTNKIT_EXERCISES")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "exercises" / "source"


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
