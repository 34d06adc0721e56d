"""``attnkit grade EXERCISE_SET SUBMISSION... --out DIR``: the instructor's one command.

Prints a table, writes ``DIR/gradebook.csv``, ``DIR/feedback/SLUG-SET.{txt,html}`` and
``DIR/results/SET/`` (each student's result as soon as it is made). ``--jobs N`` grades
N students at once, ``--resume`` grades only those without a result, ``--only NAME...``
regrades chosen students, ``--shard i/N`` grades one slice of the class. Two more
commands work on output directories:

* ``attnkit grade merge EXERCISE_SET DIR... --out DIR``: join the shards' results;
* ``attnkit grade export --out DIR --format canvas|moodle``: the gradebook in the CSV
  layout that Canvas or Moodle imports.

Exit status: 0 when the batch was graded (files that are not notebooks or belong to
another set are reported and scored 0), 2 for a usage error (a missing file, an
unknown set, too little memory for ``--jobs``, shards that do not merge: nothing is
graded or written), 3 when the sandbox cannot run here (nothing is graded; the
message says what to do), 1 when nbgrader could not prepare the set, 130 when the run
was interrupted (Ctrl-C or SIGTERM: the students graded so far are kept, and
``--resume`` grades the rest).
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

__all__ = ["export_main", "main", "merge_main", "parser"]

EPILOG = """\
student names: by default from each file name: alice/ch05.ipynb, alice_ch05.ipynb,
alice-ch05.ipynb, ch05_alice.ipynb and alice.ipynb all belong to "alice". Use
--student once per file (in the same order) to name them yourself.

isolation: each student's kernel and everything it starts run under bubblewrap:
no network, a PID namespace (every process dies with the sandbox), a read-only view
of the system and of Python's environment, a private scratch directory, and no view
of the submissions, the output folder, the exercise sources or other students'
files; memory (--memory), CPU time (--cpu-time) and processes (--max-processes) are
limited. The checks run in the grader's own process on answers copied out of the
kernel as data. Without bubblewrap the command refuses to run; --no-sandbox grades
anyway, with your user's rights (only for submissions you trust). See README.md.

