"""Tensor-parallel attention (Megatron-LM): the heads, and their weights, split over ranks.

A multi-head attention layer is ``H`` independent heads between two linear
maps. Split the heads over ``P`` ranks: rank ``r`` keeps the columns of
``W_Q, W_K, W_V`` that make its ``H / P`` query heads (and their key/value
heads) and the matching rows of ``W_O``; it computes its heads' attention in full
and its share of the output, ``y_r = o_r W_O[rows_r]``; one all-reduce sums the
shares::

    x (replicated) --> [x W_Q_r, x W_K_r, x W_V_r] --> attention of H/P heads --> o_r W_O_r --+
                                                                                    all-reduce: y = sum_r y_r

Each rank holds ``1 / P`` of the layer's weights and of its K/V cache; it sends
one ``(B, L, D)`` all-reduce per layer forward (and one backward, for the input's
gradient). What it does not split is the work of one head over one sequence:
each head's ``L x S`` attention still runs on one rank (context parallelism
splits that).

The two ``torch.autograd.Function`` s are Megatron's ``f`` and ``g``: the input
is used as is but its gradient is all-reduced (each rank's heads give part of
it); the output is all-reduced but its gradient is passed as is.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..core._validate import array, flag, positive_int, real
from ..core.attention import attention
from ..models.layers import MultiHeadAttention
from ..models.positions import apply_rope
from ._group import agree, require_group, timeout_delta, wait

__all__ = ["TensorParallelAttention", "copy_to_parallel", "reduce_from_parallel"]


def _all_reduce(x: torch.Tensor, group: Any, delta: Any) -> torch.Tensor:
    x = x.contiguous().clone()
    wait([dist.all_reduce(x, op=dist.ReduceOp.SUM, group=group, async_op=True)], delta)
    return x


class _CopyToParallel(torch.autograd.Function):
    """Identity forward; all-reduce of the gradient backward (Megatron's ``f``)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, group: Any, delta: Any) -> torch.Tensor:
        ctx.group, ctx.delta = group, delta
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        return _all_reduce(grad, ctx.group, ctx.delta), None, None


class _ReduceFromParallel(torch.autograd.Function):
    """All-reduce (sum) forward; identity backward (Megatron's ``g``)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, group: Any, delta: Any) -> torch.Tensor:
        return _all_reduce(x, group, delta)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        return grad, None, None


def copy_to_parallel(x: torch.Tensor, group: Any = None, timeout: float | None = None) -> torch.Tensor:
    """``x`` unchanged; in the backward, the gradient is summed over the group's ranks."""
    return _CopyToParallel.apply(x, group, timeout_delta(timeout))


def reduce_from_parallel(x: torch.Tensor, group: Any = None, timeout: float | None = None) -> torch.Tensor:
    """The sum of ``x`` over the group's ranks; in the backward, the gradient passes unchanged."""
    return _ReduceFromParallel.apply(x, group, timeout_delta(timeout))


class TensorParallelAttention(nn.Module):
    r"""This rank's share of a multi-head attention layer whose heads are split over a group.

    Rank ``r`` of ``P`` holds query heads ``r H / P .. (r + 1) H / P - 1``: their
    columns of ``W_Q`` (and bias), the key/value heads they use (columns of
    ``W_K, W_V``; when ``P > H_kv``, each rank holds a copy of the one its query
    heads share), and the matching rows of ``W_O``. The output bias is held by
    every rank and added once, after the all-reduce. The result equals
    :class:`attnkit.models.layers.MultiHeadAttention` with the full weights, on
    every rank.

    Shapes::

        x     (B, L, D) or (L, D)    the same on every rank (replicated)
        out   (B, L, D) or (L, D)    the same on every rank
        per rank: q (B, H/P, L, Dh), k, v (B, H_kv_r, L, Dh), H_kv_r = max(H_kv / P, 1)

    Args:
        embed_dim: model width ``D``.
        num_heads: query heads ``H``; ``P`` must divide ``H``.
        num_kv_heads: key/value heads ``H_kv`` (default ``H``); ``P`` must divide
            ``H_kv``, or ``H_kv`` divide ``P`` (then the key/value heads are replicated).
        bias: whether the projections have biases.
        rope: rotate queries and keys (RoPE), as the full layer.
        rope_base: RoPE frequency base.
        softcap: soft-capping of the scores, as the full layer.
        backend: the :func:`attnkit.attention` engine.
        group: the process group (``None``: the default group).
        timeout: seconds each all-reduce may wait (default: the group's timeout).

    Raises:
        RuntimeError: no initialised process group.
        TypeError, ValueError: sizes that do not divide as above, widths that do
            not divide by the heads.

    Example (on each rank; ``mha`` the same full layer everywhere, e.g. from one seed)::

        tp = TensorParallelAttention.from_module(mha)   # keeps only this rank's slices
        y = tp(x, causal=True)                          # == mha(x, causal=True)

    In one process, a group of one rank (it holds every head):

        >>> import tempfile
        >>> dist.init_process_group("gloo", init_method=f"file://{tempfile.mkdtemp()}/rendezvous",
        ...                         rank=0, world_size=1)
        >>> _ = torch.manual_seed(0)
        >>> mha = MultiHeadAttention(16, 4, num_kv_heads=2)
        >>> tp = TensorParallelAttention.from_module(mha)
        >>> x = torch.randn(2, 5, 16)
        >>> bool(torch.allclose(tp(x, causal=True), mha(x, causal=True), atol=1e-6))
        True
        >>> dist.destroy_process_group()
    """

    def __init__(self, embed_dim: int, num_heads: int, *, num_kv_heads: int | None = None,
                 bias: bool = True, rope: bool = False, rope_base: float = 10000.0,
                 softcap: float | None = None, backend: str = "torch", group: Any = None,
                 timeout: float | None = None) -> None:
        super().__init__()
        rank, P = require_group("TensorParallelAttention", group)
        D, H = positive_int("embed_dim", embed_dim), positive_int("num_heads", num_heads)
        Hkv = H if num_kv_heads is None else positive_int("num_kv_heads", num_kv_heads)
        if D % H or H % Hkv:
            raise ValueError(f"embed_dim must be divisible by num_heads and num_heads by num_kv_heads; "
                             f"got {D}, {H}, {Hkv}")
        if H % P:
            raise ValueError(f"tensor parallelism gives each of the P = {P} ranks whole heads: P must "
                             f"divide num_heads; got num_heads = {H}")
        if Hkv % P and P % Hkv:
            raise ValueError(f"the {Hkv} key/value heads cannot be split over P = {P} ranks: P must "
                             f"divide num_kv_heads, or num_kv_heads divide P (one replicated key/value "
                             f"head per rank); got num_kv_heads = {Hkv}")
        self.embed_dim, self.num_heads, self.num_kv_heads, self.head_dim = D, H, Hkv, D // H
        self.rank, self.world_size, self.group = rank, P, group
        self.local_heads, self.local_kv_heads = H // P, max(Hkv // P, 1)
        #: the key/value heads of the full layer that this rank holds
        first_kv = (rank * Hkv) // P
        self.kv_heads = range(first_kv, first_kv + self.local_kv_heads)
        self.heads = range(rank * self.local_heads, (rank + 1) * self.local_heads)
        self.rope, self.rope_base = flag("rope", rope), real("rope_base", rope_base, positive=True)
        self.softcap = None if softcap is None else real("softcap", softcap, positive=True)
        self.backend, self.delta = backend, timeout_delta(timeout)
        Dh = self.head_dim
        self.q_proj = nn.Linear(D, self.local_heads * Dh, bias=bias)
        self.k_proj = nn.Linear(D, self.local_kv_heads * Dh, bias=bias)
        self.v_proj = nn.Linear(D, self.local_kv_heads * Dh, bias=bias)
        self.out_proj = nn.Linear(self.local_heads * Dh, D, bias=False)
        self.out_bias = nn.Parameter(torch.zeros(D)) if bias else None

    @classmethod
    def from_module(cls, mha: MultiHeadAttention, *, group: Any = None,
                    timeout: float | None = None) -> TensorParallelAttention:
        """This rank's slices of a full :class:`~attnkit.models.layers.MultiHeadAttention`.

        Raises:
            TypeError: ``mha`` not a ``MultiHeadAttention``.
            ValueError: a layer with QK-norm (its gains are shared by all heads, so
                their gradient would need an all-reduce of its own), or sizes that
                do not split (as the constructor).
        """
        if not isinstance(mha, MultiHeadAttention):
            raise TypeError(f"mha must be an attnkit MultiHeadAttention; got {type(mha).__name__}")
        if mha.qk_norm:
            raise ValueError("a layer with qk_norm=True is not split here: its RMSNorm gains are "
                             "shared by every head (their gradient would need its own all-reduce)")
        bias = mha.q_proj.bias is not None
        new = cls(mha.embed_dim, mha.num_heads, num_kv_heads=mha.num_kv_heads, bias=bias,
                  rope=mha.rope, rope_base=mha.rope_base, softcap=mha.softcap, backend=mha.backend,
                  group=group, timeout=timeout)
        w = mha.q_proj.weight
        new = new.to(device=w.device, dtype=w.dtype)
        Dh = new.head_dim
        q_rows = slice(new.heads.start * Dh, new.heads.stop * Dh)
        kv_rows = slice(new.kv_heads.start * Dh, new.kv_heads.stop * Dh)
        with torch.no_grad():
            for mine, full, rows in ((new.q_proj, mha.q_proj, q_rows), (new.k_proj, mha.k_proj, kv_rows),
                                     (new.v_proj, mha.v_proj, kv_rows)):
                mine.weight.copy_(full.weight[rows])
                if bias:
                    mine.bias.copy_(full.bias[rows])
            new.out_proj.weight.copy_(mha.out_proj.weight[:, q_rows])
            if bias:
                new.out_bias.copy_(mha.out_proj.bias)
        return new

    def forward(self, x: torch.Tensor, *, causal: bool | str = False,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """``MultiHeadAttention(x)`` (self-attention), computed by this rank's heads and one all-reduce.

        Args:
            x: ``(B, L, D)`` or ``(L, D)``, the same on every rank.
            causal: as :func:`attnkit.attention`.
            mask: broadcastable to ``(B, H, L, L)``; a mask with a heads axis of
                size ``H`` is sliced to this rank's heads.

        Every call first exchanges the shape of ``x`` (two small all-gathers), so
        that ranks passing different shapes all raise ``ValueError`` instead of
        waiting on each other.
        """
        array("x", x, "torch")
        if x.ndim not in (2, 3) or x.shape[-1] != self.embed_dim:
            raise ValueError(f"x must be (B, L, {self.embed_dim}) or (L, {self.embed_dim}); got "
                             f"{tuple(x.shape)}")
        agree("TensorParallelAttention", self.group, lambda: {"x": tuple(int(d) for d in x.shape)},
              same=("x",), timeout=self.delta)
        unbatched = x.ndim == 2
        if unbatched:
            x = x[None]
        B, L, _ = x.shape
        Dh = self.head_dim
        x = _CopyToParallel.apply(x, self.group, self.delta)
        q = self.q_proj(x).view(B, L, self.local_heads, Dh).transpose(1, 2)  # (B, H/P, L, Dh)
        k = self.k_proj(x).view(B, L, self.local_kv_heads, Dh).transpose(1, 2)
        v = self.v_proj(x).view(B, L, self.local_kv_heads, Dh).transpose(1, 2)
        if self.rope:
            q = apply_rope(q, positions=np.arange(L), base=self.rope_base)
            k = apply_rope(k, positions=np.arange(L), base=self.rope_base)
        if mask is not None and mask.ndim >= 3 and mask.shape[-3] == self.num_heads:
            mask = mask[..., self.heads.start:self.heads.stop, :, :]
        o = attention(q, k, v, mask=mask, causal=causal, backend=self.backend, softcap=self.softcap,
                      enable_gqa=self.local_kv_heads < self.local_heads)
        y = self.out_proj(o.transpose(1, 2).reshape(B, L, self.local_heads * Dh))  # this rank's share
        y = _ReduceFromParallel.apply(y, self.group, self.delta)
        if self.out_bias is not None:
            y = y + self.out_bias
        return y[0] if unbatched else y

    def extra_repr(self) -> str:
        """The split, for ``repr``."""
        return (f"embed_dim={self.embed_dim}, heads {self.heads.start}-{self.heads.stop - 1} of "
                f"{self.num_heads}, kv heads {self.kv_heads.start}-{self.kv_heads.stop - 1} of "
                f"{self.num_kv_heads}, rank {self.rank} of {self.world_size}")

