"""The FlashAttention loop on torch tensors, with FlashAttention-2's recomputing backward.

:class:`FlashAttentionFunction` is a ``torch.autograd.Function`` whose forward is
the online-softmax loop of :mod:`attnkit.engines.flash_numpy` (the same tiles;
written for torch, where each small operation has a fixed cost) and
whose backward recomputes each tile of weights from the saved log-sum-exp. It
runs on the device of its inputs (CPU or CUDA).

The forward keeps scores in base 2 (``log2(e)`` folded into the scale, as GPU
kernels do) or in natural units, whichever of ``exp2`` and ``exp`` torch computes
faster on this CPU (:func:`~attnkit.engines._online.torch_exp_base`; base 2 on a GPU);
the backward works in base 2.
Soft-capping and ``score_mod`` are applied in natural units; their derivative in
the backward comes from autograd on one tile at a time. Gradients flow to ``q``,
``k`` and ``v`` only: tensors that a ``score_mod`` captures (a learned bias table,
say) get none from this engine; use ``backend="torch"`` to train them.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from .._validate import AttentionSpec, CausalArg, Window, check_attention_args
from ..masks import Band
from . import _online
from ._online import LOG2E
from .mods import apply_score_mods


def flash_attention_torch(
    q: Any,
    k: Any,
    v: Any,
    *,
    mask: Any = None,
    causal: CausalArg = False,
    scale: float | None = None,
    window: Window | None = None,
    sinks: int = 0,
    softcap: float | None = None,
    block_q: int | None = None,
    block_k: int | None = None,
    return_lse: bool = False,
    spec: AttentionSpec | None = None,
) -> Any:
    """Tiled attention on torch tensors, differentiable through a recomputing backward.

    Shapes as :func:`attnkit.engines.flash_numpy.flash_attention_numpy`. Gradients
    flow to ``q``, ``k`` and ``v``; a floating ``mask`` gets no gradient (a mask that
    requires one is a ``ValueError``). A query whose every key is masked gets a
    zero output row and zero gradients.

    Args:
        q, k, v, mask, causal, scale, window, sinks, softcap: as :func:`attnkit.attention`.
        block_q, block_k: tile sizes (default: tuned per machine).
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
        >>> q = torch.randn(2, 8, 4, requires_grad=True)
        >>> flash_attention_torch(q, q, q, block_q=3, block_k=5, window=(2, 0)).sum().backward()
    """
    if spec is None:
        spec = check_attention_args(q, k, v, mask=mask, causal=causal, scale=scale,
                                    window=window, sinks=sinks, softcap=softcap)
        if spec.kind != "torch":
            raise TypeError(f"flash_attention_torch takes torch tensors; got q of kind {spec.kind}")
    if mask is not None and mask.requires_grad:
        raise ValueError(
            "mask requires grad, but the flash engine computes no gradient for a floating "
            "mask; pass mask.detach(), or use backend='torch' to differentiate the mask"
        )
    bq, bk = _online.blocks(block_q, block_k, "torch")
    if spec.L == 0 or spec.S == 0:
        raise ValueError(f"flash_attention_torch needs L > 0 and S > 0; got L={spec.L}, "
                         f"S={spec.S} (attnkit.attention handles empty inputs)")
    if not return_lse and not (torch.is_grad_enabled()
                               and any(x.requires_grad for x in (q, k, v))):
        # Inference: no graph to record and no log-sum-exp to keep for a backward pass.
        work = torch.float64 if q.dtype == torch.float64 else torch.float32
        qw, kw, vw = (x if x.dtype == work else x.to(work) for x in (q, k, v))
        if mask is not None:
            mask = mask.to(qw.device).expand(*spec.batch, spec.L, spec.S)
        return forward(qw, kw, vw, mask, spec, bq, bk, need_lse=False)[0].to(q.dtype)
    out, lse = FlashAttentionFunction.apply(q, k, v, mask, spec, bq, bk)
    return (out, lse) if return_lse else out


def _mask_tile_(s: Any, mask: Any, spec: AttentionSpec, band: Band, full: bool,
                i0: int, i1: int, j0: int, j1: int, u: float = LOG2E) -> Any:
    """Apply the masks to one tile of scores (in units ``u``) in place: float mask added, -inf hidden."""
    if mask is not None:
        tile = mask[..., i0:i1, j0:j1]
        if spec.mask_kind == "float":
            s.add_(tile, alpha=u)  # in the scores' units
        else:
            s.masked_fill_(~tile, float("-inf"))
    if not full:  # the tile crosses the causal diagonal or the window's edge
        rows = torch.arange(i0, i1, device=s.device)[:, None]
        cols = torch.arange(j0, j1, device=s.device)[None, :]
        s.masked_fill_(~band.mask(rows, cols), float("-inf"))
    return s


def _mods(q_i: Any, k_t: Any, spec: AttentionSpec, i0: int, i1: int, j0: int, j1: int,
          u: float) -> Any:
    """Natural scores of a tile through softcap/score_mod, returned in units ``u``."""
    return apply_score_mods(torch.matmul(q_i, k_t), spec, i0, i1, j0, j1) * u


def _flat_batch(q: Any, k: Any, v: Any, mask: Any, spec: AttentionSpec) -> bool:
    """Whether the call's batch dimensions can be merged into one without a copy.

    ``torch.matmul`` on more than three dimensions reshapes its operands, which copies
    a transposed slice of ``k`` on every tile; three-dimensional operands go to
    ``bmm`` as they are. Merging needs inputs that are not broadcast, no mask and no
    ``score_mod`` (whose head index depends on the batch shape).
    """
    if len(spec.batch) == 1 or mask is not None or spec.score_mod is not None:
        return False
    return all(tuple(x.shape[:-2]) == spec.batch for x in (q, k, v))


def forward(q: Any, k: Any, v: Any, mask: Any, spec: AttentionSpec,
            block_q: int, block_k: int, need_lse: bool = True) -> tuple[Any, Any]:
    """The tiled forward on float32/float64 tensors; returns ``(out, lse)``, lse natural.

    With ``need_lse=False`` (inference) the log-sum-exp is not computed and ``lse``
    is ``None``.

    The loop is kept lean, because in torch each small operation has a fixed cost:
    the products write into one tile of memory that every tile reuses (kept between
    calls on the CPU, as in the NumPy engine); the first tile starts the running
    state instead of rescaling an empty one; the running maximum moves lazily, only
    when a tile's scores exceed it by more than
    :data:`~attnkit.engines._online.RESCALE_THRESHOLD` (so most tiles skip the
    rescaling); no guard against ``-inf`` maxima until a tile has been masked; and
    every update is in place.
    """
    L, S, E, Ev, batch = spec.L, spec.S, spec.E, spec.Ev, spec.batch
    shape = batch
    if _flat_batch(q, k, v, mask, spec):  # one batch dimension: plain batched products
        batch = (math.prod(batch),)
        q, k, v = q.reshape(*batch, L, E), k.reshape(*batch, S, E), v.reshape(*batch, S, Ev)
    band = Band.of(L, S, spec.causal, spec.window, spec.sinks)
    mods = spec.softcap is not None or spec.score_mod is not None
    base = _online.torch_exp_base() if q.device.type == "cpu" else "exp2"
    u = _online.units(base)  # scores in units of the exponential's base
    q_factor = spec.scale * (1.0 if mods else u)
    qb = q.expand(*batch, L, E)
    k_t = k.transpose(-2, -1)  # (..., E, S), a view
    out = q.new_zeros((*batch, L, Ev))
    lse = q.new_full((*batch, L), float("-inf")) if need_lse else None
    nb = math.prod(batch)
    bq, bk = min(block_q, L), min(block_k, S)
    sizes = (nb * bq * bk, nb * bq * E, nb * bq * Ev, nb * bq * Ev)
    with _online.scratch("torch", sizes, q.dtype, q.device) as mem:
        _forward_blocks(qb, q_factor, k_t, v, mask, spec, batch, band, mods, u, base,
                        block_q, block_k, out, lse, *mem)
    if batch != shape:
        out = out.reshape(*shape, L, Ev)
        lse = None if lse is None else lse.reshape(*shape, L)
    return out, lse


def _forward_blocks(qb: Any, q_factor: float, k_t: Any, v: Any, mask: Any, spec: AttentionSpec,
                    batch: tuple[int, ...], band: Band, mods: bool, u: float, base: str,
                    block_q: int, block_k: int, out: Any, lse: Any, tile_mem: Any, q_mem: Any,
                    acc_mem: Any, pv_mem: Any) -> None:
    """The loop of :func:`forward` over query blocks; fills ``out`` and ``lse`` in place."""
    L, E, Ev = spec.L, spec.E, spec.Ev
    nb = math.prod(batch)
    thresh = _online.RESCALE_THRESHOLD * u
    exp_ = torch.Tensor.exp2_ if base == "exp2" else torch.Tensor.exp_
    k_tiles: dict[tuple[int, int], tuple[Any, Any]] = {}  # (j0, j1) -> slices of k_t, v
    for i0 in range(0, L, block_q):
        i1 = min(i0 + block_q, L)
        q_i = q_mem[: nb * (i1 - i0) * E].view(*batch, i1 - i0, E)  # (..., bq, E), scaled
        torch.mul(qb[..., i0:i1, :], q_factor, out=q_i)
        pv = pv_mem[: nb * (i1 - i0) * Ev].view(*batch, i1 - i0, Ev)
        acc = acc_mem[: nb * (i1 - i0) * Ev].view(*batch, i1 - i0, Ev)  # running output
        m_i = l_i = shift = bound = None  # running max and sum: set by the first tile
        guarded = mask is not None  # may a row's maximum be -inf (every key so far hidden)?
        for j0, j1, full in band.tiles(i0, i1, block_k):
            if (j0, j1) not in k_tiles:
                k_tiles[j0, j1] = (k_t[..., j0:j1], v[..., j0:j1, :])
            k_j, v_j = k_tiles[j0, j1]
            if mods:
                s = _mods(q_i, k_j, spec, i0, i1, j0, j1, u)
            else:  # (..., bq, E) x (..., E, bk), into the tile's memory
                s = tile_mem[: nb * (i1 - i0) * (j1 - j0)].view(*batch, i1 - i0, j1 - j0)
                torch.matmul(q_i, k_j, out=s)
            if mask is not None or not full:
                _mask_tile_(s, mask, spec, band, full, i0, i1, j0, j1, u)
                guarded = True
            r = s.amax(dim=-1, keepdim=True)
            if m_i is None:  # the first tile: its maximum is the shift
                m_i = r
                shift = m_i.masked_fill(m_i == float("-inf"), 0.0) if guarded else m_i
                bound = m_i + thresh
                p = exp_(s.sub_(shift))
                l_i = p.sum(dim=-1, keepdim=True)
                torch.matmul(p, v_j, out=acc)
                continue
            if bool((r > bound).any()):  # lazy: move the shift only when needed
                m_new = torch.maximum(m_i, r)
                shift = m_new.masked_fill(m_new == float("-inf"), 0.0) if guarded else m_new
                alpha = exp_(m_i - shift)  # rescales what came before (0 where m_i = -inf)
                m_i, bound = m_new, m_new + thresh
                l_i.mul_(alpha)
                acc.mul_(alpha)
            p = exp_(s.sub_(shift))  # (..., bq, bk), in place
            l_i.add_(p.sum(dim=-1, keepdim=True))
            acc.add_(torch.matmul(p, v_j, out=pv))  # (..., bq, bk) x (..., bk, Ev)
        if m_i is None:  # no tile visible: every key hidden from this block
            continue
        o = out[..., i0:i1, :]
        torch.div(acc, l_i, out=o)
        dead = (l_i == 0) if guarded else None  # rows whose every key is masked
        if dead is not None:
            o.masked_fill_(dead, 0.0)
        if lse is not None:
            log_l = torch.log2(l_i) if base == "exp2" else torch.log(l_i)
            lse_i = _online.lse_natural(shift, log_l, base)  # -inf where l_i = 0
            if dead is not None:
                lse_i.masked_fill_(dead, float("-inf"))
            lse[..., i0:i1] = lse_i[..., 0]


def backward(q: Any, k: Any, v: Any, mask: Any, out: Any, lse: Any, d_out: Any,
             spec: AttentionSpec, block_q: int, block_k: int) -> tuple[Any, Any, Any]:
    """FlashAttention-2's backward: recompute every tile of weights from ``lse``.

    ``D = rowsum(dO * O)``; per tile of scaled scores ``Z``: ``P = exp(Z - lse)``,
    ``dV += P^T dO``, ``dP = dO V^T``, ``dZ = P * (dP - D)``, ``dQ += dZ K * scale``,
    ``dK += dZ^T Q * scale`` (with ``dZ`` taken back through softcap/score_mod by
    autograd on the tile). Returns ``(dq, dk, dv)`` at the broadcast batch shape.
    """
    L, S, batch = spec.L, spec.S, spec.batch
    if _flat_batch(q, k, v, mask, spec):  # one batch dimension: plain batched products
        flat = dataclasses.replace(spec, batch=(math.prod(batch),))
        E, Ev = spec.E, spec.Ev
        grads = backward(q.reshape(-1, L, E), k.reshape(-1, S, E), v.reshape(-1, S, Ev), None,
                         out.reshape(-1, L, Ev), lse.reshape(-1, L),
                         d_out.reshape(-1, L, Ev), flat, block_q, block_k)
        return tuple(g.reshape(*batch, *g.shape[1:]) for g in grads)
    band = Band.of(L, S, spec.causal, spec.window, spec.sinks)
    mods = spec.softcap is not None or spec.score_mod is not None
    q = q.expand(*batch, L, spec.E)
    k = k.expand(*batch, S, spec.E)
    v = v.expand(*batch, S, spec.Ev)
    # A row whose every key is masked has lse = -inf: make exp(Z - lse) = 0 there.
    lse = lse.masked_fill(lse == float("-inf"), float("inf"))[..., None] * LOG2E  # base 2
    D = (d_out * out).sum(dim=-1, keepdim=True)  # (..., L, 1)
    dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    for i0 in range(0, L, block_q):
        i1 = min(i0 + block_q, L)
        q_i, do_i = q[..., i0:i1, :], d_out[..., i0:i1, :]
        for j0, j1, full in band.tiles(i0, i1, block_k):
            k_j, v_j = k[..., j0:j1, :], v[..., j0:j1, :]
            if mods:
                with torch.enable_grad():
                    raw = torch.matmul(q_i, k_j.transpose(-2, -1)).mul_(spec.scale).requires_grad_()
                    modded = apply_score_mods(raw, spec, i0, i1, j0, j1)
                scores = modded.detach() * LOG2E
            else:
                scores = torch.matmul(q_i, k_j.transpose(-2, -1)).mul_(spec.scale * LOG2E)
            _mask_tile_(scores, mask, spec, band, full, i0, i1, j0, j1)  # (..., bq, bk), base 2
            p = scores.sub_(lse[..., i0:i1, :]).exp2_()  # this tile's weights, recomputed
            dv[..., j0:j1, :] += torch.matmul(p.transpose(-2, -1), do_i)  # (..., bk, Ev)
            dp = torch.matmul(do_i, v_j.transpose(-2, -1))  # (..., bq, Ev) x (..., Ev, bk)
            dz = p.mul_(dp.sub_(D[..., i0:i1, :]))  # softmax backward: P * (dP - D)
            if mods:  # back through the modifiers to the scaled scores
                dz = torch.autograd.grad(modded, raw, dz)[0]
            dq[..., i0:i1, :] += torch.matmul(dz, k_j).mul_(spec.scale)  # (..., bq, E)
            dk[..., j0:j1, :] += torch.matmul(dz.transpose(-2, -1), q_i).mul_(spec.scale)
    return dq, dk, dv


class FlashAttentionFunction(torch.autograd.Function):
    """Tiled forward that saves ``lse``; backward by recomputation, tile by tile."""

    @staticmethod
    def forward(ctx: Any, q: Any, k: Any, v: Any, mask: Any, spec: AttentionSpec,
                block_q: int, block_k: int) -> tuple[Any, Any]:
        """Run the tiled forward in float32 (float64 for float64 inputs); save for backward."""
        work = torch.float64 if q.dtype == torch.float64 else torch.float32
        qw, kw, vw = (x if x.dtype == work else x.to(work) for x in (q, k, v))
        if mask is not None:
            mask = mask.to(qw.device).expand(*spec.batch, spec.L, spec.S)
        out, lse = forward(qw, kw, vw, mask, spec, block_q, block_k)
        ctx.save_for_backward(qw, kw, vw, out, lse)
        ctx.mask, ctx.spec, ctx.blocks = mask, spec, (block_q, block_k)
        ctx.inputs = [(x.shape, x.dtype) for x in (q, k, v)]
        ctx.mark_non_differentiable(lse)
        return out.to(q.dtype), lse

    @staticmethod
    def backward(ctx: Any, d_out: Any, _d_lse: Any) -> tuple[Any, ...]:
        """Gradients for q, k and v (none for the mask, spec and block sizes)."""
        qw, kw, vw, out, lse = ctx.saved_tensors
        dq, dk, dv = backward(qw, kw, vw, ctx.mask, out, lse, d_out.to(out.dtype),
                              ctx.spec, *ctx.blocks)
        # Broadcast batch dimensions: each input's gradient sums over its copies.
        grads = [g.sum_to_size(shape).to(dtype)
                 for g, (shape, dtype) in zip((dq, dk, dv), ctx.inputs, strict=True)]
        return (*grads, None, None, None, None)
