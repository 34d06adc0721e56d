"""Ring attention's time, memory and traffic per rank against P, on the CPU.

``python -m attnkit.bench ring`` launches P local gloo processes for each
P, runs each configuration (causal or not, contiguous or zigzag) and records per
rank: the forward and forward+backward time, the seconds of the fastest forward
spent computing blocks and waiting for blocks (from the same call as its time), the
query-key pairs computed (the work after causal skipping), the bytes sent around the
ring, and the peak memory of one forward+backward (``results-distributed-cpu``).

In the same run (``--strategies``, default all three) it compares the context-parallel
strategies on one causal, zigzag problem with ``--cp-heads`` query heads and
``--cp-kv-heads`` key/value heads: ring attention, DeepSpeed-Ulysses (where P
divides the heads) and USP on a 2 x P/2 grid (P >= 4, even), per rank: the
forward and forward+backward time, the bytes sent and the peak memory of one
forward+backward (the ``strategy_rows`` of the results). :func:`strategies_rank`
runs them in float64 and returns the outputs, for checks against one device.

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
from ..distributed.mesh import current_mesh, shard_2d
from ..distributed.ring import all_gather_attention, ring_attention
from ..distributed.tree import sharded_decode_attention
from ..distributed.ulysses import ulysses_attention, usp_attention
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


def cp_table(result: dict[str, Any]) -> list[str]:
    """The Markdown table of the strategy comparison (no lines when the results have none)."""
    rows = result.get("strategy_rows") or []
    if not rows:
        return []
    lines = ["", "Strategies on one problem (same run):", "",
             "| n | strategy | P | mesh | rank | L_r | fwd ms | fwd+bwd ms | MiB sent (fwd) | "
             "MiB sent (fwd+bwd) | peak RSS growth MiB |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        peak = "" if r["fwd_bwd_peak_rss_growth_mib"] is None else f"{r['fwd_bwd_peak_rss_growth_mib']:.1f}"
        mesh = "" if r["mesh"] is None else f"{r['mesh'][0]} x {r['mesh'][1]}"
        lines.append(
            f"| {r['n']} | {r['strategy']} | {r['P']} | {mesh} | {r['rank']} | {r['L_r']} | "
            f"{r['forward_ms']:.0f} | {r['forward_backward_ms']:.0f} | "
            f"{r['forward_bytes_sent'] / 2**20:.2f} | {r['fwd_bwd_bytes_sent'] / 2**20:.2f} | {peak} |")
    return lines


def table(result: dict[str, Any]) -> list[str]:
    """The Markdown table of a ring results dict (then the strategy comparison, if any)."""
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
    return lines + cp_table(result)


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
    strategies = list(getattr(args, "strategies", []) or [])
    strategy_rows = cp_rows(args) if strategies else []
    return {"kind": "distributed-cpu", "strategy_rows": strategy_rows, "settings": {
        "strategies": (f"{', '.join(strategies)} on one problem, q ({args.batch}, {args.cp_heads}, n, "
                       f"{args.dim}), k and v ({args.batch}, {args.cp_kv_heads}, n, {args.dim}), "
                       "float32, causal, zigzag; USP on a 2 x P/2 grid (P >= 4, even), Ulysses "
                       "where P divides the heads; times, bytes and memory as for the ring, per rank"
                       if strategies else "none"),
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


def strategy_problem(cfg: dict[str, Any], dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """The seeded full q, k, v of one problem of :func:`strategies_rank`.

    Shapes: q ``(batch, heads, n, dim)``; k, v ``(batch, kv_heads, n, dim)``
    (``kv_heads`` defaults to ``heads``; ``seed`` to 0).

    Example:
        >>> q, k, v = strategy_problem({"n": 6, "batch": 1, "heads": 4, "kv_heads": 2, "dim": 8},
        ...                            torch.float64)
        >>> tuple(q.shape), tuple(k.shape)
        ((1, 4, 6, 8), (1, 2, 6, 8))
    """
    g = torch.Generator().manual_seed(cfg.get("seed", 0))
    B, H, Hkv, n, E = cfg["batch"], cfg["heads"], cfg.get("kv_heads", cfg["heads"]), cfg["n"], cfg["dim"]
    return (torch.randn(B, H, n, E, generator=g, dtype=dtype),
            torch.randn(B, Hkv, n, E, generator=g, dtype=dtype),
            torch.randn(B, Hkv, n, E, generator=g, dtype=dtype))


def strategies_rank(rank: int, world_size: int, cfg: dict[str, Any],
                    decode: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every context-parallel strategy on one problem, on this rank: output shards and bytes sent.

    Run by ``launch(strategies_rank, P, cfg, decode, mesh=(P_ulysses, P_ring))``. On
    the whole group it runs ring attention, Ulysses and USP (the launch's mesh) on
    this rank's shards of the seeded float64 problem ``cfg`` (keys ``n``, ``batch``,
    ``heads``, ``kv_heads``, ``dim``, ``causal``, ``layout``, ``seed``); Ulysses and
    the ring also on sub-groups of 1 and ``P_ulysses`` ranks (the mesh's rows). With
    ``decode`` (keys ``lengths``, a list of cache lengths ``S``, and ``batch``,
    ``heads``, ``dim``) it runs :func:`attnkit.distributed.sharded_decode_attention`
    of one new query over a cache of each length cut contiguously over sub-groups
    of every size ``1 .. P``. Returns this rank's output shards (to be unsharded and
    compared with one device by the caller) and each call's ``bytes_sent``.
    """
    mesh = current_mesh()
    singles = [dist.new_group([r]) for r in range(world_size)]  # every rank creates every group
    prefixes = {p: dist.new_group(list(range(p))) for p in range(2, world_size)}
    q, k, v = strategy_problem(cfg, torch.float64)
    opts = {"causal": cfg["causal"], "layout": cfg["layout"], "timeout": 60,
            "enable_gqa": cfg.get("kv_heads", cfg["heads"]) != cfg["heads"]}
    runs: list[dict[str, Any]] = []
    sizes = sorted({1, mesh.ulysses_size, world_size})
    for P in sizes:
        group = {1: singles[rank], world_size: None}.get(P, mesh.ulysses_group)
        r = dist.get_rank(group)
        mine = [shard(x, r, P, layout=cfg["layout"]) for x in (q, k, v)]
        for name, fn in (("ring", ring_attention), ("ulysses", ulysses_attention)):
            stats: dict[str, float] = {}
            out = fn(*mine, group=group, stats=stats, **opts)
            runs.append({"strategy": name, "P": P, "group_rank": r, "out": out,
                         "bytes_sent": int(stats.get("bytes_sent", 0))})
    pu, pr = mesh.ulysses_size, mesh.ring_size
    stats = {}
    out = usp_attention(*(shard_2d(x, rank, pu, pr, layout=cfg["layout"]) for x in (q, k, v)),
                        stats=stats, **opts)
    runs.append({"strategy": "usp", "P": world_size, "mesh": (pu, pr), "group_rank": rank, "out": out,
                 "bytes_sent": int(stats.get("bytes_sent", 0))})
    decoded: list[dict[str, Any]] = []
    for S in (decode or {}).get("lengths", []):
        dq, dk, dv = strategy_problem({**decode, "n": S, "seed": S}, torch.float64)
        dq = dq[..., -1:, :]  # one new query
        for P in range(1, world_size + 1):
            if rank >= P:
                continue
            group = {1: singles[rank], world_size: None}.get(P, prefixes.get(P))
            stats = {}
            out = sharded_decode_attention(dq if rank == 0 else torch.zeros_like(dq),
                                           shard(dk, rank, P), shard(dv, rank, P),
                                           group=group, timeout=60, stats=stats)
            decoded.append({"S": S, "P": P, "rank": rank, "S_r": int(shard(dk, rank, P).shape[-2]),
                            "out": out, "bytes_sent": int(stats.get("bytes_sent", 0))})
    return {"rank": rank, "runs": runs, "decode": decoded}


