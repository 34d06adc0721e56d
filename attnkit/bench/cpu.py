"""The engines on the CPU: one child process per (engine, n), one thread, interleaved rounds.

``python -m attnkit.bench engines --device cpu``: one thread
(``torch.set_num_threads(1)``, ``OMP/MKL/OPENBLAS_NUM_THREADS=1``), ``d = 64``,
float32, ``q, k, v`` of shape ``(1, 1, n, d)``; engines ``numpy`` (the naive
reference, forms the n x n matrix), ``torch`` (naive, eager), ``sdpa`` (PyTorch's
fused kernel), ``flash-numpy`` and ``flash-torch`` (attnkit's tiled engine on
NumPy and on torch input, with the library's tile sizes or ``--block-q`` and
``--block-k``). Measured per call:

* time: the best (minimum) and the median of at least ``--repeats`` calls, and
  of at least ``--min-time`` seconds of calls, after one warm-up call; over
  ``--rounds`` interleaved rounds the minimum of the best times; ratios are best
  time over SDPA's best time at the same ``n``. The machine's load average before
  and after is recorded with the results;
* peak memory: the growth of the child's resident set during one call (Linux:
  reset the high-water mark through ``/proc/self/clear_refs``, read ``VmHWM``
  afterwards; the inputs already exist), and for NumPy engines also the peak of
  ``tracemalloc`` (NumPy reports its buffers to it).

With ``--window W`` every engine runs a causal sliding window ``(W, 0)`` and, as its
baseline, full causal attention (rows with ``"window": None``), and each windowed
row gets its speed-up over the baseline (``speedup_vs_full_causal``), the ideal
speed-up (``ideal_speedup``: the visible query-key pairs of full causal attention
over those of the window, about ``n / (2 (W + 1))``), the fraction of it reached
(``fraction_of_ideal``), and the keys each query sees (``keys_visible_per_query``)
and, for the tiled engines, the keys whose scores it computes
(``keys_visited_per_query``, from the tiles the engine visits).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import numpy as np

from ..core._arrays import torch_module
from ..core._validate import check_attention_args
from ..core.attention import attention
from ..core.masks import Band
from ..engines import ENGINES, _online, capabilities
from .measure import best_and_median, peak_memory, spawn
from .report import MiB, fmt
from .results import fitted_slope

CPU_SIZES = (512, 1024, 2048, 4096, 8192)


def cpu_engines() -> tuple[str, ...]:
    """The CPU benchmark's engines, from their declarations (imports the engine modules).

    Every engine that computes on the CPU, and an engine that takes both array kinds
    once per kind (``flash-numpy``).

    Example:
        >>> cpu_engines()[:3]
        ('numpy', 'torch', 'sdpa')
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


def _masking(window: int | None, causal: bool) -> dict[str, Any]:
    """The keyword arguments of a call: causal, and a window ``(W, 0)`` when given."""
    return {"causal": causal, **({} if window is None else {"window": (window, 0)})}


def _cpu_call(engine: str, n: int, d: int, window: int | None = None, causal: bool = False) -> Any:
    """A zero-argument function that runs ``engine`` once on seeded ``(1, 1, n, d)`` inputs."""
    rng = np.random.default_rng(n)
    # Drawn in float32 directly: a float64 draw converted with astype would leave its freed
    # pages resident, and the call's own allocations would reuse them unseen by the RSS peak.
    q, k, v = (rng.standard_normal((1, 1, n, d), dtype=np.float32) for _ in range(3))
    backend, kind = _engine_call(engine)
    kw = _masking(window, causal or window is not None)
    if kind == "numpy":
        return lambda: attention(q, k, v, backend=backend, **kw)
    torch = torch_module()
    tq, tk, tv = (torch.from_numpy(x) for x in (q, k, v))

    def call() -> Any:
        with torch.no_grad():
            return attention(tq, tk, tv, backend=backend, **kw)

    return call


