"""Grade a batch of submitted notebooks of one exercise set with nbgrader's autograder.

What nbgrader does: put back the grader's cells (tests, with the hidden tests) by
their ids, run the notebook one cell at a time with a per-cell time limit, and give
each test cell its points when it runs without an error and without writing to
stderr. What this module adds around it:

* a temporary course directory and gradebook per run (nothing to set up);
* copies: the submitted files are only read, never written, moved or renamed;
* a check per file before grading: not a notebook, or a notebook of another
  exercise set, is reported by name and scored 0, and the batch goes on;
* cells the student deleted are put back from the released notebook (nbgrader only
  restores cells that are still there), so that one deleted cell does not break
  the rest of the notebook;
* the result: a table, a CSV gradebook and per-student feedback (text and HTML;
  tracebacks are cut to their message and the hidden tests' source is removed).

See :func:`grade`; the command line is :mod:`attnkit.grading.cli`.
"""

from __future__ import annotations

import copy
import csv
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from .sets import SET_NAME, default_source_dir, grade_ids, source_notebook

__all__ = ["CheckResult", "Result", "grade", "student_name", "restore_missing_cells"]

#: Columns of the CSV gradebook.
CSV_COLUMNS = ("student", "exercise_set", "points", "max_points", "status", "file")


@dataclass
class CheckResult:
    """One graded check (one nbgrader test cell)."""

    grade_id: str
    points: float
    max_points: float
    message: str = ""


@dataclass
class Result:
    """The grade of one submitted file.

    ``status`` is ``"graded"``, ``"not a notebook"``, ``"wrong exercise set"`` or
    ``"error"`` (nbgrader could not run it); anything but ``"graded"`` scores 0.
    """

    student: str
    exercise_set: str
    file: Path
    points: float
    max_points: float
    status: str
    note: str = ""
    checks: list[CheckResult] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    feedback: list[Path] = field(default_factory=list)


def student_name(path: str | os.PathLike[str], exercise_set: str) -> str:
    """The student's name from a submission's file name.

    Conventions, tried in order:

    * ``alice/ch05.ipynb`` (the file is named after the set): the folder, ``alice``;
    * ``alice_ch05.ipynb``, ``alice-ch05.ipynb``, ``ch05_alice.ipynb``,
      ``ch05-alice.ipynb``: the file name without the set, ``alice``;
    * anything else: the file name without its extension.

    Characters other than letters, digits, ``.``, ``_`` and ``-`` become ``_``.

    Example:
        >>> student_name("submissions/bob-ch05.ipynb", "ch05")
        'bob'
    """
    p = Path(path)
    stem = p.stem
    if stem == exercise_set and p.parent.name:
        name = p.parent.name
    else:
        name = re.sub(rf"^{exercise_set}[-_.]+|[-_.]+{exercise_set}$", "", stem) or stem
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "student"
    return name


def _gid(cell: Any) -> str | None:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return str(meta["grade_id"]) if isinstance(meta, dict) and meta.get("grade_id") else None


def restore_missing_cells(submitted: Any, released: Any) -> list[str]:
    """Put back, in place, every cell of ``released`` whose nbgrader id is missing.

    A restored cell goes right after the nearest earlier cell of the released
    notebook that the submission still has (or first). A deleted answer cell comes
    back unanswered; a deleted test or set-up cell comes back as released (and
    nbgrader then restores the hidden tests in it).

    Returns:
        The ids of the restored cells.
    """
    present = set(grade_ids(submitted))
    restored = []
    cells = released.cells
    for i, cell in enumerate(cells):
        gid = _gid(cell)
        if gid is None or gid in present:
            continue
        pos = 0
        for prev in reversed(cells[:i]):
            pg = _gid(prev)
            if pg in present:
                pos = next(j for j, c in enumerate(submitted.cells) if _gid(c) == pg) + 1
                break
        submitted.cells.insert(pos, copy.deepcopy(cell))
        present.add(gid)
        restored.append(gid)
    return restored


def _read_notebook(path: Path) -> tuple[Any | None, str]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror})"
    try:
        nb = nbformat.reads(data.decode("utf-8"), as_version=4)
        if not isinstance(nb.get("cells"), list):
            raise ValueError("no cells")
    except Exception:  # anything that does not parse is "not a notebook"
        return None, "is not a Jupyter notebook (not nbformat JSON)"
    return nb, ""


