"""Benchmark: ring attention's time, memory and traffic per rank against P, on the CPU.

``python -m attnkit.bench.ring`` launches P local gloo processes for each
P, runs each configuration (causal or not, contiguous or zigzag) and records per
rank: the forward and forward+backward time, the seconds spent computing and
waiting, the query-key pairs computed (the work after causal skipping), the bytes
sent around the ring and the growth of the resident set's high-water mark during
one forward+backward. ``--out DIR`` writes ``results-distributed-cpu.md`` and
``.json`` with the machine named.

On a machine with fewer cores than ranks the processes share cores, so the
wall-clock times measure the whole machine, not P devices: read the per-rank
pairs and bytes for the algorithm, the times for this machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from ..distributed.launch import launch
from ..distributed.layout import shard
from ..distributed.ring import all_gather_attention, ring_attention
from .machine import describe_machine, machine_line
from .measure import peak_memory
from .report import save_results, utc_now


def _peak_growth_mib(fn: Any) -> float | None:
    """MiB by which this process's resident-set high-water mark rose during ``fn()`` (Linux)."""
    grown = peak_memory(fn, "rss")
    return None if grown is None else grown / 2**20


def _measure(cfg: dict[str, Any], rank: int, world_size: int, repeats: int) -> dict[str, Any]:
    """One configuration on this rank."""
    g = torch.Generator().manual_seed(0)
    B, H, n, E = cfg["batch"], cfg["heads"], cfg["n"], cfg["dim"]
    full = [torch.randn(B, H, n, E, generator=g) for _ in range(3)]
    q, k, v = (shard(x, rank, world_size, layout=cfg["layout"]) for x in full)
    d_out = torch.randn_like(q)
    opts = {"causal": cfg["causal"], "layout": cfg["layout"]}

    def fwd(stats: dict | None = None) -> Any:
        return ring_attention(q, k, v, stats=stats, **opts)

    def fwd_bwd(stats: dict | None = None) -> None:
        qq, kk, vv = (x.clone().requires_grad_(True) for x in (q, k, v))
        out = ring_attention(qq, kk, vv, stats=stats, **opts)
        torch.autograd.grad(out, (qq, kk, vv), d_out)

    def gathered() -> Any:
        return all_gather_attention(q, k, v, **opts)

    timings: dict[str, float] = {}
    for name, fn in (("forward", fwd), ("forward_backward", fwd_bwd), ("all_gather_forward", gathered)):
        fn()  # warm-up
        best = float("inf")
        for _ in range(repeats):
            dist.barrier()
            start = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - start)
        timings[name] = best
    fstats: dict[str, float] = {}
    fwd(fstats)
    bstats: dict[str, float] = {}
    dist.barrier()
    peak = _peak_growth_mib(lambda: fwd_bwd(bstats))
    return {**cfg, "P": world_size, "rank": rank, "L_r": int(q.shape[-2]),
            **{f"{key}_ms": 1e3 * val for key, val in timings.items()},
            "forward_compute_ms": 1e3 * fstats["compute_s"], "forward_wait_ms": 1e3 * fstats["wait_s"],
            "forward_pairs": int(fstats["pairs"]), "forward_bytes_sent": int(fstats["bytes_sent"]),
            "fwd_bwd_bytes_sent": int(bstats["bytes_sent"]), "fwd_bwd_peak_rss_growth_mib": peak}


def bench_rank(rank: int, world_size: int, configs: list[dict[str, Any]],
               repeats: int) -> list[dict[str, Any]]:
    """Run on every rank: time each configuration, return this rank's measurements."""
    return [_measure(cfg, rank, world_size, repeats) for cfg in configs]


def markdown(result: dict[str, Any], command: str) -> str:
    """The measurements as a Markdown page."""
    m, st = result["machine"], result["settings"]
    lines = [
        "# Ring attention on local gloo processes (CPU): time, memory and traffic per rank",
        "",
        f"- date: {result['date']}",
        f"- command: `{command}`",
        f"- machine: {machine_line(m)}",
        f"- versions: numpy {m['versions']['numpy']}, torch {m['versions']['torch']}",
        f"- problem: q, k, v ({st['batch']}, {st['heads']}, n, {st['dim']}), float32, split over P ranks; "
        f"torch threads per rank: max(1, {m['logical_cpus']} // P)",
        f"- times: best of {st['repeats']} after a warm-up, ranks started together by a barrier; "
        "compute/wait: this rank's seconds computing blocks and blocked in receives (forward)",
        "- pairs: query-key pairs this rank's forward pass attends over (those the causal mask "
        "leaves: the work)",
        "- memory: growth of the rank's resident-set high-water mark during one forward+backward",
        "- with more ranks than cores the ranks share cores: times measure this machine, pairs and bytes "
        "the algorithm",
        "",
        "| n | causal | layout | P | rank | L_r | fwd ms | fwd+bwd ms | all-gather fwd ms | compute ms | "
        "wait ms | pairs | MiB sent (fwd) | MiB sent (fwd+bwd) | peak RSS growth MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        peak = "" if r["fwd_bwd_peak_rss_growth_mib"] is None else f"{r['fwd_bwd_peak_rss_growth_mib']:.1f}"
        lines.append(
            f"| {r['n']} | {r['causal']} | {r['layout']} | {r['P']} | {r['rank']} | {r['L_r']} | "
            f"{r['forward_ms']:.0f} | {r['forward_backward_ms']:.0f} | {r['all_gather_forward_ms']:.0f} | "
            f"{r['forward_compute_ms']:.0f} | {r['forward_wait_ms']:.0f} | {r['forward_pairs']} | "
            f"{r['forward_bytes_sent'] / 2**20:.2f} | {r['fwd_bwd_bytes_sent'] / 2**20:.2f} | {peak} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Command line: measure for each P, print, optionally write the results files."""
    p = argparse.ArgumentParser(prog="python -m attnkit.bench.ring",
                                description=__doc__.split("\n")[0])
    p.add_argument("--nprocs", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--n", type=int, default=8192, help="sequence length")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", type=Path, default=None, help="folder for results-distributed-cpu.md/.json")
    a = p.parse_args(argv)
    for name in ("n", "batch", "heads", "dim", "repeats"):
        if getattr(a, name) < 1:
            p.error(f"--{name} must be a positive integer; got {getattr(a, name)}")
    if min(a.nprocs) < 1:
        p.error(f"--nprocs must be positive integers; got {a.nprocs}")
    shape = {"n": a.n, "batch": a.batch, "heads": a.heads, "dim": a.dim}
    configs = [{**shape, "causal": causal, "layout": layout}
               for causal, layout in ((False, "contiguous"), (True, "contiguous"), (True, "zigzag"))]
    rows = []
    for P in a.nprocs:
        for per_rank in launch(bench_rank, P, configs, a.repeats, timeout=3600, collective_timeout=600):
            rows.extend(per_rank)
    rows.sort(key=lambda r: (r["n"], r["causal"], r["layout"], r["P"], r["rank"]))
    result = {"rows": rows, "machine": describe_machine(), "date": utc_now(),
              "settings": {"batch": a.batch, "heads": a.heads, "dim": a.dim, "repeats": a.repeats}}
    command = "python -m attnkit.bench.ring " + " ".join(argv if argv is not None else sys.argv[1:])
    text = markdown(result, command.strip())
    print(text)
    if a.out is not None:
        save_results(a.out, "results-distributed-cpu", result, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
