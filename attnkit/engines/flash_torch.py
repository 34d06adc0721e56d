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
``k``, ``v`` and the sink logits: tensors that a ``score_mod`` captures (a learned
bias table, say) get none from this engine; use ``backend="torch"`` to train them.

Sink logits ``s_h`` are the online softmax's initial state: before any key, the
sink has been seen, ``m_0 = s_h``, ``l_0 = 1``, ``acc_0 = 0`` (folded into the first
tile's update). Their gradient needs no tile: ``ds_h = -sum_i w_i^sink D_i`` with
``w_i^sink = exp(s_h - lse_i)`` from the saved log-sum-exp.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from ..core._arrays import work_dtype
from ..core._validate import AttentionSpec, CausalArg, Window, check_attention_args
from ..core.masks import Band
from . import _online
from ._online import LOG2E
from .flash import CAPS
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
    sink_logits: Any = None,
    block_q: int | None = None,
    block_k: int | None = None,
    return_lse: bool = False,
    spec: AttentionSpec | None = None,
) -> Any:
    """Tiled attention on torch tensors, differentiable through a recomputing backward.

    Shapes as :func:`attnkit.engines.flash_numpy.flash_attention_numpy`. Gradients
    flow to ``q``, ``k``, ``v`` and ``sink_logits``; a floating ``mask`` gets no gradient
    (a mask that requires one is a ``ValueError``). A query whose every key is masked
    gets a zero output row and zero gradients.

    Args:
        q, k, v, mask, causal, scale, window, sinks, softcap, sink_logits: as
            :func:`attnkit.attention`.
        block_q, block_k: tile sizes (default:
            :func:`~attnkit.engines._online.default_blocks`).
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
                                    window=window, sinks=sinks, softcap=softcap,
                                    sink_logits=sink_logits)
        if spec.kind != "torch":
            raise TypeError(f"flash_attention_torch takes torch tensors; got q of kind {spec.kind}")
        CAPS.refuse("flash", spec, mask)  # attnkit.attention has done this for its calls
    bq, bk = _online.call_blocks(spec, block_q, block_k, "torch")
    if spec.L == 0 or spec.S == 0:
        raise ValueError(f"flash_attention_torch needs L > 0 and S > 0; got L={spec.L}, "
                         f"S={spec.S} (attnkit.attention handles empty inputs)")
    if not return_lse and not {"q", "k", "v", "sink_logits"} & set(spec.needs_grad):
        # Inference: no graph to record and no log-sum-exp to keep for a backward pass.
        return _forward_in_work_dtype(q, k, v, mask, spec, bq, bk, need_lse=False)[1].to(q.dtype)
    out, lse = FlashAttentionFunction.apply(q, k, v, mask, spec.sink_logits, spec, bq, bk)
    return (out, lse) if return_lse else out


def _forward_in_work_dtype(q: Any, k: Any, v: Any, mask: Any, spec: AttentionSpec, block_q: int,
                           block_k: int, need_lse: bool) -> tuple[tuple[Any, ...], Any, Any]:
    """:func:`forward` in float32 (float64 for float64 inputs), mask on the inputs' device.

    The inference shortcut and :class:`FlashAttentionFunction` both run this.
    Returns ``((qw, kw, vw, mask), out, lse)``: the inputs as computed, and the results.
    """
    work = work_dtype(q)
    qw, kw, vw = (x if x.dtype == work else x.to(work) for x in (q, k, v))
    if mask is not None:
        mask = mask.to(qw.device)
    if spec.sink_logits is not None:  # the logits in the working precision, without a graph
        spec = dataclasses.replace(spec, sink_logits=spec.sink_logits.detach().to(
            device=qw.device, dtype=work))
    out, lse = forward(qw, kw, vw, mask, spec, block_q, block_k, need_lse=need_lse)
    return (qw, kw, vw, mask), out, lse


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


def _full_mask(mask: Any, spec: AttentionSpec) -> Any:
    """``mask`` as a view of shape ``(*batch, L, S)``, so that every tile can slice it."""
    return None if mask is None else mask.expand(*spec.batch, spec.L, spec.S)


def _merged_batch(q: Any, k: Any, v: Any, mask: Any,
                  spec: AttentionSpec) -> tuple[int, ...] | None:
    """The batch shape the loop runs on, when merging the call's costs no copy; else ``None``.

    ``torch.matmul`` on more than three dimensions reshapes its operands, which copies
    a transposed slice of ``k`` on every tile; three-dimensional operands go to
    ``bmm`` as they are, and a single matrix (a batch of one) to ``mm``, which is
    faster still on a slice of ``k``. Merging needs inputs that are not broadcast, no
    mask and no ``score_mod`` (whose head index depends on the batch shape).
    ``None`` also when the call's batch shape is already the merged one.
    """
    if mask is not None or spec.score_mod is not None:
        return None
    if not all(tuple(x.shape[:-2]) == spec.batch for x in (q, k, v)):
        return None
    n = math.prod(spec.batch)
    merged = () if n == 1 else (n,)
    return None if merged == spec.batch else merged


def forward(q: Any, k: Any, v: Any, mask: Any, spec: AttentionSpec,
            block_q: int, block_k: int, need_lse: bool = True) -> tuple[Any, Any]:
    """The tiled forward on float32/float64 tensors; returns ``(out, lse)``, lse natural.

    With ``need_lse=False`` (inference) the log-sum-exp is not computed and ``lse``
    is ``None``.

    The loop is kept lean, because in torch each small operation has a fixed cost
    and each pass over a tile costs memory traffic:

    * the shift ``-m_i`` rides in the score product, as one more column of ``q_i``
      against a column of ones beside ``k`` (as in the NumPy engine), and ``p @ v_j``
      is accumulated by the product itself (``baddbmm_``);
    * the products write into one tile of memory that every tile reuses (kept
      between calls on the CPU, as in the NumPy engine);
    * optimistic shift: the first tile of a block of queries sets the shift to its
      row maxima (or the sink logit, where larger), and later tiles compute no
      maximum at all; a block whose row sums
      or outputs are not finite at its end (an exponential overflowed) is computed
      again with a running maximum, moved lazily (``_Tiles.block``;
      :data:`~attnkit.engines._online.OPTIMISTIC`);
    * every update is in place.

    ``mask`` (or ``None``) is broadcastable to ``(..., L, S)``, on the inputs' device.
    """
    L, S, E, Ev, batch = spec.L, spec.S, spec.E, spec.Ev, spec.batch
    mask = _full_mask(mask, spec)
    shape = batch
    merged = _merged_batch(q, k, v, mask, spec)
    if merged is not None:  # one batch dimension or none: plain (batched) products
        batch = merged
        q, k, v = q.reshape(*batch, L, E), k.reshape(*batch, S, E), v.reshape(*batch, S, Ev)
    mods = spec.softcap is not None or spec.score_mod is not None
    base = _online.torch_exp_base() if q.device.type == "cpu" else "exp2"
    u = _online.units(base)  # scores in units of the exponential's base
    sink_u = None  # sink logits in the scores' units, (..., 1, 1): the online softmax's start
    if spec.sink_logits is not None:
        sink_u = spec.sink_logits.expand(shape).reshape(*batch, 1, 1) * u
    qb = q.expand(*batch, L, E)
    out = q.new_zeros((*batch, L, Ev))
    lse = q.new_full((*batch, L), float("-inf")) if need_lse else None
    nb, k_batch = math.prod(batch), tuple(k.shape[:-2])
    bq, bk = min(block_q, L), min(block_k, S)
    sizes = (math.prod(k_batch) * S * (E + 1), nb * bq * bk, nb * bq * (E + 1), nb * bq * Ev,
             nb * bq * Ev)
    with _online.scratch("torch", sizes, q.dtype, q.device) as (k_mem, tile_mem, q_mem, acc_mem,
                                                                pv_mem):
        ka = k_mem.view(*k_batch, S, E + 1)  # [k, 1]: its transpose is [k^T; 1]
        ka[..., :E].copy_(k)
        ka[..., E].fill_(1.0)
        tiles = _Tiles(spec, batch, Band.of_spec(spec),
                       ka.transpose(-2, -1), v, mask, mods, u, base, block_k, tile_mem, pv_mem,
                       sink_u)
        q_factor = spec.scale * (1.0 if mods else u)
        for i0 in range(0, L, block_q):
            i1 = min(i0 + block_q, L)
            n = nb * (i1 - i0)
            qa = q_mem[: n * (E + 1)].view(*batch, i1 - i0, E + 1)  # [q_i * scale, -m_i]
            torch.mul(qb[..., i0:i1, :], q_factor, out=qa[..., :E])
            acc = acc_mem[: n * Ev].view(*batch, i1 - i0, Ev)  # running output
            careful = not _online.OPTIMISTIC
            state = tiles.block(qa, acc, i0, i1, careful=careful)
            if state is None and not careful:  # overflowed, or no tile visible: once more
                state = tiles.block(qa, acc, i0, i1, careful=True)
            if state is not None:  # else no tile is visible: every key hidden from the block
                _finish_block(acc, *state, base, out, lse, i0, i1)
            elif sink_u is not None and lse is not None:  # only the sink: out 0, lse = s_h
                lse[..., i0:i1] = (sink_u / u)[..., 0]
    if batch != shape:
        out = out.reshape(*shape, L, Ev)
        lse = None if lse is None else lse.reshape(*shape, L)
    return out, lse


@dataclasses.dataclass
class _Tiles:
    """What the blocks of queries of one forward call share, and the loop over key tiles.

    ``kt`` is ``[k^T; 1]`` (``(..., E + 1, S)``): against a block of queries
    ``[q_i * scale, -m_i]`` its product gives the scores minus the shift. ``sink``:
    the sink logits in units ``u``, ``(..., 1, 1)``, or ``None``.
    """

    spec: AttentionSpec
    batch: tuple[int, ...]
    band: Band
    kt: Any
    v: Any
    mask: Any
    mods: bool
    u: float
    base: str
    block_k: int
    tile_mem: Any
    pv_mem: Any
    sink: Any = None
    _k_tiles: dict[tuple[int, int], tuple[Any, Any]] = dataclasses.field(default_factory=dict)
    _views: dict[tuple[int, int], Any] = dataclasses.field(default_factory=dict)

    def scores(self, qa: Any, m_i: Any, i0: int, i1: int, j0: int, j1: int,
               full: bool) -> Any:
        """One tile of scores, in units ``u``, minus the shift, masked: ``(..., bq, bk)``."""
        E = self.spec.E
        if (j0, j1) not in self._k_tiles:
            self._k_tiles[j0, j1] = (self.kt[..., j0:j1], self.v[..., j0:j1, :])
        k_j = self._k_tiles[j0, j1][0]
        if self.mods:  # natural scores through the modifiers, then the shift
            s = _mods(qa[..., :E], k_j[..., :E, :], self.spec, i0, i1, j0, j1, self.u)
            if m_i is not None:
                s.sub_(m_i)
        else:  # (..., bq, E + 1) x (..., E + 1, bk), into the tile's memory
            if (i1 - i0, j1 - j0) not in self._views:
                n = math.prod(self.batch) * (i1 - i0) * (j1 - j0)
                self._views[i1 - i0, j1 - j0] = self.tile_mem[:n].view(*self.batch, i1 - i0,
                                                                        j1 - j0)
            s = torch.matmul(qa, k_j, out=self._views[i1 - i0, j1 - j0])
        if self.mask is not None or not full:
            _mask_tile_(s, self.mask, self.spec, self.band, full, i0, i1, j0, j1, self.u)
        return s

    def accumulate(self, acc: Any, p: Any, v_j: Any) -> None:
        """``acc += p @ v_j``: by the product itself where BLAS can (two or three dimensions)."""
        if acc.dim() == 2:
            acc.addmm_(p, v_j)
        elif acc.dim() == 3 and v_j.dim() == 3 and v_j.shape[0] == acc.shape[0]:
            acc.baddbmm_(p, v_j)
        else:
            pv = self.pv_mem[: acc.numel()].view(acc.shape)
            acc.add_(torch.matmul(p, v_j, out=pv))

    def block(self, qa: Any, acc: Any, i0: int, i1: int,
              careful: bool) -> tuple[Any, Any, bool] | None:
        """Fold every visible key tile into ``acc`` for queries ``[i0, i1)``.

        Returns ``(m_i, l_i, guarded)``: the rows' running maxima (the shifts, which
        move lazily), their sums of exponentials
        (``l == 0``: every key hidden from the row) and whether any row could have
        seen nothing in the first tile (a mask, or a tile the band cuts); ``None``
        when no tile is visible, or when this optimistic pass (``careful=False``) ends
        with a row sum or an output that is not finite (an exponential overflowed).

        The first tile sets the shift to its row maxima. With sink logits the state
        starts as the sink's, ``m_0 = s_h``, ``l_0 = 1``, ``acc_0 = 0``, and the first
        tile's update folds it in: ``m_1 = max(s_h, rowmax)``, ``l_1 = exp(s_h - m_1)
        + rowsum(exp(s - m_1))``. A careful pass then tracks
        the maximum tile by tile, moving the shift only when a tile's scores exceed
        it by more than :data:`~attnkit.engines._online.RESCALE_THRESHOLD`; an
        optimistic pass computes no more maxima. A row that sees no key in the
        first tile makes the rest of the pass careful.
        """
        E = self.spec.E
        exp_ = torch.Tensor.exp2_ if self.base == "exp2" else torch.Tensor.exp_
        thresh = _online.RESCALE_THRESHOLD * self.u
        qa[..., E:].zero_()
        m_i = l_i = None  # the running maximum (the shift) and the sum of exponentials
        guarded = self.mask is not None
        for j0, j1, full in self.band.tiles(i0, i1, self.block_k):
            s = self.scores(qa, m_i, i0, i1, j0, j1, full)
            v_j = self._k_tiles[j0, j1][1]
            if m_i is None:  # the first tile: its row maxima become the shift
                guarded = guarded or not full
                r = s.amax(dim=-1, keepdim=True)
                if self.sink is not None:  # from the initial state m_0 = s_h, l_0 = 1
                    r = torch.maximum(r, self.sink)
                m_i = r.masked_fill_(r == float("-inf"), 0.0) if guarded else r
                torch.neg(m_i, out=qa[..., E:])  # later products subtract it
                p = exp_(s.sub_(m_i))
                l_i = p.sum(dim=-1, keepdim=True)
                if self.sink is not None:  # l_0 = 1 rescaled by alpha = exp(m_0 - m_1)
                    l_i.add_(exp_(self.sink - m_i))
                torch.matmul(p, v_j, out=acc)
                careful = careful or (guarded and bool((l_i == 0).any()))
                continue
            if careful:
                r = s.amax(dim=-1, keepdim=True)  # relative to the shift
                move = (r > thresh) | ((l_i == 0) & (r > float("-inf")))
                if bool(move.any()):  # lazy: move the shift only where needed
                    delta = torch.where(move, r, 0.0)
                    s.sub_(delta)
                    m_i.add_(delta)
                    torch.neg(m_i, out=qa[..., E:])
                    # rescales what came before; 0 for a row that has seen nothing yet
                    alpha = exp_(torch.where(l_i > 0, -delta, float("-inf")))
                    l_i.mul_(alpha)
                    acc.mul_(alpha)
            p = exp_(s)  # (..., bq, bk), in place
            l_i.add_(p.sum(dim=-1, keepdim=True))
            self.accumulate(acc, p, v_j)  # (..., bq, bk) x (..., bk, Ev)
        if m_i is None:
            return None
        # One sum each finds an inf or a nan (a sum of finite values that overflows
        # only costs a careful pass); torch.isfinite would take several passes over acc.
        if not careful and not math.isfinite(float(l_i.sum()) + float(acc.sum())):
            return None
        return m_i, l_i, guarded


def _finish_block(acc: Any, m_i: Any, l_i: Any, guarded: bool, base: str, out: Any,
                  lse: Any, i0: int, i1: int) -> None:
    """Write a block's outputs ``acc / l`` (0 where ``l == 0``) and its log-sum-exp."""
    o = out[..., i0:i1, :]
    torch.div(acc, l_i, out=o)
    dead = (l_i == 0) if guarded else None  # rows whose every key is masked
    if dead is not None:
        o.masked_fill_(dead, 0.0)
    if lse is not None:
        log_l = torch.log2(l_i) if base == "exp2" else torch.log(l_i)
        lse_i = _online.lse_natural(m_i, log_l, base)  # -inf where l_i = 0
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
    ``mask`` (or ``None``) is broadcastable to ``(..., L, S)``, on the inputs' device.
    """
    L, S, batch = spec.L, spec.S, spec.batch
    mask = _full_mask(mask, spec)
    merged = _merged_batch(q, k, v, mask, spec)
    if merged is not None:  # one batch dimension or none: plain (batched) products
        flat = dataclasses.replace(spec, batch=merged)
        E, Ev = spec.E, spec.Ev
        grads = backward(q.reshape(*merged, L, E), k.reshape(*merged, S, E),
                         v.reshape(*merged, S, Ev), None, out.reshape(*merged, L, Ev),
                         lse.reshape(*merged, L), d_out.reshape(*merged, L, Ev), flat,
                         block_q, block_k)
        return tuple(g.reshape(*batch, *g.shape[len(merged):]) for g in grads)
    band = Band.of_spec(spec)
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
    def forward(ctx: Any, q: Any, k: Any, v: Any, mask: Any, sink_logits: Any,
                spec: AttentionSpec, block_q: int, block_k: int) -> tuple[Any, Any]:
        """Run the tiled forward in float32 (float64 for float64 inputs); save for backward.

        ``sink_logits`` is ``spec.sink_logits`` (or ``None``), passed apart so that
        autograd sees it as an input.
        """
        (qw, kw, vw, mask), out, lse = _forward_in_work_dtype(q, k, v, mask, spec, block_q,
                                                              block_k, need_lse=True)
        ctx.save_for_backward(qw, kw, vw, out, lse)
        ctx.mask, ctx.spec, ctx.blocks = mask, spec, (block_q, block_k)
        ctx.inputs = [(x.shape, x.dtype) for x in (q, k, v)]
        ctx.sink = None if sink_logits is None else (
            sink_logits.detach().to(device=out.device, dtype=out.dtype), sink_logits.shape,
            sink_logits.dtype)
        ctx.mark_non_differentiable(lse)
        return out.to(q.dtype), lse

    @staticmethod
    def backward(ctx: Any, d_out: Any, _d_lse: Any) -> tuple[Any, ...]:
        """Gradients for q, k, v and the sink logits (none for the mask, spec and block sizes)."""
        qw, kw, vw, out, lse = ctx.saved_tensors
        d_out = d_out.to(out.dtype)
        dq, dk, dv = backward(qw, kw, vw, ctx.mask, out, lse, d_out, ctx.spec, *ctx.blocks)
        # Broadcast batch dimensions: each input's gradient sums over its copies.
        grads = [g.sum_to_size(shape).to(dtype)
                 for g, (shape, dtype) in zip((dq, dk, dv), ctx.inputs, strict=True)]
        d_sink = None
        if ctx.sink is not None:
            sink, shape, dtype = ctx.sink
            d_sink = sink_gradient(sink, out, lse, d_out, ctx.spec.batch).sum_to_size(shape)
            d_sink = d_sink.to(dtype)
        return (*grads, None, d_sink, None, None, None)


def sink_gradient(sink: Any, out: Any, lse: Any, d_out: Any, batch: tuple[int, ...]) -> Any:
    """``dL/ds_h`` at the batch shape: ``-sum_i w_i^sink D_i``, with no tile recomputed.

    The sink is one more key with score ``s_h`` and value 0, so the softmax backward
    gives it ``dz = w^sink (dP_sink - D_i)`` with ``dP_sink = dO_i . 0 = 0``, and
    ``w_i^sink = exp(s_h - lse_i)`` (``lse`` includes the sink). Shapes: ``sink``
    broadcastable to ``batch``, ``out``/``d_out (..., L, Ev)``, ``lse (..., L)`` ->
    ``batch``.

    Example:
        >>> out, d_out = torch.ones(1, 2, 3), torch.ones(1, 2, 3)
        >>> sink_gradient(torch.zeros(1), out, torch.zeros(1, 2), d_out, (1,))  # w = 1, D = 3
        tensor([-6.])
    """
    D = (d_out * out).sum(dim=-1)  # (..., L): D_i = dO_i . o_i
    w_sink = torch.exp(sink.expand(batch)[..., None] - lse)  # (..., L)
    return -(w_sink * D).sum(dim=-1)
