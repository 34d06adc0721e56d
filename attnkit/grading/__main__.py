"""``python -m attnkit.grading release|grade|list``: the exercise commands.

* ``release [--out DIR] [--mode self-study|course] [--check] [SET...]``: write the
  student notebooks and worked-solution pages (default ``book/exercises``); ``--mode
  course`` hides every value check in the hidden tests and publishes no solutions (the
  default follows ``hide_solutions`` in ``_config.yml``); with ``--check``, write nothing
  and fail if the files in DIR differ from a fresh release (used by the tests and CI).
* ``grade ...``: the same as ``attnkit grade`` (see :mod:`attnkit.grading.cli`).
* ``list``: the exercise sets found in the source directory.
* ``plan SET [--source DIR]``: each grader and check cell of a set, its points and the
  student names it reads (what the grader copies out of the student's kernel).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .sets import default_source_dir, exercise_sets

__all__ = ["main"]


def _release(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m attnkit.grading release",
                                description="Write the student notebooks (nbgrader release).")
    p.add_argument("sets", nargs="*", metavar="SET", help="exercise sets (default: all)")
    p.add_argument("--out", help="output directory (default: book/exercises of the checkout)")
    p.add_argument("--source", help="directory of the source notebooks")
    p.add_argument("--check", action="store_true",
                   help="compare DIR with a fresh release instead of writing it")
    p.add_argument("--mode", choices=["self-study", "course"],
                   help="self-study: public checks show expected values, worked solutions "
                        "published; course: public checks test only the form of an answer, "
                        "no solutions (default: course where _config.yml sets "
                        "hide_solutions: true, else self-study)")
    args = p.parse_args(list(argv))
    from .release import release

    try:
        if args.out is None:
            src = Path(args.source) if args.source else default_source_dir()
            args.out = str(src.resolve().parents[1] / "book" / "exercises")
        if not args.check:
            for path in release(args.out, args.sets, args.source, mode=args.mode):
                print(f"wrote {path}")
            return 0
        with tempfile.TemporaryDirectory() as tmp:
            stale = []
            for fresh in release(tmp, args.sets, args.source, mode=args.mode):
                old = Path(args.out) / fresh.relative_to(tmp)
                if not old.exists() or old.read_bytes() != fresh.read_bytes():
                    stale.append(str(old))
    except (TypeError, ValueError) as exc:
        print(f"release: {exc}", file=sys.stderr)
        return 2
    if stale:
        print("out of date (run `make student-notebooks`): " + ", ".join(stale), file=sys.stderr)
        return 1
    print("student notebooks are up to date")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch ``release``, ``grade`` and ``list``; return the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    command, rest = args[0], args[1:]
    if command == "release":
        return _release(rest)
    if command == "grade":
        from .cli import main as grade_main

        return grade_main(rest)
    if command == "plan":
        p = argparse.ArgumentParser(prog="python -m attnkit.grading plan")
        p.add_argument("exercise_set", metavar="SET")
        p.add_argument("--source", help="directory of the source notebooks")
        a = p.parse_args(rest)
        import nbformat

        from ._plan import build_plan, plan_text
        from .sets import source_notebook

        try:
            nb = nbformat.read(source_notebook(a.exercise_set, a.source), as_version=4)
            print(plan_text(build_plan(a.exercise_set, nb)))
        except (TypeError, ValueError) as exc:
            print(f"plan: {exc}", file=sys.stderr)
            return 2
        return 0
    if command == "list":
        print("\n".join(exercise_sets()))
        return 0
    print(f"unknown command {command!r}; use release, grade or list", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
