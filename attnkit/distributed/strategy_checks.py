"""Rank functions that check Ulysses, USP, tree decoding and tensor parallelism against one device.

Run by :func:`attnkit.distributed.launch` (they live in a module so that spawned
processes can import them). One launch of 4 processes with a 2 x 2 mesh checks
every strategy at every group size it needs: the sub-groups of 1, 2 and 3 ranks
are made inside the launch, so that start-ups (seconds each) stay few while the
checks (milliseconds each) are many. Each rank returns the largest error of its
shards against single-device attention in float64, and the messages of the
misuses it was made to commit.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from ..core.attention import attention
from ..models.layers import MultiHeadAttention
from ..serving.decoding import merge_partials, partial_attention
from .checks import CASE_DEFAULTS, _full_problem, _reference
from .layout import shard
from .mesh import current_mesh, shard_2d
from .tensor_parallel import TensorParallelAttention
from .tree import sharded_decode_attention
from .ulysses import HeadExchange, sequence_to_heads, ulysses_attention, usp_attention

__all__ = ["ULYSSES_CASES", "USP_CASES", "strategies_suite"]

#: Ulysses cases (each overrides :data:`attnkit.distributed.checks.CASE_DEFAULTS`; 4 heads).
ULYSSES_CASES: list[dict[str, Any]] = [
    {},
    {"causal": True},
    {"causal": True, "layout": "zigzag", "n_q": 13, "n_k": 13},
    {"causal": "bottom-right", "n_q": 7, "n_k": 13},
    {"causal": "bottom-right", "n_q": 13, "n_k": 7, "layout": "zigzag"},
    {"kv_heads": 2, "causal": True},  # GQA; with P = 4, H_kv < P: replicated
    {"kv_heads": 1, "n_q": 10, "n_k": 10, "exchange": "p2p"},  # MQA, point-to-point exchange
    {"causal": True, "n_q": 3, "n_k": 3, "scale": 0.7, "E": 5, "Ev": 3},  # fewer positions than ranks
]
#: USP cases on the 2 x 2 mesh.
USP_CASES: list[dict[str, Any]] = [
    {},
    {"causal": True, "layout": "zigzag", "n_q": 13, "n_k": 13},
    {"causal": "bottom-right", "n_q": 9, "n_k": 14},
    {"kv_heads": 1, "causal": True, "layout": "zigzag"},  # one K/V head, replicated for the Ulysses pair
    {"kv_heads": 2, "exchange": "p2p", "n_q": 6, "n_k": 6},
]


def _err(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got.detach().double() - want.detach().double()).abs().max()) if got.numel() else 0.0


def _case(case: dict[str, Any]) -> tuple[dict[str, Any], str]:
    c = {**CASE_DEFAULTS, "heads": 4, **{k: v for k, v in case.items() if k != "exchange"}}
    return c, case.get("exchange", "all_to_all")


def _check_cp(case: dict[str, Any], cut: Any, run: Any) -> dict[str, float]:
    """Outputs and gradients of a context-parallel strategy against one device, on this rank's shards."""
    c, _ = _case(case)
    full = _full_problem(c, torch.device("cpu"))
    mine = {n: cut(full[n], c) for n in ("q", "k", "v", "d_out")}
    q, k, v = (mine[n].clone().requires_grad_(True) for n in ("q", "k", "v"))
    out = run(q, k, v, c)
    grads = torch.autograd.grad(out, (q, k, v), mine["d_out"])
    ref = _reference(full, c, torch.float64, "torch")
    got = {"out": out.detach(), "dq": grads[0], "dk": grads[1], "dv": grads[2]}
    return {name: _err(val, cut(ref[name], c)) for name, val in got.items()}


def _ulysses_checks(group: Any) -> list[dict[str, Any]]:
    r, P = dist.get_rank(group), dist.get_world_size(group)
    results = []
    for case in ULYSSES_CASES:
        exchange = case.get("exchange", "all_to_all")

        def cut(x: torch.Tensor, c: dict[str, Any]) -> torch.Tensor:
            return shard(x, r, P, layout=c["layout"])

        def run(q: Any, k: Any, v: Any, c: dict[str, Any], exchange: str = exchange) -> Any:
            return ulysses_attention(q, k, v, causal=c["causal"], scale=c["scale"], layout=c["layout"],
                                     group=group, enable_gqa=c["kv_heads"] is not None,
                                     exchange=exchange, timeout=60)

        results.append({"P": P, "case": case, "errors": _check_cp(case, cut, run)})
    return results


