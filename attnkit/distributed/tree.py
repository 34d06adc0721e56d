"""Decoding against a KV cache sharded over ranks: tree attention (Shyam et al., 2024).

At decoding time the cache of a long sequence may not fit one device. Each of
``P`` ranks keeps a slice of it (any cut: contiguous, striped, pages); the new
query is broadcast; each rank attends to its own slice, giving a partial
``(out_r, lse_r)``; and the partials merge *exactly*, as in split-KV decoding
(:func:`attnkit.serving.decoding.merge_partials`), but across ranks, by two
all-reduces::

    m     = max_r lse_r                                  all-reduce MAX   (..., L)
    w_r   = exp(lse_r - m)
    [num, z] = sum_r [w_r * out_r, w_r]                  all-reduce SUM   (..., L, Ev + 1)
    out   = num / z,      lse = m + log z

Each rank sends ``O(L (Ev + 1))`` numbers per step, independent of the cache
length ``S`` (a ring or an all-gather of the cache would move ``O(S E)``), and an
all-reduce runs as a tree or ring in ``O(log P)`` or ``O(P)`` steps: the name.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from ..core._validate import array, check_attention_args, integer
from ..serving.decoding import partial_attention
from ._group import agree, global_rank, require_group, shapes_but, timeout_delta, wait

__all__ = ["all_reduce_partials", "sharded_decode_attention"]


def all_reduce_partials(out: torch.Tensor, lse: torch.Tensor, *, group: Any = None,
                        timeout: float | None = None,
                        stats: dict[str, float] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge every rank's partial ``(out, lse)`` into the attention over all their keys.

    The all-reduce form of :func:`attnkit.serving.decoding.merge_partials`: the
    sum over chunks is taken across the ranks of ``group`` by one all-reduce of
    the maximum and one of the weighted sums (numerator and denominator travel
    together). Every rank gets the same result. A rank whose slice gives a query
    no visible key contributes ``lse = -inf`` (weight 0); a query that no rank's
    keys reach gets a zero output and ``lse = -inf``. Forward only (decoding):
    ``dist.all_reduce`` carries no gradient.

    Shapes::

        out  (..., L, Ev)   this rank's partial output      -> merged (..., L, Ev)
        lse  (..., L)       its log-sum-exp (natural log)   -> merged (..., L)

    Raises:
        RuntimeError: no initialised process group; a peer that does not answer in time.
        TypeError, ValueError: ``lse`` whose shape is not ``out.shape[:-1]``.

    Example (on each rank): ``out, lse = all_reduce_partials(*partial_attention(q, k_r, v_r))``.
    """
    require_group("all_reduce_partials", group)
    array("out", out, "torch")
    array("lse", lse, "torch")
    if tuple(lse.shape) != tuple(out.shape[:-1]):
        raise ValueError(f"lse must have shape out.shape[:-1]; got out {tuple(out.shape)} and lse "
                         f"{tuple(lse.shape)}")
    delta = timeout_delta(timeout)
    with torch.no_grad():
        work = lse.dtype
        m = lse.to(work).clone()
        wait([dist.all_reduce(m, op=dist.ReduceOp.MAX, group=group, async_op=True)], delta, stats)
        m_safe = torch.where(torch.isfinite(m), m, torch.zeros_like(m))  # every rank empty: m = -inf
        w = torch.exp(lse.to(work) - m_safe)  # (..., L): this rank's mass relative to the largest
        both = torch.cat([out.to(work) * w[..., None], w[..., None]], dim=-1)  # (..., L, Ev + 1)
        wait([dist.all_reduce(both, op=dist.ReduceOp.SUM, group=group, async_op=True)], delta, stats)
        if stats is not None and dist.get_world_size(group) > 1:  # a group of one sends nothing
            stats["bytes_sent"] = stats.get("bytes_sent", 0) + (m.numel() + both.numel()) * m.element_size()
        num, z = both[..., :-1], both[..., -1]
        alive = z > 0
        merged = num / torch.where(alive, z, torch.ones_like(z))[..., None]
        merged_lse = torch.where(alive, m_safe + torch.log(torch.where(alive, z, torch.ones_like(z))),
                                 torch.full_like(z, float("-inf")))
    return merged.to(out.dtype), merged_lse.to(lse.dtype)


