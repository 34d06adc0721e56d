"""Benchmark: top-k sparse attention (gathered keys) against dense causal attention, CPU.

``python -m attnkit.bench.sparse`` measures, on one thread, float32, one head of width
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
the same on every machine); ratios are against dense in the same run. ``--out DIR`` writes
``results-topk-cpu.md`` and ``.json`` with the machine named.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .machine import describe_machine, machine_line
from .measure import best_and_median, peak_memory
from .report import save_results, utc_now


def run(sizes: list[int], topk: list[int], dim: int, index_heads: int, index_dim: int,
        repeats: int, min_time: float = 0.2, seed: int = 0) -> dict[str, Any]:
    """Measure every configuration; returns the rows and the settings."""
    import torch

    from ..core.attention import attention
    from ..models.sparse import indexer_topk, topk_attention

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


def markdown(result: dict[str, Any], command: str) -> str:
    """The results as a Markdown page."""
    m, st = result["machine"], result["settings"]
    mib = 2**20
    lines = [
        "# Top-k sparse attention against dense causal attention (CPU)",
        "",
        f"- date: {result['date']}",
        f"- command: `{command}`",
        f"- machine: {machine_line(m)}",
        f"- versions: torch {m['versions'].get('torch')}",
        f"- problem: one head of width {st['dim']}, {st['dtype']}, causal, one thread; indexer "
        f"{st['index_heads']} heads of {st['index_dim']}",
        f"- time: best of at least {st['repeats']} calls and {st['min_time_s']} s of calls; "
        f"memory: {st['memory']}",
        "",
        "| n | k | part | best ms | median ms | x dense time | peak MiB | x dense memory |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        mem = "" if r["peak_bytes"] is None else f"{r['peak_bytes'] / mib:.1f}"
        mr = "" if r["memory_ratio_vs_dense"] is None else f"{r['memory_ratio_vs_dense']:.2f}"
        lines.append(f"| {r['n']} | {r['k'] if r['k'] is not None else ''} | {r['part']} | "
                     f"{r['best_ms']:.1f} | {r['median_ms']:.1f} | "
                     f"{r['time_ratio_vs_dense']:.2f} | {mem} | {mr} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command line: measure, print, optionally write the results files."""
    p = argparse.ArgumentParser(prog="python -m attnkit.bench.sparse",
                                description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[8192, 16384, 32768])
    p.add_argument("--topk", type=int, nargs="+", default=[256, 512, 1024, 2048])
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--index-heads", type=int, default=2)
    p.add_argument("--index-dim", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--min-time", type=float, default=0.2)
    p.add_argument("--out", type=Path, default=None, help="folder for results-topk-cpu.md/.json")
    a = p.parse_args(argv)
    for name in ("dim", "index_heads", "index_dim", "repeats"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be a positive integer; got {getattr(a, name)}")
    if min(a.sizes) < 1 or min(a.topk) < 1:
        p.error("--sizes and --topk must be positive integers")
    if a.min_time < 0:
        p.error(f"--min-time must be a number of seconds >= 0; got {a.min_time}")
    result = run(a.sizes, a.topk, a.dim, a.index_heads, a.index_dim, a.repeats, a.min_time)
    result["machine"] = describe_machine()
    result["date"] = utc_now()
    command = "python -m attnkit.bench.sparse " + " ".join(argv if argv is not None else sys.argv[1:])
    text = markdown(result, command.strip())
    print(text)
    if a.out is not None:
        save_results(a.out, "results-topk-cpu", result, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
