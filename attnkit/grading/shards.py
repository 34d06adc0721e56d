"""Splitting a class across machines (``--shard i/N``) and putting it back together (``merge``).

A shard is a deterministic slice of the class: the students' names (as the gradebook
records them, after telling apart two files of one student) sorted by Unicode code
point, and every ``N``-th of them from the ``i``-th on. It depends only on the set of
submissions, not on the order a shell lists them in or on the machine, so ``N`` jobs
of a Slurm array or a Kubernetes indexed Job, each given the whole submissions folder
and its own ``--shard i/N``, grade every student exactly once between them. Shards
are numbered from 1 (a Kubernetes ``JOB_COMPLETION_INDEX`` counts from 0: add 1).

Each run records its class, its shard and its settings in ``OUT/results/SET/run.json``.
:func:`merge` reads the shards' output directories and writes one: the gradebook
rows, the feedback files and the result records of every student, after checking
that the shards are the ``N`` slices of one class graded with the same settings, and
that every student of the class has exactly one row. Anything else is refused, with
a report that names the students and the shards, before anything is written.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .gradebook import read_gradebook, read_results, read_run, results_dir, write_gradebook, write_run

__all__ = ["MergeError", "MergeReport", "Shard", "merge", "parse_shard"]


@dataclass(frozen=True)
class Shard:
    """The ``index``-th (from 1) of ``count`` slices of a class."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def select(self, names: Sequence[str]) -> list[str]:
        """The names of this shard, in code-point order.

        Example:
            >>> Shard(2, 3).select(["e", "a", "d", "c", "b"])
            ['b', 'e']
        """
        return [n for k, n in enumerate(sorted(names)) if k % self.count == self.index - 1]


def parse_shard(text: str | None) -> Shard | None:
    """``"3/8"`` -> ``Shard(3, 8)``; ``None`` -> ``None``.

    Raises:
        ValueError: not ``i/N`` with ``1 <= i <= N``.

    Example:
        >>> parse_shard("3/8")
        Shard(index=3, count=8)
    """
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not m:
        raise ValueError(f"shard must be i/N, e.g. 3/8; got {text!r}")
    i, n = int(m.group(1)), int(m.group(2))
    if n < 1 or not 1 <= i <= n:
        raise ValueError(f"shard must be i/N with i from 1 to N (shards count from 1; a "
                         f"Kubernetes JOB_COMPLETION_INDEX counts from 0: add 1); got {text!r}")
    return Shard(i, n)


class MergeError(ValueError):
    """The shards cannot be merged; ``report`` lists every problem found."""

    def __init__(self, report: MergeReport) -> None:
        super().__init__(report.text())
        self.report = report


@dataclass
class MergeReport:
    """What :func:`merge` found: problems (nothing written) or what it wrote."""

    exercise_set: str
    problems: list[str] = field(default_factory=list)
    students: int = 0
    shards: int = 0

    def text(self) -> str:
        """The report as lines for a person: every problem, or what was merged."""
        if self.problems:
            return (f"cannot merge the shards of {self.exercise_set} (nothing was written):\n"
                    + "\n".join(f"  - {p}" for p in self.problems))
        return (f"merged {self.shards} shards of {self.exercise_set}: {self.students} students, "
                "each exactly once")


