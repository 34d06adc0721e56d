"""Ring attention's time, memory and traffic per rank against P, on the CPU.

``python -m attnkit.bench ring`` launches P local gloo processes for each
P, runs each configuration (causal or not, contiguous or zigzag) and records per
rank: the forward and forward+backward time, the seconds spent computing and
waiting, the query-key pairs computed (the work after causal skipping), the bytes
sent around the ring and the growth of the resident set's high-water mark during
one forward+backward (``results-distributed-cpu``).

On a machine with fewer cores than ranks the processes share cores, so the
wall-clock times measure the whole machine, not P devices: read the per-rank
pairs and bytes for the algorithm, the times for this machine.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
import torch.distributed as dist

from ..distributed.launch import launch
from ..distributed.layout import shard
from ..distributed.ring import all_gather_attention, ring_attention
from .measure import peak_memory, time_calls


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
        # after a warm-up, the fastest of `repeats` calls, the ranks started together
        timings[name] = time_calls(fn, repeats, before=dist.barrier)[0]
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


def table(result: dict[str, Any]) -> list[str]:
    """The Markdown table of a ring results dict."""
    lines = [
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
    return lines


def from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Measure for each P; returns the results (kind ``distributed-cpu``)."""
    shape = {"n": args.n, "batch": args.batch, "heads": args.heads, "dim": args.dim}
    configs = [{**shape, "causal": causal, "layout": layout}
               for causal, layout in ((False, "contiguous"), (True, "contiguous"), (True, "zigzag"))]
    rows = []
    for P in args.nprocs:
        for per_rank in launch(bench_rank, P, configs, args.repeats, timeout=3600,
                               collective_timeout=600):
            rows.extend(per_rank)
    rows.sort(key=lambda r: (r["n"], r["causal"], r["layout"], r["P"], r["rank"]))
    return {"kind": "distributed-cpu", "settings": {
        "batch": args.batch, "heads": args.heads, "dim": args.dim, "repeats": args.repeats,
        "problem": f"q, k, v ({args.batch}, {args.heads}, n, {args.dim}), float32, split over P "
                   "ranks; torch threads per rank: max(1, logical CPUs // P)",
        "times": f"best of {args.repeats} after a warm-up, ranks started together by a barrier; "
                 "compute/wait: this rank's seconds computing blocks and blocked in receives "
                 "(forward)",
        "pairs": "query-key pairs this rank's forward pass attends over (those the causal mask "
                 "leaves: the work)",
        "memory": "growth of the rank's resident-set high-water mark during one forward+backward",
        "cores": "with more ranks than cores the ranks share cores: times measure this machine, "
                 "pairs and bytes the algorithm"}, "rows": rows}
