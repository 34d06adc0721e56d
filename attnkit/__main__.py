"""Command line: ``attnkit grade ...`` (or ``python -m attnkit grade ...``) and ``attnkit bench``."""

from __future__ import annotations

import importlib
import sys

from .core.registry import backends

USAGE = """usage: attnkit COMMAND [ARGS...]

commands:
  grade EXERCISE_SET SUBMISSION... --out DIR   grade submitted exercise notebooks
  exercises release [--out DIR] [SET...]        make the student notebooks (no solutions)
  bench [OPTIONS]                              benchmark the engines side by side
  backends                                     list the engines usable here

Run `attnkit COMMAND --help` for a command's options."""


#: The commands and the modules whose ``main(argv)`` runs them (imported when used).
COMMANDS = {
    "grade": "attnkit.grading.cli",
    "exercises": "attnkit.grading.__main__",
    "bench": "attnkit.bench.cli",
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``attnkit`` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    command, rest = args[0], args[1:]
    if command in COMMANDS:
        return importlib.import_module(COMMANDS[command]).main(rest)
    if command == "backends":
        print("\n".join(backends()))
        return 0
    print(f"attnkit: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