def _usp_checks() -> list[dict[str, Any]]:
    mesh = current_mesh()
    r, pu, pr = dist.get_rank(), mesh.ulysses_size, mesh.ring_size
    results = []
    for case in USP_CASES:
        def cut(x: torch.Tensor, c: dict[str, Any]) -> torch.Tensor:
            return shard_2d(x, r, pu, pr, layout=c["layout"])

        def run(q: Any, k: Any, v: Any, c: dict[str, Any], case: dict[str, Any] = case) -> Any:
            return usp_attention(q, k, v, causal=c["causal"], scale=c["scale"], layout=c["layout"],
                                 enable_gqa=c["kv_heads"] is not None,
                                 exchange=case.get("exchange", "all_to_all"), timeout=60)

        results.append({"mesh": (pu, pr), "case": case, "errors": _check_cp(case, cut, run)})
    return results


def _tree_checks(group: Any) -> list[dict[str, Any]]:
    """Sharded-cache decoding against one device; the all-reduce merge against ``merge_partials``."""
    r, P = dist.get_rank(group), dist.get_world_size(group)
    results = []
    for S, L, masked in ((13, 1, False), (3, 3, True), (20, 2, True)):  # S = 3, P = 4: one empty slice
        g = torch.Generator().manual_seed(S)
        q = torch.randn(2, 3, L, 8, generator=g, dtype=torch.float64)
        k = torch.randn(2, 3, S, 8, generator=g, dtype=torch.float64)
        v = torch.randn(2, 3, S, 6, generator=g, dtype=torch.float64)
        mask = torch.rand(1, 3, L, S, generator=g) < 0.6 if masked else None  # some rows see nothing
        k_r, v_r = shard(k, r, P), shard(v, r, P)
        m_r = None if mask is None else shard(mask, r, P, dim=-1)
        q_in = q if r == 0 else torch.full_like(q, float("nan"))  # only the source holds the query
        stats: dict[str, float] = {}
        out, lse = sharded_decode_attention(q_in, k_r, v_r, mask=m_r, return_lse=True, timeout=60,
                                            group=group, stats=stats)
        ref = attention(q, k, v, mask=mask, backend="torch")
        _, ref_lse = partial_attention(q, k, v, mask=mask)
        # the same partials merged by the one-process primitive
        part = partial_attention(q, k_r, v_r, mask=m_r)
        outs = [torch.empty_like(part[0]) for _ in range(P)]
        lses = [torch.empty_like(part[1]) for _ in range(P)]
        dist.all_gather(outs, part[0], group=group)
        dist.all_gather(lses, part[1], group=group)
        merged, merged_lse = merge_partials(outs, lses)
        finite = torch.isfinite(ref_lse)
        results.append({
            "P": P, "group_rank": r, "S": S, "L": L, "S_r": int(k_r.shape[-2]),
            "errors": {"out": _err(out, ref),
                       "lse": _err(lse[finite], ref_lse[finite]),
                       "lse_inf_match": float(not torch.equal(torch.isfinite(lse), finite)),
                       "out_vs_merge_partials": _err(out, merged),
                       "lse_vs_merge_partials": _err(lse[finite], merged_lse[finite])},
            "bytes_sent": stats.get("bytes_sent", 0),
        })
    return results


def _tp_checks(group: Any) -> list[dict[str, Any]]:
    """Tensor-parallel attention against the full layer: output and every gradient."""
    P = dist.get_world_size(group)
    results = []
    layers = ((4, 4, False, True), (4, 2, True, False), (4, 1, False, "top-left"))
    for heads, kv_heads, rope, causal in layers:
        torch.manual_seed(heads * 10 + kv_heads)
        mha = MultiHeadAttention(16, heads, num_kv_heads=kv_heads, rope=rope).double()
        x = torch.randn(2, 7, 16, dtype=torch.float64)
        d_y = torch.randn(2, 7, 16, dtype=torch.float64)
        x_full = x.clone().requires_grad_(True)
        y_full = mha(x_full, causal=causal)
        y_full.backward(d_y)
        tp = TensorParallelAttention.from_module(mha, group=group, timeout=60)
        x_tp = x.clone().requires_grad_(True)
        y = tp(x_tp, causal=causal)
        y.backward(d_y)
        errors = {"out": _err(y, y_full), "dx": _err(x_tp.grad, x_full.grad),
                  "d_out_bias": _err(tp.out_bias.grad, mha.out_proj.bias.grad)}
        Dh = tp.head_dim
        # every rank's weight gradients placed in full-size tensors and summed over the group:
        # split heads fill their own rows; replicated key/value heads add their partial gradients
        for name, rows, dim in (("q_proj", tp.heads, 0), ("k_proj", tp.kv_heads, 0),
                                ("v_proj", tp.kv_heads, 0), ("out_proj", tp.heads, 1)):
            full_grad = getattr(mha, name).weight.grad
            mine = torch.zeros_like(full_grad)
            sl = slice(rows.start * Dh, rows.stop * Dh)
            local = getattr(tp, name).weight.grad
            if dim == 0:
                mine[sl] = local
            else:
                mine[:, sl] = local
            dist.all_reduce(mine, group=group)
            errors[f"d{name}"] = _err(mine, full_grad)
        results.append({"P": P, "heads": heads, "kv_heads": kv_heads, "errors": errors,
                        "weights_fraction": sum(p.numel() for n, p in tp.named_parameters()
                                                if n != "out_bias")
                        / sum(p.numel() for n, p in mha.named_parameters() if n != "out_proj.bias")})
    return results