def _names(xs: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(repr(x) for x in list(xs)[:limit])
    return shown + (f" and {len(xs) - limit} more" if len(xs) > limit else "")


def merge(exercise_set: str, shard_dirs: Sequence[str | Path], out: str | Path) -> MergeReport:
    """Merge the output directories of the ``N`` shards of one class into ``out``.

    Args:
        exercise_set: the set, e.g. ``"ch05"``.
        shard_dirs: the ``--out`` directories of the shard runs, in any order.
        out: the merged directory (``gradebook.csv`` rows of other sets or students
            already there are kept; this set's rows of the class are replaced).

    Returns:
        A :class:`MergeReport` of what was merged.

    Raises:
        MergeError: a shard missing or given twice, shards of different classes or
            settings, a student with no row (a gap) or with rows in two shards (a
            duplicate), a row of a student outside the class; nothing is written.
    """
    report = MergeReport(exercise_set)
    problems = report.problems
    dirs = [Path(d) for d in shard_dirs]
    if not dirs:
        raise ValueError("shard_dirs must name at least one directory; got none")
    runs: dict[Path, dict[str, Any]] = {}
    for d in dirs:
        info = read_run(d, exercise_set)
        if info is None:
            problems.append(f"{d}: no {exercise_set} run here (no results/{exercise_set}/run.json)")
        elif not info.get("shard"):
            problems.append(f"{d}: a run of the whole class, not a shard (no --shard)")
        else:
            runs[d] = info
    if problems:
        raise MergeError(report)
    counts = {parse_shard(info["shard"]).count for info in runs.values()}  # type: ignore[union-attr]
    if len(counts) != 1:
        problems.append("the shards split the class in different numbers of parts: "
                        + ", ".join(f"{d} is {runs[d]['shard']}" for d in dirs))
        raise MergeError(report)
    n = counts.pop()
    by_index: dict[int, list[Path]] = {}
    for d in dirs:
        by_index.setdefault(parse_shard(runs[d]["shard"]).index, []).append(d)  # type: ignore[union-attr]
    for i in range(1, n + 1):
        where = by_index.get(i, [])
        if len(where) > 1:
            problems.append(f"shard {i}/{n} given twice: " + ", ".join(map(str, where)))
        elif not where:
            problems.append(f"shard {i}/{n} is missing (run it with --shard {i}/{n})")
    first = runs[dirs[0]]
    for d in dirs[1:]:
        if runs[d].get("roster") != first.get("roster"):
            problems.append(f"{d} and {dirs[0]} were cut from different classes (their lists "
                            "of submissions differ): give every shard the same submissions")
        diff = sorted(k for k in set(runs[d].get("settings", {})) | set(first.get("settings", {}))
                      if runs[d].get("settings", {}).get(k) != first.get("settings", {}).get(k))
        if diff:
            problems.append(f"{d} and {dirs[0]} were graded with different settings: "
                            + ", ".join(diff))
    roster = list(first.get("roster", []))
    owner: dict[str, list[Path]] = {}
    rows: dict[tuple[str, str], dict[str, str]] = {}
    records: dict[str, tuple[Path, dict[str, Any]]] = {}
    for d in dirs:
        try:
            book = read_gradebook(d / "gradebook.csv")
        except ValueError as exc:
            problems.append(f"{d}: {exc}")
            continue
        stored = read_results(d, exercise_set)
        for (student, s), row in book.items():
            if s != exercise_set:
                continue
            owner.setdefault(student, []).append(d)
            rows[(student, s)] = row
            if student in stored:
                records[student] = (d, stored[student])
    dup = sorted(s for s, ds in owner.items() if len(ds) > 1)
    if dup:
        problems.append(f"{len(dup)} student(s) graded in more than one shard: " + "; ".join(
            f"{s!r} in {', '.join(map(str, owner[s]))}" for s in dup[:20]))
    gaps = sorted(set(roster) - set(owner))
    if gaps:
        where = {}
        for s in gaps:
            shard = next(i for i in range(1, n + 1) if s in Shard(i, n).select(roster))
            where.setdefault(shard, []).append(s)
        problems.append(f"{len(gaps)} student(s) of the class have no row (a shard did not "
                        "finish: rerun it with --resume): " + "; ".join(
                            f"shard {i}/{n}: {_names(v)}" for i, v in sorted(where.items())))
    extra = sorted(set(owner) - set(roster))
    if extra:
        problems.append(f"{len(extra)} row(s) of students outside the class the shards were "
                        f"cut from: {_names(extra)}")
    missing_records = sorted(set(owner) - set(records) - set(extra))
    if missing_records:
        problems.append(f"{len(missing_records)} student(s) have a gradebook row but no result "
                        f"record in results/{exercise_set}/: {_names(missing_records)}")
    if problems:
        raise MergeError(report)

    out_dir = Path(out)
    book = read_gradebook(out_dir / "gradebook.csv")
    (out_dir / "feedback").mkdir(parents=True, exist_ok=True)
    target = results_dir(out_dir, exercise_set)
    target.mkdir(parents=True, exist_ok=True)
    for student, (d, record) in sorted(records.items()):
        for f in record["result"].get("feedback", []):
            src = d / "feedback" / Path(f).name
            dst = out_dir / "feedback" / src.name
            if src.exists() and src.resolve() != dst.resolve():
                shutil.copyfile(src, dst)
        src = Path(record["path"])
        dst = target / src.name
        if src.resolve() != dst.resolve():
            shutil.copyfile(src, dst)
        book[(student, exercise_set)] = rows[(student, exercise_set)]
    write_gradebook(out_dir / "gradebook.csv", book)
    write_run(out_dir, exercise_set, {**{k: v for k, v in first.items() if k != "students"},
                                      "shard": None, "students": sorted(roster),
                                      "merged_from": [str(d) for d in dirs]})
    report.students, report.shards = len(roster), n
    return report
