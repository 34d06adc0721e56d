"""Rank functions for :func:`attnkit.distributed.launch`: equality checks and demos.

They live in a module (not in a notebook or a test file) so that spawned
processes can import them. Every rank builds the same full tensors from a seed,
runs the distributed engine on its shard, and compares its shard of the output
and of the gradients with single-device attention on the full tensors.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from .. import example
from ..core.attention import attention
from .launch import local_device
from .layout import shard, shard_positions
from .ring import RingComm, all_gather_attention, ring_attention

__all__ = ["CASE_DEFAULTS", "example_ring", "fail_on_rank", "ring_check", "ring_checks", "stall_on_rank",
           "suite", "suite_by_size"]

#: The defaults of one check case (each key can be overridden).
CASE_DEFAULTS: dict[str, Any] = {
    "n_q": 11, "n_k": 11, "batch": 2, "heads": 2, "kv_heads": None, "E": 8, "Ev": 6,
    "causal": False, "layout": "contiguous", "padding": False, "dtype": "float64",
    "scale": None, "seed": 0, "grad": True,
}


def _full_problem(c: dict[str, Any], device: Any) -> dict[str, torch.Tensor]:
    """The full q, k, v, output gradient and key-padding mask of a case (float64, CPU, seeded)."""
    g = torch.Generator().manual_seed(int(c["seed"]))
    hkv = c["heads"] if c["kv_heads"] is None else c["kv_heads"]
    B, n_q, n_k = c["batch"], c["n_q"], c["n_k"]
    full = {
        "q": torch.randn(B, c["heads"], n_q, c["E"], generator=g, dtype=torch.float64),
        "k": torch.randn(B, hkv, n_k, c["E"], generator=g, dtype=torch.float64),
        "v": torch.randn(B, hkv, n_k, c["Ev"], generator=g, dtype=torch.float64),
        "d_out": torch.randn(B, c["heads"], n_q, c["Ev"], generator=g, dtype=torch.float64),
    }
    if c["padding"]:  # sequence b keeps its first lengths[b] keys (the first one at least)
        lengths = torch.randint(1, n_k + 1, (B,), generator=g)
        full["mask"] = (torch.arange(n_k)[None, :] < lengths[:, None])[:, None, None, :]
    return {name: t.to(device) for name, t in full.items()}


def _reference(full: dict[str, torch.Tensor], c: dict[str, Any], dtype: torch.dtype,
               backend: str) -> dict[str, torch.Tensor]:
    """Single-device attention on the full tensors, and its gradients."""
    q, k, v = (full[n].to(dtype).clone().requires_grad_(True) for n in ("q", "k", "v"))
    g = q.shape[-3] // k.shape[-3]
    out = attention(q, k.repeat_interleave(g, dim=-3), v.repeat_interleave(g, dim=-3),
                    causal=c["causal"], scale=c["scale"], mask=full.get("mask"), backend=backend)
    result = {"out": out.detach()}
    if c["grad"]:
        dq, dk, dv = torch.autograd.grad(out, (q, k, v), full["d_out"].to(dtype))
        result.update(dq=dq, dk=dk, dv=dv)
    return result


def ring_check(rank: int, world_size: int, case: dict[str, Any], group: Any = None) -> dict[str, Any]:
    """One case on this rank: the largest error of its output (and gradient) shards.

    ``rank`` and ``world_size`` are this rank's place in ``group`` (``None``: the
    default group).

    Returns a dict with ``errors`` (against float64 single-device attention) and,
    for a float32 case, ``naive_errors`` (the plain float32 engine's error against
    the same reference), this rank's shard lengths ``L_r``, ``S_r``, and the
    query-key pairs its forward pass attended over (``pairs``) beside the number the
    causal mask leaves for its queries (``expected_pairs``).
    """
    c = {**CASE_DEFAULTS, **case}
    unknown = set(case) - set(CASE_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown case keys {sorted(unknown)}; known: {sorted(CASE_DEFAULTS)}")
    device = local_device()
    dtype = getattr(torch, c["dtype"])
    full = _full_problem(c, device)
    lay = c["layout"]
    mine = {n: shard(full[n], rank, world_size, layout=lay) for n in ("q", "k", "v", "d_out")}
    q, k, v = (mine[n].to(dtype).requires_grad_(True) for n in ("q", "k", "v"))
    mask = shard(full["mask"], rank, world_size, layout=lay, dim=-1) if "mask" in full else None
    stats: dict[str, float] = {}
    out = ring_attention(q, k, v, causal=c["causal"], scale=c["scale"], layout=lay, mask=mask,
                         enable_gqa=c["kv_heads"] is not None, stats=stats, group=group)
    pairs = int(stats["pairs"])  # the forward pass's work, before the backward adds to it
    q_pos = shard_positions(c["n_q"], rank, world_size, layout=lay)
    if c["causal"]:
        off = 0 if c["causal"] in (True, "top-left") else c["n_k"] - c["n_q"]
        expected_pairs = int(np.clip(q_pos + 1 + off, 0, c["n_k"]).sum())
    else:
        expected_pairs = len(q_pos) * c["n_k"]
    got = {"out": out.detach()}
    if c["grad"]:
        got.update(zip(("dq", "dk", "dv"), torch.autograd.grad(out, (q, k, v), mine["d_out"].to(dtype))))
    ref = _reference(full, c, torch.float64, "torch")

    def errors(values: dict[str, torch.Tensor], sharded: bool) -> dict[str, float]:
        res = {}
        for name, val in values.items():
            want = shard(ref[name], rank, world_size, layout=lay) if sharded else ref[name]
            res[name] = float((val.double() - want).abs().max()) if val.numel() else 0.0
        return res

    result: dict[str, Any] = {"rank": rank, "case": c, "errors": errors(got, True),
                              "L_r": int(q.shape[-2]), "S_r": int(k.shape[-2]),
                              "pairs": pairs, "expected_pairs": expected_pairs}
    if dtype != torch.float64:
        naive = _reference(full, c, dtype, "torch")
        result["naive_errors"] = errors(naive, False)
    return result


def ring_checks(rank: int, world_size: int, cases: list[dict[str, Any]],
                group: Any = None) -> list[dict[str, Any]]:
    """Many cases in one launch (spawning processes costs seconds; checks cost milliseconds)."""
    return [ring_check(rank, world_size, case, group) for case in cases]


def suite(rank: int, world_size: int, cases: list[dict[str, Any]], group: Any = None) -> dict[str, Any]:
    """All cases plus the shared example (causal, zigzag) in one launch."""
    return {"cases": ring_checks(rank, world_size, cases, group),
            "example": example_ring(rank, world_size, True, "zigzag", group)}


def suite_by_size(rank: int, world_size: int, cases: list[dict[str, Any]]) -> dict[int, Any]:
    """:func:`suite` on groups of ranks ``0 .. P-1`` for every ``P`` up to the world size, in one launch.

    One launch of 4 processes replaces four (start-ups cost seconds each); the
    ranks outside a group wait at a barrier while it runs. Returns ``{P: this
    rank's suite}`` for the groups this rank belongs to.
    """
    groups = {n: dist.new_group(list(range(n))) for n in range(1, world_size)}  # every rank makes each
    groups[world_size] = None
    result = {}
    for n, group in groups.items():
        if rank < n:
            result[n] = suite(rank, n, cases, group)
        dist.barrier()
    return result


def example_ring(rank: int, world_size: int, causal: bool = False,
                 layout: str = "contiguous", group: Any = None) -> dict[str, Any]:
    """The book's shared example across the ranks: this rank's shards and its output shard."""
    q, k, v = (torch.from_numpy(np.array(x)) for x in (example.Q, example.K, example.V))
    shards = [shard(x, rank, world_size, layout=layout) for x in (q, k, v)]
    out = ring_attention(*shards, causal=causal, layout=layout, group=group)
    gathered = all_gather_attention(*shards, causal=causal, layout=layout, group=group)
    return {"rank": rank, "q": shards[0], "out": out, "all_gather_out": gathered}


def fail_on_rank(rank: int, world_size: int, bad_rank: int) -> str:
    """Rank ``bad_rank`` raises; the others start ring attention and wait for it."""
    if rank == bad_rank:
        raise ValueError(f"rank {rank} fails on purpose")
    q = torch.ones(1, 4, 2, dtype=torch.float64)
    ring_attention(q, q, q)  # needs every rank: stuck until the launcher stops it
    return "finished"


def stall_on_rank(rank: int, world_size: int, slow_rank: int, seconds: float) -> str:
    """Rank ``slow_rank`` sleeps; the others' exchange must time out by itself."""
    if rank == slow_rank:
        time.sleep(seconds)
        return "slept"
    comm = RingComm(timeout=None)
    comm.exchange([torch.ones(3)])
    dist.barrier()
    return "exchanged"
