"""Ring attention across the ranks of a ``torch.distributed`` group.

Each of the ``P`` ranks holds one shard of the queries, keys and values (made by
:func:`attnkit.distributed.shard`). The key/value blocks travel around the ring
``r -> r + 1``; at step ``t`` rank ``r`` holds the block of rank ``r - t`` and
attends its own queries to it, keeping a partial ``(out, lse)`` that
:func:`attnkit.serving.decoding.merge_partials` folds into the running result::

    step 0          step 1          step 2            (P = 3: after P steps every
    r0: K0 V0       r0: K2 V2       r0: K1 V1          query has seen every key)
    r1: K1 V1       r1: K0 V0       r1: K2 V2
    r2: K2 V2       r2: K1 V1       r2: K0 V0

The next block is posted (``dist.batch_isend_irecv``) before the current one is
computed, so communication overlaps compute where the backend allows. Three
pieces, as in ring-flash-attention: the communication object (:class:`RingComm`),
the per-block compute (the flash engine's forward with ``return_lse=True``; the
backward by :func:`block_backward`), the merge (the same as split-KV decoding).

The backward pass is a second trip around the ring: each rank keeps its queries,
output, ``lse`` and ``dout``; the key/value blocks travel again, each with the
``dK, dV`` accumulated so far for it, and after ``P`` steps every block's
gradient is back on its own rank.

Causal masks and the key-padding mask are applied from the *global* positions of
each block's rows and columns (whatever the layout), and every block is trimmed to
the rows and columns the causal mask leaves visible: a block the mask removes is
skipped, and under the zigzag layout every off-diagonal block costs half a block.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from ..core._arrays import work_dtype
from ..core._validate import CausalArg, array, check_attention_args, choice, real
from ..core.attention import group_heads
from ..core.masks import causal_offset
from ..engines import _online
from ..engines.flash_torch import backward as flash_backward
from ..engines.flash_torch import flash_attention_torch
from ..serving.decoding import merge_partials
from .layout import LAYOUTS, Layout, shard_positions

__all__ = ["RingComm", "all_gather_attention", "block_backward", "ring_attention"]


class RingComm:
    """Point-to-point exchange with the ring's neighbours: send to ``r + 1``, receive from ``r - 1``.

    Args:
        group: the process group (``None``: the default group).
        timeout: seconds to wait for a posted exchange (``None``: the group's timeout).
        stats: a dict to accumulate ``bytes_sent``, ``wait_s`` (seconds blocked in
            waits), ``compute_s`` and ``pairs`` (query-key pairs that the causal
            mask leaves in the blocks computed: the work) into.
    """

    def __init__(self, group: Any = None, timeout: float | None = None,
                 stats: dict[str, float] | None = None) -> None:
        self.group = group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)
        nxt, prv = (self.rank + 1) % self.world_size, (self.rank - 1) % self.world_size
        if group is None:
            self.next, self.prev = nxt, prv
        else:
            self.next, self.prev = dist.get_global_rank(group, nxt), dist.get_global_rank(group, prv)
        self.timeout = None if timeout is None else datetime.timedelta(seconds=timeout)
        self.stats = {} if stats is None else stats
        for key in ("bytes_sent", "wait_s", "compute_s", "pairs"):
            self.stats.setdefault(key, 0)

    def post(self, send: list[torch.Tensor], recv: list[torch.Tensor], tag: int = 0) -> list[Any]:
        """Post ``send`` to the next rank and ``recv`` (buffers) from the previous one.

        Exchanges in flight at the same time use different ``tag`` values.
        """
        ops = [dist.P2POp(dist.isend, t, self.next, self.group, tag) for t in send]
        ops += [dist.P2POp(dist.irecv, t, self.prev, self.group, tag) for t in recv]
        self.stats["bytes_sent"] += sum(t.numel() * t.element_size() for t in send)
        return dist.batch_isend_irecv(ops)

    def wait(self, reqs: list[Any]) -> None:
        """Wait for posted requests (raises when the timeout passes)."""
        start = time.perf_counter()
        for req in reqs:
            if self.timeout is None:
                req.wait()
            else:
                req.wait(self.timeout)
        self.stats["wait_s"] += time.perf_counter() - start

    def exchange(self, send: list[torch.Tensor], shapes: list[tuple[int, ...]] | None = None,
                 tag: int = 0) -> list[torch.Tensor]:
        """Send ``send`` on and return what the previous rank sent (of ``shapes``, default the same)."""
        shapes = [t.shape for t in send] if shapes is None else shapes
        recv = [t.new_empty(shape) for t, shape in zip(send, shapes, strict=True)]
        self.wait(self.post(send, recv, tag))
        return recv


@dataclass
class _Plan:
    """What every rank knows after the start-up exchange: shard lengths and positions."""

    rank: int
    world_size: int
    q_pos: np.ndarray  # global positions of this rank's queries
    k_pos: list[np.ndarray]  # global positions of each rank's keys
    offset: int | None  # causal: key j visible to query i iff j <= i + offset
    k_shapes: list[tuple[int, ...]]
    mask_shapes: list[tuple[int, ...]] | None

    def block(self, s: int, device: Any) -> tuple[Any, Any, Any, str | None] | None:
        """Rows, columns (index tensors), visibility and causal shape of block ``(this rank, s)``.

        ``None`` when the causal mask hides the whole block; visibility ``None`` when
        the trimmed block is fully visible. The last entry is ``"top-left"`` or
        ``"bottom-right"`` when the trimmed block's visibility is exactly that causal
        mask in the block's own coordinates (the diagonal blocks of both layouts,
        and P = 1), so that the flash engine can skip its masked tiles.
        """
        L, S = len(self.q_pos), len(self.k_pos[s])
        if L == 0 or S == 0:
            return None
        if self.offset is None:
            return None, None, None, None
        qp, kp, off = self.q_pos, self.k_pos[s], self.offset
        # Positions ascend within a shard, so the visible rows and columns are found in O(L + S).
        rows = np.flatnonzero(qp + off >= kp.min())  # queries that see at least one of these keys
        cols = np.flatnonzero(kp <= qp.max() + off)  # keys that at least one of these queries sees
        if rows.size == 0:
            return None
        qs, ks = qp[rows] + off, kp[cols]  # key j visible to query i iff ks[j] <= qs[i]
        to = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(device)  # noqa: E731
        r = None if rows.size == L else to(rows)
        c = None if cols.size == S else to(cols)
        if ks.max() <= qs.min():
            return r, c, None, None  # fully visible
        # Causal in the block's own coordinates (P = 1, the diagonal blocks of both layouts):
        # the flash engine then skips the masked tiles, and no (L, S) mask is built.
        if np.array_equal(ks, qs):
            return r, c, None, "top-left"
        extra = ks.size - qs.size
        if extra > 0 and np.array_equal(ks[extra:], qs):
            return r, c, None, "bottom-right"
        return r, c, to(ks[None, :] <= qs[:, None]), None


def _visible_pairs(plan: _Plan, s: int, rows: Any, cols: Any, vis: Any, kind: str | None) -> int:
    """Query-key pairs of block ``s`` that the causal mask leaves (the block's real work)."""
    if vis is not None:
        return int(vis.sum())
    L = len(plan.q_pos) if rows is None else rows.numel()
    S = len(plan.k_pos[s]) if cols is None else cols.numel()
    if kind is None:
        return L * S
    i = np.arange(L)
    return int(np.minimum(i + 1 + causal_offset(L, S, kind), S).clip(min=0).sum())


def _pick(x: torch.Tensor, idx: Any, dim: int) -> torch.Tensor:
    return x if idx is None else x.index_select(dim, idx)


def _block_mask(vis: Any, pad: Any, cols: Any) -> Any:
    """Boolean mask of one trimmed block: causal visibility AND the key-padding mask."""
    if pad is not None:
        pad = _pick(pad, cols, pad.ndim - 1).bool()
    if vis is None:
        return pad
    return vis if pad is None else (vis & pad)


def _around_the_ring(k: torch.Tensor, v: torch.Tensor, pad: Any, plan: _Plan,
                     comm: RingComm) -> Iterator[tuple[int, torch.Tensor, torch.Tensor, Any]]:
    """``(s, k_s, v_s, pad_s)`` at each of the P steps: the block of rank ``s = r - t``.

    The next block is posted to arrive from the previous rank before the caller
    computes with this one, and waited for when the caller asks for the next step
    (the forward and the backward ring travel the same way).
    """
    P, r = plan.world_size, plan.rank
    k_cur, v_cur, pad_cur = k, v, pad
    for t in range(P):
        s = (r - t) % P  # whose block this rank holds now
        reqs, nxt = [], None
        if t < P - 1:  # post the next block before computing this one
            src = (s - 1) % P
            nxt = [k.new_empty(plan.k_shapes[src][0]), v.new_empty(plan.k_shapes[src][1])]
            if pad is not None:
                nxt.append(pad.new_empty(plan.mask_shapes[src]))
            reqs = comm.post([x for x in (k_cur, v_cur, pad_cur) if x is not None], nxt)
        yield s, k_cur, v_cur, pad_cur
        if reqs:
            comm.wait(reqs)
            k_cur, v_cur = nxt[0], nxt[1]
            pad_cur = nxt[2] if pad is not None else None


def _forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pad: Any, plan: _Plan,
             scale: float, comm: RingComm) -> tuple[torch.Tensor, torch.Tensor]:
    """The forward ring: returns this rank's ``out (..., L, Ev)`` and ``lse (..., L)``."""
    out = lse = None
    for s, k_cur, v_cur, pad_cur in _around_the_ring(k, v, pad, plan, comm):
        blk = plan.block(s, q.device)
        start = time.perf_counter()
        if blk is not None:
            rows, cols, vis, kind = blk
            comm.stats["pairs"] += _visible_pairs(plan, s, rows, cols, vis, kind)
            q_b = _pick(q, rows, q.ndim - 2)
            k_b, v_b = _pick(k_cur, cols, k.ndim - 2), _pick(v_cur, cols, v.ndim - 2)
            # A causal-shaped block goes to the engine as causal (it skips masked tiles).
            mask = _block_mask(vis, pad_cur, cols)
            with torch.no_grad():
                o_b, lse_b = flash_attention_torch(q_b, k_b, v_b, mask=mask, scale=scale,
                                                   causal=kind or False, return_lse=True)
            o_b = o_b.to(lse_b.dtype)
            if rows is not None:  # scatter the trimmed rows into a full-height partial
                o_full = o_b.new_zeros((*o_b.shape[:-2], q.shape[-2], o_b.shape[-1]))
                lse_full = lse_b.new_full((*lse_b.shape[:-1], q.shape[-2]), float("-inf"))
                o_b = o_full.index_copy_(o_full.ndim - 2, rows, o_b)
                lse_b = lse_full.index_copy_(lse_full.ndim - 1, rows, lse_b)
            if out is None:
                out, lse = o_b, lse_b
            else:
                out, lse = merge_partials([out, o_b], [lse, lse_b])
        comm.stats["compute_s"] += time.perf_counter() - start
    if out is None:  # this rank's queries see no key at all
        work = work_dtype(q)
        batch = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
        out = q.new_zeros((*batch, q.shape[-2], v.shape[-1]), dtype=work)
        lse = q.new_full((*batch, q.shape[-2]), float("-inf"), dtype=work)
    return out, lse


