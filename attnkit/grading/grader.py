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
   feedback in text and HTML, each output and each file capped by bytes, scrubbed
   of any text of the hidden tests.

See :func:`grade`; the command line is :mod:`attnkit.grading.cli`.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import html
import io
import os
import re
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from ._codec import AnswerError, StudentCallable, decode
from ._plan import Plan, build_plan
from .sets import SET_NAME, default_source_dir, grade_ids, source_notebook

__all__ = ["CheckResult", "Result", "grade", "restore_missing_cells", "slug", "student_name"]

#: Columns of the CSV gradebook.
CSV_COLUMNS = ("student", "exercise_set", "points", "max_points", "status", "file")

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


def _read_gradebook(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    rows: dict[tuple[str, str], dict[str, str]] = {}
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


def _cap(text: str, limit: int, what: str) -> str:
    data = text.encode("utf-8", errors="replace")
    if len(data) <= limit:
        return text
    kept = data[:limit].decode("utf-8", errors="ignore")
    return kept + f"\n[{what} cut here: {len(data) - limit:,} more bytes not shown]\n"


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
) -> list[Result]:
    """Grade every submission of ``exercise_set``; write the gradebook and the feedback.

    Args:
        exercise_set: the set's name, e.g. ``"ch05"``.
        submissions: notebook files; a directory stands for the files in it (and
            ``*/ch05.ipynb`` below it). A path that does not exist stops the batch.
        out: output directory: ``gradebook.csv`` (rows of earlier runs for other
            students or sets are kept) and ``feedback/SLUG-SET.txt`` / ``.html``.
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

    Returns:
        One :class:`Result` per submitted file, in the order given.

    Raises:
        TypeError, ValueError: bad arguments (unknown set, a missing file, ``students``
            of the wrong length, a non-positive limit, an unreadable gradebook).
        SandboxUnavailable: ``sandbox=True`` but bubblewrap cannot run here.

    Example:
        >>> results = grade("ch05", ["alice_ch05.ipynb"], "graded")   # doctest: +SKIP
        >>> results[0].points, results[0].max_points                  # doctest: +SKIP
        (12.0, 12.0)
    """
    from ._kernel import KernelDied, KernelSession
    from ._sandbox import Limits, Sandbox, parse_bytes, probe, sweep_stale_cgroups
    from .release import student_notebook

    src_dir = Path(source_dir) if source_dir is not None else default_source_dir()
    source = source_notebook(exercise_set, src_dir)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds; got {timeout!r}")
    for name, v in (("max_output", max_output), ("max_feedback", max_feedback)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 100:
            raise ValueError(f"{name} must be an int of at least 100 bytes; got {v!r}")
    limits = Limits(parse_bytes(memory), cpu_seconds, processes)
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
    book = _read_gradebook(out_dir / "gradebook.csv")

    # Everything is read before any student code runs.
    data: list[bytes | str] = []
    for f in files:
        try:
            size = f.stat().st_size
            data.append(f.read_bytes() if size <= MAX_SUBMISSION else
                        f"is larger than {MAX_SUBMISSION // 1024**2} MB")
        except OSError as exc:
            data.append(f"cannot be read ({exc.strerror})")
    source_nb = nbformat.read(source, as_version=4)
    plan = build_plan(exercise_set, source_nb)

    sb = Sandbox(limits, enabled=sandbox)
    if sandbox:
        probe()
        sweep_stale_cgroups()
        sb.refuse_visible([out_dir.resolve(), src_dir.resolve(), *(f.resolve() for f in files)])

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

    (out_dir / "feedback").mkdir(parents=True, exist_ok=True)
    # the course release: what a student was given at most (no solutions, no values);
    # grading itself reads every check from the source, so it does not depend on the mode
    released = student_notebook(exercise_set, src_dir, mode="course")
    release_ids = grade_ids(released)
    scrub = _Scrubber(source_nb, released)
    results: list[Result] = []
    for i, (path, name, s, raw) in enumerate(zip(files, unique, slugs, data)):
        res = Result(name, exercise_set, path, 0.0, plan.max_points, "graded", slug=s)
        if name != names[i]:
            res.note = f"recorded as {name!r}: another file gave the same student name"
        results.append(res)
        if isinstance(raw, str):
            res.status, res.note = "not a notebook", f"{path.name} {raw}"
            continue
        nb, why = _parse_notebook(raw)
        if nb is None:
            res.status, res.note = "not a notebook", f"{path.name} {why}"
            continue
        sub_ids = grade_ids(nb)
        if not set(sub_ids) & set(release_ids):
            res.status = "wrong exercise set"
            res.note = f"{path.name} {_wrong_set_note(sub_ids, exercise_set)}"
            continue
        res.restored = restore_missing_cells(nb, released)
        t0 = time.monotonic()
        session = KernelSession(sb, timeout, max_output=max_output, tag=str(i))
        ctx = _Ctx(session, res)
        try:
            session.start()
            _grade_one(nb, plan, ctx, max_output)
        except KernelDied as exc:
            res.status, res.note = "error", f"the kernel could not start: {exc}"
            res.checks = []
        finally:
            session.close(keep=keep_temp)
            if keep_temp:
                res.note = (res.note + f"; scratch kept: {session.dir}").lstrip("; ")
        res.seconds = time.monotonic() - t0
        res.points = sum(c.points for c in res.checks)
        res.max_points = sum(c.max_points for c in res.checks) or plan.max_points
        res.outputs = [(lbl, scrub(t)) for lbl, t in ctx.outputs]
        res.events = [scrub(e) for e in res.events]
        for c in res.checks:
            c.message = scrub(c.message).strip()
    for res in results:
        res.feedback.append(_write_text_feedback(res, out_dir, max_feedback))
        if html and res.status == "graded":
            res.feedback.append(_write_html_feedback(res, out_dir, max_feedback))
    _write_csv(results, book, out_dir / "gradebook.csv")
    return results


def _fmt_points(x: float) -> str:
    return f"{x:g}"


def _feedback_parts(res: Result, limit: int) -> tuple[list[str], list[str], list[str], str]:
    """Head lines, check lines, event lines, and the outputs section (capped)."""
    head = [
        f"Exercise set {res.exercise_set}, student {res.student}: "
        f"{_fmt_points(res.points)} / {_fmt_points(res.max_points)} points",
        f"Submitted file: {res.file.name}",
    ]
    checks = []
    if res.status != "graded":
        head.append(f"Not graded ({res.status}): {res.note}. Score 0.")
    else:
        width = max((len(c.grade_id) for c in res.checks), default=10)
        for c in res.checks:
            mark = "ok  " if c.points >= c.max_points else "FAIL"
            pts = f"{_fmt_points(c.points)}/{_fmt_points(c.max_points)}"
            line = f"  {mark} {pts:>5}  {c.grade_id:<{width}}"
            checks.append((line + (f"  {c.message}" if c.message else "")).rstrip())
        if res.restored:
            checks += ["", "Cells missing from the submission were put back from the exercise "
                       "set: " + ", ".join(res.restored)]
    events = [f"  {e}" for e in res.events]
    outs = res.outputs
    body = "".join(f"--- output of {lbl} ---\n{t.rstrip()}\n" for lbl, t in outs)
    used = len("\n".join(head + checks + events).encode())
    body = _cap(body, max(limit - used - 400, 200), "feedback") if body else ""
    return head, checks, events, body


def _write_text_feedback(res: Result, out_dir: Path, limit: int) -> Path:
    head, checks, events, body = _feedback_parts(res, limit)
    lines = head + [""] + checks
    if events:
        lines += ["", "What happened while your notebook ran:"] + events
    if body:
        lines += ["", "Outputs of your cells (each cut at a fixed size):", body]
    path = out_dir / "feedback" / f"{res.slug}-{res.exercise_set}.txt"
    path.write_text(_cap("\n".join(lines) + "\n", limit, "feedback"), encoding="utf-8")
    return path


def _write_html_feedback(res: Result, out_dir: Path, limit: int) -> Path:
    head, checks, events, body = _feedback_parts(res, limit)
    esc = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{esc(res.exercise_set)}: {esc(res.student)}</title>",
             "<style>body{font-family:sans-serif;max-width:60rem;margin:2rem auto}"
             "pre{white-space:pre-wrap;background:#f6f6f6;padding:.5rem}"
             ".ok{color:#006400}.fail{color:#a00}td{padding:.2rem .6rem;vertical-align:top}"
             "</style></head><body>",
             f"<h1>{esc(head[0])}</h1>", f"<p>{esc(head[1])}</p>", "<table>"]
    for c in res.checks:
        ok = c.points >= c.max_points
        parts.append(f'<tr><td class="{"ok" if ok else "fail"}">{"ok" if ok else "FAIL"}</td>'
                     f"<td>{_fmt_points(c.points)}/{_fmt_points(c.max_points)}</td>"
                     f"<td>{esc(c.grade_id)}</td><td>{esc(c.message)}</td></tr>")
    parts.append("</table>")
    if res.restored:
        parts.append(f"<p>Cells put back from the exercise set: {esc(', '.join(res.restored))}</p>")
    if events:
        parts.append("<h2>What happened while your notebook ran</h2><ul>")
        parts += [f"<li>{esc(e.strip())}</li>" for e in events]
        parts.append("</ul>")
    if body:
        parts += ["<h2>Outputs of your cells</h2>", f"<pre>{esc(body)}</pre>"]
    parts.append("</body></html>")
    path = out_dir / "feedback" / f"{res.slug}-{res.exercise_set}.html"
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return path


def _write_csv(results: list[Result], rows: dict[tuple[str, str], dict[str, str]],
               path: Path) -> None:
    """Write the gradebook: the rows read before grading, updated with ``results``."""
    rows = dict(rows)
    for r in results:
        rows[(r.student, r.exercise_set)] = {
            "student": r.student,
            "exercise_set": r.exercise_set,
            "points": _fmt_points(r.points),
            "max_points": _fmt_points(r.max_points),
            "status": r.status,
            "file": str(r.file),
        }
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for key in sorted(rows):
            w.writerow(rows[key])
    os.replace(tmp, path)

