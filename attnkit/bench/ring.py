"""Benchmark: ring attention's time, memory and traffic per rank against P, on the CPU.

``python -m attnkit.bench.ring`` launches P local gloo processes for each
P, runs each configuration (causal or not, contiguous or zigzag) and records per
rank: the forward and forward+backward time, the seconds of the fastest forward
spent computing blocks and waiting for blocks (from the same run as its time), the
query-key pairs computed (the work after causal skipping), the bytes sent around the
ring, and the peak memory of one forward+backward. ``--out DIR`` writes
``results-distributed-cpu.md`` and ``.json`` with the machine named.

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
    """One configuration on this rank: times, and the forward's compute and wait of the same run."""
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
        fn({})  # warm-up
        best = float("inf")
        for _ in range(repeats):
            stats: dict[str, float] = {}
            dist.barrier()
            start = time.perf_counter()
            fn(stats)
            took = time.perf_counter() - start
            if took < best:  # keep the counters of the run whose time is reported
                best, kept[name] = took, stats
        timings[name] = best
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
        "compute/wait: this rank's seconds computing blocks and blocked in receives during that "
        "same fastest forward",
        "- pairs: query-key pairs this rank's forward pass attends over (those the causal mask "
        "leaves: the work)",
        "- memory: growth of the rank's resident-set high-water mark during one forward+backward, "
        f"measured in separate processes in which glibc maps every allocation of "
        f"{MMAP_THRESHOLD // 2**10} KiB or more on its own (so that freed memory leaves the process)",
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
        timed = launch(bench_rank, P, configs, a.repeats, timeout=3600, collective_timeout=600)
        peaks = launch(memory_rank, P, configs, timeout=3600, collective_timeout=600)
        for per_rank, mem in zip(timed, peaks, strict=True):
            for row, peak in zip(per_rank, mem, strict=True):
                row["fwd_bwd_peak_rss_growth_mib"] = peak
            rows.extend(per_rank)
    rows.sort(key=lambda r: (r["n"], r["causal"], r["layout"], r["P"], r["rank"]))
    result = {"rows": rows, "machine": describe_machine(), "date": utc_now(),
              "settings": {"batch": a.batch, "heads": a.heads, "dim": a.dim, "repeats": a.repeats,
                           "compute_wait": "same run as the forward time",
                           "memory": f"rss growth, glibc mmap threshold {MMAP_THRESHOLD} bytes"}}
    command = "python -m attnkit.bench.ring " + " ".join(argv if argv is not None else sys.argv[1:])
    text = markdown(result, command.strip())
    print(text)
    if a.out is not None:
        save_results(a.out, "results-distributed-cpu", result, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
