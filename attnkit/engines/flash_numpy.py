"""The FlashAttention loop in NumPy: tiled attention with the online softmax.

The same function as the reference engine, computed one ``(block_q, block_k)``
tile of scores at a time, so that the ``(L, S)`` score matrix never exists::

    for each block of queries q_i                       (block_q rows)
        m_i = -inf, l_i = 0, acc = 0                    running max, sum, output
                                                        (sink logits s_h: m_i = s_h,
                                                         l_i = 1, the sink already seen)
        for each block of keys/values k_j, v_j          (block_k rows; only the
                                                         tiles the masks leave)
            scores = q_i @ k_j^T * scale (+ masks)      one tile, (block_q, block_k)
            m_new  = max(m_i, rowmax(scores))
            p      = exp(scores - m_new)
            alpha  = exp(m_i - m_new)                   rescales what came before
            l_i    = alpha * l_i + rowsum(p)
            acc    = alpha * acc + p @ v_j
            m_i    = m_new
        out_i = acc / l_i          (0 where l_i == 0: every key masked)
        lse_i = m_i + log(l_i)     (saved for the backward pass)

Savings on elementwise work, which is what a CPU core spends its time on next to
the two matrix products:

* the shift ``- m_i`` rides in the first product as an extra column of ``q_i``
  (``-m_i``) against an extra row of ones under ``k_j^T``, and ``rowsum(p)`` is a
  matrix-vector product with a vector of ones (a pass that BLAS makes faster than
  a reduction);
* one tile of memory is reused by every tile (the products write into it), so
  no tile allocates; it and the running state are kept between calls, per
  thread, up to :data:`~attnkit.engines._online.SCRATCH_KEEP_BYTES`
  (:func:`attnkit.engines.release_scratch` frees them), because fresh memory
  costs a page fault per 4 KiB page when first written;
* optimistic shift: any shift gives the same softmax, as long as ``exp`` cannot
  overflow, so only the first tile of a block of queries computes row maxima (they
  become the shift) and later tiles compute none; at the block's end, a row sum or
  output that is not finite means that an exponential overflowed (scores far above
  the first tile's), and the block is computed again carefully, with a running
  maximum that moves lazily: only when a tile's scores exceed it by more than
  :data:`~attnkit.engines._online.RESCALE_THRESHOLD`
  (:data:`~attnkit.engines._online.OPTIMISTIC`);
* ``exp`` or ``exp2``, whichever this machine computes faster
  (:func:`~attnkit.engines._online.numpy_exp_base`).

Tiles that the causal mask or a sliding window hide from every query of the
block are never computed (:class:`attnkit.core.masks.Band`), so windowed attention
costs time linear in the sequence length.
"""

from __future__ import annotations

import math

import numpy as np

