"""DeepSpeed-Ulysses: trade the sequence split for a head split by all-to-all, and back.

Each of ``P`` ranks holds a shard of the sequence for *every* head. One
all-to-all gives each rank the *whole* sequence for ``H / P`` of the heads;
attention is then an ordinary single-device call (any engine, any mask that
depends on positions, since every position is present); a second all-to-all
returns the output to sequence shards::

    before (P = 2, H = 4)            after the all-to-all          after attention, back
    r0: heads 0-3, positions 0-3     r0: heads 0-1, positions 0-7   r0: heads 0-3, positions 0-3
    r1: heads 0-3, positions 4-7     r1: heads 2-3, positions 0-7   r1: heads 0-3, positions 4-7

Each rank sends ``(P - 1) / P`` of its q, k, v and output shards: the volume per
rank falls as ``1 / P`` when ``P`` grows with the sequence, but ``P`` cannot
exceed the number of heads (each rank needs whole heads). With grouped-query
attention and fewer key/value heads than ranks, the key/value heads are
replicated until ``P`` divides them (more traffic for K/V), or refused.

:func:`usp_attention` combines it with ring attention (the 2-D "unified sequence
parallelism" of Fang and Zhao, 2024, and LoongTrain's head-context split):
Ulysses inside groups of ``P_ulysses`` ranks, the ring across ``P_ring`` of them.

The exchange is ``torch.distributed.all_to_all_single`` with split sizes (gloo
has it in the pinned torch, for unequal shards too); ``exchange="p2p"`` builds
the same exchange from batched point-to-point operations
(``dist.batch_isend_irecv``), for backends without an all-to-all. Both are
wrapped in ``torch.autograd.Function`` s: the all-to-all is a permutation of the
data across ranks, so its backward is the inverse exchange.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from ..core._validate import CausalArg, array, check_attention_args, choice, flag
from ..core.attention import attention
from ..core.registry import ENGINES
from ._group import agree, global_rank, require_group, shapes_but, timeout_delta, wait
from .layout import LAYOUTS, Layout, shard_positions, shard_sizes
from .mesh import Mesh, current_mesh
from .ring import ring_attention

__all__ = ["EXCHANGES", "HeadExchange", "heads_to_sequence", "kv_replication", "sequence_to_heads",
           "ulysses_attention",
           "usp_attention"]

#: How the all-to-all is carried out.
EXCHANGES: tuple[str, ...] = ("all_to_all", "p2p")


@dataclass
class HeadExchange:
    """The all-to-all of one group between sequence shards and head shards.

    Attributes:
        group: the process group (``None``: the default group).
        lengths: every rank's shard length along the sequence, in rank order.
        timeout: how long a posted exchange may wait, a ``datetime.timedelta`` (``None``: the
            group's timeout).
        method: ``"all_to_all"`` or ``"p2p"`` (batched point-to-point operations).
        stats: a dict that ``bytes_sent`` and ``wait_s`` are added to, or ``None``.
    """

    group: Any
    lengths: list[int]
    timeout: Any = None
    method: str = "all_to_all"
    stats: dict[str, float] | None = None

    def __post_init__(self) -> None:
        self.rank, self.world_size = dist.get_rank(self.group), dist.get_world_size(self.group)

    def exchange(self, send: list[torch.Tensor], recv_shapes: list[tuple[int, ...]]) -> list[torch.Tensor]:
        """Send ``send[j]`` to rank ``j``; return what each rank ``s`` sent here (of ``recv_shapes[s]``)."""
        like = send[0]
        if self.stats is not None:
            self.stats["bytes_sent"] = self.stats.get("bytes_sent", 0) + sum(
                t.numel() * t.element_size() for j, t in enumerate(send) if j != self.rank)
        if self.world_size == 1:
            return [send[0].contiguous().reshape(recv_shapes[0])]
        if self.method == "all_to_all":
            flat_in = torch.cat([t.reshape(-1) for t in send])
            out_sizes = [math.prod(s) for s in recv_shapes]
            flat_out = like.new_empty(sum(out_sizes))
            work = dist.all_to_all_single(flat_out, flat_in, out_sizes, [t.numel() for t in send],
                                          group=self.group, async_op=True)
            wait([work], self.timeout, self.stats)
            return [t.reshape(s) for t, s in zip(flat_out.split(out_sizes), recv_shapes, strict=True)]
        recv = [like.new_empty(s) for s in recv_shapes]
        recv[self.rank].copy_(send[self.rank])
        ops = []
        for j in range(self.world_size):
            if j != self.rank:
                peer = global_rank(self.group, j)
                ops.append(dist.P2POp(dist.isend, send[j].contiguous(), peer, self.group))
                ops.append(dist.P2POp(dist.irecv, recv[j], peer, self.group))
        wait(dist.batch_isend_irecv(ops), self.timeout, self.stats)
        return recv


def _seq_to_heads(x: torch.Tensor, ex: HeadExchange) -> torch.Tensor:
    """``(..., H, L_r, E)`` on each rank -> ``(..., H / P, L, E)``, the shards in rank order."""
    P, h = ex.world_size, x.shape[-3] // ex.world_size
    send = [x[..., j * h:(j + 1) * h, :, :] for j in range(P)]
    shapes = [(*x.shape[:-3], h, ex.lengths[s], x.shape[-1]) for s in range(P)]
    return torch.cat(ex.exchange(send, shapes), dim=-2)


def _heads_to_seq(y: torch.Tensor, ex: HeadExchange) -> torch.Tensor:
    """``(..., H / P, L, E)`` on each rank -> ``(..., H, L_r, E)``: the inverse of :func:`_seq_to_heads`."""
    P, h = ex.world_size, y.shape[-3]
    send = list(torch.split(y, ex.lengths, dim=-2))
    shapes = [(*y.shape[:-3], h, ex.lengths[ex.rank], y.shape[-1])] * P
    return torch.cat(ex.exchange(send, shapes), dim=-3)


class _SeqToHeads(torch.autograd.Function):
    """The all-to-all sequence shards -> head shards; its backward is the inverse exchange."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, ex: HeadExchange) -> torch.Tensor:
        ctx.ex = ex
        return _seq_to_heads(x, ex)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        return _heads_to_seq(grad.contiguous(), ctx.ex), None


class _HeadsToSeq(torch.autograd.Function):
    """The all-to-all head shards -> sequence shards; its backward is the inverse exchange."""

    @staticmethod
    def forward(ctx: Any, y: torch.Tensor, ex: HeadExchange) -> torch.Tensor:
        ctx.ex = ex
        return _heads_to_seq(y, ex)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        return _seq_to_heads(grad.contiguous(), ctx.ex), None


def sequence_to_heads(x: torch.Tensor, ex: HeadExchange) -> torch.Tensor:
    """All-to-all: this rank's sequence shard of every head -> the whole sequence of ``H / P`` heads.

    Shapes: ``x (..., H, L_r, E)`` -> ``(..., H / P, L, E)`` with ``L = sum(ex.lengths)``,
    the ranks' shards concatenated in rank order (rank ``j`` receives heads
    ``j H / P .. (j + 1) H / P - 1``). Differentiable (the backward is
    :func:`heads_to_sequence`). Call it on every rank of ``ex.group``.
    """
    return _SeqToHeads.apply(x.contiguous(), ex)


def heads_to_sequence(y: torch.Tensor, ex: HeadExchange) -> torch.Tensor:
    """All-to-all: the inverse of :func:`sequence_to_heads`.

    Shapes: ``y (..., H / P, L, E)`` -> ``(..., H, L_r, E)``. Differentiable.
    """
    return _HeadsToSeq.apply(y.contiguous(), ex)


def kv_replication(kv_heads: int, world_size: int) -> int:
    """How many copies of each key/value head make ``world_size`` divide their number.

    ``P / gcd(H_kv, P)``: 1 when ``P`` divides ``H_kv``; with fewer key/value heads
    than ranks, each rank needs a copy of the one its query heads use.

    Example:
        >>> kv_replication(8, 4), kv_replication(2, 4), kv_replication(1, 4), kv_replication(6, 4)
        (1, 2, 4, 2)
    """
    return world_size // math.gcd(kv_heads, world_size)


def _check_heads(caller: str, q: torch.Tensor, k: torch.Tensor, P: int, replicate_kv: bool,
                 what: str) -> int:
    """The replication of K/V heads that makes ``P`` divide them; raises when ``P`` does not divide ``Hq``."""
    if q.ndim < 3:
        raise ValueError(f"{caller} splits the heads: q must have a heads axis, (..., H, L_r, E); "
                         f"got q of shape {tuple(q.shape)}")
    hq, hkv = int(q.shape[-3]), int(k.shape[-3])
    if hq % P:
        raise ValueError(
            f"{caller} gives each of the {P} ranks of its {what} whole heads, so {what} size P = {P} "
            f"must divide the query heads; got Hq = {hq}. Use ring attention for the rest of the "
            f"split (usp_attention with a {what} size that divides {hq})")
    reps = kv_replication(hkv, P)
    if reps > 1 and not replicate_kv:
        raise ValueError(
            f"{caller}: the {hkv} key/value heads cannot be split over P = {P} ranks ({P} does not "
            f"divide {hkv}), and each rank needs the key/value heads of its query heads; pass "
            f"replicate_kv=True to send {reps} copies of each (more K/V traffic), or use a {what} "
            f"size that divides {hkv}")
    return reps


def _order(lengths: list[int], layout: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Index tensors from rank-order rows to position order and back (``None``: already in order)."""
    n, P = sum(lengths), len(lengths)
    pos = np.concatenate([shard_positions(n, s, P, layout=layout) for s in range(P)])
    if np.array_equal(pos, np.arange(n)):
        return None
    return torch.from_numpy(np.argsort(pos)), torch.from_numpy(pos)


def _check_split(caller: str, lengths: list[tuple[int, int]], layout: str, expected: Any) -> None:
    n_q, n_k = sum(a for a, _ in lengths), sum(b for _, b in lengths)
    want = list(zip(expected(n_q), expected(n_k), strict=True))
    if [tuple(x) for x in lengths] != want:
        raise ValueError(
            f"{caller}: the ranks' shard lengths (L_r, S_r) = {lengths} are not a {layout} split of "
            f"L = {n_q}, S = {n_k} (expected {want}); make the shards with the matching shard function")


def ulysses_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: CausalArg = False,
    scale: float | None = None,
    layout: Layout = "contiguous",
    group: Any = None,
    enable_gqa: bool = False,
    replicate_kv: bool = True,
    backend: str = "flash",
    exchange: str = "all_to_all",
    timeout: float | None = None,
    stats: dict[str, float] | None = None,
) -> torch.Tensor:
    """DeepSpeed-Ulysses: this rank's shard of ``attention(q, k, v)``, heads exchanged by all-to-all.

    Call it on every rank of the group with that rank's sequence shards
    (``shard(x, rank, P, layout=layout)``); ``unshard`` of the outputs equals
    :func:`attnkit.attention` on the full tensors. One all-to-all per input turns
    sequence shards into head shards of the whole sequence, ``attention`` runs
    on them (engine ``backend``), and one all-to-all returns the output.
    Differentiable: the backward runs the exchanges in reverse.

    Shapes (this rank's shards; ``L_r``, ``S_r`` may differ between ranks)::

        q    (..., Hq, L_r, E)     P must divide Hq
        k    (..., Hkv, S_r, E)    Hkv = Hq, or a divisor of it with enable_gqa=True
        v    (..., Hkv, S_r, Ev)
        out  (..., Hq, L_r, Ev)
        on each rank in between: (..., Hq / P, L, E) queries, (..., Hkv' / P, S, E) keys

    Args:
        q, k, v: torch tensors of one floating dtype on this rank's device.
        causal: ``False``, ``True``/``"top-left"`` or ``"bottom-right"``, for the
            full lengths (as :func:`attnkit.attention` on the full tensors).
        scale: factor on ``q @ k^T``; default ``1 / sqrt(E)``.
        layout: ``"contiguous"`` or ``"zigzag"``, as the shards were made.
        group: the process group (``None``: the default group).
        enable_gqa: allow ``Hkv < Hq`` (groups of ``Hq / Hkv`` query heads share a
            key/value head).
        replicate_kv: when ``P`` does not divide ``Hkv`` (e.g. ``Hkv < P``), send
            ``P / gcd(Hkv, P)`` copies of each key/value head so that every rank
            receives those of its query heads; ``False`` refuses instead.
        backend: the :func:`attnkit.attention` engine for the head-sharded call
            (one that carries gradients when the inputs require grad: ``"flash"``,
            ``"torch"``, ``"sdpa"``).
        exchange: ``"all_to_all"`` (``dist.all_to_all_single``) or ``"p2p"``
            (the same exchange from ``dist.batch_isend_irecv``).
        timeout: seconds each exchange may wait (default: the group's timeout).
        stats: a dict that this rank's ``bytes_sent`` and ``wait_s`` are added to.

    Returns:
        This rank's output shard, ``(..., Hq, L_r, Ev)``, dtype of ``q``.

    Raises:
        RuntimeError: no initialised process group; a peer that does not answer
            within the timeout.
        TypeError, ValueError: on every rank, before any data is exchanged: bad
            shards (as :func:`attnkit.attention`), ``P`` not dividing ``Hq``,
            key/value heads that need replication with ``replicate_kv=False``,
            ranks that disagree on shapes, dtype or options, shard lengths that
            are not a ``layout`` split, an unknown engine, layout or exchange.

    Example (on each of P ranks, e.g. inside :func:`attnkit.distributed.launch`)::

        r, P = dist.get_rank(), dist.get_world_size()
        out_r = ulysses_attention(*(shard(x, r, P) for x in (q, k, v)), causal=True)

    In one process, a group of one rank (each exchange then keeps everything):

        >>> import tempfile
        >>> from attnkit import attention
        >>> dist.init_process_group("gloo", init_method=f"file://{tempfile.mkdtemp()}/rendezvous",
        ...                         rank=0, world_size=1)
        >>> q = torch.randn(1, 4, 6, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        >>> out = ulysses_attention(q, q, q, causal=True)
        >>> bool(torch.allclose(out, attention(q, q, q, causal=True, backend="torch")))
        True
        >>> dist.destroy_process_group()
    """
    rank, P = require_group("ulysses_attention", group)
    delta = timeout_delta(timeout)
    holder: dict[str, Any] = {}

    def check() -> dict[str, Any]:
        for name, x in (("q", q), ("k", k), ("v", v)):
            array(name, x, "torch")
        choice("layout", layout, LAYOUTS)
        choice("backend", backend, sorted(ENGINES))
        choice("exchange", exchange, EXCHANGES)
        flag("replicate_kv", replicate_kv)
        spec = check_attention_args(q, k, v, causal=causal, scale=scale, enable_gqa=enable_gqa)
        holder["spec"] = spec
        holder["reps"] = _check_heads("ulysses_attention", q, k, P, replicate_kv, "group")
        if stats is not None and not isinstance(stats, dict):
            raise TypeError(f"stats must be a dict or None; got {type(stats).__name__}")
        return {"q": shapes_but(q, -2), "k": shapes_but(k, -2), "v": shapes_but(v, -2),
                "dtype": str(q.dtype), "causal": spec.causal, "scale": spec.scale, "layout": layout,
                "backend": backend, "exchange": exchange, "lengths": (spec.L, spec.S)}

    summaries = agree("ulysses_attention", group, check,
                      same=("q", "k", "v", "dtype", "causal", "scale", "layout", "backend", "exchange"),
                      timeout=delta)
    lengths = [s["lengths"] for s in summaries]
    _check_split("ulysses_attention", lengths, layout,
                 lambda n: shard_sizes(n, P, layout=layout))
    spec, reps = holder["spec"], holder["reps"]
    out = _ulysses(q, k, v, spec, reps, [a for a, _ in lengths], [b for _, b in lengths], layout,
                   group, delta, exchange, stats, backend)
    return out


def _ulysses(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec: Any, reps: int, q_lengths: list[int],
             k_lengths: list[int], layout: str, group: Any, delta: Any, exchange: str,
             stats: dict[str, float] | None, backend: str, attend: Any = None) -> torch.Tensor:
    """Exchange, attend (``attend(qh, kh, vh, groups)`` or ``attention``), exchange back."""
    if reps > 1:  # each key/value head reps times: then P divides them, and groups stay aligned
        k, v = k.repeat_interleave(reps, dim=-3), v.repeat_interleave(reps, dim=-3)
    ex_q = HeadExchange(group, q_lengths, delta, exchange, stats)
    ex_k = HeadExchange(group, k_lengths, delta, exchange, stats)
    qh, kh, vh = sequence_to_heads(q, ex_q), sequence_to_heads(k, ex_k), sequence_to_heads(v, ex_k)
    groups = qh.shape[-3] // kh.shape[-3]
    if attend is not None:
        oh = attend(qh, kh, vh, groups)
    else:
        q_order, k_order = _order(q_lengths, layout), _order(k_lengths, layout)
        if q_order is not None:  # rank order -> position order: masks see the true positions
            qh = qh.index_select(-2, q_order[0].to(qh.device))
        if k_order is not None:
            kh = kh.index_select(-2, k_order[0].to(kh.device))
            vh = vh.index_select(-2, k_order[0].to(vh.device))
        oh = attention(qh, kh, vh, causal=spec.causal or False, scale=spec.scale, backend=backend,
                       enable_gqa=groups > 1)
        if q_order is not None:  # and back to rank order
            oh = oh.index_select(-2, q_order[1].to(oh.device))
    return heads_to_sequence(oh, ex_q)


def usp_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    mesh: Mesh | None = None,
    causal: CausalArg = False,
    scale: float | None = None,
    layout: Layout = "contiguous",
    enable_gqa: bool = False,
    replicate_kv: bool = True,
    exchange: str = "all_to_all",
    timeout: float | None = None,
    stats: dict[str, float] | None = None,
) -> torch.Tensor:
    """2-D context parallelism (USP): Ulysses inside groups of ranks, ring attention across them.

    With ``P = P_ulysses x P_ring`` ranks (a :class:`~attnkit.distributed.mesh.Mesh`),
    each rank holds the piece ``shard_2d(x, rank, P_ulysses, P_ring, layout=layout)``
    of the sequence. The all-to-all of its Ulysses group gives it one whole ring
    shard for ``Hq / P_ulysses`` of the heads; :func:`ring_attention` across the
    ring group computes those heads' output for that shard; a second all-to-all
    returns this rank's piece for every head. The Ulysses traffic stays inside a
    group (the fast links); the ring's traffic is overlapped with compute.
    Differentiable (the ring's backward between the two exchanges' backwards).

    Shapes (this rank's pieces)::

        q    (..., Hq, L_r, E)     P_ulysses must divide Hq
        k    (..., Hkv, S_r, E)    v (..., Hkv, S_r, Ev)
        out  (..., Hq, L_r, Ev)
        in the ring: (..., Hq / P_ulysses, L_ring, E), L_ring the ring shard's length

    Args:
        q, k, v: torch tensors of one floating dtype.
        mesh: the grid of ranks (default :func:`~attnkit.distributed.mesh.current_mesh`,
            which ``launch(..., mesh=(P_ulysses, P_ring))`` builds).
        causal, scale, enable_gqa, replicate_kv, exchange, timeout, stats: as
            :func:`ulysses_attention` (``stats`` also gets the ring's counters).
        layout: the ring-level layout of :func:`~attnkit.distributed.mesh.shard_2d`.

    Returns:
        This rank's output piece, ``(..., Hq, L_r, Ev)``.

    Raises:
        RuntimeError: no process group, no mesh; a peer that does not answer in time.
        TypeError, ValueError: on every rank, before any data is exchanged: as
            :func:`ulysses_attention`, with ``P_ulysses`` for ``P``; pieces that are
            not a two-level split.

    Example (inside ``launch(fn, 4, mesh=(2, 2))``)::

        r = dist.get_rank()
        out_r = usp_attention(*(shard_2d(x, r, 2, 2, layout="zigzag") for x in (q, k, v)),
                              causal=True, layout="zigzag")
    """
    require_group("usp_attention", None)
    mesh = current_mesh() if mesh is None else mesh
    if not isinstance(mesh, Mesh):
        raise TypeError(f"mesh must be an attnkit.distributed.Mesh or None; got {type(mesh).__name__}")
    pu, pr = mesh.ulysses_size, mesh.ring_size
    delta = timeout_delta(timeout)
    holder: dict[str, Any] = {}

    def check() -> dict[str, Any]:
        for name, x in (("q", q), ("k", k), ("v", v)):
            array(name, x, "torch")
        choice("layout", layout, LAYOUTS)
        choice("exchange", exchange, EXCHANGES)
        flag("replicate_kv", replicate_kv)
        spec = check_attention_args(q, k, v, causal=causal, scale=scale, enable_gqa=enable_gqa)
        holder["spec"] = spec
        holder["reps"] = _check_heads("usp_attention", q, k, pu, replicate_kv, "Ulysses group")
        if stats is not None and not isinstance(stats, dict):
            raise TypeError(f"stats must be a dict or None; got {type(stats).__name__}")
        return {"q": shapes_but(q, -2), "k": shapes_but(k, -2), "v": shapes_but(v, -2),
                "dtype": str(q.dtype), "causal": spec.causal, "scale": spec.scale, "layout": layout,
                "exchange": exchange, "mesh": (pu, pr), "lengths": (spec.L, spec.S)}

    summaries = agree("usp_attention", None, check,
                      same=("q", "k", "v", "dtype", "causal", "scale", "layout", "exchange", "mesh"),
                      timeout=delta)
    lengths = [s["lengths"] for s in summaries]

    def two_level(n: int) -> list[int]:
        return [size for ring_n in shard_sizes(n, pr, layout=layout)
                for size in shard_sizes(ring_n, pu)]

    _check_split("usp_attention", lengths, f"two-level ({pu} x {pr}, {layout})", two_level)
    spec, reps = holder["spec"], holder["reps"]
    row = slice(mesh.ring_rank * pu, (mesh.ring_rank + 1) * pu)  # this rank's Ulysses group

    def ring(qh: torch.Tensor, kh: torch.Tensor, vh: torch.Tensor, groups: int) -> torch.Tensor:
        return ring_attention(qh, kh, vh, causal=spec.causal or False, scale=spec.scale, layout=layout,
                              group=mesh.ring_group, enable_gqa=groups > 1,
                              timeout=timeout, stats=stats)

    return _ulysses(q, k, v, spec, reps, [a for a, _ in lengths[row]], [b for _, b in lengths[row]],
                    layout, mesh.ulysses_group, delta, exchange, stats, "flash", attend=ring)
