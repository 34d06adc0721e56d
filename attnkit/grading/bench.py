"""How fast the grader grades a class: ``python -m attnkit.grading.bench``.

Makes a synthetic class of one exercise set (default ``ch05``): ``--students`` notebooks
made from the released notebook with each answer cell, at random (seeded), either the
solution or left as released (unanswered), plus ``--hostile`` copies of the hostile
submissions of the test suite (a kernel that dies, a cell that ignores interrupts, 50 MB
of output, a memory hog, detached processes...). Grades the class once per ``--jobs``
value, in the sandbox, into separate directories; checks that every run gives the same
gradebook, byte for byte (and lists any feedback file that differs: a cell that runs close
to its time limit on a loaded machine can be stopped in one run and not in another); and
reports, for each, the wall time, students per minute and the speed-up over the first.
From the single-job rate and the efficiency measured at the largest ``--jobs`` it
estimates the time for ``--estimate-students`` students on a machine with
``--estimate-cores`` cores (one job per core), saying what the estimate assumes.

Results go to ``OUT/results-grading.json`` and ``.md`` with the machine they were measured
on. Times depend on the machine's load: run it on a quiet machine, e.g.::

    python -m attnkit.grading.bench --students 200 --hostile 6 --jobs 1 2 --out benchmarks

A quick check that it works (not a measurement)::

    python -m attnkit.grading.bench --students 8 --hostile 2 --jobs 1 2 --out /tmp/bench
"""

from __future__ import annotations

import argparse
import copy
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nbformat

from .grader import _release, grade
from .sets import default_source_dir, source_notebook

__all__ = ["HOSTILE_KINDS", "main", "make_class", "run"]

#: Hostile submissions of tests/grading_hostile used, in turn, for ``--hostile``.
HOSTILE_KINDS = ("crasher", "stubborn", "chatty", "hog", "detacher", "peeker", "rebinder",
                 "patcher", "hooker")


def _solution(source: str) -> str:
    return "\n".join(ln for ln in source.splitlines()
                     if "### BEGIN" not in ln and "### END" not in ln)


def make_class(exercise_set: str, dest: Path, students: int, hostile: int, *,
               p_correct: float = 0.75, seed: int = 0, source_dir: Path | None = None,
               hostile_dir: Path | None = None) -> list[Path]:
    """Write a synthetic class into ``dest``; return its files.

    Args:
        exercise_set: the set, e.g. ``"ch05"``.
        dest: an empty directory.
        students: notebooks made from the released set, each answer cell the solution
            with probability ``p_correct`` and otherwise left unanswered.
        hostile: copies of hostile submissions (from ``hostile_dir``, by default the
            checkout's ``tests/grading_hostile``), taken in turn from :data:`HOSTILE_KINDS`.
        p_correct: the chance that an answer cell holds the solution.
        seed: seeds the choices, so a class can be made again identically.
        source_dir: the source notebooks (default: :func:`default_source_dir`).
        hostile_dir: where the hostile notebooks are.

    Returns:
        The files written, sorted.

    Raises:
        ValueError: ``hostile > 0`` but no hostile notebooks were found.
    """
    src_dir = Path(source_dir) if source_dir is not None else default_source_dir()
    source_path = source_notebook(exercise_set, src_dir)
    text = source_path.read_text(encoding="utf-8")
    source = nbformat.reads(text, as_version=4)
    released = nbformat.reads(_release(exercise_set, text), as_version=4)
    released.metadata.pop("mystnb", None)
    answers = {c.metadata["nbgrader"]["grade_id"]: _solution(c.source) for c in source.cells
               if c.metadata.get("nbgrader", {}).get("solution")}
    rng = random.Random(seed)
    dest.mkdir(parents=True, exist_ok=True)
    files = []
    for k in range(students):
        nb = copy.deepcopy(released)
        for cell in nb.cells:
            gid = cell.metadata.get("nbgrader", {}).get("grade_id")
            if gid in answers and rng.random() < p_correct:
                cell.source = answers[gid]
        path = dest / f"student{k:04d}_{exercise_set}.ipynb"
        nbformat.write(nb, path)
        files.append(path)
    if hostile:
        hdir = hostile_dir or src_dir.resolve().parents[1] / "tests" / "grading_hostile"
        kinds = [h for h in HOSTILE_KINDS if (hdir / f"{h}_{exercise_set}.ipynb").exists()]
        if not kinds:
            raise ValueError(f"hostile: no hostile notebooks of {exercise_set} in {str(hdir)!r}")
        for k in range(hostile):
            kind = kinds[k % len(kinds)]
            path = dest / f"hostile{k:02d}-{kind}_{exercise_set}.ipynb"
            shutil.copyfile(hdir / f"{kind}_{exercise_set}.ipynb", path)
            files.append(path)
    return sorted(files)


