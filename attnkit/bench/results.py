"""Loading and drawing the results files of ``python -m attnkit.bench``.

The files live in the project's ``benchmarks/`` folder, not in the package: an
installed attnkit finds them through ``ATTNKIT_BENCHMARKS`` or by looking for a
``benchmarks/`` folder in the working directory and its parents (a notebook in
``book/`` finds the repository's), or is told the folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..engines import ENGINES, capabilities


def results_folder(start: Path | str | None = None) -> Path | None:
    """The benchmarks folder: ``$ATTNKIT_BENCHMARKS``, else ``benchmarks/`` here or above.

    Args:
        start: where to start looking (default: the working directory).

    Returns:
        The folder, or ``None`` when none is found.
    """
    env = os.environ.get("ATTNKIT_BENCHMARKS")
    if env:
        return Path(env)
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "benchmarks").is_dir():
            return folder / "benchmarks"
    return None


def fitted_slope(n: Sequence[float], t: Sequence[float]) -> float:
    """The slope of ``log t`` against ``log n`` by least squares (1: linear, 2: quadratic).

    Also :func:`attnkit.teaching.complexity.loglog_slope` (chapter 6's name).

    Raises:
        ValueError: fewer than two points.

    Example:
        >>> round(fitted_slope([1, 2, 4], [3, 12, 48]), 6)
        2.0
    """
    x, y = np.log(np.asarray(n, float)), np.log(np.asarray(t, float))
    if x.size < 2:
        raise ValueError(f"need at least two points; got {x.size}")
    return float(np.polyfit(x, y, 1)[0])


def load_results(kind: str, folder: Path | str | None = None) -> dict[str, Any] | None:
    """The results file ``results-<kind>.json`` of ``python -m attnkit.bench``, or ``None``.

    Args:
        kind: ``"cpu"``, ``"cpu-window"``, ``"gpu"``, ``"decoding-cpu"``,
            ``"distributed-cpu"``, ``"mla-cpu"``, ``"topk-cpu"``, ``"serving-cpu"`` or
            ``"serving-sim"`` (one schema:
            :mod:`attnkit.bench.report`).
        folder: where the files are; default :func:`results_folder`.

    Returns:
        The parsed results, or ``None`` when there is no such file.
    """
    found = Path(folder) if folder is not None else results_folder()
    if found is None:
        return None
    path = found / f"results-{kind}.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())


#: Okabe-Ito colours and markers, given to the engines in the order the results list them.
_COLOURS = ("#D55E00", "#CC79A7", "#000000", "#0072B2", "#009E73", "#E69F00", "#56B4E9")
_MARKERS = "svo^D<>"


def engine_label(engine: str) -> str:
    """A legend label for a benchmark engine name, from the engine's own declaration.

    ``flash-numpy`` is the ``flash`` engine on NumPy input; the description is the
    engine's :attr:`~attnkit.engines.Capabilities.notes`.

    Example:
        >>> engine_label("flash-torch")
        'flash, torch input: tiled online softmax; never forms the (L, S) matrix'
    """
    backend, _, kind = engine.rpartition("-")
    if engine in ENGINES or backend not in ENGINES:
        backend, kind = engine, ""
    try:
        notes = capabilities(backend).notes
    except (ImportError, ValueError):
        notes = ""
    name = f"{backend}, {kind} input" if kind else backend
    return f"{name}: {notes}" if notes else name


def plot_cpu_results(result: dict[str, Any], axes: Sequence[Any]) -> None:
    """Draw time (left axis) and peak memory (right axis) against n from a CPU results dict."""
    ax_t, ax_m = axes
    engines = list(dict.fromkeys(r["engine"] for r in result["rows"]))
    for i, engine in enumerate(engines):
        label, colour, marker = engine_label(engine), _COLOURS[i % 7], _MARKERS[i % 7]
        rows = sorted((r for r in result["rows"] if r["engine"] == engine and "error" not in r),
                      key=lambda r: r["n"])
        if not rows:
            continue
        n = [r["n"] for r in rows]
        ax_t.loglog(n, [r["time_best_s"] * 1e3 for r in rows], marker=marker, color=colour,
                    label=label)
        # the resident set grows in whole pages; draw growth under 0.1 MiB at 0.1 MiB
        mem = [max(r["peak_rss_growth_bytes"] / 2**20, 0.1) for r in rows]
        ax_m.loglog(n, mem, marker=marker, color=colour, label=label)
    ax_t.set_xlabel("sequence length n (tokens)")
    ax_t.set_ylabel("time per call (ms, best of repeats)")
    ax_m.set_xlabel("sequence length n (tokens)")
    ax_m.set_ylabel("peak memory growth (MiB)")
    ax_t.legend(fontsize=10)
    for ax in axes:
        ax.set_xticks(result["settings"]["sizes"], [str(s) for s in result["settings"]["sizes"]])
        ax.minorticks_off()


def plot_gpu_results(result: dict[str, Any], axes: Sequence[Any], *, pass_: str = "fwd") -> None:
    """Draw TFLOP/s against n for the Triton engine and SDPA, one axis per head width."""
    peak = result["matmul_peak"].get("tflops")
    for ax, d in zip(axes, result["settings"]["dims"], strict=False):
        for engine, colour in (("triton", "#0072B2"), ("sdpa-flash", "#000000")):
            for causal, style in ((False, "-"), (True, "--")):
                rows = sorted((r for r in result["rows"] if r["engine"] == engine
                               and r["d"] == d and r["causal"] == causal and "error" not in r),
                              key=lambda r: r["n"])
                if rows:
                    name = "Triton (attnkit)" if engine == "triton" else "SDPA FlashAttention"
                    ax.semilogx([r["n"] for r in rows], [r[f"{pass_}_tflops"] for r in rows],
                                style, marker="o", color=colour,
                                label=f"{name}{', causal' if causal else ''}")
        if peak:
            ax.axhline(peak, color="#E69F00", lw=1, label="measured bf16 matmul peak")
        sizes = result["settings"]["sizes"]
        ax.set_xticks(sizes, [f"{s // 1024}k" if s >= 1024 else str(s) for s in sizes])
        ax.minorticks_off()
        ax.set_ylim(0, (peak or 800) * 1.08)
        ax.set_xlabel("sequence length n (tokens)")
        ax.set_ylabel("TFLOP/s")
        ax.set_title(f"head width d = {d}")
    axes[0].legend(fontsize=10, loc="lower right")
