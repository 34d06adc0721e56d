"""nbgrader plumbing: a throw-away course directory per run, and two preprocessors.

nbgrader wants a course directory (``source/``, ``release/``, ``submitted/``,
``autograded/``, ``feedback/``) and a gradebook database. :class:`Course` makes one
in a private temporary directory and runs nbgrader's own converters in it, so that
the commands of :mod:`attnkit.grading` need neither.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nbclient.util import run_sync
from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor
from nbgrader.converters import Autograde, GenerateAssignment, GenerateFeedback
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import (
    AssignLatePenalties,
    CheckCellMetadata,
    ClearHiddenTests,
    Execute,
    GetGrades,
    IgnorePattern,
    LimitOutput,
    NbGraderPreprocessor,
    SaveAutoGrades,
)
from traitlets.config import Config

__all__ = ["Course", "NbgraderFailed"]


class NbgraderFailed(RuntimeError):
    """An nbgrader step failed; the message carries its log."""


class ScratchExecute(Execute):
    """nbgrader's ``Execute``, but the kernel starts in an empty scratch directory.

    nbgrader writes the sanitised submission, with the hidden tests restored, next to
    the notebook it then executes, and starts the kernel in that directory. Here the
    file is removed before the kernel starts (nbgrader holds the notebook in memory
    and writes the graded one afterwards) and the kernel's working directory is a
    fresh empty directory, so ``open("ch05.ipynb")`` in student code finds nothing.
    This hides the tests from casual reading only; see the grading docs.
    """

    def preprocess(self, nb: Any, resources: Any = None, km: Any = None) -> tuple[Any, Any]:
        resources = resources if resources is not None else {}
        meta = resources.setdefault("metadata", {})
        here = meta.get("path")
        key = resources.get("unique_key")
        if here and key:
            Path(here, f"{key}.ipynb").unlink(missing_ok=True)
        scratch = tempfile.mkdtemp(prefix="attnkit-kernel-")  # mode 0700
        meta["path"] = scratch
        try:
            return super().preprocess(nb, resources, km)
        finally:
            meta["path"] = here
            shutil.rmtree(scratch, ignore_errors=True)


    async def async_start_new_kernel(self, **kwargs: Any) -> None:
        """Start the kernel with its own log (not the student's output) sent to /dev/null."""
        kwargs.setdefault("stderr", subprocess.DEVNULL)
        await super().async_start_new_kernel(**kwargs)

    # nbclient binds its synchronous wrapper to its own coroutine: bind it to ours.
    start_new_kernel = run_sync(async_start_new_kernel)


class ScrubFeedback(NbGraderPreprocessor):
    """Shorten every error in the feedback to its last line (``AssertionError: ...``).

    A traceback quotes the lines around the failing one, which would show hidden
    test code; the last line carries the check's message, which is what a student
    needs. Runs after ``ClearHiddenTests`` has removed the hidden tests' source.
    """

    def preprocess_cell(self, cell: Any, resources: Any, index: int) -> tuple[Any, Any]:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                out["traceback"] = [f"{out.get('ename', 'Error')}: {out.get('evalue', '')}"]
        return cell, resources


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
        timeout: seconds each cell may run when autograding.
    """

    def __init__(self, root: Path, exercise_set: str, timeout: int = 30) -> None:
        self.root = Path(root)
        self.exercise_set = exercise_set
        self.timeout = int(timeout)
        self.log = logging.getLogger(f"attnkit.grading.nbgrader.{id(self)}")
        self.log.propagate = False
        self.log.setLevel(logging.INFO)
        self._handler = _Collect()
        self.log.addHandler(self._handler)

    # -- paths ---------------------------------------------------------------------------
    def path(self, kind: str, student: str | None = None, ext: str = "ipynb") -> Path:
        """``ROOT/kind[/student]/SET/SET.ext``."""
        parts = [kind] + ([student] if student else []) + [self.exercise_set]
        return self.root.joinpath(*parts, f"{self.exercise_set}.{ext}")

    def _coursedir(self, student: str = "*") -> CourseDirectory:
        cd = CourseDirectory(
            root=str(self.root),
            assignment_id=self.exercise_set,
            student_id=student,
            db_url=f"sqlite:///{self.root / 'gradebook.db'}",
            log=self.log,
        )
        return cd

    def _config(self) -> Config:
        c = Config()
        c.Execute.timeout = self.timeout
        c.Execute.interrupt_on_timeout = True
        # nbgrader 0.9's list, with Execute replaced
        c.Autograde.autograde_preprocessors = [
            ScratchExecute, IgnorePattern, ClearMetadataPreprocessor, LimitOutput,
            SaveAutoGrades, AssignLatePenalties, CheckCellMetadata,
        ]
        c.GenerateFeedback.preprocessors = [
            GetGrades, ClearHiddenTests, ScrubFeedback, CSSHTMLHeaderPreprocessor,
        ]
        return c

    @contextmanager
    def _step(self, what: str, **env: str) -> Iterator[None]:
        """Run an nbgrader step; its failure becomes :class:`NbgraderFailed` with the log.

        nbgrader runs the ``alembic`` script when it creates a gradebook, so the
        directory of this Python's scripts goes first on ``PATH`` (a virtualenv that
        is used without being activated). ``env`` also reaches the kernels.
        """
        start = len(self._handler.lines)
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            with warnings.catch_warnings():
                # nbgrader's gradebook code triggers SQLAlchemy warnings that say nothing
                # to a user of this command.
                warnings.simplefilter("ignore")
                yield
        except Exception as exc:
            log = "\n".join(self._handler.lines[start:][-20:])
            raise NbgraderFailed(f"nbgrader {what} failed: {exc}\n{log}") from exc
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    # -- steps -------------------------------------------------------------------------------
    def generate(self, source: Path) -> Path:
        """Copy ``source`` in, run ``generate_assignment``; return the student version."""
        dest = self.path("source")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, dest)
        with self._step("generate_assignment"):
            app = GenerateAssignment(coursedir=self._coursedir(), config=self._config(),
                                     log=self.log)
            app.force = True
            app.create_assignment = True
            app.start()
        return self.path("release")

    def forget_source(self) -> None:
        """Delete the source and release copies (the gradebook keeps what grading needs)."""
        self.path("source").unlink(missing_ok=True)
        shutil.rmtree(self.root / "release", ignore_errors=True)

    def forget_student(self, student: str) -> None:
        """Delete a graded student's files (the graded notebook holds the hidden tests)."""
        for kind in ("submitted", "autograded", "feedback"):
            shutil.rmtree(self.root / kind / student, ignore_errors=True)

    def submit(self, student: str, notebook_text: str) -> None:
        """Place a (repaired) submission where nbgrader looks for it."""
        dest = self.path("submitted", student)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(notebook_text, encoding="utf-8")

    def autograde(self, student: str) -> Path:
        """Run ``autograde`` for one student; return the graded notebook."""
        # Warnings off in the kernel: a test cell that writes to stderr scores 0.
        with self._step(f"autograde ({student})", PYTHONWARNINGS="ignore", MPLBACKEND="Agg"):
            app = Autograde(coursedir=self._coursedir(student), config=self._config(),
                            log=self.log)
            app.force = True
            app.create_student = True
            app.start()
        return self.path("autograded", student)

    def feedback(self, student: str) -> Path:
        """Run ``generate_feedback`` for one student; return the HTML file."""
        with self._step(f"generate_feedback ({student})"):
            c = self._config()
            c.HTMLExporter.template_name = "feedback"
            app = GenerateFeedback(coursedir=self._coursedir(student), config=c, log=self.log)
            app.force = True
            app.start()
        return self.path("feedback", student, ext="html")

    def scores(self, student: str) -> list[tuple[str, float, float]]:
        """``(grade_id, points, max_points)`` of every graded cell, in notebook order."""
        from nbgrader.api import Gradebook

        with warnings.catch_warnings(), Gradebook(f"sqlite:///{self.root / 'gradebook.db'}") as gb:
            warnings.simplefilter("ignore")
            nb = gb.find_submission_notebook(self.exercise_set, self.exercise_set, student)
            order = {c.name: i for i, c in enumerate(gb.find_notebook(
                self.exercise_set, self.exercise_set).source_cells)}
            rows = [(g.name, float(g.score), float(g.max_score)) for g in nb.grades]
        return sorted(rows, key=lambda r: order.get(r[0], len(order)))
