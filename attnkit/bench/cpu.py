"""The CPU runner: one child process per (engine, n), one thread, interleaved rounds."""

from __future__ import annotations

import argparse
from typing import Any

from ..engines import ENGINES, capabilities
from .measure import best_and_median, peak_memory, spawn
from .results import fitted_slope

CPU_SIZES = (512, 1024, 2048, 4096, 8192)


def cpu_engines() -> tuple[str, ...]:
    """The CPU benchmark's engines, from their declarations.

    Every engine that computes on the CPU, and an engine that takes both array kinds
    once per kind (``flash-numpy``).
    """
    names = []
    for name in ENGINES:
        try:
            c = capabilities(name)
        except ImportError:
            continue
        if "cpu" not in c.devices:
            continue
        names += [f"{name}-numpy", f"{name}-torch"] if c.native == "any" else [name]
    return tuple(names)


def _engine_call(engine: str) -> tuple[str, str]:
    """``(backend, array kind)`` for a benchmark engine name such as ``flash-numpy``."""
    if engine in ENGINES:
        native = capabilities(engine).native
        return engine, "numpy" if native == "numpy" else "torch"
    backend, _, kind = engine.rpartition("-")
    return backend, kind


def _cpu_call(engine: str, n: int, d: int, window: int | None = None) -> Any:
    """A zero-argument function that runs ``engine`` once on seeded ``(1, 1, n, d)`` inputs."""
    import numpy as np

    rng = np.random.default_rng(n)
    q, k, v = (rng.standard_normal((1, 1, n, d)).astype(np.float32) for _ in range(3))
    from ..core.attention import attention

    backend, kind = _engine_call(engine)
    kw: dict[str, Any] = {} if window is None else {"causal": True, "window": (window, 0)}
    if kind == "numpy":
        return lambda: attention(q, k, v, backend=backend, **kw)
    import torch

    tq, tk, tv = (torch.from_numpy(x) for x in (q, k, v))

    def call() -> Any:
        with torch.no_grad():
            return attention(tq, tk, tv, backend=backend, **kw)

    return call


def cpu_child(cfg: dict[str, Any]) -> dict[str, Any]:
    """Measure one CPU configuration (runs in a child process)."""
    engine, n, d, repeats = cfg["engine"], cfg["n"], cfg["d"], cfg["repeats"]
    window = cfg.get("window")
    if cfg.get("block_q") is not None or cfg.get("block_k") is not None:
        from ..engines import _online  # the tile sizes asked for, in this process

        _online.BLOCK_Q, _online.BLOCK_K = cfg.get("block_q"), cfg.get("block_k")
    numpy_in = _engine_call(engine)[1] == "numpy"
    if not numpy_in:
        import torch

        torch.set_num_threads(1)
    _cpu_call(engine, 64, d, window)()  # load libraries and lazy buffers outside the measurement
    call = _cpu_call(engine, n, d, window)
    row: dict[str, Any] = {"engine": engine, "n": n, "d": d}
    if window is not None:
        row["window"] = window
    row["peak_rss_growth_bytes"] = peak_memory(call, "rss")  # scratch freed first
    if numpy_in:
        row["tracemalloc_peak_bytes"] = peak_memory(call, "tracemalloc")
    if engine.startswith("flash-"):  # which exponential the one-time probe chose here
        from ..engines import _online

        row["exp_base"] = (_online.numpy_exp_base() if numpy_in else _online.torch_exp_base())
    row["time_best_s"], row["time_median_s"] = best_and_median(call, repeats,
                                                               cfg.get("min_time", 0.0))
    return row


