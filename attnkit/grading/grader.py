"""Grade a batch of submitted notebooks of one exercise set.

How a verdict is reached (see :mod:`attnkit.grading._plan` for the cell kinds):

1. Before any student code runs, every submission and the existing gradebook are
   read into memory, and every path is checked (a missing file stops the batch with
   an error, before anything is graded).
2. Each student's notebook runs cell by cell in its own IPython kernel inside a
   sandbox (:mod:`attnkit.grading._sandbox`: bubblewrap, no network, a private
   scratch directory, memory/CPU/process limits). Grader cells run with their
   released source; check cells are never sent to the kernel.
3. At each check cell, the names the check reads are copied out of the kernel as
   data (:mod:`attnkit.grading._codec`), and the check runs in the grader's own clean
   namespace; a student's function is called inside the sandbox on the inputs the
   check chooses, and only its result comes back, as data. Rebinding ``check``,
   patching NumPy or installing IPython hooks in the kernel changes nothing here.
4. A cell that runs too long is interrupted; one that ignores the interrupt, a
   kernel that dies (``os._exit``, a limit) or a call that hangs kills the sandbox:
   the kernel is restarted, the cells that had completed run again, and grading
   goes on. Only the checks that depend on the lost cell lose points; the feedback
   names the cell.
5. Only the grader writes: the gradebook (earlier rows kept) and, per student,
   feedback in text and HTML (:mod:`attnkit.grading.feedback`), each output and each
   file capped by bytes, scrubbed of any text of the hidden tests, then the student's
   result record (:mod:`attnkit.grading.gradebook`), atomically, as soon as it is made.

:func:`grade` drives a batch: :func:`_prepare` (arguments, files, gradebook, sandbox
probe), :func:`_choose` (``resume``, ``only``, ``shard``), then
:func:`grade_submission` for each student, in this process or on ``jobs`` worker
processes (:mod:`attnkit.grading.batch`). The command line is :mod:`attnkit.grading.cli`.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import os
import re
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from ._codec import AnswerError, StudentCallable, decode
from ._plan import Plan, build_plan
from .feedback import cap as _cap
from .feedback import write_feedback
from .gradebook import (
    CSV_COLUMNS,
    read_gradebook,
    read_results,
    read_run,
    sha256,
    sweep_partial,
    write_gradebook,
    write_result,
    write_run,
)
from .sets import SET_NAME, default_source_dir, grade_ids, source_notebook

__all__ = [
    "CSV_COLUMNS",
    "CheckResult",
    "GradingContext",
    "Result",
    "Submission",
    "grade",
    "grade_submission",
    "restore_missing_cells",
    "result_from_dict",
    "result_to_dict",
    "slug",
    "student_name",
]

#: Largest submission read (bytes); a larger file is reported, not graded.
MAX_SUBMISSION = 50 * 1024**2


@dataclass
class CheckResult:
    """One graded check (one check cell)."""

    grade_id: str
    points: float
    max_points: float
    message: str = ""


@dataclass
class Result:
    """The grade of one submitted file.

    ``status`` is ``"graded"``, ``"not a notebook"``, ``"wrong exercise set"`` or
    ``"error"`` (the kernel could not be started); anything but ``"graded"`` scores 0.
    ``events`` says what happened to cells (time limits, a dead kernel, restarts).
    ``cgroups`` names the cgroup controllers that limited the student's sandbox
    (``pids``, ``memory``; empty: resource limits per process only).
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
    events: list[str] = field(default_factory=list)
    slug: str = ""
    seconds: float = 0.0
    outputs: list[tuple[str, str]] = field(default_factory=list, repr=False)
    cgroups: list[str] = field(default_factory=list)