def _wrong_set_note(sub_ids: list[str], exercise_set: str) -> str:
    others = sorted({i.split("-")[0] for i in sub_ids if SET_NAME.match(i.split("-")[0])})
    if others:
        return f"is a notebook of exercise set {', '.join(others)}, not {exercise_set}"
    return f"is not a notebook of exercise set {exercise_set} (none of its cells are)"


def _cell_messages(graded: Path) -> dict[str, str]:
    """``grade_id -> message`` for every test cell that failed, from the graded notebook."""
    out: dict[str, str] = {}
    try:
        nb = nbformat.read(graded, as_version=4)
    except Exception:
        return out
    for cell in nb.cells:
        gid = _gid(cell)
        if gid is None:
            continue
        for o in cell.get("outputs", []):
            if o.get("output_type") == "error":
                name = o.get("ename", "Error")
                value = str(o.get("evalue", "")).strip()
                if name == "CellTimeoutError" or (name == "KeyboardInterrupt" and not value):
                    out[gid] = "stopped: the cell ran longer than the time limit"
                else:
                    out[gid] = f"{name}: {value}" if value else name
                break
            if o.get("output_type") == "stream" and o.get("name") == "stderr":
                out.setdefault(gid, "the cell wrote to stderr: " + str(o.get("text", ""))[:200])
    return out


def _expand(submissions: Sequence[str | os.PathLike[str]], exercise_set: str) -> list[Path]:
    files: list[Path] = []
    for s in submissions:
        p = Path(s)
        if p.is_dir():
            inner = [c for c in sorted(p.iterdir()) if c.is_file() and not c.name.startswith(".")]
            inner += sorted(p.glob(f"*/{exercise_set}.ipynb"))
            files.extend(inner)
        else:
            files.append(p)
    return files


def grade(
    exercise_set: str,
    submissions: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    students: Sequence[str] | None = None,
    timeout: int = 30,
    source_dir: str | os.PathLike[str] | None = None,
    html: bool = True,
    keep_temp: bool = False,
) -> list[Result]:
    """Grade every submission of ``exercise_set``; write the gradebook and the feedback.

    Args:
        exercise_set: the set's name, e.g. ``"ch05"``.
        submissions: notebook files; a directory stands for the files in it (and
            ``*/ch05.ipynb`` below it).
        out: output directory: ``gradebook.csv`` (rows of earlier runs for other
            students or sets are kept) and ``feedback/STUDENT-SET.txt`` / ``.html``.
        students: one name per submission file, instead of :func:`student_name`.
        timeout: seconds each cell may run; a cell that runs longer is interrupted
            and scores 0, the rest of the notebook goes on.
        source_dir: the source notebooks (default :func:`default_source_dir`).
        html: also write nbgrader's HTML feedback (slower).
        keep_temp: keep the temporary course directory (for debugging); its path is
            printed in each result's note.

    Returns:
        One :class:`Result` per submitted file, in the order given.

    Raises:
        TypeError, ValueError: bad arguments (unknown set, ``students`` of the wrong
            length, a non-positive ``timeout``).
        RuntimeError: nbgrader could not prepare the exercise set.

    Example:
        >>> results = grade("ch05", ["alice_ch05.ipynb"], "graded")   # doctest: +SKIP
        >>> results[0].points, results[0].max_points                  # doctest: +SKIP
        (11.0, 11.0)
    """
    from ._course import Course, NbgraderFailed

    src_dir = Path(source_dir) if source_dir is not None else default_source_dir()
    source = source_notebook(exercise_set, src_dir)
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout <= 0:
        raise ValueError(f"timeout must be a positive number of seconds; got {timeout!r}")
    files = _expand(submissions, exercise_set)
    if not files:
        raise ValueError("submissions must name at least one file; got none")
    if students is not None and len(students) != len(files):
        raise ValueError(
            f"students must give one name per submitted file: {len(files)} files, "
            f"got {len(students)} names"
        )
    names = list(students) if students is not None else [student_name(f, exercise_set) for f in files]
    names = [re.sub(r"[^A-Za-z0-9._-]+", "_", n).strip("._") or "student" for n in names]
    seen: dict[str, int] = {}
    unique = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        unique.append(n if seen[n] == 1 else f"{n}-{seen[n]}")

    out_dir = Path(out)
    (out_dir / "feedback").mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="attnkit-grade-"))  # mode 0700
    results: list[Result] = []
    try:
        course = Course(tmp / "course", exercise_set, timeout=timeout)
        released = nbformat.read(course.generate(source), as_version=4)
        release_ids = grade_ids(released)
        max_points = sum(
            float(c.metadata["nbgrader"].get("points", 0))
            for c in released.cells
            if c.get("metadata", {}).get("nbgrader", {}).get("grade")
        )
        course.forget_source()
        for path, name in zip(files, unique):
            res = Result(name, exercise_set, path, 0.0, max_points, "graded")
            if name != names[unique.index(name)]:
                res.note = f"renamed to {name}: another file gave the same student name"
            results.append(res)
            nb, why = _read_notebook(path)
            if nb is None:
                res.status, res.note = "not a notebook", f"{path.name} {why}"
                continue
            sub_ids = grade_ids(nb)
            if not set(sub_ids) & set(release_ids):
                res.status = "wrong exercise set"
                res.note = f"{path.name} {_wrong_set_note(sub_ids, exercise_set)}"
                continue
            res.restored = restore_missing_cells(nb, released)
            course.submit(name, nbformat.writes(nb))
            try:
                graded = course.autograde(name)
                scores = course.scores(name)
            except NbgraderFailed as exc:
                res.status = "error"
                res.note = str(exc).splitlines()[0]
                continue
            messages = _cell_messages(graded)
            res.checks = [CheckResult(g, p, m, "" if p >= m else messages.get(g, "failed"))
                          for g, p, m in scores]
            res.points = sum(c.points for c in res.checks)
            res.max_points = sum(c.max_points for c in res.checks) or max_points
            if html:
                try:
                    page = course.feedback(name)
                    dest = out_dir / "feedback" / f"{name}-{exercise_set}.html"
                    shutil.copyfile(page, dest)
                    res.feedback.append(dest)
                except NbgraderFailed as exc:
                    res.note = f"no HTML feedback: {str(exc).splitlines()[0]}"
            if not keep_temp:  # the next student's code must not find this graded copy
                course.forget_student(name)
        for res in results:
            res.feedback.insert(0, _write_text_feedback(res, out_dir))
        _write_csv(results, out_dir / "gradebook.csv")
    finally:
        if keep_temp:
            for res in results:
                res.note = (res.note + f"; course directory kept: {tmp}").lstrip("; ")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return results


