"""Measurement: the one timer, the one peak-memory helper, and the child-process runner.

:func:`time_calls` (and :func:`best_and_median`, :func:`best_of_rounds` on top of it)
is the one way attnkit times a call: every benchmark and chapter 6's
:func:`attnkit.teaching.complexity.measure_scaling` use it. :func:`peak_memory` is
the one way it measures peak memory: the growth of the process's resident-set
high-water mark (``"rss"``, Linux), the peak of ``tracemalloc`` (``"tracemalloc"``:
NumPy reports its buffers to it, torch does not) or the CUDA allocator's peak
(``"cuda"``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Hashable, Mapping
from typing import Any, TypeVar

from ..core._arrays import torch_module
from ..core._validate import choice, positive_int, real
from ..engines import release_scratch

THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
              "VECLIB_MAXIMUM_THREADS": "1", "NUMEXPR_NUM_THREADS": "1"}

#: The clocks a measurement may read: elapsed time, or this process's CPU time (which
#: does not count the time spent waiting for a core that another program holds).
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}

K = TypeVar("K", bound=Hashable)


def peak_memory(fn: Callable[[], Any], how: str = "tracemalloc") -> int | None:
    """Bytes by which memory in use peaked above its level before ``fn()`` ran.

    The tiled engines' scratch memory, which they keep between calls, is freed first
    (:func:`attnkit.engines.release_scratch`), so that the call measured allocates
    what it needs as a first call would.

    Args:
        fn: the call to measure (its inputs should already exist).
        how: ``"tracemalloc"`` (Python and NumPy allocations), ``"rss"`` (the
            resident set's high-water mark, Linux: ``None`` elsewhere) or ``"cuda"``
            (torch's CUDA allocator).

    Returns:
        The peak growth in bytes, or ``None`` where ``how`` cannot be measured.

    Raises:
        ValueError: an unknown ``how``.

    Example:
        >>> import numpy as np
        >>> peak_memory(lambda: np.ones(1_000_000)) >= 8_000_000
        True
    """
    choice("how", how, ("tracemalloc", "rss", "cuda"))
    release_scratch()
    if how == "tracemalloc":
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            fn()
            return tracemalloc.get_traced_memory()[1] - before
        finally:
            tracemalloc.stop()
    if how == "cuda":
        torch = torch_module()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current resident set
    except OSError:
        fn()  # the caller may need the call's effects even where nothing is measured
        return None
    before = _rss_kib("VmRSS")
    fn()
    peak = _rss_kib("VmHWM")
    if before is None or peak is None:
        return None
    return max(0, peak - before) * 1024


def _rss_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def time_calls(fn: Callable[[], Any], repeats: int, min_time: float = 0.0, *,
               clock: str = "wall", before: Callable[[], Any] | None = None) -> list[float]:
    """Seconds of each timed call of ``fn``, fastest first, after one warm-up call.

    Calls ``fn`` at least ``repeats`` times and, beyond that, until ``min_time``
    seconds of calls have passed (at most 1000 calls), so that a call of a few
    milliseconds is sampled many times, not just ``repeats`` times.

    Args:
        fn: the call to time.
        repeats: the least number of timed calls.
        min_time: the least seconds of timed calls.
        clock: a key of :data:`CLOCKS` (``"wall"`` or ``"cpu"``).
        before: run before each call, outside the timing (a barrier between ranks).

    Raises:
        TypeError: ``repeats`` or ``min_time`` of the wrong type.
        ValueError: ``repeats`` not positive, ``min_time`` negative, an unknown ``clock``.

    Example:
        >>> times = time_calls(lambda: sum(range(100)), 3)
        >>> len(times) >= 3 and times == sorted(times)
        True
    """
    repeats = positive_int("repeats", repeats)
    min_time = real("min_time", min_time, minimum=0)
    now = CLOCKS[choice("clock", clock, list(CLOCKS))]
    fn()
    times: list[float] = []
    while len(times) < repeats or (sum(times) < min_time and len(times) < 1000):
        if before is not None:
            before()
        start = now()
        fn()
        times.append(now() - start)
    return sorted(times)


def timing(repeats: int, min_time: float) -> str:
    """How :func:`time_calls` timed, in words, for a results file's settings.

    Example:
        >>> timing(5, 0.2)
        'best of at least 5 calls and 0.2 s of calls, after a warm-up call'
    """
    return f"best of at least {repeats} calls and {min_time:g} s of calls, after a warm-up call"


def best_and_median(fn: Callable[[], Any], repeats: int,
                    min_time: float = 0.0) -> tuple[float, float]:
    """Seconds of the fastest and the median call (:func:`time_calls`, elapsed time).

    Example:
        >>> best, median = best_and_median(lambda: sum(range(100)), 3)
        >>> 0 < best <= median
        True
    """
    times = time_calls(fn, repeats, min_time)
    return times[0], times[len(times) // 2]


def best_of_rounds(calls: Mapping[K, Callable[[], Any]], rounds: int, *,
                   clock: str = "wall") -> dict[K, float]:
    """The fastest call of each entry of ``calls`` over ``rounds`` interleaved rounds.

    Every call is made once to warm up, then each round calls every entry once: a
    burst of disturbance on a shared machine spoils one round of every entry instead
    of every call of one entry, and the minimum discards it.

    Raises:
        TypeError, ValueError: as :func:`time_calls`.

    Example:
        >>> best = best_of_rounds({"a": lambda: None, "b": lambda: sum(range(99))}, 2)
        >>> sorted(best)
        ['a', 'b']
    """
    rounds = positive_int("rounds", rounds)
    now = CLOCKS[choice("clock", clock, list(CLOCKS))]
    for fn in calls.values():  # warm-up
        fn()
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(rounds):
        for key, fn in calls.items():
            start = now()
            fn()
            best[key] = min(best[key], now() - start)
    return best


def spawn(payload: dict[str, Any], threads_one: bool,
           extra_env: dict[str, str] | None = None) -> Any:
    """Run ``python -m attnkit.bench --child PAYLOAD`` and return its JSON answer (or an error)."""
    env = {**os.environ, **(extra_env or {})}
    if threads_one:
        env.update(THREAD_ENV)
    proc = subprocess.run(
        [sys.executable, "-m", "attnkit.bench", "--child", json.dumps(payload)],
        capture_output=True, text=True, env=env,
    )
    if proc.returncode != 0:
        return {"error": (proc.stderr or proc.stdout)[-600:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