def _snapshot(out: Path) -> dict[str, bytes]:
    found = {"gradebook.csv": (out / "gradebook.csv").read_bytes()}
    for p in sorted((out / "feedback").iterdir()):
        found[p.name] = p.read_bytes()
    return found


def _differences(snaps: list[dict[str, bytes]]) -> list[str]:
    """Files that differ between the first run and any other."""
    return sorted({k for s in snaps[1:] for k in set(s) | set(snaps[0])
                   if s.get(k) != snaps[0].get(k)})


def run(exercise_set: str = "ch05", students: int = 200, hostile: int = 6,
        jobs: Sequence[int] = (1, 2), *, timeout: float = 5, memory: str = "1G",
        seed: int = 0, p_correct: float = 0.75, estimate_students: int = 1000,
        estimate_cores: int = 32, source_dir: Path | None = None, workdir: Path | None = None,
        progress: bool = True) -> dict[str, Any]:
    """Grade one synthetic class once per ``jobs`` value; return the measurements.

    Returns:
        A dict with the settings, one entry per ``jobs`` value (``seconds``,
        ``students_per_minute``, ``speedup``), whether every run gave the same gradebook
        (``identical``), the feedback files that differ (``feedback_differs``: only a
        cell that ran close to its time limit can make them differ, on a loaded
        machine), the statuses of the class and the estimate.
    """
    from .progress import Progress

    tmp = Path(tempfile.mkdtemp(prefix="attnkit-grading-bench-", dir=workdir))
    try:
        files = make_class(exercise_set, tmp / "class", students, hostile, p_correct=p_correct,
                           seed=seed, source_dir=source_dir)
        runs, snaps, statuses = [], [], Counter()
        for j in jobs:
            out = tmp / f"graded-jobs-{j}"
            print(f"grading {len(files)} submissions with --jobs {j} ...", file=sys.stderr,
                  flush=True)
            t0 = time.perf_counter()
            results = grade(exercise_set, [tmp / "class"], out, timeout=timeout, memory=memory,
                            jobs=j, source_dir=source_dir,
                            progress=(lambda n: Progress(n)) if progress else None)
            seconds = time.perf_counter() - t0
            runs.append({"jobs": j, "seconds": round(seconds, 2),
                         "students_per_minute": round(len(files) / seconds * 60, 2)})
            snaps.append(_snapshot(out))
            statuses = Counter(r.status if not r.events or r.status != "graded"
                               else "graded, with cell events" for r in results)
        base = runs[0]["seconds"]
        for r in runs:
            r["speedup"] = round(base / r["seconds"], 3)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    last = runs[-1]
    efficiency = last["speedup"] / (last["jobs"] / runs[0]["jobs"])
    per_student = base / len(files) * runs[0]["jobs"]
    est = estimate_students * per_student / (estimate_cores * efficiency)
    return {
        "kind": "grading",
        "settings": {"exercise_set": exercise_set, "students": students, "hostile": hostile,
                     "submissions": len(files), "p_correct": p_correct, "seed": seed,
                     "timeout_s": timeout, "memory": memory, "jobs": list(jobs)},
        "runs": runs,
        "identical": "gradebook.csv" not in _differences(snaps),
        "feedback_differs": [k for k in _differences(snaps) if k != "gradebook.csv"],
        "statuses": dict(sorted(statuses.items())),
        "estimate": {
            "students": estimate_students, "cores": estimate_cores,
            "seconds_per_student_one_job": round(per_student, 3),
            "efficiency_per_job": round(efficiency, 3),
            "efficiency_measured_at_jobs": last["jobs"],
            "minutes": round(est / 60, 1),
            "assumes": (f"--jobs {estimate_cores} on {estimate_cores} cores, each job as "
                        f"efficient as at --jobs {last['jobs']} here (the speed-up per job "
                        "stays the same), the same mix of submissions, and memory for "
                        f"{estimate_cores} x --memory {memory}"),
        },
    }


