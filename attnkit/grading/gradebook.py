"""The gradebook and each student's stored result: what a run leaves in ``--out``.

::

    OUT/gradebook.csv                   one row per (student, set); rows of other runs kept
    OUT/feedback/SLUG-SET.txt, .html    per-student feedback (attnkit.grading.feedback)
    OUT/results/SET/SLUG.json           each student's result, written as soon as it is made
    OUT/results/SET/run.json            the class (roster), the shard, the settings

A student's result file is the record that the student was graded: it is written
atomically (a temporary file renamed into place) after the feedback files, so a run
that is killed leaves each student either fully recorded or not at all. ``--resume``
grades only the students without a result made from the same submission (its SHA-256)
under the same settings; ``attnkit grade merge`` combines the results of shards.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .feedback import atomic_write, fmt_points

__all__ = [
    "CSV_COLUMNS",
    "read_gradebook",
    "read_results",
    "read_run",
    "results_dir",
    "row_of",
    "sha256",
    "sweep_partial",
    "write_gradebook",
    "write_result",
    "write_run",
]

#: Columns of the CSV gradebook.
CSV_COLUMNS = ("student", "exercise_set", "points", "max_points", "status", "file")

#: Version of the result files' layout.
RESULT_FORMAT = 1

Rows = dict[tuple[str, str], dict[str, str]]


def sha256(data: bytes | str) -> str:
    """Hex SHA-256 of a submission's bytes (a string: the reason it could not be read)."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return hashlib.sha256(raw).hexdigest()


def read_gradebook(path: Path) -> Rows:
    """Rows of an existing gradebook by ``(student, exercise_set)`` (empty if there is none).

    Raises:
        ValueError: the file exists but is not a gradebook (the message says what to do).
    """
    rows: Rows = {}
    if not path.exists():
        return rows
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or not {"student", "exercise_set"} <= set(reader.fieldnames):
                raise ValueError("no student/exercise_set columns")
            for row in reader:
                if row.get("student") and row.get("exercise_set"):
                    rows[(row["student"], row["exercise_set"])] = row
    except (OSError, UnicodeDecodeError, ValueError, csv.Error) as exc:
        raise ValueError(
            f"out: the existing gradebook {str(path)!r} cannot be read ({exc}); move it away "
            "or choose another --out (nothing was graded)"
        ) from None
    return rows


def row_of(res: Any) -> dict[str, str]:
    """The gradebook row of one :class:`~attnkit.grading.grader.Result`."""
    return {
        "student": res.student,
        "exercise_set": res.exercise_set,
        "points": fmt_points(res.points),
        "max_points": fmt_points(res.max_points),
        "status": res.status,
        "file": str(res.file),
    }


def write_gradebook(path: Path, rows: Rows, results: Iterable[Any] = ()) -> None:
    """Write the gradebook atomically: ``rows`` updated with ``results``, sorted by student."""
    rows = dict(rows)
    for r in results:
        rows[(r.student, r.exercise_set)] = row_of(r)
    lines: list[str] = []

    class _Lines:
        def write(self, s: str) -> None:
            lines.append(s)

    w = csv.DictWriter(_Lines(), fieldnames=CSV_COLUMNS, extrasaction="ignore",
                       lineterminator="\r\n")
    w.writeheader()
    for key in sorted(rows):
        w.writerow(rows[key])
    atomic_write(path, "".join(lines).encode("utf-8"))


# -- per-student results ------------------------------------------------------------------

def results_dir(out_dir: Path, exercise_set: str) -> Path:
    """``OUT/results/SET``."""
    return Path(out_dir) / "results" / exercise_set


def write_result(out_dir: Path, result: Mapping[str, Any], submission_sha: str,
                 settings: Mapping[str, Any]) -> Path:
    """Record one student's result (a dict of ``grader.result_to_dict``) atomically.

    Returns:
        The file written, ``OUT/results/SET/SLUG.json``.
    """
    path = results_dir(out_dir, result["exercise_set"]) / f"{result['slug']}.json"
    record = {"format": RESULT_FORMAT, "submission_sha256": submission_sha,
              "settings": dict(settings), "result": dict(result)}
    atomic_write(path, (json.dumps(record, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))
    return path


def read_results(out_dir: Path, exercise_set: str) -> dict[str, dict[str, Any]]:
    """The stored result records of a set by student name (unreadable files are skipped)."""
    found: dict[str, dict[str, Any]] = {}
    d = results_dir(out_dir, exercise_set)
    if not d.is_dir():
        return found
    for p in sorted(d.glob("*.json")):
        if p.name == "run.json" or p.name.startswith("."):
            continue
        try:
            record = json.loads(p.read_text(encoding="utf-8"))
            student = record["result"]["student"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        record["path"] = str(p)
        found[student] = record
    return found


def write_run(out_dir: Path, exercise_set: str, info: Mapping[str, Any]) -> Path:
    """Write ``results/SET/run.json`` (the class, the shard, the settings)."""
    path = results_dir(out_dir, exercise_set) / "run.json"
    atomic_write(path, (json.dumps(dict(info), indent=1, ensure_ascii=False) + "\n").encode())
    return path


def sweep_partial(out_dir: Path) -> list[Path]:
    """Remove the temporary files of runs that were killed while writing; return them.

    A file is written as ``.NAME.PID.tmp`` and renamed into place; one whose process
    no longer runs was left by a run that was killed in between.
    """
    removed = []
    out_dir = Path(out_dir)
    for d in [out_dir, out_dir / "feedback", *(out_dir / "results").glob("*")]:
        if not d.is_dir():
            continue
        for p in d.glob(".*.tmp"):
            pid = p.name.rsplit(".", 2)[-2]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def read_run(out_dir: Path, exercise_set: str) -> dict[str, Any] | None:
    """``results/SET/run.json`` of a run's output directory, or ``None``."""
    path = results_dir(out_dir, exercise_set) / "run.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
