"""Top-k sparse attention (gathered keys) against dense causal attention, on the CPU.

``python -m attnkit.bench sparse`` measures, on one thread, float32, one head of width
``--dim``, for every sequence length ``n`` (queries = keys = ``n``, causal):

* **dense**: exact causal attention with the flash engine (``O(n)`` memory, the best
  dense baseline attnkit has on a CPU);
* **indexer**: :func:`attnkit.models.sparse.indexer_topk` with ``--index-heads`` heads of
  ``--index-dim`` (scores in blocks, then the top ``k``): quadratic in ``n``;
* **gather**: only the copies of each query's ``k`` selected keys and values that the
  core makes (the same blocks of queries), to show what the copying costs;
* **top-k core**: :func:`attnkit.models.sparse.topk_attention` over the selected keys
  (``O(n k d)`` time), for each ``k`` in ``--topk``.

Each is timed in :data:`ROUNDS` interleaved rounds (each round times every part at that
``n``: best and median of at least ``--repeats`` calls and ``--min-time`` seconds of
calls, torch tensors), so that a change of load on a shared machine reaches every part;
a row's best is the fastest call of any round, its median the median of the rounds'
medians. Peak memory is measured on NumPy copies of the same inputs with
``tracemalloc`` (exactly what the call allocates, inputs excluded, the same on every
machine). Ratios are against dense in the same run; ``pairs`` counts the (query, key)
pairs each part scores or attends over. Results: ``results-topk-cpu``. This module
imports torch at its top (the command line imports it when the command runs).

The defaults (:data:`SIZES`, :data:`TOPK`) are chosen to finish in a few minutes on one
thread of a 2-core machine: the gather and the core cost about ``n k (d_k + d_v)``
copied numbers per call, so ``k`` = 2048 at ``n`` = 32,768 alone takes minutes per
round. At the largest default size, ``n / k`` = 16,384 / 256 = 64 is DeepSeek-V3.2's
own ratio (2,048 of 128k tokens); ``--sizes`` and ``--topk`` run larger grids.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from typing import Any

import torch

from ..core.attention import attention
from ..models.sparse import _gather_block, indexer_topk, topk_attention
from .measure import best_and_median, peak_memory, timing
from .report import MiB

#: Interleaved rounds per sequence length (the command line's ``--rounds`` overrides it).
ROUNDS = 2

#: Sequence lengths of the command line's default run (``--sizes`` overrides them).
SIZES = [4096, 8192, 16384]

#: Keys kept per query in the default run (``--topk`` overrides them).
TOPK = [256, 512]

#: Queries per gathered block, as :func:`attnkit.models.sparse.topk_attention`'s default.
BLOCK_Q = 128


def causal_pairs(n: int, k: int | None = None) -> int:
    """(query, key) pairs of causal attention over ``n`` tokens, each query keeping at most ``k``.

    Example:
        >>> causal_pairs(4), causal_pairs(4, 2)
        (10, 7)
    """
    return sum(i + 1 if k is None else min(i + 1, k) for i in range(n))


def run(sizes: list[int], topk: list[int], dim: int, index_heads: int, index_dim: int,
        repeats: int, min_time: float = 0.2, seed: int = 0, rounds: int = 1) -> dict[str, Any]:
    """Measure every configuration; returns the rows and the settings.

    Each row: ``n``, ``k`` (``None`` for dense), ``part``, ``best_ms``, ``median_ms``,
    ``pairs``, ``peak_bytes`` (``None`` for the gather, whose copies the core's peak
    includes), ``time_ratio_vs_dense`` and ``memory_ratio_vs_dense``.
    """
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
                kept = [kk for kk in topk if kk <= n]

                # the parts at this n, in the order they are timed in every round
                parts: list[tuple[str, int | None, Callable[[], Any]]] = [
                    ("dense", None, lambda q=q, k=k, v=v: attention(q, k, v, causal=True,
                                                                    backend="flash"))]
                selections = {}
                for kk in kept:
                    selections[kk] = indexer_topk(qi, ki, wi, kk, causal="bottom-right")
                    idx, valid = selections[kk]

                    def gather(idx=idx, k=k, v=v, n=n):
                        for lo in range(0, n, BLOCK_Q):
                            _gather_block(k, v, idx, lo, min(n, lo + BLOCK_Q))

                    parts += [
                        ("indexer", kk, lambda kk=kk, a=(qi, ki, wi): indexer_topk(
                            *a, kk, causal="bottom-right")),
                        ("gather", kk, gather),
                        ("top-k core", kk, lambda idx=idx, valid=valid, a=(q, k, v): topk_attention(
                            *a, idx, valid, block_q=BLOCK_Q)),
                    ]
                bests: list[list[float]] = [[] for _ in parts]
                medians: list[list[float]] = [[] for _ in parts]
                for _ in range(rounds):
                    for i, (_, _, fn) in enumerate(parts):
                        best, median = best_and_median(fn, repeats, min_time)
                        bests[i].append(best)
                        medians[i].append(median)

                base_t = min(bests[0])
                base_m = peak_memory(lambda a=(qn, kn, vn): attention(*a, causal=True,
                                                                      backend="flash"))
                for i, (part, kk, _) in enumerate(parts):
                    if part == "dense":
                        mem = base_m
                    elif part == "indexer":
                        mem = peak_memory(lambda kk=kk, a=(qin, kin, win): indexer_topk(
                            *a, kk, causal="bottom-right"))
                    elif part == "top-k core":
                        idx, valid = (x.numpy() for x in selections[kk])
                        mem = peak_memory(lambda a=(qn, kn, vn, idx, valid): topk_attention(
                            *a, block_q=BLOCK_Q))
                    else:
                        mem = None
                    best = min(bests[i])
                    rows.append({
                        "n": n, "k": kk, "part": part, "best_ms": 1e3 * best,
                        "median_ms": 1e3 * statistics.median(medians[i]),
                        "pairs": causal_pairs(n, kk if part == "top-k core" else None)
                        if part != "gather" else None,
                        "peak_bytes": mem, "time_ratio_vs_dense": best / base_t,
                        "memory_ratio_vs_dense": None if not (mem and base_m) else mem / base_m})
                del selections
    finally:
        torch.set_num_threads(threads)
    return {"rows": rows, "settings": {
        "dim": dim, "heads": 1, "dtype": "float32", "threads": 1, "causal": True,
        "index_heads": index_heads, "index_dim": index_dim, "block_q": BLOCK_Q,
        "index_macs_per_pair": index_heads * (index_dim + 1), "core_macs_per_pair": 2 * dim,
        "repeats": repeats, "min_time_s": min_time, "rounds": rounds, "sizes": sizes,
        "topk": topk,
        "memory": "peak of tracemalloc during one call on NumPy copies of the inputs "
                  "(what the call allocates; the inputs excluded)"}}


def from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The top-k benchmark from the command line; returns the results (kind ``topk-cpu``)."""
    rounds = getattr(args, "rounds", None) or ROUNDS
    sizes = getattr(args, "sizes", None) or SIZES
    topk = getattr(args, "topk", None) or TOPK
    result = run(sizes, topk, args.dim, args.index_heads, args.index_dim,
                 args.repeats, args.min_time, rounds=rounds)
    st = result["settings"]
    st["problem"] = (f"one head of width {st['dim']}, {st['dtype']}, causal, one thread; "
                     f"indexer {st['index_heads']} heads of {st['index_dim']}; gathers in "
                     f"blocks of {st['block_q']} queries")
    st["time"] = (f"{rounds} interleaved round(s), each the " + timing(st["repeats"], st["min_time_s"])
                  + "; best = fastest of any round; ratios against dense")
    return {"kind": "topk-cpu", **result}


def table(result: dict[str, Any]) -> list[str]:
    """The Markdown table of a top-k results dict."""
    lines = ["| n | k | part | best ms | median ms | x dense time | pairs | peak MiB | "
             "x dense memory |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        mem = "" if r["peak_bytes"] is None else f"{r['peak_bytes'] / MiB:.1f}"
        mr = "" if r["memory_ratio_vs_dense"] is None else f"{r['memory_ratio_vs_dense']:.2f}"
        pairs = "" if r["pairs"] is None else str(r["pairs"])
        lines.append(f"| {r['n']} | {r['k'] if r['k'] is not None else ''} | {r['part']} | "
                     f"{r['best_ms']:.1f} | {r['median_ms']:.1f} | "
                     f"{r['time_ratio_vs_dense']:.2f} | {pairs} | {mem} | {mr} |")
    return lines