def block_backward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Any, out: torch.Tensor,
                   lse: torch.Tensor, d_out: torch.Tensor, scale: float, block_k: int | None = None,
                   causal: str | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of one block of attention, given the *final* ``out`` and ``lse`` of its rows.

    The weights of the block are recomputed from the global ``lse``,
    ``P = exp(scores - lse)``, so the block's share of every gradient is exact
    even though the block saw only some of the keys (FlashAttention-2's backward)::

        D  = rowsum(dO * O)                 dV = P^T dO         dP = dO V^T
        dS = P * (dP - D)                   dQ = dS K * scale   dK = dS^T Q * scale

    It is the flash engine's backward (:func:`attnkit.engines.flash_torch.backward`),
    tiled over blocks of queries and of keys, so its working memory is a few tiles
    whatever the block's size.

    Shapes: ``q (..., L, E)``, ``k (..., S, E)``, ``v (..., S, Ev)``, ``mask``
    boolean broadcastable to ``(..., L, S)`` or ``None``, ``out, d_out (..., L, Ev)``,
    ``lse (..., L)`` (``-inf``: a row with no visible key at all). ``causal``
    (``None``, ``"top-left"``, ``"bottom-right"``) adds a causal mask in the block's
    own coordinates, and tiles that it hides entirely are skipped. ``block_k``: keys
    per tile (default: the flash engine's). Returns ``(dq, dk, dv)`` shaped as
    ``q, k, v`` (summed over broadcast dimensions).
    """
    spec = check_attention_args(q, k, v, mask=mask, causal=causal or False, scale=scale)
    block_q, block_k = _online.call_blocks(spec, None, block_k, "torch")
    dq, dk, dv = flash_backward(q, k, v, mask, out, lse, d_out, spec, block_q, block_k)
    return dq.sum_to_size(q.shape), dk.sum_to_size(k.shape), dv.sum_to_size(v.shape)


def _backward(q, k, v, pad, out, lse, d_out, plan: _Plan, scale: float, comm: RingComm):
    """The backward ring: K/V travel again, each with its running dK, dV."""
    P = plan.world_size
    dq = torch.zeros_like(q)
    dk_acc, dv_acc = torch.zeros_like(k), torch.zeros_like(v)
    for s, k_cur, v_cur, pad_cur in _around_the_ring(k, v, pad, plan, comm):
        blk = plan.block(s, q.device)
        start = time.perf_counter()
        if blk is not None:
            rows, cols, vis, kind = blk
            comm.stats["pairs"] += _visible_pairs(plan, s, rows, cols, vis, kind)
            qd = q.ndim - 2
            dq_b, dk_b, dv_b = block_backward(
                _pick(q, rows, qd), _pick(k_cur, cols, k.ndim - 2), _pick(v_cur, cols, v.ndim - 2),
                _block_mask(vis, pad_cur, cols), _pick(out, rows, qd), _pick(lse, rows, lse.ndim - 1),
                _pick(d_out, rows, qd), scale, causal=kind)
            if rows is None:
                dq += dq_b
            else:
                dq.index_add_(qd, rows, dq_b)
            if cols is None:
                dk_acc += dk_b
                dv_acc += dv_b
            else:
                dk_acc.index_add_(k.ndim - 2, cols, dk_b)
                dv_acc.index_add_(v.ndim - 2, cols, dv_b)
        comm.stats["compute_s"] += time.perf_counter() - start
        if P > 1:  # the gradients of block s travel on with it; those of block s - 1 arrive
            dk_acc, dv_acc = comm.exchange([dk_acc, dv_acc], list(plan.k_shapes[(s - 1) % P]), tag=1)
    return dq, dk_acc, dv_acc  # after P hand-overs each rank holds its own blocks' gradients


class RingAttentionFunction(torch.autograd.Function):
    """Ring forward that saves ``out`` and ``lse``; ring backward (dK/dV travel with K/V)."""

    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pad: Any,
                plan: _Plan, scale: float, comm: RingComm) -> torch.Tensor:
        work = work_dtype(q)
        qw, kw, vw = (x.detach().to(work) for x in (q, k, v))
        out, lse = _forward(qw, kw, vw, pad, plan, scale, comm)
        ctx.save_for_backward(qw, kw, vw, out, lse)
        ctx.pad, ctx.plan, ctx.scale, ctx.comm = pad, plan, scale, comm
        ctx.inputs = [(x.shape, x.dtype) for x in (q, k, v)]
        return out.to(q.dtype)

    @staticmethod
    def backward(ctx: Any, d_out: torch.Tensor) -> tuple[Any, ...]:
        qw, kw, vw, out, lse = ctx.saved_tensors
        dq, dk, dv = _backward(qw, kw, vw, ctx.pad, out, lse, d_out.to(out.dtype).contiguous(),
                               ctx.plan, ctx.scale, ctx.comm)
        grads = [g.sum_to_size(shape).to(dtype)
                 for g, (shape, dtype) in zip((dq, dk, dv), ctx.inputs, strict=True)]
        return (*grads, None, None, None, None)


def _gather_lengths(L: int, S: int, device: Any, group: Any) -> list[tuple[int, int]]:
    mine = torch.tensor([L, S], dtype=torch.int64, device=device)
    every = [torch.empty_like(mine) for _ in range(dist.get_world_size(group))]
    dist.all_gather(every, mine, group=group)
    return [(int(t[0]), int(t[1])) for t in every]


def ring_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: CausalArg = False,
    scale: float | None = None,
    layout: Layout = "contiguous",
    group: Any = None,
    mask: torch.Tensor | None = None,
    enable_gqa: bool = False,
    timeout: float | None = None,
    stats: dict[str, float] | None = None,
) -> torch.Tensor:
    """Sequence-parallel attention: this rank's shard of ``attention(q, k, v)`` over the group.

    Call it on every rank of an initialised ``torch.distributed`` group with that
    rank's shards (``shard(x, rank, P, layout=layout)``); it returns this rank's
    shard of the output, and ``unshard`` of all ranks' outputs equals
    ``attnkit.attention(q, k, v, causal=causal, scale=scale, mask=mask)`` on the full
    tensors. Differentiable: the backward runs a second ring.

    Shapes (this rank's shards; ``L_r``, ``S_r`` may differ between ranks)::

        q     (..., Hq, L_r, E)   or (..., L_r, E)
        k     (..., Hkv, S_r, E)  Hkv = Hq, or a divisor of it with enable_gqa=True
        v     (..., Hkv, S_r, Ev)
        mask  (..., 1, S_r)       boolean key-padding mask, sharded along dim=-1
        out   (..., Hq, L_r, Ev)

    Args:
        q, k, v: torch tensors of one floating dtype on this rank's device (CPU
            for gloo, this rank's GPU for NCCL).
        causal: ``False``, ``True``/``"top-left"`` or ``"bottom-right"``, with respect
            to the *full* lengths (as :func:`attnkit.attention` on the full tensors).
        scale: factor on ``q @ k^T``; default ``1 / sqrt(E)``.
        layout: ``"contiguous"`` or ``"zigzag"``, as the shards were made.
        group: the process group (``None``: the default group).
        mask: a boolean key-padding mask (``True`` = the key takes part) whose
            query axis has size 1; it travels around the ring with its keys.
        enable_gqa: allow ``Hkv < Hq`` (consecutive groups of ``Hq / Hkv`` query
            heads share one key/value head, as PyTorch's ``enable_gqa``); only the
            ``Hkv`` heads travel.
        timeout: seconds to wait for each exchange (default: the group's timeout).
        stats: a dict that the forward (and later the backward) pass adds this
            rank's ``bytes_sent``, ``wait_s``, ``compute_s`` and ``pairs`` (query-key
            pairs that the causal mask leaves: the work) to.

    Returns:
        This rank's output shard, dtype of ``q`` (half precision computed in float32).

    Raises:
        RuntimeError: ``torch.distributed`` not initialised; a peer that does not
            answer within the timeout.
        TypeError, ValueError: bad shards (as :func:`attnkit.attention`), an
            unknown layout, a mask that is not a boolean key-padding mask, heads
            that do not divide.

    Example (on each of P ranks, e.g. inside :func:`attnkit.distributed.launch`)::

        r, P = dist.get_rank(), dist.get_world_size()
        out_r = ring_attention(*(shard(x, r, P) for x in (q, k, v)), causal=True)
    """
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("ring_attention needs an initialised torch.distributed process group "
                           "(use attnkit.distributed.launch, or dist.init_process_group)")
    layout = choice("layout", layout, LAYOUTS)
    for name, x in (("q", q), ("k", k), ("v", v)):
        array(name, x, "torch")
    if mask is not None:
        array("mask", mask, "torch")
        if mask.dtype != torch.bool:
            raise TypeError(f"mask must be a boolean torch.Tensor (a key-padding mask); got {mask.dtype}")
        if mask.ndim < 2 or mask.shape[-2] != 1 or mask.shape[-1] != k.shape[-2]:
            raise ValueError(
                "ring_attention takes a key-padding mask of shape (..., 1, S_r) (this rank's keys, "
                f"query axis of size 1); got mask {tuple(mask.shape)} for k {tuple(k.shape)}")
    spec = check_attention_args(q, k, v, mask=mask, causal=causal, scale=scale,
                                enable_gqa=enable_gqa)
    timeout = None if timeout is None else real("timeout", timeout, positive=True)
    q_v, k_v, v_v, pad = q, k, v, mask
    if spec.groups > 1:  # q (..., Hkv, g, L, E) against k (..., Hkv, 1, S, E): no copies of K/V
        q_v, k_v, v_v, pad, _ = group_heads(q, k, v, mask, spec)
    if pad is not None:
        pad = pad.to(device=q.device, dtype=torch.uint8).contiguous()  # bool does not travel on gloo

    if stats is not None and not isinstance(stats, dict):
        raise TypeError(f"stats must be a dict or None; got {type(stats).__name__}")
    comm = RingComm(group, timeout, stats)
    lengths = _gather_lengths(spec.L, spec.S, q.device, group)
    n_q, n_k = sum(a for a, _ in lengths), sum(b for _, b in lengths)
    P, r = comm.world_size, comm.rank
    q_pos = shard_positions(n_q, r, P, layout=layout)
    k_pos = [shard_positions(n_k, s, P, layout=layout) for s in range(P)]
    if [len(p) for p in k_pos] != [b for _, b in lengths] or len(q_pos) != spec.L:
        raise ValueError(
            f"the ranks' shard lengths (L_r, S_r) = {lengths} are not a {layout} split of "
            f"L = {n_q}, S = {n_k} over {P} ranks; make the shards with shard(x, rank, {P}, "
            f"layout={layout!r})")
    k_shapes = [((*k_v.shape[:-2], S_s, k_v.shape[-1]), (*v_v.shape[:-2], S_s, v_v.shape[-1]))
                for _, S_s in lengths]
    plan = _Plan(
        rank=r, world_size=P, q_pos=q_pos, k_pos=k_pos,
        offset=None if spec.causal is None else causal_offset(n_q, n_k, spec.causal),
        k_shapes=k_shapes,
        mask_shapes=None if pad is None else [(*pad.shape[:-1], S_s) for _, S_s in lengths],
    )
    out = RingAttentionFunction.apply(q_v, k_v.contiguous(), v_v.contiguous(), pad, plan,
                                      spec.scale, comm)
    return out.flatten(-4, -3) if spec.groups > 1 else out


def all_gather_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: CausalArg = False,
    scale: float | None = None,
    layout: Layout = "contiguous",
    group: Any = None,
) -> torch.Tensor:
    """Context parallelism by all-gather: every rank collects all keys and values, then attends.

    The comparison strategy (the Llama 3 report's context parallelism): one
    collective brings the full ``K, V`` to every rank (``(P - 1) / P`` of them
    received per rank, and memory for all of them), then each rank computes its
    own queries' rows with the flash engine. Shapes and arguments as
    :func:`ring_attention` (no mask, no GQA). Forward only (no gradient).
    """
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("all_gather_attention needs an initialised torch.distributed process group")
    layout = choice("layout", layout, LAYOUTS)
    spec = check_attention_args(q, k, v, causal=causal, scale=scale)
    alignment = spec.causal
    P, r = dist.get_world_size(group), dist.get_rank(group)
    lengths = _gather_lengths(spec.L, spec.S, q.device, group)
    n_q, n_k = sum(a for a, _ in lengths), sum(b for _, b in lengths)
    ks = [k.new_empty((*k.shape[:-2], S_s, k.shape[-1])) for _, S_s in lengths]
    vs = [v.new_empty((*v.shape[:-2], S_s, v.shape[-1])) for _, S_s in lengths]
    if len({S_s for _, S_s in lengths}) == 1:
        dist.all_gather(ks, k.contiguous(), group=group)
        dist.all_gather(vs, v.contiguous(), group=group)
    else:  # gloo's all_gather wants equal sizes: broadcast each rank's block instead
        for s in range(P):
            src = s if group is None else dist.get_global_rank(group, s)
            if s == r:
                ks[s].copy_(k)
                vs[s].copy_(v)
            dist.broadcast(ks[s], src, group=group)
            dist.broadcast(vs[s], src, group=group)
    k_all, v_all = torch.cat(ks, dim=-2), torch.cat(vs, dim=-2)  # in rank order
    k_pos = np.concatenate([shard_positions(n_k, s, P, layout=layout) for s in range(P)])
    mask = None
    if alignment is not None:
        q_pos = shard_positions(n_q, r, P, layout=layout)
        vis = k_pos[None, :] <= q_pos[:, None] + causal_offset(n_q, n_k, alignment)
        mask = torch.from_numpy(vis).to(q.device)
    with torch.no_grad():
        return flash_attention_torch(q, k_all, v_all, mask=mask, scale=spec.scale)