def student_name(path: str | os.PathLike[str], exercise_set: str) -> str:
    """The student's name from a submission's file name, as written (Unicode, spaces).

    Conventions, tried in order:

    * ``alice/ch05.ipynb`` (the file is named after the set): the folder, ``alice``;
    * ``alice_ch05.ipynb``, ``alice-ch05.ipynb``, ``ch05_alice.ipynb``,
      ``ch05-alice.ipynb``: the file name without the set, ``alice``;
    * anything else: the file name without its extension.

    Control characters are dropped and runs of white space become one space.

    Example:
        >>> student_name("submissions/Zoë Smith_ch04.ipynb", "ch04")
        'Zoë Smith'
    """
    p = Path(path)
    stem = p.stem
    if stem == exercise_set and p.parent.name:
        name = p.parent.name
    else:
        name = re.sub(rf"^{exercise_set}[-_. ]+|[-_. ]+{exercise_set}$", "", stem) or stem
    return clean_name(name)


def clean_name(name: str) -> str:
    """A student's name with control characters removed and white space collapsed."""
    name = "".join(ch for ch in str(name) if unicodedata.category(ch)[0] != "C")
    return " ".join(name.split()) or "student"


def slug(name: str) -> str:
    """A file-name-safe form of a student's name (for feedback files only).

    Example:
        >>> slug("Zoë Smith")
        'Zoe_Smith'
    """
    ascii_ = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^A-Za-z0-9.-]+", "_", ascii_).strip("._-")[:80] or "student"


def _gid(cell: Any) -> str | None:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return str(meta["grade_id"]) if isinstance(meta, dict) and meta.get("grade_id") else None


def restore_missing_cells(submitted: Any, released: Any) -> list[str]:
    """Put back, in place, every cell of ``released`` whose nbgrader id is missing.

    A restored cell goes right after the nearest earlier cell of the released
    notebook that the submission still has (or first). A deleted answer cell comes
    back unanswered; a deleted check or set-up cell comes back as released.

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


def _parse_notebook(data: bytes) -> tuple[Any | None, str]:
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


def _expand(submissions: Sequence[str | os.PathLike[str]], exercise_set: str) -> list[Path]:
    files: list[Path] = []
    missing = []
    for s in submissions:
        p = Path(s)
        if p.is_dir():
            inner = [c for c in sorted(p.iterdir()) if c.is_file() and not c.name.startswith(".")]
            inner += sorted(p.glob(f"*/{exercise_set}.ipynb"))
            if not inner:
                raise ValueError(f"submissions: the directory {str(p)!r} holds no files")
            files.extend(inner)
        elif p.is_file():
            files.append(p)
        else:
            missing.append(str(p))
    if missing:
        raise ValueError(
            "submissions: no such file: " + ", ".join(repr(m) for m in missing)
            + " (nothing was graded)"
        )
    return files


# -- feedback text, bounded and scrubbed ---------------------------------------------------


class _Scrubber:
    """Withholds any text that contains a line of the hidden tests or an nbgrader marker."""

    def __init__(self, source_nb: Any, released_nb: Any) -> None:
        from .leaks import secrets
        from .sets import MARKERS

        lines = secrets(source_nb, [released_nb], hidden_only=True)
        self.keys = sorted({"".join(s.split()) for s in lines} | {"".join(m.split()) for m in MARKERS})

    def __call__(self, text: str) -> str:
        squashed = "".join(text.split())
        if any(k in squashed for k in self.keys):
            return "[withheld: this text contains a line of the hidden tests]\n"
        return text


@dataclass
class _Ctx:
    """Per-student state while grading."""

    session: Any
    res: Result
    outputs: list[tuple[str, str]] = field(default_factory=list)   # (cell label, text)
    gave_up: str = ""


class _StudentCallFailed(Exception):
    """A call of the student's function did not return a value (the message says why)."""