large classes: --jobs N grades N students at once (each in its own sandbox, with its
own limits; N x --memory must fit in the machine's memory). Each student's result is
written as soon as it is made: after an interruption, the same command with --resume
grades only the students without one. --only NAME... regrades chosen students.
--shard i/N grades the i-th of N fixed slices of the class (one per machine: a Slurm
array task, a Kubernetes indexed Job); then
  attnkit grade merge ch05 graded-1 graded-2 ... --out graded
joins them, refusing a student graded twice or not at all, and
  attnkit grade export --out graded --format canvas   (or moodle)
writes the gradebook in the layout that Canvas or Moodle imports.
"""


def parser() -> argparse.ArgumentParser:
    """The argument parser of ``attnkit grade``."""
    p = argparse.ArgumentParser(
        prog="attnkit grade",
        description="Grade submitted exercise notebooks with nbgrader's autograder.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("exercise_set", metavar="EXERCISE_SET", help="e.g. ch05")
    p.add_argument("submissions", metavar="SUBMISSION", nargs="+",
                   help="submitted notebooks (a directory: every file in it)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="where gradebook.csv and feedback/ go")
    p.add_argument("--student", action="append", metavar="NAME",
                   help="the student of each submission, in order (repeat per file)")
    p.add_argument("--timeout", type=float, default=30, metavar="SECONDS",
                   help="time limit per cell and per call of a student's function (default 30)")
    p.add_argument("--source", metavar="DIR",
                   help="directory of the source notebooks (default: exercises/source)")
    p.add_argument("--no-html", action="store_true", help="text feedback only")
    p.add_argument("--keep-temp", action="store_true",
                   help="keep each student's scratch directory (debugging)")
    p.add_argument("--no-sandbox", action="store_true",
                   help="run student code without bubblewrap, with your rights (trusted code only)")
    p.add_argument("--memory", default="2G", metavar="SIZE",
                   help="memory limit per process, e.g. 2G or 512M (default 2G)")
    p.add_argument("--cpu-time", type=int, default=600, metavar="SECONDS",
                   help="CPU-time limit per process (default 600)")
    p.add_argument("--max-processes", type=int, default=256, metavar="N",
                   help="processes and threads per student (default 256)")
    p.add_argument("--max-output", type=int, default=10_000, metavar="BYTES",
                   help="bytes of each cell's output kept in the feedback (default 10000)")
    p.add_argument("--max-feedback", type=int, default=200_000, metavar="BYTES",
                   help="bytes of each feedback file (default 200000)")
    p.add_argument("--jobs", "-j", type=int, default=1, metavar="N",
                   help="students graded at once, each in its own sandbox (default 1)")
    p.add_argument("--resume", action="store_true",
                   help="grade only the students without a result in DIR (same files, "
                        "same settings); keep the others")
    p.add_argument("--only", action="extend", nargs="+", metavar="NAME",
                   help="regrade only these students (names as in the gradebook) and replace "
                        "only their rows; put it after the submissions")
    p.add_argument("--shard", metavar="I/N",
                   help="grade the I-th of N fixed slices of the class (I from 1 to N); "
                        "join the shards with `attnkit grade merge`")
    p.add_argument("--progress", choices=("auto", "bar", "lines", "off"), default="auto",
                   help="progress on standard error: a bar on a terminal, a line per student "
                        "otherwise (auto, the default), or off")
    return p


def merge_parser() -> argparse.ArgumentParser:
    """The argument parser of ``attnkit grade merge``."""
    p = argparse.ArgumentParser(
        prog="attnkit grade merge",
        description="Join the output directories of the shards of one class (--shard i/N) "
                    "into one: gradebook rows, feedback files and results. Refuses, listing "
                    "every problem and writing nothing, when a shard is missing or given "
                    "twice, when shards come from different classes or settings, or when a "
                    "student has no row or rows in two shards.")
    p.add_argument("exercise_set", metavar="EXERCISE_SET", help="e.g. ch05")
    p.add_argument("shards", metavar="SHARD_DIR", nargs="+", help="the shards' --out directories")
    p.add_argument("--out", required=True, metavar="DIR", help="the merged directory")
    return p


def export_parser() -> argparse.ArgumentParser:
    """The argument parser of ``attnkit grade export``."""
    p = argparse.ArgumentParser(
        prog="attnkit grade export",
        description="Write DIR/gradebook.csv in the CSV layout that Canvas or Moodle imports: "
                    "one row per student, one column of points per exercise set. See "
                    "README.md for the import steps.")
    p.add_argument("--out", required=True, metavar="DIR", help="a grading output directory")
    p.add_argument("--format", required=True, choices=("canvas", "moodle"), dest="fmt")
    p.add_argument("--sets", nargs="+", metavar="SET", help="sets to export (default: all)")
    p.add_argument("--to", metavar="FILE", help="file to write (default DIR/FORMAT.csv)")
    p.add_argument("--roster", metavar="CSV",
                   help="the course's students (e.g. the LMS's own gradebook export): "
                        "identifiers are copied from it")
    p.add_argument("--match", metavar="COLUMN",
                   help="the roster column holding the grader's student names "
                        "(default: --id-column)")
    p.add_argument("--id-column", metavar="COLUMN",
                   help="the column that identifies a student: Canvas: Student, ID, SIS User "
                        "ID or SIS Login ID (default); Moodle: Username (default), ID number, "
                        "Email address or User ID")
    p.add_argument("--title", action="append", default=[], metavar="SET=TITLE",
                   help="column title of a set (default 'attnkit ch05'); for Canvas, "
                        "'Name (assignment id)' fills an existing assignment")
    return p


def merge_main(argv: Sequence[str]) -> int:
    """Run ``attnkit grade merge``; return the exit status."""
    args = merge_parser().parse_args(list(argv))
    from .shards import merge

    try:
        report = merge(args.exercise_set, args.shards, args.out)
    except (TypeError, ValueError) as exc:
        print(f"attnkit grade merge: {exc}", file=sys.stderr)
        return 2
    print(report.text())
    print(f"gradebook: {args.out}/gradebook.csv   feedback: {args.out}/feedback/")
    return 0


def export_main(argv: Sequence[str]) -> int:
    """Run ``attnkit grade export``; return the exit status."""
    args = export_parser().parse_args(list(argv))
    from .export import export

    try:
        titles = {}
        for t in args.title:
            key, sep, value = t.partition("=")
            if not sep or not key.strip() or not value.strip():
                raise ValueError(f"title must be SET=TITLE; got {t!r}")
            titles[key.strip()] = value.strip()
        path = export(args.out, args.fmt, sets=args.sets, dest=args.to, roster=args.roster,
                      match=args.match, id_column=args.id_column, titles=titles)
    except (TypeError, ValueError) as exc:
        print(f"attnkit grade export: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM (a scheduler's time limit, `kill`): stop as for Ctrl-C


def _table(results: Sequence[object]) -> str:
    rows = [("student", "set", "points", "max", "status")]
    for r in results:
        status = r.status  # type: ignore[attr-defined]
        failed = [c for c in r.checks if c.points < c.max_points]  # type: ignore[attr-defined]
        if status == "graded" and failed:
            status += f" ({len(failed)} check{'s' if len(failed) != 1 else ''} failed)"
        if r.restored:  # type: ignore[attr-defined]
            status += f", {len(r.restored)} deleted cells restored"  # type: ignore[attr-defined]
        if r.events:  # type: ignore[attr-defined]
            n = len(r.events)  # type: ignore[attr-defined]
            status += f", {n} cell event{'s' if n != 1 else ''} (see feedback)"
        if r.status != "graded" and r.note:  # type: ignore[attr-defined]
            status += f": {r.note}"  # type: ignore[attr-defined]
        rows.append((r.student, r.exercise_set, f"{r.points:g}", f"{r.max_points:g}", status))  # type: ignore[attr-defined]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1]),
                 row[2].rjust(widths[2]), row[3].rjust(widths[3]), row[4]]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``attnkit grade`` (or ``merge``, ``export``); return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["merge"]:
        return merge_main(argv[1:])
    if argv[:1] == ["export"]:
        return export_main(argv[1:])
    args = parser().parse_args(argv)
    from ._course import NbgraderFailed
    from ._sandbox import Limits, Sandbox, SandboxUnavailable, parse_bytes
    from .grader import grade
    from .progress import Progress

    def progress(total: int) -> Progress | None:
        if args.progress == "off" or total == 0:
            return None
        terminal = {"bar": True, "lines": False}.get(args.progress)
        return Progress(total, sys.stderr, terminal=terminal)

    old = None
    try:
        old = signal.signal(signal.SIGTERM, _interrupt)
    except ValueError:            # not the main thread
        pass
    try:
        results = grade(
            args.exercise_set,
            args.submissions,
            args.out,
            students=args.student,
            timeout=args.timeout,
            source_dir=args.source,
            html=not args.no_html,
            keep_temp=args.keep_temp,
            sandbox=not args.no_sandbox,
            memory=args.memory,
            cpu_seconds=args.cpu_time,
            processes=args.max_processes,
            max_output=args.max_output,
            max_feedback=args.max_feedback,
            jobs=args.jobs,
            resume=args.resume,
            only=args.only,
            shard=args.shard,
            progress=progress,
        )
    except (TypeError, ValueError) as exc:
        print(f"attnkit grade: {exc}", file=sys.stderr)
        return 2
    except SandboxUnavailable as exc:
        print(f"attnkit grade: nothing was graded: {exc}", file=sys.stderr)
        return 3
    except NbgraderFailed as exc:
        print(f"attnkit grade: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\nattnkit grade: interrupted. The students graded so far are in "
              f"{args.out}/gradebook.csv and {args.out}/results/; the same command with "
              "--resume grades the rest.", file=sys.stderr)
        return 130
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)
    if args.no_sandbox:
        print("WARNING: --no-sandbox: student code ran with your rights, without isolation",
              file=sys.stderr)
    print(_table(results))
    limits = Limits(parse_bytes(args.memory), args.cpu_time, args.max_processes)
    graded = [set(r.cgroups) for r in results if r.status == "graded"]
    kinds = sorted(set.intersection(*graded)) if graded else None
    print("\n" + Sandbox(limits, enabled=not args.no_sandbox).describe(kinds))
    print(f"\ngradebook: {args.out}/gradebook.csv   feedback: {args.out}/feedback/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
