"""Split-KV decoding against one-pass decoding on the CPU.

``python -m attnkit.bench decoding`` times one decoding step (one new query per
head against a cache of ``S`` keys) computed in one pass (the same code with one
chunk, ``num_splits=1``; :func:`attnkit.attention` is shown beside it) and split
into chunks (:func:`~attnkit.serving.decoding.split_kv_attention`, chunks on 1 or
``--workers`` threads), in the same run (best and median of at least ``--repeats``
calls and at least ``--min-time`` seconds of calls), and gives the ratio split /
one-pass per cache length (``results-decoding-cpu``).
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from ..core._arrays import torch_module
from ..core.attention import attention
from ..serving.decoding import split_kv_attention
from .measure import best_and_median, timing


def measure(sizes: list[int], heads: int, dim: int, splits: list[int], workers: int,
            repeats: int, arrays: list[str], min_time: float = 0.2) -> list[dict[str, Any]]:
    """Time every configuration; returns the rows (times in ms, ratios against one pass)."""

    def timed(fn: Any) -> tuple[float, float]:
        best, median = best_and_median(fn, repeats, min_time)
        return 1e3 * best, 1e3 * median

    rows = []
    rng = np.random.default_rng(0)
    for array in arrays:
        for S in sizes:
            q = rng.standard_normal((heads, 1, dim), dtype=np.float32)
            k = rng.standard_normal((heads, S, dim), dtype=np.float32)
            v = rng.standard_normal((heads, S, dim), dtype=np.float32)
            if array == "torch":
                q, k, v = (torch_module().from_numpy(x) for x in (q, k, v))
            ref = attention(q, k, v)
            qkv = (q, k, v)
            base, med = timed(lambda qkv=qkv: split_kv_attention(*qkv, num_splits=1))
            rows.append({"array": array, "S": S, "method": "one-pass", "splits": 1, "workers": 1,
                         "best_ms": base, "median_ms": med, "ratio": 1.0, "max_abs_diff": 0.0})
            best, med = timed(lambda qkv=qkv: attention(*qkv))
            rows.append({"array": array, "S": S, "method": "attnkit.attention", "splits": 1,
                         "workers": 1, "best_ms": best, "median_ms": med, "ratio": best / base,
                         "max_abs_diff": 0.0})
            for n in splits:
                for w in sorted({1, workers}):
                    out = split_kv_attention(q, k, v, num_splits=n, workers=w)
                    diff = float(np.abs(np.asarray(out) - np.asarray(ref)).max())
                    best, med = timed(lambda n=n, w=w, qkv=qkv: split_kv_attention(
                        *qkv, num_splits=n, workers=w))
                    rows.append({"array": array, "S": S, "method": "split-KV", "splits": n,
                                 "workers": w, "best_ms": best, "median_ms": med,
                                 "ratio": best / base, "max_abs_diff": diff})
    return rows


def from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The decoding benchmark; returns the results (kind ``decoding-cpu``)."""
    rows = measure(args.sizes, args.heads, args.dim, args.splits, args.workers, args.repeats,
                   args.arrays, args.min_time)
    return {"kind": "decoding-cpu", "settings": {
        "heads": args.heads, "dim": args.dim, "dtype": "float32", "queries": 1,
        "repeats": args.repeats, "min_time_s": args.min_time, "sizes": list(args.sizes),
        "splits": list(args.splits),
        "problem": f"one decoding step, q ({args.heads}, 1, {args.dim}) against k, v "
                   f"({args.heads}, S, {args.dim}), float32",
        "time": timing(args.repeats, args.min_time) + "; ratio = split-KV time / one-pass "
                "time (split_kv_attention with num_splits=1) in the same run; below 1 means "
                "faster"}, "rows": rows}


def table(result: dict[str, Any]) -> list[str]:
    """The Markdown table of a decoding results dict."""
    lines = ["| array | S | method | splits | workers | best ms | median ms | x one-pass "
             "| max abs diff |", "|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['array']} | {r['S']} | {r['method']} | {r['splits']} | {r['workers']} | "
                     f"{r['best_ms']:.2f} | {r['median_ms']:.2f} | {r['ratio']:.2f} | "
                     f"{r['max_abs_diff']:.1e} |")
    return lines