class _StudentFunction:
    """Stands for a student's function in the grader's namespace: calls it in the sandbox.

    ``forbidden`` maps function names to the library names they may not call (the
    set's ``forbid`` declarations); a call of this function runs under that guard.
    """

    def __init__(self, name: str, ctx: _Ctx, label: str,
                 forbidden: dict[str, tuple[str, ...]] | None = None) -> None:
        self.__name__ = name
        self._ctx = ctx
        self._label = label
        self._forbidden = forbidden or {}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        ctx = self._ctx
        if ctx.gave_up:
            raise _StudentCallFailed(ctx.gave_up)
        run = ctx.session.call(self.__name__, args, kwargs,
                               forbidden=self._forbidden.get(self.__name__, ()))
        if run.status in ("killed", "died"):
            ctx.res.events.append(f"{self._label}: calling {self.__name__}(...): {run.error}; "
                                  "the kernel was restarted")
            _recover(ctx)
            raise _StudentCallFailed(f"{self.__name__}(...): {run.error}")
        if run.status == "timeout":
            raise _StudentCallFailed(f"{self.__name__}(...) {run.error}")
        if run.status != "ok":
            raise _StudentCallFailed(f"calling {self.__name__}(...): {run.error}")
        p = run.payload
        if not isinstance(p, dict):
            raise _StudentCallFailed(f"{self.__name__}(...): no result")
        if "raised" in p:
            raise _StudentCallFailed(str(p["raised"]))
        try:
            value = decode(p.get("value"))
        except AnswerError as exc:
            raise _StudentCallFailed(f"{self.__name__}(...) returned something that is not "
                                     f"data: {exc}") from None
        if isinstance(value, StudentCallable):
            return _StudentFunction(value.name, ctx, self._label, self._forbidden)
        return value

    def __repr__(self) -> str:
        return f"<function {self.__name__} (yours)>"


def _recover(ctx: _Ctx) -> None:
    if not ctx.session.recover():
        ctx.gave_up = (f"not run: the kernel was restarted {ctx.session.restarts} times and "
                       "could not be recovered")


def _label(index: int, gid: str | None, source: str) -> str:
    if gid:
        return f"cell {index} ({gid})"
    first = next((ln.strip() for ln in source.splitlines() if ln.strip()), "")
    return f"cell {index} (yours: {first[:40]!r})"


def _run_grader_code(cell: Any, ns: dict, ctx: _Ctx, label: str,
                     forbidden: dict[str, tuple[str, ...]] | None = None) -> str:
    """Run a grader or check cell in the clean namespace; return '' or the failure message.

    ``forbidden`` (the plan's ``forbid`` declarations) goes with every student function
    the cell reads, so that its calls run under the guard.
    """
    if cell.reads:
        if ctx.gave_up:
            return ctx.gave_up
        run = ctx.session.fetch(cell.reads)
        if run.status in ("killed", "died"):
            ctx.res.events.append(f"{label}: reading your answers: {run.error}")
            _recover(ctx)
            return f"could not read your answers: {run.error}"
        if run.status != "ok" or not isinstance(run.payload, dict):
            return f"could not read your answers: {run.error or 'no answer'}"
        for name in cell.reads:
            ns.pop(name, None)
            if name not in run.payload:
                continue
            try:
                value = decode(run.payload[name])
            except AnswerError as exc:
                return f"{name}: {exc}"
            if isinstance(value, StudentCallable):
                value = _StudentFunction(name, ctx, label, forbidden)
            ns[name] = value
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            exec(compile(cell.source, f"<{cell.grade_id}>", "exec"), ns)  # noqa: S102
    except AssertionError as exc:
        return f"AssertionError: {exc}".rstrip(": ")
    except _StudentCallFailed as exc:
        return str(exc)
    except Exception as exc:  # any other failure of the check is this check's failure
        text = str(exc)
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return ""