def child(cfg: dict[str, Any]) -> dict[str, Any]:
    """Measure one CPU configuration (runs in a child process)."""
    engine, n, d, repeats = cfg["engine"], cfg["n"], cfg["d"], cfg["repeats"]
    window, causal = cfg.get("window"), cfg.get("causal", False)
    if cfg.get("block_q") is not None or cfg.get("block_k") is not None:
        _online.BLOCK_Q, _online.BLOCK_K = cfg.get("block_q"), cfg.get("block_k")  # in this process
    numpy_in = _engine_call(engine)[1] == "numpy"
    if not numpy_in:
        torch_module().set_num_threads(1)
    _cpu_call(engine, 64, d, window, causal)()  # load libraries and lazy buffers outside the measurement
    call = _cpu_call(engine, n, d, window, causal)
    row: dict[str, Any] = {"engine": engine, "n": n, "d": d}
    if window is not None or causal:
        row["window"] = window
    row["peak_rss_growth_bytes"] = peak_memory(call, "rss")  # scratch freed first
    if numpy_in:
        row["tracemalloc_peak_bytes"] = peak_memory(call, "tracemalloc")
    if engine.startswith("flash-"):  # which exponential the one-time probe chose here
        row["exp_base"] = (_online.numpy_exp_base() if numpy_in else _online.torch_exp_base())
    row["time_best_s"], row["time_median_s"] = best_and_median(call, repeats,
                                                               cfg.get("min_time", 0.0))
    return row


def check(args: argparse.Namespace) -> None:
    """The engines and the default sizes (the shared options: :func:`~attnkit.bench.cli.check_options`)."""
    args.engines = args.engines or list(cpu_engines())
    known = cpu_engines()
    for engine in args.engines:
        if engine not in known:
            raise ValueError(f"--engines: unknown engine {engine!r}; the CPU engines here are "
                             f"{list(known)}")
    if "sdpa" not in args.engines:
        raise ValueError("--engines must include sdpa, the time baseline")
    args.sizes = args.sizes or list(CPU_SIZES)


def from_args(args: argparse.Namespace) -> dict[str, Any]:
    """All CPU configurations, ``args.rounds`` interleaved rounds; returns the results."""
    modes = [(None, False)] if args.window is None else [(args.window, True), (None, True)]
    best: dict[tuple[str, int, Any], dict[str, Any]] = {}
    load_before = _load_average()
    for r in range(args.rounds):
        for n in args.sizes:
            for window, causal in modes:
                for engine in args.engines:
                    cfg = {"mode": "cpu", "engine": engine, "n": n, "d": args.d,
                           "repeats": args.repeats, "min_time": args.min_time, "window": window,
                           "causal": causal, "block_q": args.block_q, "block_k": args.block_k}
                    row = spawn(cfg, threads_one=True)
                    if "error" in row:
                        row = {"engine": engine, "n": n, "d": args.d, **row}
                        if causal:
                            row["window"] = window
                    _keep_best(best, (engine, n, window), row)
                    label = f"{engine} {'' if not causal else f'window {window}' if window else 'causal'}"
                    print(f"round {r + 1}/{args.rounds}  n={n:5d}  {label:26s} "
                          + (f"{row['time_best_s'] * 1e3:9.2f} ms" if "time_best_s" in row
                             else row.get("error", "")[-200:]), flush=True)
    rows = list(best.values())
    _ratios(rows)
    if args.window is not None:
        _window_speedups(rows, args)
    measured = [r for r in rows if r.get("window", args.window) == args.window]
    slopes = {}
    for engine in args.engines:
        pts = sorted((r["n"], r["time_best_s"]) for r in measured
                     if r["engine"] == engine and "time_best_s" in r)
        if len(pts) >= 2:
            slopes[engine] = fitted_slope([p[0] for p in pts], [p[1] for p in pts])
    order = list(args.engines)
    return {
        "kind": "cpu" if args.window is None else "cpu-window",
        "fitted_slopes": slopes,
        "settings": _settings(args, load_before),
        "rows": sorted(rows, key=lambda r: (r["n"], r.get("window") is None,
                                            order.index(r["engine"]))),
    }