def _refusal(fn: Any) -> str:
    """The error ``fn()`` raises on this rank, as ``"TypeName: message"`` (``"no error"`` if none)."""
    try:
        fn()
    except (TypeError, ValueError, RuntimeError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return "no error"


def _misuse_checks(rank: int) -> dict[str, str]:
    """Misuses committed on purpose; every rank must raise, and the group stays usable after each."""
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, 4, 3, 8, generator=g, dtype=torch.float64)
    k = torch.randn(1, 4, 3, 8, generator=g, dtype=torch.float64)
    out = {}
    three = q[:, :3]  # 3 heads: 4 ranks cannot split them
    out["heads"] = _refusal(lambda: ulysses_attention(three, three, three, timeout=60))
    wide = torch.randn(1, 4, 3, 6, dtype=torch.float64)  # rank 1's keys are narrower than its queries
    out["mismatched"] = _refusal(lambda: ulysses_attention(q, wide if rank == 1 else k, k, timeout=60))
    other_batch = torch.randn(2, 4, 3, 8, dtype=torch.float64)  # rank 2 alone has a batch of 2
    out["disagree"] = _refusal(lambda: ulysses_attention(*([other_batch] * 3 if rank == 2 else [q, k, k]),
                                                         timeout=60))
    longer = torch.randn(1, 4, 5, 8, dtype=torch.float64)  # rank 0 holds 5 positions, the others 3
    out["split"] = _refusal(lambda: ulysses_attention(*([longer] * 3 if rank == 0 else [q, k, k]),
                                                      timeout=60))
    kv2 = k[:, :2]
    out["replicate"] = _refusal(lambda: ulysses_attention(q, kv2, kv2, enable_gqa=True, replicate_kv=False,
                                                          timeout=60))
    out["usp_pieces"] = _refusal(lambda: usp_attention(*([longer] * 3 if rank == 3 else [q, k, k]),
                                                       timeout=60))
    q1 = q[..., :1, :]
    out["decode_disagree"] = _refusal(lambda: sharded_decode_attention(q1 if rank else q, k, k, timeout=60))
    out["tp_heads"] = _refusal(lambda: TensorParallelAttention(12, 6, timeout=60))
    out["bad_exchange"] = _refusal(lambda: ulysses_attention(q, k, k, exchange="carrier pigeon", timeout=60))
    return out


def _stall(rank: int, seconds: float) -> dict[str, Any]:
    """Rank 3 never joins; ranks 0-2 must each give up after their own timeout, by themselves."""
    if rank == 3:
        time.sleep(seconds + 2)
        return {"stalled": True}
    x = torch.ones(1, 4, 2, 8)
    ex = HeadExchange(None, [2, 2, 2, 2], timeout=timedelta(seconds=seconds))
    start = time.monotonic()
    message = _refusal(lambda: sequence_to_heads(x, ex))
    return {"stalled": False, "message": message, "waited_s": time.monotonic() - start}


def strategies_suite(rank: int, world_size: int, stall_seconds: float = 2.0) -> dict[str, Any]:
    """Every strategy's checks on a launch of 4 ranks with a 2 x 2 mesh (``launch(..., mesh=(2, 2))``).

    Group sizes 1, 2 and 4 for Ulysses and tensor parallelism (1 to 4 for the
    sharded cache) come from sub-groups made here; USP uses the mesh. Returns
    this rank's results, then its misuse messages, then the stall check (last:
    a timed-out exchange leaves the group unusable).
    """
    if world_size != 4:
        raise ValueError(f"strategies_suite runs on 4 ranks; got world_size = {world_size}")
    mesh = current_mesh()
    singles = [dist.new_group([r]) for r in range(4)]  # every rank creates every group
    triple = dist.new_group([0, 1, 2])
    groups = {1: singles[rank], 2: mesh.ulysses_group, 4: None}
    result: dict[str, Any] = {"rank": rank, "ulysses": [], "tree": [], "tp": []}
    for P in (1, 2, 4):
        result["ulysses"] += _ulysses_checks(groups[P])
        result["tp"] += _tp_checks(groups[P])
        result["tree"] += _tree_checks(groups[P])
    if rank < 3:
        result["tree"] += _tree_checks(triple)
    dist.barrier()
    result["usp"] = _usp_checks()
    result["misuse"] = _misuse_checks(rank)
    dist.barrier()
    result["stall"] = _stall(rank, stall_seconds)
    return result