def _grade_one(nb: Any, plan: Plan, ctx: _Ctx, max_output: int) -> None:
    """Run one repaired submission; fill ``ctx.res.checks`` and ``ctx.outputs``."""
    res, session = ctx.res, ctx.session
    ns: dict[str, Any] = {"__name__": "__attnkit_check__"}
    seen: set[str] = set()
    for index, cell in enumerate(nb.cells, start=1):
        if cell.get("cell_type") != "code":
            continue
        gid = _gid(cell)
        pc = plan.cells.get(gid) if gid else None
        source = pc.source if pc is not None else str(cell.get("source", ""))
        label = _label(index, gid, source)
        if pc is not None and pc.kind == "check":
            if gid in seen:
                continue
            seen.add(gid)
            msg = _run_grader_code(pc, ns, ctx, label, plan.forbidden)
            msg = _cap(msg, 1000, "message").strip()
            res.checks.append(CheckResult(pc.grade_id, 0.0 if msg else pc.points, pc.points, msg))
            continue
        if ctx.gave_up:
            continue
        if not source.strip():
            continue
        run = session.run_cell(source)
        text = "".join(run.outputs)
        if run.cut:
            text += f"\n[output cut here: {run.cut:,} more bytes not shown]\n"
        if text.strip():
            ctx.outputs.append((label, text))
        if run.status == "timeout":
            res.events.append(f"{label}: {run.error}; the rest of the notebook was graded")
        elif run.status in ("killed", "died"):
            why = run.error
            res.events.append(f"{label}: {why}. The kernel was restarted, the cells before it "
                              "were run again, and grading went on without this cell")
            _recover(ctx)
            if ctx.gave_up:
                res.events.append(ctx.gave_up)
        if pc is not None and pc.kind == "grader":
            msg = _run_grader_code(pc, ns, ctx, label, plan.forbidden)
            if msg:
                res.events.append(f"{label}: the grader's copy of this cell failed: {msg}")
    # checks whose cells were never reached (e.g. after giving up) score 0
    for gid, pc in plan.cells.items():
        if pc.kind == "check" and gid not in seen:
            res.checks.append(CheckResult(gid, 0.0, pc.points, ctx.gave_up or "not run"))


# -- one student, then the batch -----------------------------------------------------------


@dataclass
class GradingContext:
    """What grading any student of one set needs; sent once to each ``--jobs`` worker.

    Built by :func:`grade` after every check of its arguments; the notebooks travel as
    JSON text, and the plan and the scrubber are rebuilt from them where they are used.
    """

    exercise_set: str
    source_json: str
    released_json: str
    timeout: float
    limits: Any
    sandbox: bool = True
    keep_temp: bool = False
    max_output: int = 10_000
    scratch_root: str | None = None
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_cache"] = {}
        return state

    def _get(self, key: str) -> Any:
        if key not in self._cache:
            source = nbformat.reads(self.source_json, as_version=4)
            released = nbformat.reads(self.released_json, as_version=4)
            self._cache.update(plan=build_plan(self.exercise_set, source), released=released,
                               release_ids=grade_ids(released), scrub=_Scrubber(source, released))
        return self._cache[key]

    @property
    def plan(self) -> Plan:
        """The set's grading plan."""
        return self._get("plan")

    @property
    def released(self) -> Any:
        """The released student notebook (to put back deleted cells)."""
        return self._get("released")


@dataclass
class Submission:
    """One submitted file of the class: who, where, its bytes (or why they are missing)."""

    index: int
    path: Path
    name: str
    slug: str
    data: bytes | str
    note: str = ""


def grade_submission(ctx: GradingContext, sub: Submission) -> Result:
    """Grade one submission in its own sandboxed kernel; the texts come back scrubbed.

    The same function grades a student in :func:`grade`'s own process (``jobs=1``) and
    in a ``--jobs`` worker, so the results do not depend on the number of jobs.
    """
    from ._kernel import KernelDied, KernelSession
    from ._sandbox import Sandbox

    plan = ctx.plan
    res = Result(sub.name, ctx.exercise_set, sub.path, 0.0, plan.max_points, "graded",
                 note=sub.note, slug=sub.slug)
    if isinstance(sub.data, str):
        res.status, res.note = "not a notebook", f"{sub.path.name} {sub.data}"
        return res
    nb, why = _parse_notebook(sub.data)
    if nb is None:
        res.status, res.note = "not a notebook", f"{sub.path.name} {why}"
        return res
    sub_ids = grade_ids(nb)
    if not set(sub_ids) & set(ctx._get("release_ids")):
        res.status = "wrong exercise set"
        res.note = f"{sub.path.name} {_wrong_set_note(sub_ids, ctx.exercise_set)}"
        return res
    res.restored = restore_missing_cells(nb, ctx.released)
    t0 = time.monotonic()
    session = KernelSession(Sandbox(ctx.limits, enabled=ctx.sandbox), ctx.timeout,
                            max_output=ctx.max_output, tag=str(sub.index),
                            scratch_root=ctx.scratch_root)
    state = _Ctx(session, res)
    try:
        session.start()
        res.cgroups = list(getattr(session.cgroup, "kinds", []) or [])
        _grade_one(nb, plan, state, ctx.max_output)
    except KernelDied as exc:
        res.status, res.note = "error", f"the kernel could not start: {exc}"
        res.checks = []
    finally:
        session.close(keep=ctx.keep_temp)
        if ctx.keep_temp:
            res.note = (res.note + f"; scratch kept: {session.dir}").lstrip("; ")
    res.seconds = time.monotonic() - t0
    res.points = sum(c.points for c in res.checks)
    res.max_points = sum(c.max_points for c in res.checks) or plan.max_points
    scrub = ctx._get("scrub")
    res.outputs = [(lbl, scrub(t)) for lbl, t in state.outputs]
    res.events = [scrub(e) for e in res.events]
    for c in res.checks:
        c.message = scrub(c.message).strip()
    return res


