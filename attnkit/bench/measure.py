"""Measurement: one peak-memory helper, timing, and what the machine is.

:func:`peak_memory` is the one way attnkit measures peak memory: the growth of the
process's resident-set high-water mark (``"rss"``, Linux), the peak of
``tracemalloc`` (``"tracemalloc"``: NumPy reports its buffers to it, torch does
not) or the CUDA allocator's peak (``"cuda"``).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from ..core._validate import choice, positive_int, real

THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
              "VECLIB_MAXIMUM_THREADS": "1", "NUMEXPR_NUM_THREADS": "1"}


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
    from ..engines import release_scratch

    release_scratch()
    if how == "tracemalloc":
        import tracemalloc

        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            fn()
            return tracemalloc.get_traced_memory()[1] - before
        finally:
            tracemalloc.stop()
    if how == "cuda":
        import torch

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


def best_and_median(fn: Callable[[], Any], repeats: int,
                    min_time: float = 0.0) -> tuple[float, float]:
    """Seconds of the fastest and the median call, after one warm-up call.

    Calls ``fn`` at least ``repeats`` times and, beyond that, until ``min_time``
    seconds of calls have passed (at most 1000 calls), so that a call of a few
    milliseconds is sampled many times, not just ``repeats`` times.

    Raises:
        TypeError: ``min_time`` not a real number.
        ValueError: ``repeats`` not a positive integer, or ``min_time`` negative.

    Example:
        >>> best, median = best_and_median(lambda: sum(range(100)), 3)
        >>> 0 < best <= median
        True
    """
    repeats = positive_int("repeats", repeats)
    min_time = real("min_time", min_time)
    if min_time < 0:
        raise ValueError(f"min_time must be a number >= 0 (seconds); got {min_time!r}")
    fn()
    times: list[float] = []
    while len(times) < repeats or (sum(times) < min_time and len(times) < 1000):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[0], times[len(times) // 2]


def cpu_description() -> dict[str, Any]:
    """The CPU: model name, vendor, family/model numbers and vector ISA (Linux ``/proc/cpuinfo``).

    ``vector_isa`` is the widest of AVX-512, AVX2 or SSE (x86) or NEON/SVE (Arm) that
    the flags show; ``avx512`` lists the AVX-512 subsets present.
    """
    info: dict[str, Any] = {"model": platform.processor() or "unknown"}
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if ":" in line:
                    key, _, value = line.partition(":")
                    fields.setdefault(key.strip(), value.strip())
    except OSError:
        return info
    info["model"] = fields.get("model name", info["model"])
    for key, name in (("vendor_id", "vendor"), ("cpu family", "family"), ("model", "model_number"),
                      ("stepping", "stepping")):
        if key in fields:
            info[name] = fields[key]
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    avx512 = sorted(f for f in flags if f.startswith("avx512"))
    info["avx512"] = avx512
    if "avx512f" in flags:
        isa = "AVX-512"
    elif "avx2" in flags:
        isa = "AVX2" + ("+FMA" if "fma" in flags else "")
    elif "sve" in flags:
        isa = "SVE"
    elif "asimd" in flags or "neon" in flags:
        isa = "NEON"
    elif "sse4_2" in flags:
        isa = "SSE4.2"
    else:
        isa = "unknown"
    info["vector_isa"] = isa
    return info


def machine_info(device: str) -> dict[str, Any]:
    """The machine and library versions, for a results file."""
    cpu = cpu_description()
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpu": cpu["model"],
        "cpu_details": cpu,
        "logical_cpus": os.cpu_count(),
    }
    try:
        with open("/proc/meminfo") as f:
            info["memory_gib"] = round(int(f.readline().split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    versions: dict[str, str] = {}
    for name in ("numpy", "torch", "triton"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = "not installed"
    from .. import __version__

    versions["attnkit"] = __version__
    info["versions"] = versions
    if device == "cuda":
        import torch

        props = torch.cuda.get_device_properties(0)
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_gib"] = round(props.total_memory / 1024**3, 1)
        info["gpu_multiprocessors"] = props.multi_processor_count
        info["cuda"] = torch.version.cuda
    return info


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


