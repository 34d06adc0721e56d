"""Grading many students at once: ``--jobs N`` worker processes, each grading one student at a time.

A worker is a grader process, started fresh (``spawn``) with the set's context: it
grades a student exactly as the single-process path does (the same function, the
student's own sandbox, kernel and limits; checks decided in the worker, outside the
student's kernel) and sends the :class:`~attnkit.grading.grader.Result` back. Only
the main process writes files (feedback, result records, gradebook), one student at a
time, in the order results arrive. Results do not depend on ``N``: each student's
grading is independent of the others and of the order.

The workers end with the main process, whatever ends it: each one asks Linux to kill
it when its parent dies (``PR_SET_PDEATHSIG``), and the sandbox of its student dies
with it (bubblewrap's ``--die-with-parent``). A worker that dies while grading (the
machine's out-of-memory killer, say) is replaced and the student is graded again
once; a second death is recorded as that student's ``error``.

Before a parallel run starts, :func:`check_memory` compares ``N`` x the memory limit
with the machine's memory.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from ._sandbox import GIB

__all__ = ["check_memory", "machine_memory", "run"]


def machine_memory() -> tuple[int, str]:
    """Bytes of memory the grader may use, and where that number comes from.

    The smaller of the machine's ``MemTotal`` (``/proc/meminfo``) and the limit of
    the cgroup the grader runs in (a container's or a Slurm job's), where one is set.
    """
    total, where = 0, "MemTotal in /proc/meminfo"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                total = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        pass
    if not total:
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
            where = "the number of physical pages"
        except (OSError, ValueError):
            total = 0
    for limit_file in _own_memory_limit_files():
        try:
            text = limit_file.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < (total or 1 << 62):
            total, where = int(text), f"the limit of the grader's cgroup ({limit_file})"
    return total, where


def _own_memory_limit_files() -> list[Path]:
    files = []
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return files
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        rel = parts[2].lstrip("/")
        if parts[0] == "0":
            files.append(Path("/sys/fs/cgroup") / rel / "memory.max")
        elif "memory" in parts[1].split(","):
            files.append(Path("/sys/fs/cgroup/memory") / rel / "memory.limit_in_bytes")
    return files


def check_memory(jobs: int, memory: int) -> None:
    """Refuse ``jobs`` sandboxes of ``memory`` bytes each that the machine cannot hold.

    Each student's sandbox may use up to ``memory`` bytes (per process, and in total
    where a memory cgroup is available); ``jobs`` of them at once may need ``jobs`` x
    ``memory``.

    Raises:
        ValueError: ``jobs * memory`` exceeds :func:`machine_memory` (the message says
            how much is there and which smaller ``--jobs`` or ``--memory`` would fit).

    Example:
        >>> check_memory(1, 2**20)
    """
    total, where = machine_memory()
    if not total or jobs * memory <= total:
        return
    fit_jobs = total // memory
    hint = (f"use --jobs {fit_jobs} or fewer" if fit_jobs >= 1 else "lower --memory")
    raise ValueError(
        f"jobs: --jobs {jobs} x --memory {memory / GIB:.3g} GiB = {jobs * memory / GIB:.3g} GiB "
        f"is more than this machine's memory, {total / GIB:.3g} GiB ({where}); {hint}, or "
        f"lower --memory to {total // jobs / GIB:.3g} GiB or less (nothing was graded)"
    )


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent ends (no-op elsewhere)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _worker(conn: Connection, parent: int, fn: Callable[[Any, Any], Any], ctx: Any) -> None:
    """A worker's life: grade the tasks it is sent until it is sent ``None``."""
    _die_with_parent()
    if os.getppid() != parent:          # the parent ended before the line above
        os._exit(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)    # the main process decides what Ctrl-C does

    def _term(signum: int, frame: Any) -> None:
        raise SystemExit(1)                          # unwinds: the student's sandbox is closed

    signal.signal(signal.SIGTERM, _term)
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        conn.send(fn(ctx, task))


class _Slot:
    """One worker process and the task it is grading."""

    def __init__(self, mp: Any, fn: Callable[[Any, Any], Any], ctx: Any) -> None:
        self.conn, child = mp.Pipe()
        self.proc = mp.Process(target=_worker, args=(child, os.getpid(), fn, ctx), daemon=True)
        self.proc.start()
        child.close()
        self.task: Any = None
        self.tries = 0

    def give(self, task: Any, tries: int = 0) -> None:
        self.task, self.tries = task, tries
        self.conn.send(task)

    def stop(self, wait_s: float = 5.0) -> None:
        if self.proc.is_alive():
            try:
                self.conn.send(None)
            except (OSError, ValueError):
                pass
            self.proc.join(timeout=0.5 if self.task is None else 0)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(timeout=wait_s)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(timeout=wait_s)
        self.conn.close()


def run(fn: Callable[[Any, Any], Any], ctx: Any, tasks: Sequence[Any], jobs: int,
        on_result: Callable[[Any], None],
        on_worker_death: Callable[[Any, str], Any] | None = None) -> None:
    """Grade ``tasks`` with ``fn(ctx, task)``, ``jobs`` at a time; call ``on_result`` for each.

    Args:
        fn: a module-level function (it is imported by the workers), e.g.
            :func:`attnkit.grading.grader.grade_submission`.
        ctx: what every task needs (sent once to each worker; picklable).
        tasks: one per student.
        jobs: worker processes; ``1`` grades in this process, one after another.
        on_result: called in this process with each result, as it arrives.
        on_worker_death: ``(task, why) -> result`` for a task whose worker died twice.

    A ``KeyboardInterrupt`` (Ctrl-C) stops the workers (each closes its student's
    sandbox) and propagates; results already passed to ``on_result`` are kept.
    """
    if jobs <= 1 or len(tasks) <= 1:
        for task in tasks:
            on_result(fn(ctx, task))
        return
    mp = multiprocessing.get_context("spawn")
    pending = deque(tasks)
    slots: list[_Slot] = []
    try:
        for _ in range(min(jobs, len(tasks))):
            slot = _Slot(mp, fn, ctx)
            slots.append(slot)
            slot.give(pending.popleft())
        while any(s.task is not None for s in slots):
            busy = {s.conn: s for s in slots if s.task is not None}
            for conn in wait(list(busy)):
                slot = busy[conn]
                try:
                    result = conn.recv()
                except (EOFError, OSError):
                    result = None
                if result is None:                       # the worker died
                    task, tries = slot.task, slot.tries
                    slot.proc.join(timeout=5)
                    code = slot.proc.exitcode
                    slot.task = None
                    slot.stop(wait_s=1)
                    slots.remove(slot)
                    slot = _Slot(mp, fn, ctx)
                    slots.append(slot)
                    if tries == 0:
                        slot.give(task, 1)                # grade this student once more
                        continue
                    why = f"the grader's worker process died twice (exit status {code})"
                    if on_worker_death is None:
                        raise RuntimeError(why)
                    on_result(on_worker_death(task, why))
                else:
                    slot.task = None
                    on_result(result)
                if pending:
                    slot.give(pending.popleft())
    finally:
        for s in slots:
            s.stop()