def _fmt_points(x: float) -> str:
    return f"{x:g}"


def _write_text_feedback(res: Result, out_dir: Path) -> Path:
    lines = [
        f"Exercise set {res.exercise_set}, student {res.student}: "
        f"{_fmt_points(res.points)} / {_fmt_points(res.max_points)} points",
        f"Submitted file: {res.file.name}",
        "",
    ]
    if res.status != "graded":
        lines.append(f"Not graded ({res.status}): {res.note}. Score 0.")
    else:
        width = max((len(c.grade_id) for c in res.checks), default=10)
        for c in res.checks:
            mark = "ok  " if c.points >= c.max_points else "FAIL"
            pts = f"{_fmt_points(c.points)}/{_fmt_points(c.max_points)}"
            line = f"  {mark} {pts:>5}  {c.grade_id:<{width}}"
            lines.append((line + (f"  {c.message}" if c.message else "")).rstrip())
        if res.restored:
            lines += ["", "Cells missing from the submission were put back from the exercise set: "
                      + ", ".join(res.restored)]
    path = out_dir / "feedback" / f"{res.student}-{res.exercise_set}.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _write_csv(results: list[Result], path: Path) -> None:
    """Write the gradebook, keeping earlier rows of other (student, set) pairs."""
    rows: dict[tuple[str, str], dict[str, str]] = {}
    if path.exists():
        with path.open(newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                if row.get("student") and row.get("exercise_set"):
                    rows[(row["student"], row["exercise_set"])] = row
    for r in results:
        rows[(r.student, r.exercise_set)] = {
            "student": r.student,
            "exercise_set": r.exercise_set,
            "points": _fmt_points(r.points),
            "max_points": _fmt_points(r.max_points),
            "status": r.status,
            "file": str(r.file),
        }
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for key in sorted(rows):
            w.writerow(rows[key])