def result_to_dict(res: Result, *, out_dir: Path | None = None) -> dict[str, Any]:
    """A result as JSON-ready data, without the cell outputs (they are in the feedback).

    With ``out_dir``, feedback files are named relative to it (``feedback/x-ch05.txt``).
    """
    d = asdict(res)
    d.pop("outputs", None)
    d["file"] = str(res.file)
    d["feedback"] = [str(Path(p).relative_to(out_dir)) if out_dir is not None else str(p)
                     for p in res.feedback]
    return d


def result_from_dict(d: dict[str, Any], *, out_dir: Path | None = None) -> Result:
    """The :class:`Result` that :func:`result_to_dict` described."""
    known = set(Result.__dataclass_fields__) - {"checks", "outputs", "file", "feedback"}
    res = Result(**{k: v for k, v in d.items() if k in known}, file=Path(d["file"]))
    res.checks = [CheckResult(**c) for c in d.get("checks", [])]
    res.feedback = [Path(out_dir) / p if out_dir is not None else Path(p)
                    for p in d.get("feedback", [])]
    return res


@dataclass
class _Batch:
    """A prepared run: everything read and checked before any student code runs."""

    ctx: GradingContext
    subs: list[Submission]
    out_dir: Path
    book: dict[tuple[str, str], dict[str, str]]
    settings: dict[str, Any]
    html: bool
    max_feedback: int


