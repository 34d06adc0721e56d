"""The FlashAttention engine: tiled attention with the online softmax.

The same function as the reference engine, computed one ``(block_q, block_k)``
tile of scores at a time, so that the ``(L, S)`` score matrix never exists::

    for each block of queries q_i                       (block_q rows)
        m_i = -inf, l_i = 0, acc = 0                    running max, sum, output
        for each block of keys/values k_j, v_j          (block_k rows)
            scores = q_i @ k_j^T * scale (+ masks)      one tile, (block_q, block_k)
            m_new  = max(m_i, rowmax(scores))
            p      = exp(scores - m_new)
            alpha  = exp(m_i - m_new)                   rescales what came before
            l_i    = alpha * l_i + rowsum(p)
            acc    = alpha * acc + p @ v_j
            m_i    = m_new
        out_i = acc / l_i          (0 where l_i == 0: every key masked)
        lse_i = m_i + log(l_i)     (saved for the backward pass)

Two implementations share this loop:

* NumPy inputs: :func:`flash_attention_numpy`, readable enough to print in the
  book (float16 is computed in float32, float64 stays float64);
* torch inputs: :class:`FlashAttentionFunction`, a ``torch.autograd.Function``
  whose forward is the loop above and whose backward recomputes each tile of
  scores from the saved ``lse`` (FlashAttention-2's backward), on any device.

Both compute ``exp(x)`` as ``2 ** (x * log2(e))``: the scores are kept in base-2
units (``log2(e)`` is folded into ``scale``), because ``exp2`` is two to three
times faster than ``exp`` on a CPU core, and GPU kernels do the same. The
state ``m_i`` is then a base-2 maximum and ``lse = ln(2) * (m_i + log2(l_i))``.

Block sizes are module attributes (:data:`BLOCK_Q`, :data:`BLOCK_K`) or keyword
arguments; any lengths work (the last block is simply shorter).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._validate import AttentionSpec, CausalArg, check_attention_args
from ..masks import causal_offset

ARRAY = "any"
RETURNS_WEIGHTS = False

#: Default query-block height for the NumPy and torch loops (tuned for one CPU core,
#: ``python -m attnkit.bench``): a (BLOCK_Q, BLOCK_K) float32 tile is 1 MiB.
BLOCK_Q: int = 512
#: Default key-block width.
BLOCK_K: int = 512

#: log2(e): exp(x) = exp2(x * LOG2E). Folded into the scale, so scores are in base 2.
LOG2E: float = 1.4426950408889634
#: ln(2), to turn a base-2 log-sum-exp back into natural units.
LN2: float = 0.6931471805599453


def available() -> tuple[bool, str]:
    """The NumPy path runs wherever NumPy does (the torch path needs torch)."""
    return True, "tiled online softmax (NumPy or torch)"


def run(q: Any, k: Any, v: Any, mask: Any, spec: AttentionSpec) -> tuple[Any, None]:
    """Attention on validated inputs of either kind; returns ``(out, None)``."""
    if spec.kind == "numpy":
        out, _ = _forward_numpy(q, k, v, mask, spec, BLOCK_Q, BLOCK_K)
        return out, None
    return flash_attention_torch(q, k, v, mask=mask, spec=spec), None


def _check_block(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")
    return int(value)


# ----------------------------------------------------------------------------- NumPy


def flash_attention_numpy(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    *,
    block_q: int | None = None,
    block_k: int | None = None,
    mask: np.ndarray | None = None,
    causal: CausalArg = False,
    scale: float | None = None,
    return_lse: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Tiled attention in NumPy with the online softmax; never forms the ``(L, S)`` matrix.

    Shapes::

        q     (..., L, E)      k (..., S, E)      v (..., S, Ev)
        mask  broadcastable to (..., L, S)
        out   (..., L, Ev)     lse (..., L)

    Args:
        q, k, v: NumPy arrays of one floating dtype (float16 is computed in float32).
        block_q: queries per tile (default :data:`BLOCK_Q`); any positive integer.
        block_k: keys per tile (default :data:`BLOCK_K`); any positive integer.
        mask: boolean (``True`` = takes part) or floating (added to the scores).
        causal: ``False``, ``True``/``"top-left"`` or ``"bottom-right"``.
        scale: factor on ``q @ k^T``; default ``1 / sqrt(E)``.
        return_lse: also return the log-sum-exp of each row of scores
            (``-inf`` for a row whose every key is masked).

    Returns:
        ``out`` (a row whose every key is masked is zero), or ``(out, lse)``.

    Raises:
        TypeError, ValueError: as :func:`attnkit.attention`; ``ValueError`` for a
            block size that is not a positive integer.

    Example:
        >>> from attnkit import example
        >>> flash_attention_numpy(example.Q, example.K, example.V, block_q=2, block_k=2)[0].round(4)
        array([0.2254, 0.4135, 0.2964, 0.2964])
    """
    spec = check_attention_args(q, k, v, mask=mask, causal=causal, scale=scale)
    if spec.kind != "numpy":
        raise TypeError(f"flash_attention_numpy takes NumPy arrays; got q of kind {spec.kind}")
    bq = _check_block("block_q", BLOCK_Q if block_q is None else block_q)
    bk = _check_block("block_k", BLOCK_K if block_k is None else block_k)
    out, lse = _forward_numpy(q, k, v, mask, spec, bq, bk)
    return (out, lse) if return_lse else out


