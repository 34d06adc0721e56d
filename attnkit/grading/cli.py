"""``attnkit grade EXERCISE_SET SUBMISSION... --out DIR``: the instructor's one command.

Prints a table, writes ``DIR/gradebook.csv`` and ``DIR/feedback/SLUG-SET.{txt,html}``.
Exit status: 0 when the batch was graded (files that are not notebooks or belong to
another set are reported and scored 0), 2 for a usage error (a missing file, an
unknown set: nothing is graded), 3 when the sandbox cannot run here (nothing is
graded; the message says what to do), 1 when nbgrader could not prepare the set.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main", "parser"]

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
    return p


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
    """Run ``attnkit grade``; return the exit status."""
    args = parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    from ._course import NbgraderFailed
    from ._sandbox import SandboxUnavailable
    from .grader import grade

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
    if args.no_sandbox:
        print("WARNING: --no-sandbox: student code ran with your rights, without isolation",
              file=sys.stderr)
    print(_table(results))
    from ._sandbox import Limits, Sandbox, parse_bytes

    limits = Limits(parse_bytes(args.memory), args.cpu_time, args.max_processes)
    print("\n" + Sandbox(limits, enabled=not args.no_sandbox).describe())
    print(f"\ngradebook: {args.out}/gradebook.csv   feedback: {args.out}/feedback/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
