"""Progress of a grading run: a bar on a terminal, plain lines in a log.

On a terminal (the stream is a TTY) :class:`Progress` draws a `tqdm
<https://tqdm.github.io/>`_ bar: students done / total, the rate, the time left,
and after it a one-line tally of what went wrong so far. Anywhere else (CI logs,
``nohup``, a Slurm job's output file) it prints one plain line per student, with the
same facts, so that a log can be read after the fact and grepped.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import IO, Any

__all__ = ["Progress", "tally"]

#: Statuses that are not a normal graded notebook, in the tally's words.
_NOT_GRADED = {"not a notebook": "not a notebook", "wrong exercise set": "wrong set",
               "error": "kernel error"}


def tally(counts: Counter) -> str:
    """One line: what failed so far (``counts`` from :meth:`Progress.count`).

    Example:
        >>> tally(Counter({"not a notebook": 2, "cell events": 1}))
        'failures: 2 not a notebook, 1 with a time limit or dead kernel'
        >>> tally(Counter())
        'failures: none'
    """
    parts = [f"{counts[s]} {w}" for s, w in _NOT_GRADED.items() if counts[s]]
    if counts["cell events"]:
        parts.append(f"{counts['cell events']} with a time limit or dead kernel")
    return "failures: " + (", ".join(parts) or "none")


def _duration(seconds: float) -> str:
    """``"42 s"``, ``"7 min 05 s"``, ``"2 h 03 min"``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class Progress:
    """Reports students as they are graded.

    Args:
        total: students this run grades.
        stream: where to write (default standard error).
        terminal: draw a bar (``True``), print lines (``False``), or decide by
            ``stream.isatty()`` (``None``).
    """

    def __init__(self, total: int, stream: IO[str] | None = None, *,
                 terminal: bool | None = None) -> None:
        self.total = int(total)
        self.stream = sys.stderr if stream is None else stream
        if terminal is None:
            isatty = getattr(self.stream, "isatty", None)
            terminal = bool(isatty and isatty())
        self.terminal = terminal
        self.done = 0
        self.counts: Counter = Counter()
        self.start = time.monotonic()
        self.bar: Any = None
        if terminal:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, file=self.stream, unit="student",
                            dynamic_ncols=True, smoothing=0.05, desc="grading")
            self.bar.set_postfix_str(tally(self.counts), refresh=False)

    def count(self, res: Any) -> None:
        """Add one result to the tally."""
        if res.status in _NOT_GRADED:
            self.counts[res.status] += 1
        elif res.events:
            self.counts["cell events"] += 1

    def update(self, res: Any) -> None:
        """One more student done (``res`` is its :class:`~attnkit.grading.grader.Result`)."""
        self.done += 1
        self.count(res)
        if self.bar is not None:
            self.bar.set_postfix_str(tally(self.counts), refresh=False)
            self.bar.update(1)
            return
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = self.done / elapsed * 60
        left = (self.total - self.done) / (self.done / elapsed)
        status = res.status
        failed = sum(1 for c in res.checks if c.points < c.max_points)
        if status == "graded" and failed:
            status += f", {failed} check{'s' if failed != 1 else ''} failed"
        width = len(str(self.total))
        print(f"[{self.done:>{width}}/{self.total}] {res.student}: {res.points:g}/"
              f"{res.max_points:g} ({status}); {rate:.1f} students/min, about "
              f"{_duration(left)} left; {tally(self.counts)}", file=self.stream, flush=True)

    def close(self) -> None:
        """Finish the bar (a terminal) or print a closing line (a log)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.done:
            elapsed = time.monotonic() - self.start
            print(f"graded {self.done} of {self.total} students in {_duration(elapsed)}; "
                  f"{tally(self.counts)}", file=self.stream, flush=True)
