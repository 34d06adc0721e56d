"""nbgrader plumbing for the release: a throw-away course directory and ``generate_assignment``.

nbgrader wants a course directory (``source/``, ``release/``) and a gradebook database
to make the student version of a source notebook. :class:`Course` makes one in a
temporary directory. Grading does not use nbgrader's autograder (see
:mod:`attnkit.grading.grader`); it only needs the released notebook, to put back cells
a student deleted.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nbgrader.converters import GenerateAssignment
from nbgrader.coursedir import CourseDirectory
from traitlets.config import Config

__all__ = ["Course", "NbgraderFailed"]


class NbgraderFailed(RuntimeError):
    """An nbgrader step failed; the message carries its log."""


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"[{record.levelname}] {record.getMessage()}")


class Course:
    """A temporary nbgrader course directory for one exercise set.

    Args:
        root: an empty directory to build the course in.
        exercise_set: the assignment name, e.g. ``"ch05"``.
    """

    def __init__(self, root: Path, exercise_set: str) -> None:
        self.root = Path(root)
        self.exercise_set = exercise_set
        self.log = logging.getLogger(f"attnkit.grading.nbgrader.{id(self)}")
        self.log.propagate = False
        self.log.setLevel(logging.INFO)
        self._handler = _Collect()
        self.log.addHandler(self._handler)

    def path(self, kind: str) -> Path:
        """``ROOT/kind/SET/SET.ipynb``."""
        return self.root / kind / self.exercise_set / f"{self.exercise_set}.ipynb"

    @contextmanager
    def _step(self, what: str) -> Iterator[None]:
        """Run an nbgrader step; its failure becomes :class:`NbgraderFailed` with the log.

        nbgrader runs the ``alembic`` script when it creates a gradebook, so the
        directory of this Python's scripts goes first on ``PATH`` (a virtualenv that
        is used without being activated).
        """
        start = len(self._handler.lines)
        saved = os.environ.get("PATH")
        os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), saved or ""])
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")   # SQLAlchemy warnings from nbgrader's gradebook
                yield
        except Exception as exc:
            log = "\n".join(self._handler.lines[start:][-20:])
            raise NbgraderFailed(f"nbgrader {what} failed: {exc}\n{log}") from exc
        finally:
            if saved is None:
                os.environ.pop("PATH", None)
            else:
                os.environ["PATH"] = saved

    def generate(self, source: Path) -> Path:
        """Copy ``source`` in, run ``generate_assignment``; return the student version."""
        dest = self.path("source")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, dest)
        with self._step("generate_assignment"):
            cd = CourseDirectory(root=str(self.root), assignment_id=self.exercise_set,
                                 db_url=f"sqlite:///{self.root / 'gradebook.db'}", log=self.log)
            app = GenerateAssignment(coursedir=cd, config=Config(), log=self.log)
            app.force = True
            app.create_assignment = True
            app.start()
        return self.path("release")