def _keep_best(best: dict[Any, dict[str, Any]], key: Any, row: dict[str, Any]) -> None:
    """Fold one round's row into the best so far: minimum time, largest memory, every median."""
    old = best.get(key)
    if old is None or "error" in old:
        best[key] = row
    elif "error" not in row:
        old["time_best_s"] = min(old["time_best_s"], row["time_best_s"])
        old.setdefault("round_medians_s", [old["time_median_s"]]).append(row["time_median_s"])
        for k in ("peak_rss_growth_bytes", "tracemalloc_peak_bytes"):
            if row.get(k) is not None and old.get(k) is not None:
                old[k] = max(old[k], row[k])


def _ratios(rows: list[dict[str, Any]]) -> None:
    """Time against SDPA's and memory against the naive engine's, at the same n and masking."""
    by = {(r["engine"], r["n"], r.get("window", "-")): r for r in rows}
    for r in rows:
        same = (r["n"], r.get("window", "-"))
        s, naive = by.get(("sdpa", *same)), by.get(("numpy", *same))
        if s and "time_best_s" in r and "time_best_s" in s:
            r["time_ratio_vs_sdpa"] = r["time_best_s"] / s["time_best_s"]
        if (naive and r.get("peak_rss_growth_bytes") is not None
                and naive.get("peak_rss_growth_bytes")):
            r["memory_ratio_vs_naive"] = r["peak_rss_growth_bytes"] / naive["peak_rss_growth_bytes"]


def visible_pairs(n: int, window: int | None) -> int:
    """Query-key pairs a causal call of ``n`` tokens computes exactly (a window ``(W, 0)``, or none).

    Example:
        >>> visible_pairs(4, None), visible_pairs(4, 1)
        (10, 7)
    """
    w = n if window is None else window
    i = np.arange(n)
    return int(np.minimum(i + 1, w + 1).sum())


def visited_pairs(engine: str, n: int, window: int | None, block_q: Any = None,
                  block_k: Any = None) -> int | None:
    """Query-key pairs whose scores a tiled engine computes on a causal call; ``None`` for others.

    The tiles are the engine's own (:func:`attnkit.engines._online.call_blocks`, the
    module's ``BLOCK_Q``/``BLOCK_K`` or the given sizes) and the ones its loop visits
    (:meth:`attnkit.core.masks.Band.tiles`).
    """
    backend, kind = _engine_call(engine)
    if not capabilities(backend).tiled or "cpu" not in capabilities(backend).devices:
        return None
    x = np.zeros((n, 1), np.float32)
    spec = check_attention_args(x, x, x, **_masking(window, True))
    bq, bk = _online.call_blocks(spec, block_q, block_k, kind)
    band = Band.of_spec(spec)
    return sum((min(i0 + bq, n) - i0) * sum(j1 - j0 for j0, j1, _ in band.tiles(i0, min(i0 + bq, n), bk))
               for i0 in range(0, n, bq))