def _limits(timeout: float, max_output: int, max_feedback: int, jobs: int, memory: int | str,
            cpu_seconds: int, processes: int) -> Any:
    """Check the numeric arguments; the sandbox's :class:`~attnkit.grading._sandbox.Limits`."""
    from ._sandbox import Limits, parse_bytes
    from .batch import check_memory

    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds; got {timeout!r}")
    for name, v in (("max_output", max_output), ("max_feedback", max_feedback)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 100:
            raise ValueError(f"{name} must be an int of at least 100 bytes; got {v!r}")
    if isinstance(jobs, bool) or not isinstance(jobs, int):
        raise TypeError(f"jobs must be an int; got {type(jobs).__name__} {jobs!r}")
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1; got {jobs!r}")
    limits = Limits(parse_bytes(memory), cpu_seconds, processes)
    check_memory(jobs, limits.memory)
    return limits


def _read_class(files: list[Path], names: list[str]) -> list[Submission]:
    """Read every submitted file; tell apart two files of one student; give each a slug."""
    data: list[bytes | str] = []
    for f in files:
        try:
            size = f.stat().st_size
            data.append(f.read_bytes() if size <= MAX_SUBMISSION else
                        f"is larger than {MAX_SUBMISSION // 1024**2} MB")
        except OSError as exc:
            data.append(f"cannot be read ({exc.strerror})")
    # unique names (two files of one student) and unique slugs (for file names)
    seen_names: dict[str, int] = {}
    unique = []
    for n in names:
        seen_names[n] = seen_names.get(n, 0) + 1
        unique.append(n if seen_names[n] == 1 else f"{n} ({seen_names[n]})")
    slugs: list[str] = []
    for n in unique:
        s, k = slug(n), 2
        while s in slugs:
            s, k = f"{slug(n)}-{k}", k + 1
        slugs.append(s)
    return [Submission(i, path, name, s, raw,
                       "" if name == names[i] else
                       f"recorded as {name!r}: another file gave the same student name")
            for i, (path, name, s, raw) in enumerate(zip(files, unique, slugs, data))]


def _prepare(exercise_set: str, submissions: Sequence[str | os.PathLike[str]],
             out: str | os.PathLike[str], students: Sequence[str] | None, timeout: float,
             source_dir: str | os.PathLike[str] | None, html: bool, keep_temp: bool,
             sandbox: bool, memory: int | str, cpu_seconds: int, processes: int,
             max_output: int, max_feedback: int, jobs: int) -> _Batch:
    """Check the arguments, read every submission, the gradebook and the set; probe the sandbox.

    Everything is read here, before any student code runs.
    """
    from ._sandbox import Sandbox, probe, sweep_stale_cgroups

    src_dir = Path(source_dir) if source_dir is not None else default_source_dir()
    source = source_notebook(exercise_set, src_dir)
    limits = _limits(timeout, max_output, max_feedback, jobs, memory, cpu_seconds, processes)
    files = _expand(submissions, exercise_set)
    if not files:
        raise ValueError("submissions must name at least one file; got none")
    if students is not None and len(students) != len(files):
        raise ValueError(
            f"students must give one name per submitted file: {len(files)} files, "
            f"got {len(students)} names"
        )
    names = [clean_name(n) for n in students] if students is not None else \
        [student_name(f, exercise_set) for f in files]
    out_dir = Path(out)
    book = read_gradebook(out_dir / "gradebook.csv")
    subs = _read_class(files, names)
    source_text = source.read_text(encoding="utf-8")
    build_plan(exercise_set, nbformat.reads(source_text, as_version=4))   # fails early if bad
    if sandbox:
        probe()
        sweep_stale_cgroups()
        Sandbox(limits).refuse_visible([out_dir.resolve(), src_dir.resolve(),
                                        *(f.resolve() for f in files)])
    (out_dir / "feedback").mkdir(parents=True, exist_ok=True)
    sweep_partial(out_dir)
    ctx = GradingContext(exercise_set, source_text, "", float(timeout), limits,
                         sandbox=sandbox, keep_temp=keep_temp, max_output=max_output)
    settings = {"exercise_set": exercise_set, "source_sha256": sha256(source_text),
                "timeout": float(timeout), "memory": limits.memory,
                "cpu_seconds": limits.cpu_seconds, "processes": limits.processes,
                "max_output": max_output, "max_feedback": max_feedback, "html": bool(html),
                "sandbox": bool(sandbox)}
    return _Batch(ctx, subs, out_dir, book, settings, html, max_feedback)


@functools.lru_cache(maxsize=8)
def _release(exercise_set: str, source_text: str) -> str:
    """The student version of the source notebook (nbgrader ``generate_assignment``), as JSON.

    The course release: what a student was given at most (no solutions, no value checks,
    no worked solutions); grading reads every check from the source, so points do not
    depend on the release a student had. A function of the source text alone, so it is
    made once per process and source.
    """
    import tempfile

    from ._course import Course
    from .release import prepare_source

    with tempfile.TemporaryDirectory(prefix="attnkit-release-") as tmp:
        src = Path(tmp) / "in" / f"{exercise_set}.ipynb"
        src.parent.mkdir()
        prepared = prepare_source(nbformat.reads(source_text, as_version=4), "course")
        src.write_text(nbformat.writes(prepared), encoding="utf-8")
        return Course(Path(tmp) / "course", exercise_set).generate(src).read_text(encoding="utf-8")


def _sweep_stale_scratch() -> None:
    """Remove the scratch directories of grading runs that were killed (their PID is gone)."""
    import shutil
    import tempfile

    for d in Path(tempfile.gettempdir()).glob("attnkit-grade-*-*"):
        pid = d.name.split("-")[2]
        if d.is_dir() and pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(d, ignore_errors=True)


def _only(subs: list[Submission], only: Sequence[str]) -> list[Submission]:
    """The submissions of the students named in ``only`` (an unknown name is an error)."""
    import difflib

    wanted = {clean_name(n) for n in only}
    names = sorted({s.name for s in subs})
    unknown = sorted(wanted - set(names))
    if not wanted or unknown:
        hints = []
        for n in unknown:
            close = difflib.get_close_matches(n, names, n=3)
            hints.append(f"{n!r}" + (f" (did you mean {', '.join(map(repr, close))}?)"
                                     if close else ""))
        raise ValueError("only: no submission of " + (", ".join(hints) or "anyone")
                         + " among the files given (nothing was graded)")
    return [s for s in subs if s.name in wanted]


def _choose(batch: _Batch, resume: bool, only: Sequence[str] | None,
            shard: Any) -> tuple[list[Submission], list[Result]]:
    """The submissions this run grades, and the results it keeps from an earlier run."""
    members = batch.subs
    if shard is not None:
        chosen = set(shard.select([s.name for s in batch.subs]))
        members = [s for s in batch.subs if s.name in chosen]
    if only is not None:
        if resume or shard is not None:
            raise ValueError("only cannot be combined with resume or shard: --only regrades "
                             "the students it names, in the directory of the whole class")
        return _only(batch.subs, only), []
    if not resume:
        return members, []
    stored = read_results(batch.out_dir, batch.ctx.exercise_set)
    todo, kept, other = [], [], []
    for sub in members:
        rec = stored.get(sub.name)
        if rec is None:
            todo.append(sub)
            continue
        if rec.get("settings") != batch.settings:
            theirs = rec.get("settings") or {}
            other.append((sub.name, sorted(k for k in set(theirs) | set(batch.settings)
                                           if theirs.get(k) != batch.settings.get(k))))
            continue
        result = rec.get("result", {})
        if rec.get("submission_sha256") != sha256(sub.data) or result.get("slug") != sub.slug:
            todo.append(sub)                     # resubmitted since: graded again
            continue
        res = result_from_dict(result, out_dir=batch.out_dir)
        res.file = sub.path
        kept.append(res)
    if other:
        keys = sorted({k for _, ks in other for k in ks})
        raise ValueError(
            f"resume: {len(other)} stored result(s) in {str(batch.out_dir)!r} were made with "
            f"other settings ({', '.join(keys)}: e.g. {other[0][0]!r}'s): resume with the "
            "same settings, or grade again without --resume (nothing was graded)")
    return todo, kept


def grade(
    exercise_set: str,
    submissions: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    students: Sequence[str] | None = None,
    timeout: float = 30,
    source_dir: str | os.PathLike[str] | None = None,
    html: bool = True,
    keep_temp: bool = False,
    sandbox: bool = True,
    memory: int | str = "2G",
    cpu_seconds: int = 600,
    processes: int = 256,
    max_output: int = 10_000,
    max_feedback: int = 200_000,
    jobs: int = 1,
    resume: bool = False,
    only: Sequence[str] | None = None,
    shard: str | None = None,
    progress: Callable[[int], Any] | None = None,
) -> list[Result]:
    """Grade every submission of ``exercise_set``; write the gradebook and the feedback.

    Args:
        exercise_set: the set's name, e.g. ``"ch05"``.
        submissions: notebook files; a directory stands for the files in it (and
            ``*/ch05.ipynb`` below it). A path that does not exist stops the batch.
        out: output directory: ``gradebook.csv`` (rows of earlier runs for other
            students or sets are kept), ``feedback/SLUG-SET.txt`` / ``.html`` and
            ``results/SET/`` (each student's result, written as soon as it is made).
        students: one name per submission file, instead of :func:`student_name`.
        timeout: seconds each cell (and each call of a student's function) may run.
        source_dir: the source notebooks (default :func:`default_source_dir`).
        html: also write HTML feedback.
        keep_temp: keep each student's scratch directory (for debugging).
        sandbox: run student code under bubblewrap (``False`` only for trusted code).
        memory: memory limit per process, bytes or a size such as ``"2G"``.
        cpu_seconds: CPU-time limit per process.
        processes: limit on processes (and threads) per student.
        max_output: bytes kept of each cell's output in the feedback.
        max_feedback: bytes of each feedback file.
        jobs: students graded at once, each in its own sandbox with its own limits;
            ``jobs`` x ``memory`` must fit in the machine's memory.
        resume: grade only the students without a stored result (made from the same
            file with the same settings); keep the others.
        only: grade only these students (names as the gradebook has them) and
            replace only their rows.
        shard: ``"i/N"``: grade the ``i``-th of ``N`` deterministic slices of the class
            (see :mod:`attnkit.grading.shards`; ``attnkit grade merge`` joins them).
        progress: called with the number of students to grade; returns an object with
            ``update(result)`` and ``close()`` (e.g. :class:`~attnkit.grading.progress.Progress`).

    Returns:
        One :class:`Result` per student of this run (graded now or kept by ``resume``),
        in the order given.

    Raises:
        TypeError, ValueError: bad arguments (unknown set, a missing file, ``students``
            of the wrong length, a non-positive limit, ``jobs`` x ``memory`` larger than
            the machine, an unknown ``only`` name, a bad ``shard``, stored results of
            other settings with ``resume``, an unreadable gradebook).
        SandboxUnavailable: ``sandbox=True`` but bubblewrap cannot run here.
        KeyboardInterrupt: the run was interrupted; the students graded so far are in
            the gradebook and ``results/``, and ``resume=True`` grades the rest.

    Example:
        >>> results = grade("ch05", ["alice_ch05.ipynb"], "graded")   # doctest: +SKIP
        >>> results[0].points, results[0].max_points                  # doctest: +SKIP
        (12.0, 12.0)
    """
    import shutil
    import tempfile

    from . import batch as batch_
    from .shards import parse_shard

    part = parse_shard(shard)
    run = _prepare(exercise_set, submissions, out, students, timeout, source_dir, html,
                   keep_temp, sandbox, memory, cpu_seconds, processes, max_output,
                   max_feedback, jobs)
    todo, kept = _choose(run, resume, only, part)
    if todo:
        run.ctx.released_json = _release(exercise_set, run.ctx.source_json)
    if only is None or read_run(run.out_dir, exercise_set) is None:
        write_run(run.out_dir, exercise_set, {
            "exercise_set": exercise_set, "shard": str(part) if part else None,
            "roster": sorted(s.name for s in run.subs),
            "students": sorted(s.name for s in (todo + [s for s in run.subs
                                                        if s.name in {r.student for r in kept}])),
            "settings": run.settings})
    by_slug = {s.slug: s for s in todo}
    done: dict[str, Result] = {r.slug: r for r in kept}
    reporter = progress(len(todo)) if progress is not None else None

    def record(res: Result) -> None:
        res.feedback = write_feedback(res, run.out_dir, run.max_feedback, run.html)
        write_result(run.out_dir, result_to_dict(res, out_dir=run.out_dir),
                     sha256(by_slug[res.slug].data), run.settings)
        done[res.slug] = res
        if reporter is not None:
            reporter.update(res)

    def worker_died(sub: Submission, why: str) -> Result:
        return Result(sub.name, exercise_set, sub.path, 0.0, run.ctx.plan.max_points, "error",
                      note=f"not graded: {why}", slug=sub.slug)

    _sweep_stale_scratch()
    scratch = tempfile.mkdtemp(prefix=f"attnkit-grade-{os.getpid()}-")
    run.ctx.scratch_root = scratch
    try:
        batch_.run(grade_submission, run.ctx, todo, jobs, record, worker_died)
    finally:
        if reporter is not None:
            reporter.close()
        write_gradebook(run.out_dir / "gradebook.csv", run.book,
                        [done[s.slug] for s in run.subs if s.slug in done])
        if not keep_temp:
            shutil.rmtree(scratch, ignore_errors=True)
    return [done[s.slug] for s in run.subs if s.slug in done]