def run_cpu(args: argparse.Namespace) -> dict[str, Any]:
    """All CPU configurations, ``args.rounds`` interleaved rounds; returns the results."""
    best: dict[tuple[str, int], dict[str, Any]] = {}
    load_before = _load_average()
    for r in range(args.rounds):
        for n in args.sizes:
            for engine in args.engines:
                cfg = {"mode": "cpu", "engine": engine, "n": n, "d": args.d,
                       "repeats": args.repeats, "min_time": args.min_time,
                       "window": args.window, "block_q": args.block_q,
                       "block_k": args.block_k}
                row = spawn(cfg, threads_one=True)
                if "error" in row:
                    row = {"engine": engine, "n": n, "d": args.d, **row}
                old = best.get((engine, n))
                if old is None or "error" in old:
                    best[(engine, n)] = row
                elif "error" not in row:
                    old["time_best_s"] = min(old["time_best_s"], row["time_best_s"])
                    old.setdefault("round_medians_s", [old["time_median_s"]]).append(
                        row["time_median_s"])
                    for key in ("peak_rss_growth_bytes", "tracemalloc_peak_bytes"):
                        if row.get(key) is not None and old.get(key) is not None:
                            old[key] = max(old[key], row[key])
                print(f"round {r + 1}/{args.rounds}  n={n:5d}  {engine:12s} "
                      + (f"{row['time_best_s'] * 1e3:9.2f} ms" if "time_best_s" in row
                         else row.get("error", "")[-200:]), flush=True)
    rows = list(best.values())
    by = {(r["engine"], r["n"]): r for r in rows}
    for r in rows:
        s = by.get(("sdpa", r["n"]))
        if s and "time_best_s" in r and "time_best_s" in s:
            r["time_ratio_vs_sdpa"] = r["time_best_s"] / s["time_best_s"]
        naive = by.get(("numpy", r["n"]))
        if (naive and r.get("peak_rss_growth_bytes") is not None
                and naive.get("peak_rss_growth_bytes")):
            r["memory_ratio_vs_naive"] = r["peak_rss_growth_bytes"] / naive["peak_rss_growth_bytes"]
    slopes = {}
    for engine in args.engines:
        pts = sorted((r["n"], r["time_best_s"]) for r in rows
                     if r["engine"] == engine and "time_best_s" in r)
        if len(pts) >= 2:
            slopes[engine] = fitted_slope([p[0] for p in pts], [p[1] for p in pts])
    return {
        "kind": "cpu" if args.window is None else "cpu-window",
        "fitted_slopes": slopes,
        "settings": {
            "window": None if args.window is None else
            f"causal=True, window=({args.window}, 0): each query sees at most {args.window + 1} keys",
            "load_average": f"{load_before} before, {_load_average()} after (1-minute "
                            "load of the whole machine; the benchmark itself adds about 1)",
            "d": args.d, "dtype": "float32", "shape": "(1, 1, n, d)", "threads": 1,
            "repeats": args.repeats, "min_time_s": args.min_time, "rounds": args.rounds,
            "sizes": list(args.sizes),
            "time": "best of at least `repeats` calls and at least `min_time_s` seconds of "
                    "calls, minimum over rounds; ratio = engine / sdpa",
            "memory": "growth of the child's resident-set high-water mark during one call "
                      "(VmHWM after clear_refs); tracemalloc peak for NumPy engines",
            "flash_blocks": _flash_blocks(args.window is not None, args.block_q, args.block_k),
        },
        "rows": sorted(rows, key=lambda r: (r["n"], CPU_ENGINES.index(r["engine"]))),
    }


def _load_average() -> str:
    """The machine's 1-minute load average, rounded (``"unknown"`` where the OS has none)."""
    import os

    try:
        return f"{os.getloadavg()[0]:.2f}"
    except (AttributeError, OSError):
        return "unknown"


def _flash_blocks(banded: bool, block_q: int | None, block_k: int | None) -> dict[str, Any]:
    from ..engines import _online

    bq, bk = _online.blocks(block_q, block_k, "numpy", banded)
    return {"block_q": bq, "block_k": bk,
            "exp": "exp or exp2, probed in each measuring process: the rows' exp_base",
            "rescale_threshold": _online.RESCALE_THRESHOLD}


CPU_ENGINES = cpu_engines()