def _window_speedups(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """Each windowed row against its engine's full causal row, and against the ideal."""
    full = {(r["engine"], r["n"]): r for r in rows if r.get("window") is None}
    for r in rows:
        if r.get("window") is None:
            continue
        n, w = r["n"], r["window"]
        ideal = visible_pairs(n, None) / visible_pairs(n, w)
        r["ideal_speedup"] = ideal
        r["keys_visible_per_query"] = visible_pairs(n, w) / n
        visited = visited_pairs(r["engine"], n, w, args.block_q, args.block_k)
        r["keys_visited_per_query"] = None if visited is None else visited / n
        base = full.get((r["engine"], n))
        if base and "time_best_s" in base and "time_best_s" in r:
            r["speedup_vs_full_causal"] = base["time_best_s"] / r["time_best_s"]
            r["fraction_of_ideal"] = r["speedup_vs_full_causal"] / ideal


def _settings(args: argparse.Namespace, load_before: str) -> dict[str, Any]:
    w = args.window
    return {
        "window": None if w is None else
        f"causal=True, window=({w}, 0): each query sees at most {w + 1} keys; rows with "
        "window None are the same engine on full causal attention (the baseline)",
        "ideal_speedup": None if w is None else
        "visible query-key pairs of full causal attention over those of the window, "
        "n (n + 1) / 2 / (n (W + 1) - W (W + 1) / 2), about n / (2 (W + 1))",
        "load_average": f"{load_before} before, {_load_average()} after (1-minute "
                        "load of the whole machine; the benchmark itself adds about 1)",
        "d": args.d, "dtype": "float32", "shape": "(1, 1, n, d)", "threads": 1,
        "inputs": "drawn in float32 directly (no float64 temporary before the call)",
        "repeats": args.repeats, "min_time_s": args.min_time, "rounds": args.rounds,
        "sizes": list(args.sizes),
        "time": "best of at least `repeats` calls and at least `min_time_s` seconds of "
                "calls, minimum over rounds; ratio = engine / sdpa",
        "memory": "growth of the child's resident-set high-water mark during one call "
                  "(VmHWM after clear_refs); tracemalloc peak for NumPy engines",
        "flash_blocks": _flash_blocks(w, args.block_q, args.block_k),
    }


def _load_average() -> str:
    """The machine's 1-minute load average, rounded (``"unknown"`` where the OS has none)."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except (AttributeError, OSError):
        return "unknown"


def _flash_blocks(window: int | None, block_q: int | None, block_k: int | None) -> dict[str, Any]:
    banded = window is not None
    width = None if window is None else window + 1
    bq, bk = _online.blocks(block_q, block_k, "numpy", banded, width)
    out = {"block_q": bq, "block_k": bk,
           "exp": "exp or exp2, probed in each measuring process: the rows' exp_base",
           "rescale_threshold": _online.RESCALE_THRESHOLD}
    if banded:
        out["causal_baseline"] = dict(zip(("block_q", "block_k"),
                                          _online.blocks(block_q, block_k, "numpy", True)))
    return out


def table(result: dict[str, Any]) -> list[str]:
    """The Markdown table of a CPU results dict."""
    window = result["kind"] == "cpu-window"
    head = ("| n | engine | window | best ms | median ms | x SDPA time | x faster than full causal "
            "| of ideal | keys visited / visible | peak RSS growth MiB |" if window else
            "| n | engine | best ms | median ms | x SDPA time | peak RSS growth MiB "
            "| tracemalloc MiB | x naive memory |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in result["rows"]:
        cells = [str(r["n"]), r["engine"]] + ([str(r.get("window"))] if window else [])
        if "error" in r:
            lines.append("| " + " | ".join(cells) + f" | error: {r['error'][-80:]} |")
            continue
        rss = r.get("peak_rss_growth_bytes")
        rss = None if rss is None else rss / MiB
        cells += [fmt(r["time_best_s"] * 1e3, ".1f"), fmt(r["time_median_s"] * 1e3, ".1f"),
                  fmt(r.get("time_ratio_vs_sdpa"), ".2f")]
        if window:
            visited, visible = r.get("keys_visited_per_query"), r.get("keys_visible_per_query")
            cells += [fmt(r.get("speedup_vs_full_causal"), ".1f"),
                      "" if r.get("fraction_of_ideal") is None else
                      f"{100 * r['fraction_of_ideal']:.0f} % of {r['ideal_speedup']:.1f}",
                      "" if visited is None else f"{visited:.0f} / {visible:.0f}", fmt(rss, ".1f")]
        else:
            tm = r.get("tracemalloc_peak_bytes")
            cells += [fmt(rss, ".1f"), fmt(None if tm is None else tm / MiB, ".1f"),
                      fmt(r.get("memory_ratio_vs_naive"), ".4f")]
        lines.append("| " + " | ".join(cells) + " |")
    return lines