def markdown(result: dict[str, Any]) -> str:
    """The results as a short Markdown report."""
    s, e = result["settings"], result["estimate"]
    m = result.get("machine", {})
    lines = ["# Grading benchmark", "",
             f"- date: {result.get('date', '?')}", f"- command: `{result.get('command', '?')}`",
             f"- machine: {m.get('cpu', '?')}; {m.get('logical_cpus', '?')} logical CPUs; "
             f"{m.get('memory_gib', '?')} GiB; {m.get('platform', '?')}",
             f"- class: {s['submissions']} submissions of {s['exercise_set']} ({s['students']} "
             f"made from the sample answers, p(correct cell) = {s['p_correct']}, seed "
             f"{s['seed']}; {s['hostile']} hostile); --timeout {s['timeout_s']:g}, "
             f"--memory {s['memory']}",
             "- statuses: " + ", ".join(f"{v} {k}" for k, v in result["statuses"].items()),
             f"- every run gave the same gradebook: {'yes' if result['identical'] else 'NO'}; "
             "feedback files that differ: "
             + (", ".join(result["feedback_differs"]) or "none"), "",
             "| --jobs | seconds | students per minute | speed-up |", "|---:|---:|---:|---:|"]
    lines += [f"| {r['jobs']} | {r['seconds']:.1f} | {r['students_per_minute']:.1f} | "
              f"{r['speedup']:.2f}x |" for r in result["runs"]]
    lines += ["", f"Estimate: {e['students']} students on {e['cores']} cores in about "
              f"{e['minutes']:.0f} minutes ({e['seconds_per_student_one_job']:.2f} s per student "
              f"with one job, efficiency per job {e['efficiency_per_job']:.2f} at --jobs "
              f"{e['efficiency_measured_at_jobs']}). Assumes {e['assumes']}.", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark from the command line; return the exit status."""
    p = argparse.ArgumentParser(prog="python -m attnkit.grading.bench",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--set", default="ch05", dest="exercise_set")
    p.add_argument("--students", type=int, default=200)
    p.add_argument("--hostile", type=int, default=6)
    p.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    p.add_argument("--timeout", type=float, default=5)
    p.add_argument("--memory", default="1G")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--p-correct", type=float, default=0.75)
    p.add_argument("--estimate-students", type=int, default=1000)
    p.add_argument("--estimate-cores", type=int, default=32)
    p.add_argument("--source", help="directory of the source notebooks")
    p.add_argument("--out", default="benchmarks", help="where results-grading.json/.md go")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    from attnkit.bench.machine import machine
    from attnkit.bench.report import save_results, utc_now

    try:
        result = run(args.exercise_set, args.students, args.hostile, args.jobs,
                     timeout=args.timeout, memory=args.memory, seed=args.seed,
                     p_correct=args.p_correct, estimate_students=args.estimate_students,
                     estimate_cores=args.estimate_cores,
                     source_dir=Path(args.source) if args.source else None,
                     progress=not args.no_progress)
    except (TypeError, ValueError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    command = "python -m attnkit.grading.bench " + " ".join(
        sys.argv[1:] if argv is None else list(argv))
    result = {"date": utc_now(), "command": command.strip(), "machine": machine("cpu"),
              **result}
    text = markdown(result)
    paths = save_results(Path(args.out), "results-grading", result, text)
    print(text)
    print("wrote " + ", ".join(map(str, paths)))
    return 0 if result["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
