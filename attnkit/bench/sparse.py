"""Top-k sparse attention (gathered keys) against dense causal attention, on the CPU.

``python -m attnkit.bench sparse`` measures, on one thread, float32, one head of width
``--dim``, for every sequence length ``n`` (queries = keys = ``n``, causal):

* **dense**: exact causal attention with the flash engine (``O(n)`` memory, the best
  dense baseline attnkit has on a CPU);
* **indexer**: :func:`attnkit.models.sparse.indexer_topk` with ``--index-heads`` heads of
  ``--index-dim`` (scores in blocks, then the top ``k``): quadratic in ``n``;
* **top-k core**: :func:`attnkit.models.sparse.topk_attention` over the selected keys
  (``O(n k d)`` time and memory), for each ``k`` in ``--topk``.

Each is timed (best and median of at least ``--repeats`` calls and ``--min-time``
seconds of calls, torch tensors) and its peak memory measured on NumPy copies of the
same inputs with ``tracemalloc`` (exactly what the call allocates, inputs excluded,
the same on every machine); ratios are against dense in the same run. Results:
``results-topk-cpu``. This module imports torch at its top (the command line imports
it when the command runs).
"""

from __future__ import annotations

import argparse
from typing import Any

import torch

from ..core.attention import attention
from ..models.sparse import indexer_topk, topk_attention
from .measure import best_and_median, peak_memory, timing
from .report import MiB


def run(sizes: list[int], topk: list[int], dim: int, index_heads: int, index_dim: int,
        repeats: int, min_time: float = 0.2, seed: int = 0) -> dict[str, Any]:
    """Measure every configuration; returns the rows and the settings."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rows = []
    try:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for n in sizes:
                q, k, v = (torch.randn(1, n, dim, generator=g) for _ in range(3))
                qi = torch.randn(1, n, index_heads, index_dim, generator=g)
                ki = torch.randn(1, n, index_dim, generator=g)
                wi = torch.rand(1, n, index_heads, generator=g)

                qn, kn, vn, qin, kin, win = (x.numpy() for x in (q, k, v, qi, ki, wi))

                def dense(q=q, k=k, v=v):
                    return attention(q, k, v, causal=True, backend="flash")

                best, median = best_and_median(dense, repeats, min_time)
                mem = peak_memory(lambda a=(qn, kn, vn): attention(*a, causal=True,
                                                                   backend="flash"))
                base_t, base_m = best, mem
                rows.append({"n": n, "k": None, "part": "dense", "best_ms": 1e3 * best,
                             "median_ms": 1e3 * median, "peak_bytes": mem,
                             "time_ratio_vs_dense": 1.0, "memory_ratio_vs_dense": 1.0})
                for kk in topk:
                    if kk > n:
                        continue

                    def index(kk=kk, qi=qi, ki=ki, wi=wi):
                        return indexer_topk(qi, ki, wi, kk, causal="bottom-right")

                    best, median = best_and_median(index, repeats, min_time)
                    mem = peak_memory(lambda kk=kk, a=(qin, kin, win): indexer_topk(
                        *a, kk, causal="bottom-right"))
                    rows.append({"n": n, "k": kk, "part": "indexer", "best_ms": 1e3 * best,
                                 "median_ms": 1e3 * median, "peak_bytes": mem,
                                 "time_ratio_vs_dense": best / base_t,
                                 "memory_ratio_vs_dense": None if not (mem and base_m)
                                 else mem / base_m})
                    idx, valid = index()

                    def core(idx=idx, valid=valid, q=q, k=k, v=v):
                        return topk_attention(q, k, v, idx, valid)

                    best, median = best_and_median(core, repeats, min_time)
                    idx_n, valid_n = idx.numpy(), valid.numpy()
                    mem = peak_memory(lambda a=(qn, kn, vn, idx_n, valid_n): topk_attention(*a))
                    rows.append({"n": n, "k": kk, "part": "top-k core", "best_ms": 1e3 * best,
                                 "median_ms": 1e3 * median, "peak_bytes": mem,
                                 "time_ratio_vs_dense": best / base_t,
                                 "memory_ratio_vs_dense": None if not (mem and base_m)
                                 else mem / base_m})
                    del idx, valid
    finally:
        torch.set_num_threads(threads)
    return {"rows": rows, "settings": {
        "dim": dim, "heads": 1, "dtype": "float32", "threads": 1, "causal": True,
        "index_heads": index_heads, "index_dim": index_dim,
        "index_macs_per_pair": index_heads * (index_dim + 1), "core_macs_per_pair": 2 * dim,
        "repeats": repeats, "min_time_s": min_time, "sizes": sizes, "topk": topk,
        "memory": "peak of tracemalloc during one call on NumPy copies of the inputs "
                  "(what the call allocates; the inputs excluded)"}}


def from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The top-k benchmark from the command line; returns the results (kind ``topk-cpu``)."""
    result = run(args.sizes, args.topk, args.dim, args.index_heads, args.index_dim,
                 args.repeats, args.min_time)
    st = result["settings"]
    st["problem"] = (f"one head of width {st['dim']}, {st['dtype']}, causal, one thread; "
                     f"indexer {st['index_heads']} heads of {st['index_dim']}")
    st["time"] = timing(st["repeats"], st["min_time_s"]) + "; ratios against dense"
    return {"kind": "topk-cpu", **result}


def table(result: dict[str, Any]) -> list[str]:
    """The Markdown table of a top-k results dict."""
    lines = ["| n | k | part | best ms | median ms | x dense time | peak MiB | x dense memory |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        mem = "" if r["peak_bytes"] is None else f"{r['peak_bytes'] / MiB:.1f}"
        mr = "" if r["memory_ratio_vs_dense"] is None else f"{r['memory_ratio_vs_dense']:.2f}"
        lines.append(f"| {r['n']} | {r['k'] if r['k'] is not None else ''} | {r['part']} | "
                     f"{r['best_ms']:.1f} | {r['median_ms']:.1f} | "
                     f"{r['time_ratio_vs_dense']:.2f} | {mem} | {mr} |")
    return lines