from ..core._arrays import work_dtype
from ..core._validate import AttentionSpec, CausalArg, Window, check_attention_args
from ..core.masks import Band
from . import _online
from .mods import apply_score_mods


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
    window: Window | None = None,
    sinks: int = 0,
    softcap: float | None = None,
    sink_logits: np.ndarray | None = None,
    return_lse: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Tiled attention in NumPy with the online softmax; never forms the ``(L, S)`` matrix.

    Shapes::

        q     (..., L, E)      k (..., S, E)      v (..., S, Ev)
        mask  broadcastable to (..., L, S)
        out   (..., L, Ev)     lse (..., L)

    Args:
        q, k, v: NumPy arrays of one floating dtype (float16 is computed in float32).
        block_q: queries per tile (default: :func:`default_blocks`); any positive integer.
        block_k: keys per tile (default: :func:`default_blocks`); any positive integer.
        mask: boolean (``True`` = takes part) or floating (added to the scores).
        causal: ``False``, ``True``/``"top-left"`` or ``"bottom-right"``.
        scale: factor on ``q @ k^T``; default ``1 / sqrt(E)``.
        window, sinks, softcap, sink_logits: as :func:`attnkit.attention`.
        return_lse: also return the log-sum-exp of each row of scores
            (``-inf`` for a row whose every key is masked; with sink logits the
            sink's ``exp(s_h)`` is inside the sum).

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
    spec = check_attention_args(q, k, v, mask=mask, causal=causal, scale=scale, window=window,
                                sinks=sinks, softcap=softcap, sink_logits=sink_logits)
    if spec.kind != "numpy":
        raise TypeError(f"flash_attention_numpy takes NumPy arrays; got q of kind {spec.kind}")
    out, lse = forward(q, k, v, mask, spec, *_online.call_blocks(spec, block_q, block_k))
    return (out, lse) if return_lse else out


def default_blocks(banded: bool = False, width: int | None = None) -> tuple[int, int]:
    """The ``(block_q, block_k)`` this engine uses when none are given.

    ``banded``: for a call with a causal mask or a window; ``width``: the most keys a
    query sees under a window (:func:`attnkit.engines._online.default_blocks`).

    Example:
        >>> bq, bk = default_blocks()
        >>> bq > 0 and bk > 0
        True
    """
    return _online.blocks(None, None, "numpy", banded, width)


def forward(
    q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None,
    spec: AttentionSpec, block_q: int, block_k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The tiled forward pass on validated NumPy inputs; returns ``(out, lse)``."""
    work = work_dtype(q)
    base = _online.numpy_exp_base()
    exp = np.exp2 if base == "exp2" else np.exp
    u = _online.units(base)  # scores are kept in units of the exponential's base
    thresh = _online.RESCALE_THRESHOLD * u
    L, S, E, Ev, batch = spec.L, spec.S, spec.E, spec.Ev, spec.batch
    band = Band.of_spec(spec)
    mods = spec.softcap is not None or spec.score_mod is not None
    sink_u = None  # sink logits in the scores' units, (..., 1, 1): the online softmax's start
    if spec.sink_logits is not None:
        sink_u = np.broadcast_to(spec.sink_logits, batch).astype(work)[..., None, None] * work(u)

    # q is scaled block by block (natural units when a modifier needs them, else the base's)
    q_factor = work(spec.scale * (1.0 if mods else u))
    qb = np.broadcast_to(q, (*batch, L, E))
    vw = np.ascontiguousarray(v, dtype=work)
    if mask is not None:
        mask = np.broadcast_to(mask, (*batch, L, S))  # a view: tiles are slices of it
        if spec.mask_kind == "float":
            mask = mask.astype(work, copy=False) * work(u)  # in the scores' units

    out = np.zeros((*batch, L, Ev), dtype=work)
    lse = np.full((*batch, L), -np.inf, dtype=work)
    nb, nkb = math.prod(batch), math.prod(k.shape[:-2])
    bq, bk = min(block_q, L), min(block_k, S)
    sizes = (nkb * (E + 1) * S, nb * bq * bk, nb * bq * (E + 1), nb * bq * Ev, nb * bq * Ev)
    with (_online.scratch("numpy", sizes, work) as (kt_mem, tile_mem, qa_mem, acc_mem, pv_mem),
          np.errstate(over="ignore", invalid="ignore")):  # an optimistic pass may overflow
        kt = kt_mem.reshape(*k.shape[:-2], E + 1, S)  # [k^T; 1]: the shift's row
        kt[..., :E, :] = np.swapaxes(k, -1, -2)
        kt[..., E, :] = 1.0
        ones = np.ones((bk, 1), dtype=work)  # row sums as a matrix-vector product
        for i0 in range(0, L, block_q):
            i1 = min(i0 + block_q, L)
            n = nb * (i1 - i0)
            qa = qa_mem[: n * (E + 1)].reshape(*batch, i1 - i0, E + 1)  # [q_i, -m_i]
            np.multiply(qb[..., i0:i1, :], q_factor, out=qa[..., :E])
            acc = acc_mem[: n * Ev].reshape(*batch, i1 - i0, Ev)  # running output
            pv = pv_mem[: n * Ev].reshape(acc.shape)
            for careful in (False, True) if _online.OPTIMISTIC else (True,):
                if sink_u is None:  # nothing seen yet
                    qa[..., E] = 0.0
                    m_i = np.full((*batch, i1 - i0, 1), -np.inf, dtype=work)  # running shift
                    l_i = np.zeros((*batch, i1 - i0, 1), dtype=work)  # sum of exponentials
                else:  # the sink seen first: m_0 = s_h, l_0 = exp(s_h - m_0) = 1, acc_0 = 0
                    m_i = np.broadcast_to(sink_u, (*batch, i1 - i0, 1)).copy()
                    l_i = np.ones((*batch, i1 - i0, 1), dtype=work)
                    qa[..., E:] = -m_i
                acc[...] = 0.0
                track = True  # compute each tile's maximum: until every row has a shift
                for j0, j1, full in band.tiles(i0, i1, block_k):
                    s = tile_mem[: n * (j1 - j0)].reshape(*batch, i1 - i0, j1 - j0)
                    if mods:  # natural scores -> modifiers -> the base's units, then shift
                        raw = apply_score_mods(qa[..., :E] @ kt[..., :E, j0:j1], spec,
                                               i0, i1, j0, j1)
                        np.multiply(raw, work(u), out=s)
                        s += qa[..., E:]
                    else:  # (..., bq, E+1) x (..., E+1, bk): scores - m_i, into the tile
                        np.matmul(qa, kt[..., j0:j1], out=s)
                    if mask is not None and spec.mask_kind == "float":
                        s += mask[..., i0:i1, j0:j1]
                    if mask is not None and spec.mask_kind == "bool":
                        np.copyto(s, -np.inf, where=~mask[..., i0:i1, j0:j1])
                    if not full:  # the tile crosses the causal diagonal or the window's edge
                        rows = np.arange(i0, i1)[:, None]
                        cols = np.arange(j0, j1)[None, :]
                        np.copyto(s, -np.inf, where=~band.mask(rows, cols))
                    if track:
                        r = s.max(axis=-1, keepdims=True)  # the tile's max, relative to the shift
                        seen = np.isfinite(m_i)
                        move = (r > thresh) | (~seen & (r > -np.inf))  # lazy: only when needed
                        if move.any():
                            s -= np.where(move, r, 0.0)
                            m_new = np.where(move, np.where(seen, m_i, 0.0) + r, m_i)
                            alpha = exp(np.where(move, m_i, 0.0) - np.where(move, m_new, 0.0))
                            acc *= alpha  # rescale what came before
                            l_i *= alpha
                            m_i = m_new
                            qa[..., E:] = np.where(np.isfinite(m_i), -m_i, 0.0)
                        track = careful or not np.isfinite(m_i).all()
                    p = exp(s, out=s)  # (..., bq, bk), in place: no second tile
                    l_i += p @ ones[: j1 - j0]  # rowsum(p)
                    acc += np.matmul(p, vw[..., j0:j1, :], out=pv)  # (..., bq, bk) x (..., bk, Ev)
                if careful or (np.isfinite(l_i).all() and np.isfinite(acc).all()):
                    break  # else an exponential overflowed: once more, carefully

            alive = l_i > 0  # False where every key of the row is masked
            np.divide(acc, l_i, out=out[..., i0:i1, :], where=alive)  # (out is 0 elsewhere)
            with np.errstate(divide="ignore"):
                log_l = np.log2(l_i) if base == "exp2" else np.log(l_i)
                lse[..., i0:i1] = np.where(alive, _online.lse_natural(m_i, log_l, base),
                                           -np.inf)[..., 0]
    return out.astype(spec.dtype, copy=False), lse