def _forward_numpy(
    q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None,
    spec: AttentionSpec, block_q: int, block_k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The tiled forward pass on validated NumPy inputs; returns ``(out, lse)``."""
    work = np.float64 if q.dtype == np.float64 else np.float32
    L, S, batch = spec.L, spec.S, spec.batch
    q = np.broadcast_to(q, (*batch, L, spec.E))  # views: batch dims as the output's
    k = np.broadcast_to(k, (*batch, S, spec.E))
    q = q.astype(work) * work(spec.scale * LOG2E)  # (..., L, E), scaled once, base 2
    k_t = np.swapaxes(k.astype(work, copy=False), -1, -2)  # (..., E, S)
    v = v.astype(work, copy=False)  # (..., S, Ev)
    if mask is not None:
        mask = np.broadcast_to(mask, (*batch, L, S))  # a view: tiles are slices of it
        if spec.mask_kind == "float":
            mask = mask.astype(work, copy=False) * work(LOG2E)  # base 2, as the scores
    offset = None if spec.causal is None else causal_offset(L, S, spec.causal)

    out = np.zeros((*batch, L, spec.Ev), dtype=work)
    lse = np.full((*batch, L), -np.inf, dtype=work)
    for i0 in range(0, L, block_q):
        i1 = min(i0 + block_q, L)
        q_i = q[..., i0:i1, :]  # (..., bq, E)
        m_i = np.full((*batch, i1 - i0, 1), -np.inf, dtype=work)  # running max
        l_i = np.zeros((*batch, i1 - i0, 1), dtype=work)  # running sum of exp
        acc = np.zeros((*batch, i1 - i0, spec.Ev), dtype=work)  # running output
        # Causal: keys beyond the last row's diagonal are never seen by this block.
        stop = S if offset is None else max(0, min(S, i1 + offset))
        for j0 in range(0, stop, block_k):
            j1 = min(j0 + block_k, stop)
            scores = q_i @ k_t[..., j0:j1]  # (..., bq, E) x (..., E, bk) -> (..., bq, bk)
            if mask is not None and spec.mask_kind == "float":
                scores += mask[..., i0:i1, j0:j1]
            if mask is not None and spec.mask_kind == "bool":
                np.copyto(scores, -np.inf, where=~mask[..., i0:i1, j0:j1])
            if offset is not None and j1 - 1 > i0 + offset:  # tile crosses the diagonal
                rows = np.arange(i0, i1)[:, None]
                cols = np.arange(j0, j1)[None, :]
                np.copyto(scores, -np.inf, where=cols > rows + offset)

            m_new = np.maximum(m_i, scores.max(axis=-1, keepdims=True))
            m_safe = np.where(m_new == -np.inf, 0.0, m_new)  # all masked so far: no -inf - -inf
            scores -= m_safe
            p = np.exp2(scores, out=scores)  # (..., bq, bk), in place: no second tile
            alpha = np.exp2(m_i - m_safe)  # (..., bq, 1): rescales the old l_i and acc
            l_i = alpha * l_i + p.sum(axis=-1, keepdims=True)
            acc = alpha * acc + p @ v[..., j0:j1, :]  # (..., bq, bk) x (..., bk, Ev)
            m_i = m_new

        alive = l_i > 0  # False where every key of the row is masked
        out[..., i0:i1, :] = np.where(alive, acc / np.where(alive, l_i, 1.0), 0.0)
        with np.errstate(divide="ignore"):
            lse[..., i0:i1] = np.where(alive, LN2 * (m_i + np.log2(l_i)), -np.inf)[..., 0]
    return out.astype(spec.dtype, copy=False), lse


# ----------------------------------------------------------------------------- torch


def flash_attention_torch(
    q: Any,
    k: Any,
    v: Any,
    *,
    mask: Any = None,
    causal: CausalArg = False,
    scale: float | None = None,
    block_q: int | None = None,
    block_k: int | None = None,
    return_lse: bool = False,
    spec: AttentionSpec | None = None,
) -> Any:
    """Tiled attention on torch tensors, differentiable through a recomputing backward.

    Shapes as :func:`flash_attention_numpy`. Gradients flow to ``q``, ``k`` and
    ``v``; a floating ``mask`` gets no gradient (a mask that requires one is a
    ``ValueError``). A query whose every key is masked gets a zero output row and
    zero gradients.

    Args:
        q, k, v, mask, causal, scale: as :func:`attnkit.attention`.
        block_q, block_k: tile sizes (default :data:`BLOCK_Q`, :data:`BLOCK_K`).
        return_lse: also return ``lse (..., L)`` in the working precision
            (float32, or float64 for float64 inputs; ``-inf`` on fully masked rows).
        spec: an already validated description of the call (skips validation).

    Returns:
        ``out (..., L, Ev)`` in the dtype of ``q`` (half precision is computed in
        float32), or ``(out, lse)``.

    Raises:
        TypeError, ValueError: as :func:`attnkit.attention`; ``ValueError`` for a
            block size that is not a positive integer or a mask that requires grad.

    Example:
        >>> import torch
        >>> q = torch.randn(2, 8, 4, requires_grad=True)
        >>> flash_attention_torch(q, q, q, block_q=3, block_k=5).sum().backward()
    """
    if spec is None:
        spec = check_attention_args(q, k, v, mask=mask, causal=causal, scale=scale)
        if spec.kind != "torch":
            raise TypeError(f"flash_attention_torch takes torch tensors; got q of kind {spec.kind}")
    if mask is not None and mask.requires_grad:
        raise ValueError(
            "mask requires grad, but the flash engine computes no gradient for a floating "
            "mask; pass mask.detach(), or use backend='torch' to differentiate the mask"
        )
    bq = _check_block("block_q", BLOCK_Q if block_q is None else block_q)
    bk = _check_block("block_k", BLOCK_K if block_k is None else block_k)
    if spec.L == 0 or spec.S == 0:
        raise ValueError(f"flash_attention_torch needs L > 0 and S > 0; got L={spec.L}, "
                         f"S={spec.S} (attnkit.attention handles empty inputs)")
    out, lse = _function().apply(q, k, v, mask, spec, bq, bk)
    return (out, lse) if return_lse else out


def _mask_tile_(scores: Any, mask: Any, spec: AttentionSpec, offset: int | None,
                i0: int, i1: int, j0: int, j1: int) -> Any:
    """Apply the masks to one tile of scores in place: add a float mask, -inf where hidden."""
    import torch

    if mask is not None:
        tile = mask[..., i0:i1, j0:j1]
        if spec.mask_kind == "float":
            scores.add_(tile, alpha=LOG2E)  # base 2, as the scores
        else:
            scores.masked_fill_(~tile, float("-inf"))
    if offset is not None and j1 - 1 > i0 + offset:  # the tile crosses the diagonal
        rows = torch.arange(i0, i1, device=scores.device)[:, None]
        cols = torch.arange(j0, j1, device=scores.device)[None, :]
        scores.masked_fill_(cols > rows + offset, float("-inf"))
    return scores


def _key_stop(offset: int | None, i1: int, S: int) -> int:
    """One past the last key that a causal block of queries ending at row ``i1`` sees."""
    return S if offset is None else max(0, min(S, i1 + offset))


def _forward_torch(q: Any, k: Any, v: Any, mask: Any, spec: AttentionSpec,
                   block_q: int, block_k: int) -> tuple[Any, Any]:
    """The tiled forward on float32/float64 tensors; returns ``(out, lse)``."""
    import torch

    L, S, batch = spec.L, spec.S, spec.batch
    offset = None if spec.causal is None else causal_offset(L, S, spec.causal)
    q = q.expand(*batch, L, spec.E) * (spec.scale * LOG2E)  # (..., L, E), scaled, base 2
    k_t = k.expand(*batch, S, spec.E).transpose(-2, -1)  # (..., E, S)
    out = q.new_zeros((*batch, L, spec.Ev))
    lse = q.new_full((*batch, L), float("-inf"))
    for i0 in range(0, L, block_q):
        i1 = min(i0 + block_q, L)
        q_i = q[..., i0:i1, :]  # (..., bq, E)
        m_i = q.new_full((*batch, i1 - i0, 1), float("-inf"))  # running max
        l_i = q.new_zeros((*batch, i1 - i0, 1))  # running sum of exp
        acc = q.new_zeros((*batch, i1 - i0, spec.Ev))  # running output
        stop = _key_stop(offset, i1, S)
        for j0 in range(0, stop, block_k):
            j1 = min(j0 + block_k, stop)
            scores = torch.matmul(q_i, k_t[..., j0:j1])  # (..., bq, E) x (..., E, bk)
            _mask_tile_(scores, mask, spec, offset, i0, i1, j0, j1)
            m_new = torch.maximum(m_i, scores.amax(dim=-1, keepdim=True))
            m_safe = m_new.masked_fill(m_new == float("-inf"), 0.0)  # no -inf - -inf
            p = scores.sub_(m_safe).exp2_()  # (..., bq, bk), in place
            alpha = torch.exp2(m_i - m_safe)  # (..., bq, 1): rescales the old l_i and acc
            l_i = l_i.mul_(alpha).add_(p.sum(dim=-1, keepdim=True))
            acc = acc.mul_(alpha).add_(torch.matmul(p, v[..., j0:j1, :]))  # (..., bq, Ev)
            m_i = m_new
        alive = l_i > 0  # False where every key of the row is masked
        out[..., i0:i1, :] = torch.where(alive, acc / torch.where(alive, l_i, 1.0), 0.0)
        lse[..., i0:i1] = torch.where(alive, LN2 * (m_i + torch.log2(l_i)), float("-inf"))[..., 0]
    return out, lse


def _backward_torch(q: Any, k: Any, v: Any, mask: Any, out: Any, lse: Any, d_out: Any,
                    spec: AttentionSpec, block_q: int, block_k: int) -> tuple[Any, Any, Any]:
    """FlashAttention-2's backward: recompute every tile of weights from ``lse``.

    ``D = rowsum(dO * O)``; per tile ``P = exp(S - lse)``, ``dV += P^T dO``,
    ``dP = dO V^T``, ``dS = P * (dP - D)``, ``dQ += dS K * scale``,
    ``dK += dS^T Q * scale``. Returns ``(dq, dk, dv)`` at the broadcast batch shape.
    """
    import torch

    L, S, batch = spec.L, spec.S, spec.batch
    offset = None if spec.causal is None else causal_offset(L, S, spec.causal)
    q = q.expand(*batch, L, spec.E)
    k = k.expand(*batch, S, spec.E)
    v = v.expand(*batch, S, spec.Ev)
    # A row whose every key is masked has lse = -inf: make exp(S - lse) = 0 there.
    lse = lse.masked_fill(lse == float("-inf"), float("inf"))[..., None] * LOG2E  # base 2
    D = (d_out * out).sum(dim=-1, keepdim=True)  # (..., L, 1)
    dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    for i0 in range(0, L, block_q):
        i1 = min(i0 + block_q, L)
        q_i, do_i = q[..., i0:i1, :], d_out[..., i0:i1, :]
        stop = _key_stop(offset, i1, S)
        for j0 in range(0, stop, block_k):
            j1 = min(j0 + block_k, stop)
            k_j, v_j = k[..., j0:j1, :], v[..., j0:j1, :]
            scores = torch.matmul(q_i, k_j.transpose(-2, -1)).mul_(spec.scale * LOG2E)
            _mask_tile_(scores, mask, spec, offset, i0, i1, j0, j1)  # (..., bq, bk), base 2
            p = scores.sub_(lse[..., i0:i1, :]).exp2_()  # this tile's weights, recomputed
            dv[..., j0:j1, :] += torch.matmul(p.transpose(-2, -1), do_i)  # (..., bk, Ev)
            dp = torch.matmul(do_i, v_j.transpose(-2, -1))  # (..., bq, Ev) x (..., Ev, bk)
            ds = p.mul_(dp.sub_(D[..., i0:i1, :]))  # softmax backward: P * (dP - D)
            dq[..., i0:i1, :] += torch.matmul(ds, k_j).mul_(spec.scale)  # (..., bq, E)
            dk[..., j0:j1, :] += torch.matmul(ds.transpose(-2, -1), q_i).mul_(spec.scale)
    return dq, dk, dv


def _autograd_function() -> Any:
    import torch

    class FlashAttentionFunction(torch.autograd.Function):
        """Tiled forward that saves ``lse``; backward by recomputation, tile by tile."""

        @staticmethod
        def forward(ctx: Any, q: Any, k: Any, v: Any, mask: Any, spec: AttentionSpec,
                    block_q: int, block_k: int) -> tuple[Any, Any]:
            work = torch.float64 if q.dtype == torch.float64 else torch.float32
            qw, kw, vw = (x.to(work) for x in (q, k, v))
            if mask is not None:
                mask = mask.to(qw.device).expand(*spec.batch, spec.L, spec.S)
            out, lse = _forward_torch(qw, kw, vw, mask, spec, block_q, block_k)
            ctx.save_for_backward(qw, kw, vw, out, lse)
            ctx.mask, ctx.spec, ctx.blocks = mask, spec, (block_q, block_k)
            ctx.inputs = [(x.shape, x.dtype) for x in (q, k, v)]
            ctx.mark_non_differentiable(lse)
            return out.to(q.dtype), lse

        @staticmethod
        def backward(ctx: Any, d_out: Any, _d_lse: Any) -> tuple[Any, ...]:
            qw, kw, vw, out, lse = ctx.saved_tensors
            dq, dk, dv = _backward_torch(qw, kw, vw, ctx.mask, out, lse, d_out.to(out.dtype),
                                         ctx.spec, *ctx.blocks)
            # Broadcast batch dimensions: each input's gradient sums over its copies.
            grads = [g.sum_to_size(shape).to(dtype)
                     for g, (shape, dtype) in zip((dq, dk, dv), ctx.inputs, strict=True)]
            return (*grads, None, None, None, None)

    return FlashAttentionFunction


_FUNCTION: Any = None


def _function() -> Any:
    """The ``torch.autograd.Function``, built on first use so that importing needs no torch."""
    global _FUNCTION
    if _FUNCTION is None:
        _FUNCTION = _autograd_function()
    return _FUNCTION


def __getattr__(name: str) -> Any:
    """``flash.FlashAttentionFunction`` (built on first access)."""
    if name == "FlashAttentionFunction":
        return _function()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
