"""Ring attention's time, memory and traffic per rank against P, on the CPU.

``python -m attnkit.bench ring`` launches P local gloo processes for each
P, runs each configuration (causal or not, contiguous or zigzag) and records per
rank: the forward and forward+backward time, the seconds of the fastest forward
spent computing blocks and waiting for blocks (from the same call as its time), the
query-key pairs computed (the work after causal skipping), the bytes sent around the
ring, and the peak memory of one forward+backward (``results-distributed-cpu``).

Memory is measured in a second set of processes, after the timings, in which glibc
maps every allocation of 64 KiB or more on its own (``mallopt(M_MMAP_THRESHOLD)``)
and so returns it to the system when it is freed: the resident set then follows
the memory in use, and the growth of its high-water mark during one
forward+backward is that call's peak (Linux with glibc; elsewhere it is not
measured). With glibc's default, freed blocks stay in the process and are reused,
and the high-water mark says more about earlier calls than about this one.

On a machine with fewer cores than ranks the processes share cores, so the
wall-clock times measure the whole machine, not P devices: read the per-rank
pairs and bytes for the algorithm, the times for this machine.
"""

from __future__ import annotations

import argparse
import ctypes
import time
from typing import Any

import torch
import torch.distributed as dist

from ..distributed.launch import launch
from ..distributed.layout import shard
from ..distributed.ring import all_gather_attention, ring_attention
from .measure import peak_memory, time_calls

#: glibc's ``mallopt`` parameter number of ``M_MMAP_THRESHOLD`` (malloc.h), and the threshold.
_M_MMAP_THRESHOLD, MMAP_THRESHOLD = -3, 64 * 2**10


def _map_large_allocations() -> bool:
    """Make glibc map (and unmap when freed) every allocation of 64 KiB or more; False if not glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    except (OSError, AttributeError):
        return False


def _inputs(cfg: dict[str, Any], rank: int, world_size: int) -> tuple[Any, ...]:
    """This rank's shard of the seeded q, k, v and of the output gradient."""
    g = torch.Generator().manual_seed(0)
    B, H, n, E = cfg["batch"], cfg["heads"], cfg["n"], cfg["dim"]
    full = [torch.randn(B, H, n, E, generator=g) for _ in range(4)]
    return tuple(shard(x, rank, world_size, layout=cfg["layout"]) for x in full)


def _forward_backward(q: Any, k: Any, v: Any, d_out: Any, opts: dict[str, Any],
                      stats: dict | None = None) -> None:
    qq, kk, vv = (x.clone().requires_grad_(True) for x in (q, k, v))
    out = ring_attention(qq, kk, vv, stats=stats, **opts)
    torch.autograd.grad(out, (qq, kk, vv), d_out)


def _measure(cfg: dict[str, Any], rank: int, world_size: int, repeats: int) -> dict[str, Any]:
    """One configuration on this rank: times, and the forward's compute and wait of the same call."""
    q, k, v, d_out = _inputs(cfg, rank, world_size)
    opts = {"causal": cfg["causal"], "layout": cfg["layout"]}

    def fwd(stats: dict) -> Any:
        return ring_attention(q, k, v, stats=stats, **opts)

    def fwd_bwd(stats: dict) -> None:
        _forward_backward(q, k, v, d_out, opts, stats)

    def gathered(stats: dict) -> Any:
        return all_gather_attention(q, k, v, **opts)

    timings: dict[str, float] = {}
    kept: dict[str, dict[str, float]] = {}
    for name, fn in (("forward", fwd), ("forward_backward", fwd_bwd), ("all_gather_forward", gathered)):
        calls: list[tuple[float, dict[str, float]]] = []

        def call(fn: Any = fn, calls: list = calls) -> None:
            stats: dict[str, float] = {}
            start = time.perf_counter()
            fn(stats)
            calls.append((time.perf_counter() - start, stats))

        # after a warm-up, `repeats` calls, the ranks started together by a barrier; the
        # fastest call's time is reported with the counters of that same call
        time_calls(call, repeats, before=dist.barrier)
        timings[name], kept[name] = min(calls[1:], key=lambda c: c[0])
    fstats, bstats = kept["forward"], kept["forward_backward"]
    return {**cfg, "P": world_size, "rank": rank, "L_r": int(q.shape[-2]),
            **{f"{key}_ms": 1e3 * val for key, val in timings.items()},
            "forward_compute_ms": 1e3 * fstats["compute_s"], "forward_wait_ms": 1e3 * fstats["wait_s"],
            "forward_pairs": int(fstats["pairs"]), "forward_bytes_sent": int(fstats["bytes_sent"]),
            "fwd_bwd_bytes_sent": int(bstats["bytes_sent"])}


def _measure_memory(cfg: dict[str, Any], rank: int, world_size: int) -> float | None:
    """MiB by which this rank's resident set peaked during one forward+backward (see the module)."""
    q, k, v, d_out = _inputs(cfg, rank, world_size)
    opts = {"causal": cfg["causal"], "layout": cfg["layout"]}
    _forward_backward(q, k, v, d_out, opts)  # warm-up: the process group's buffers exist now
    dist.barrier()
    grown = peak_memory(lambda: _forward_backward(q, k, v, d_out, opts), "rss")
    dist.barrier()
    return None if grown is None else grown / 2**20


def bench_rank(rank: int, world_size: int, configs: list[dict[str, Any]],
               repeats: int) -> list[dict[str, Any]]:
    """Run on every rank: time each configuration, return this rank's measurements."""
    return [_measure(cfg, rank, world_size, repeats) for cfg in configs]


def memory_rank(rank: int, world_size: int, configs: list[dict[str, Any]]) -> list[float | None]:
    """Run on every rank of a fresh group: the peak memory of each configuration (MiB, or None)."""
    if not _map_large_allocations():
        return [None for _ in configs]
    return [_measure_memory(cfg, rank, world_size) for cfg in configs]


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
        timed = launch(bench_rank, P, configs, args.repeats, timeout=3600, collective_timeout=600)
        peaks = launch(memory_rank, P, configs, timeout=3600, collective_timeout=600)
        for per_rank, mem in zip(timed, peaks, strict=True):
            for row, peak in zip(per_rank, mem, strict=True):
                row["fwd_bwd_peak_rss_growth_mib"] = peak
            rows.extend(per_rank)
    rows.sort(key=lambda r: (r["n"], r["causal"], r["layout"], r["P"], r["rank"]))
    return {"kind": "distributed-cpu", "settings": {
        "batch": args.batch, "heads": args.heads, "dim": args.dim, "repeats": args.repeats,
        "problem": f"q, k, v ({args.batch}, {args.heads}, n, {args.dim}), float32, split over P "
                   "ranks; torch threads per rank: max(1, logical CPUs // P)",
        "times": f"best of {args.repeats} after a warm-up, ranks started together by a barrier; "
                 "compute/wait: this rank's seconds computing blocks and blocked in receives "
                 "during that same fastest forward",
        "compute_wait": "same run as the forward time",
        "pairs": "query-key pairs this rank's forward pass attends over (those the causal mask "
                 "leaves: the work)",
        "memory": "growth of the rank's resident-set high-water mark during one forward+backward, "
                  "measured in separate processes in which glibc maps every allocation of "
                  f"{MMAP_THRESHOLD // 2**10} KiB or more on its own (so that freed memory leaves "
                  f"the process): rss growth, glibc mmap threshold {MMAP_THRESHOLD} bytes",
        "cores": "with more ranks than cores the ranks share cores: times measure this machine, "
                 "pairs and bytes the algorithm"}, "rows": rows}
