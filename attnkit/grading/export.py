"""The gradebook in the CSV layouts that Canvas and Moodle import.

One row per student, one column of points per exercise set.

**Canvas** (Grades > Import): the header is ``Student, ID, SIS User ID, SIS Login ID,
Section`` and then one column per assignment; a second row that starts with ``Points
Possible`` gives each assignment's maximum. Canvas's importer (``GradebookImporter``
in ``app/models/gradebook_importer.rb`` of instructure/canvas-lms) finds the student
of a row by ``ID`` (Canvas's user id), then ``SIS User ID``, then ``SIS Login ID``,
then by the name in ``Student``; an assignment column by ``Title (id)``, then by its
title, and a title it does not know becomes a new assignment whose points possible
come from the ``Points Possible`` row. A blank cell changes nothing.

**Moodle** (Grades > Import > CSV file): any header; on the import page the teacher
maps one column to the user (``Map from`` that column, ``Map to`` ``username``,
``useridnumber``, ``useremail`` or ``userid``) and each other column to a grade item
or a new one (``grade/import/csv/classes/load_data.php`` of moodle/moodle; Moodle's
documentation page "Grade import"). A row whose user Moodle cannot find stops the
whole import, so the file holds only students with a grade. No maximum row: Moodle
reads every row after the header as a student.

Without a roster, the grader's student names are the identifiers (``--id-column``
says which column holds them). With ``--roster FILE``, a CSV with one row per student
of the course (Canvas's own gradebook export, or Moodle's, or any CSV with the
columns), each grader name is looked up in the roster's ``--match`` column, and the
identifying columns are copied from the roster row; a student who is not in the
roster, or is twice in it, stops the export with the list of such names.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path

from .feedback import atomic_write, fmt_points
from .gradebook import read_gradebook

__all__ = ["CANVAS_ID_COLUMNS", "FORMATS", "MOODLE_ID_COLUMNS", "export"]

#: Canvas's student columns, in the order its importer expects them.
CANVAS_ID_COLUMNS = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")
#: Columns a Moodle import can identify a user by (the import page's "Map to" choices).
MOODLE_ID_COLUMNS = ("Username", "ID number", "Email address", "User ID")
FORMATS = ("canvas", "moodle")


def _read_roster(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            rows = [r for r in reader if any((v or "").strip() for v in r.values())]
            return list(reader.fieldnames or []), rows
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"roster: {str(path)!r} cannot be read ({exc})") from None


def export(out_dir: str | Path, fmt: str, *, sets: Sequence[str] | None = None,
           dest: str | Path | None = None, roster: str | Path | None = None,
           match: str | None = None, id_column: str | None = None,
           titles: Mapping[str, str] | None = None) -> Path:
    """Write ``out_dir``'s gradebook in the layout ``fmt`` imports; return the file.

    Args:
        out_dir: a grading output directory (its ``gradebook.csv``).
        fmt: ``"canvas"`` or ``"moodle"``.
        sets: the exercise sets to export, one column each (default: every set in
            the gradebook), in this order.
        dest: the file to write (default ``out_dir/FMT.csv``).
        roster: a CSV of the course's students to take identifiers from.
        match: the roster column that holds the grader's student names (default:
            ``id_column``).
        id_column: where the grader's names go without a roster, and which roster
            column identifies a Moodle user (default ``SIS Login ID`` for Canvas,
            ``Username`` for Moodle).
        titles: a column title per set (default ``"attnkit ch05"``); for Canvas,
            ``"Title (assignment id)"`` fills an existing assignment.

    Returns:
        The path written.

    Raises:
        ValueError: an unknown format or set, an empty gradebook, a roster without the
            columns, or grader names missing from the roster or found twice in it.

    Example:
        >>> export("graded", "canvas", sets=["ch05"])        # doctest: +SKIP
        PosixPath('graded/canvas.csv')
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    out_dir = Path(out_dir)
    book = read_gradebook(out_dir / "gradebook.csv")
    if not book:
        raise ValueError(f"out: no gradebook in {str(out_dir)!r} (grade first)")
    known = sorted({s for _, s in book})
    sets = list(sets) if sets else known
    unknown = [s for s in sets if s not in known]
    if unknown:
        raise ValueError(f"sets: {', '.join(unknown)} not in the gradebook (it has "
                         f"{', '.join(known)})")
    id_cols = CANVAS_ID_COLUMNS if fmt == "canvas" else MOODLE_ID_COLUMNS
    if id_column is None:
        id_column = "SIS Login ID" if fmt == "canvas" else "Username"
    if id_column not in id_cols:
        raise ValueError(f"id_column must be one of {', '.join(id_cols)} for {fmt}; "
                         f"got {id_column!r}")
    titles = dict(titles or {})
    header_sets = [titles.get(s, f"attnkit {s}") for s in sets]
    students = sorted({st for st, s in book if s in sets})
    maxima = {s: max(float(r["max_points"] or 0) for (st, ss), r in book.items() if ss == s)
              for s in sets}

    idents: dict[str, dict[str, str]] = {}
    if roster is None:
        for st in students:
            idents[st] = {id_column: st, **({"Student": st} if fmt == "canvas" else {})}
        keep = [c for c in id_cols if fmt == "canvas" or c == id_column]
    else:
        fields, rows = _read_roster(Path(roster))
        match = match or id_column
        if match not in fields:
            raise ValueError(f"match: the roster has no column {match!r} (it has "
                             f"{', '.join(map(repr, fields))})")
        keep = [c for c in id_cols if c in fields] if fmt == "canvas" else [id_column]
        if fmt == "moodle" and id_column not in fields:
            raise ValueError(f"id_column: the roster has no column {id_column!r}")
        if fmt == "canvas" and not {"ID", "SIS User ID", "SIS Login ID", "Student"} & set(keep):
            raise ValueError("roster: a Canvas roster needs one of the columns Student, ID, "
                             "SIS User ID, SIS Login ID (export Canvas's gradebook)")
        found: dict[str, list[dict[str, str]]] = {}
        for r in rows:
            found.setdefault((r.get(match) or "").strip(), []).append(r)
        absent = [st for st in students if st not in found]
        twice = [st for st in students if len(found.get(st, [])) > 1]
        if absent or twice:
            msg = []
            if absent:
                msg.append(f"{len(absent)} graded student(s) not in the roster's {match!r} "
                           f"column: {', '.join(map(repr, absent[:20]))}")
            if twice:
                msg.append(f"{len(twice)} found twice: {', '.join(map(repr, twice[:20]))}")
            raise ValueError("roster: " + "; ".join(msg) + " (nothing was written)")
        for st in students:
            idents[st] = {c: found[st][0].get(c, "") for c in keep}
    if fmt == "canvas":
        keep = list(CANVAS_ID_COLUMNS)   # the importer needs the student columns in this order

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(keep + header_sets)
    if fmt == "canvas":
        w.writerow(["Points Possible"] + [""] * (len(keep) - 1)
                   + [fmt_points(maxima[s]) for s in sets])
    for st in students:
        cells = [book[(st, s)]["points"] if (st, s) in book else "" for s in sets]
        w.writerow([idents[st].get(c, "") for c in keep] + cells)
    path = Path(dest) if dest is not None else out_dir / f"{fmt}.csv"
    atomic_write(path, buf.getvalue().encode("utf-8"))
    return path
