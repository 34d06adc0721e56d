"""Benchmark: split-KV decoding against one-pass decoding on the CPU.

``python -m attnkit.bench.decoding`` times one decoding step (one new query per
head against a cache of ``S`` keys) computed in one pass (the same code with one
chunk, ``num_splits=1``; :func:`attnkit.attention` is shown beside it) and split
into chunks (:func:`split_kv_attention`, chunks on 1 or ``workers`` threads), in
the same run (best and median of at least ``--repeats`` calls and at least
``--min-time`` seconds of calls), and prints the ratio split / one-pass per cache
length. ``--out DIR`` writes ``results-decoding-cpu.md`` and ``.json`` with the
machine named (CPU model, family, vector ISA).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..core.attention import attention
from ..serving.decoding import split_kv_attention
from .machine import describe_machine, machine_line
from .measure import best_and_median
from .report import save_results, utc_now


def run(sizes: list[int], heads: int, dim: int, splits: list[int], workers: int, repeats: int,
        arrays: list[str], min_time: float = 0.2) -> dict[str, Any]:
    """Measure every configuration; returns the rows and the settings."""

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
                import torch

                q, k, v = (torch.from_numpy(x) for x in (q, k, v))
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
    return {"rows": rows, "settings": {"heads": heads, "dim": dim, "dtype": "float32", "queries": 1,
                                       "repeats": repeats, "min_time_s": min_time, "sizes": sizes,
                                       "splits": splits}}


def markdown(result: dict[str, Any], command: str) -> str:
    """The results as a Markdown page."""
    m, st = result["machine"], result["settings"]
    lines = [
        "# Split-KV decoding against one-pass decoding (CPU)",
        "",
        f"- date: {result['date']}",
        f"- command: `{command}`",
        f"- machine: {machine_line(m)}",
        f"- versions: numpy {m['versions']['numpy']}, torch {m['versions']['torch']}",
        f"- problem: one decoding step, q ({st['heads']}, 1, {st['dim']}) against k, v "
        f"({st['heads']}, S, {st['dim']}), {st['dtype']}",
        f"- time: best of at least {st['repeats']} calls and "
        f"{st.get('min_time_s', 0)} s of calls; ratio = split-KV time / one-pass time "
        "(split_kv_attention with num_splits=1) in the same run; below 1 means faster",
        "",
        "| array | S | method | splits | workers | best ms | median ms | x one-pass | max abs diff |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(f"| {r['array']} | {r['S']} | {r['method']} | {r['splits']} | {r['workers']} | "
                     f"{r['best_ms']:.2f} | {r['median_ms']:.2f} | {r['ratio']:.2f} | "
                     f"{r['max_abs_diff']:.1e} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command line: measure, print, optionally write the results files."""
    p = argparse.ArgumentParser(prog="python -m attnkit.bench.decoding",
                                description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[4096, 16384, 65536], help="cache lengths S")
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--splits", type=int, nargs="+", default=[2, 4, 8])
    p.add_argument("--workers", type=int, default=2, help="threads for the chunks")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--min-time", type=float, default=0.2,
                   help="keep calling until this many seconds of calls (default 0.2)")
    p.add_argument("--arrays", nargs="+", default=["numpy", "torch"], choices=["numpy", "torch"])
    p.add_argument("--out", type=Path, default=None, help="folder for results-decoding-cpu.md/.json")
    a = p.parse_args(argv)
    for name in ("heads", "dim", "workers", "repeats"):
        if getattr(a, name) < 1:
            p.error(f"--{name} must be a positive integer; got {getattr(a, name)}")
    if min(a.sizes) < 1 or min(a.splits) < 1:
        p.error("--sizes and --splits must be positive integers")
    if a.min_time < 0:
        p.error(f"--min-time must be a number of seconds >= 0; got {a.min_time}")
    result = run(a.sizes, a.heads, a.dim, a.splits, a.workers, a.repeats, a.arrays, a.min_time)
    result["machine"] = describe_machine()
    result["date"] = utc_now()
    command = "python -m attnkit.bench.decoding " + " ".join(argv if argv is not None else sys.argv[1:])
    text = markdown(result, command.strip())
    print(text)
    if a.out is not None:
        save_results(a.out, "results-decoding-cpu", result, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