#: The context-parallel strategies that ``--strategies`` compares in one run.
CP_STRATEGIES: tuple[str, ...] = ("ring", "ulysses", "usp")


def cp_mesh(P: int) -> tuple[int, int] | None:
    """The ``(P_ulysses, P_ring)`` grid on which USP is measured at ``P`` ranks: ``(2, P // 2)``.

    ``None`` when ``P`` is below 4 or odd (USP then degenerates into Ulysses or the ring).

    Example:
        >>> cp_mesh(4), cp_mesh(8), cp_mesh(2), cp_mesh(6)
        ((2, 2), (2, 4), None, (2, 3))
    """
    return (2, P // 2) if P >= 4 and P % 2 == 0 else None


def cp_strategies_at(P: int, heads: int, strategies: list[str] | tuple[str, ...]) -> list[str]:
    """Which of ``strategies`` run on ``P`` ranks: Ulysses needs ``P | heads``; USP a :func:`cp_mesh`.

    Example:
        >>> cp_strategies_at(4, 4, CP_STRATEGIES), cp_strategies_at(2, 4, CP_STRATEGIES)
        (['ring', 'ulysses', 'usp'], ['ring', 'ulysses'])
        >>> cp_strategies_at(4, 2, CP_STRATEGIES)  # 2 heads cannot be split over 4 ranks
        ['ring', 'usp']
    """
    mesh = cp_mesh(P)
    run = []
    for name in strategies:
        if name == "ring" or (name == "ulysses" and heads % P == 0) or (
                name == "usp" and mesh is not None and heads % mesh[0] == 0):
            run.append(name)
    return run


def _cp_setup(name: str, cfg: dict[str, Any], rank: int, P: int) -> tuple[Any, ...]:
    """This rank's float32 shards of the comparison's q, k, v and output gradient, and its call."""
    q, k, v = strategy_problem(cfg, torch.float32)
    d_out = torch.randn(q.shape, generator=torch.Generator().manual_seed(cfg.get("seed", 0) + 1))
    if name == "usp":
        mesh = current_mesh()
        pieces = [shard_2d(x, rank, mesh.ulysses_size, mesh.ring_size, layout=cfg["layout"])
                  for x in (q, k, v, d_out)]
    else:
        pieces = [shard(x, rank, P, layout=cfg["layout"]) for x in (q, k, v, d_out)]
    fn = {"ring": ring_attention, "ulysses": ulysses_attention, "usp": usp_attention}[name]
    opts = {"causal": cfg["causal"], "layout": cfg["layout"],
            "enable_gqa": cfg["kv_heads"] != cfg["heads"]}

    def call(qq: Any, kk: Any, vv: Any, stats: dict | None = None) -> Any:
        return fn(qq, kk, vv, stats=stats, **opts)

    return (*pieces, call)


def _cp_fwd_bwd(q: Any, k: Any, v: Any, d_out: Any, call: Any, stats: dict | None = None) -> None:
    qq, kk, vv = (x.clone().requires_grad_(True) for x in (q, k, v))
    torch.autograd.grad(call(qq, kk, vv, stats), (qq, kk, vv), d_out)


def _cp_measure(name: str, cfg: dict[str, Any], rank: int, P: int, repeats: int) -> dict[str, Any]:
    """One strategy on this rank: the fastest forward and forward+backward, and their bytes sent."""
    q, k, v, d_out, call = _cp_setup(name, cfg, rank, P)

    def fwd(stats: dict) -> None:
        call(q, k, v, stats)

    def fwd_bwd(stats: dict) -> None:
        _cp_fwd_bwd(q, k, v, d_out, call, stats)

    timings, sent = {}, {}
    for label, fn in (("forward", fwd), ("forward_backward", fwd_bwd)):
        calls: list[tuple[float, dict[str, float]]] = []

        def once(fn: Any = fn, calls: list = calls) -> None:
            stats: dict[str, float] = {}
            start = time.perf_counter()
            fn(stats)
            calls.append((time.perf_counter() - start, stats))

        time_calls(once, repeats, before=dist.barrier)
        best = min(calls[1:], key=lambda c: c[0])
        timings[label], sent[label] = best[0], int(best[1].get("bytes_sent", 0))
    return {**cfg, "strategy": name, "P": P, "mesh": cp_mesh(P) if name == "usp" else None,
            "rank": rank, "L_r": int(q.shape[-2]),
            "forward_ms": 1e3 * timings["forward"],
            "forward_backward_ms": 1e3 * timings["forward_backward"],
            "forward_bytes_sent": sent["forward"], "fwd_bwd_bytes_sent": sent["forward_backward"]}


def cp_bench_rank(rank: int, world_size: int, cfg: dict[str, Any], strategies: list[str],
                  repeats: int) -> list[dict[str, Any]]:
    """Run on every rank: time each strategy on the same problem; this rank's rows.

    Per strategy: the fastest forward and forward+backward after a warm-up (the
    ranks started together by a barrier) and the bytes this rank sent in each of
    those calls. USP needs the launch's mesh (:func:`cp_mesh`).
    """
    return [_cp_measure(name, cfg, rank, world_size, repeats) for name in strategies]


def _cp_memory(name: str, cfg: dict[str, Any], rank: int, P: int) -> float | None:
    """MiB by which this rank's resident set peaked during one forward+backward of ``name``."""
    q, k, v, d_out, call = _cp_setup(name, cfg, rank, P)

    def fwd_bwd() -> None:
        _cp_fwd_bwd(q, k, v, d_out, call)

    fwd_bwd()  # warm-up: the groups' buffers exist now
    dist.barrier()
    grown = peak_memory(fwd_bwd, "rss")
    dist.barrier()
    return None if grown is None else grown / 2**20


def cp_memory_rank(rank: int, world_size: int, cfg: dict[str, Any],
                   strategies: list[str]) -> list[float | None]:
    """Run on every rank of a fresh group: each strategy's peak memory of one forward+backward (MiB)."""
    if not _map_large_allocations():
        return [None for _ in strategies]
    return [_cp_memory(name, cfg, rank, world_size) for name in strategies]


def cp_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The strategy comparison: for each P, one timed launch and one memory launch, all strategies."""
    cfg = {"n": args.n, "batch": args.batch, "heads": args.cp_heads, "kv_heads": args.cp_kv_heads,
           "dim": args.dim, "causal": True, "layout": "zigzag", "seed": 0}
    rows = []
    for P in args.nprocs:
        names = cp_strategies_at(P, args.cp_heads, args.strategies)
        if not names:
            continue
        mesh = cp_mesh(P) if "usp" in names else None
        timed = launch(cp_bench_rank, P, cfg, names, args.repeats, timeout=3600,
                       collective_timeout=600, mesh=mesh)
        peaks = launch(cp_memory_rank, P, cfg, names, timeout=3600, collective_timeout=600, mesh=mesh)
        for per_rank, mem in zip(timed, peaks, strict=True):
            for row, peak in zip(per_rank, mem, strict=True):
                row["fwd_bwd_peak_rss_growth_mib"] = peak
            rows.extend(per_rank)
    rows.sort(key=lambda r: (r["P"], CP_STRATEGIES.index(r["strategy"]), r["rank"]))
    return rows


def check(args: argparse.Namespace) -> None:
    """What only this benchmark checks: the comparison's heads (``--cp-kv-heads`` divides ``--cp-heads``)."""
    if args.cp_heads % args.cp_kv_heads:
        raise ValueError(f"--cp-kv-heads must divide --cp-heads; got {args.cp_kv_heads} and "
                         f"{args.cp_heads}")