def sharded_decode_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    scale: float | None = None,
    src: int | None = 0,
    group: Any = None,
    return_lse: bool = False,
    timeout: float | None = None,
    stats: dict[str, float] | None = None,
) -> Any:
    """Attention of new queries over a KV cache whose slices live on different ranks.

    Every rank calls it with its own slice ``k, v`` of the cache; ``q`` is
    broadcast from rank ``src`` of the group; each rank attends to its slice
    (:func:`attnkit.serving.decoding.partial_attention`) and
    :func:`all_reduce_partials` merges the partials. Every rank returns the same
    result, equal to :func:`attnkit.attention` of ``q`` over the whole cache (the
    slices concatenated in any order; attention does not depend on the order of
    the keys). Forward only: decoding needs no gradient.

    Shapes::

        q     (..., L, E)     the new queries (decoding: L = 1, or a few when speculating);
                              on ranks other than src, a buffer of the same shape
        k     (..., S_r, E)   this rank's slice of the cache (S_r may be 0 and may differ)
        v     (..., S_r, Ev)
        mask  broadcastable to (..., L, S_r): which of this rank's keys each query sees
        out   (..., L, Ev)    lse (..., L)  (with return_lse=True)

    Args:
        q, k, v: torch tensors of one floating dtype.
        mask: boolean (``True`` = takes part) or floating, for this rank's slice
            (the new tokens' causal mask among themselves goes here).
        scale: factor on ``q @ k^T``; default ``1 / sqrt(E)``.
        src: the rank of the group that holds the queries (``None``: every rank
            already holds the same ``q``, nothing is broadcast).
        group: the process group (``None``: the default group).
        return_lse: also return the merged log-sum-exp.
        timeout: seconds each collective may wait (default: the group's timeout).
        stats: a dict that this rank's ``bytes_sent`` and ``wait_s`` are added to.

    Returns:
        ``out`` (dtype of ``q``), or ``(out, lse)``.

    Raises:
        RuntimeError: no initialised process group; a peer that does not answer in time.
        TypeError, ValueError: on every rank, before any data is exchanged: bad
            arguments (as :func:`attnkit.attention`), ``src`` outside the group, ranks
            that disagree on the shapes of ``q``, ``k`` and ``v`` (but ``S_r``), the
            dtype or ``src``.

    Example (on each rank, with its slice of the cache)::

        out = sharded_decode_attention(q_new, k_cache_r, v_cache_r)

    In one process, a group of one rank holding the whole cache:

        >>> import tempfile
        >>> from attnkit import attention
        >>> dist.init_process_group("gloo", init_method=f"file://{tempfile.mkdtemp()}/rendezvous",
        ...                         rank=0, world_size=1)
        >>> g = torch.Generator().manual_seed(0)
        >>> q, k = torch.randn(2, 1, 8, generator=g), torch.randn(2, 50, 8, generator=g)
        >>> out = sharded_decode_attention(q, k, k)
        >>> bool(torch.allclose(out, attention(q, k, k, backend="torch"), atol=1e-6))
        True
        >>> dist.destroy_process_group()
    """
    rank, P = require_group("sharded_decode_attention", group)
    delta = timeout_delta(timeout)

    def check() -> dict[str, Any]:
        for name, x in (("q", q), ("k", k), ("v", v)):
            array(name, x, "torch")
        spec = check_attention_args(q, k, v, mask=mask, scale=scale)
        if src is not None:
            integer("src", src, minimum=0, maximum=P - 1)
        if stats is not None and not isinstance(stats, dict):
            raise TypeError(f"stats must be a dict or None; got {type(stats).__name__}")
        return {"q": tuple(int(d) for d in q.shape), "k": shapes_but(k, -2), "v": shapes_but(v, -2),
                "dtype": str(q.dtype), "scale": spec.scale, "src": src}

    agree("sharded_decode_attention", group, check, same=("q", "k", "v", "dtype", "scale", "src"),
          timeout=delta)
    with torch.no_grad():
        if src is not None and P > 1:
            q = q.detach().contiguous().clone()
            wait([dist.broadcast(q, global_rank(group, src), group=group, async_op=True)], delta, stats)
            if stats is not None and rank == src:
                stats["bytes_sent"] = stats.get("bytes_sent", 0) + q.numel() * q.element_size()
        out, lse = partial_attention(q, k, v, mask=mask, scale=scale)
        out, lse = all_reduce_partials(out, lse, group=group, timeout=timeout, stats=stats)
    return (out, lse) if return_lse else out
