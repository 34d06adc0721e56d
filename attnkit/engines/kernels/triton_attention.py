"""Triton kernels for FlashAttention: a forward pass and a recomputing backward pass.

This module imports Triton at the top, so it is imported only when the Triton
engine runs (``attnkit.engines.triton_flash`` imports it, and the registry imports that module on first use).

Layout: every tensor is flattened to ``(B, length, width)`` with a contiguous last
dimension; ``B`` is all batch and head dimensions together. One program handles
one block of rows of one batch entry: ``grid = (cdiv(rows, BLOCK), B)``.

Symbols are the book's: ``m_i`` running maximum, ``l_i`` running sum, ``acc``
running (unnormalised) output, ``lse`` log-sum-exp. Scores are kept in base 2:
``qk_scale = scale * log2(e)`` turns ``exp`` into the cheaper ``exp2``, so
``m_i`` and ``lse`` as stored here are base-2 quantities.

Masks: lengths need not be multiples of the block sizes; rows and columns beyond
``L`` and ``S`` are handled by masked loads (and ``-inf`` scores), never by
asserts. Causal masking uses the diagonal offset ``o`` (query ``i`` sees key
``j`` iff ``j <= i + o``; ``o = 0`` top-left, ``S - L`` bottom-right). A key
mask ``BIAS`` (one float32 per key and batch entry, already in base-2 units:
0 = takes part, ``-inf`` = hidden, anything else is added to the scores) is
what a key-padding mask becomes. A row whose every key is masked gets ``l_i = 0``: its output is 0 and its
stored ``lse`` is ``+inf``, so that the backward's ``exp2(s - lse)`` is 0 there.

Sliding windows (``WINDOW``): query ``i`` also needs ``j >= i + lo_off`` unless
``j < sinks`` (the causal offset ``o`` then carries the window's right bound as well,
see :class:`attnkit.core.masks.Band`). Only the key blocks a query block can see are
visited: the sink blocks, then the band; every visited block is masked. Soft-capping
(``SOFTCAP``): scores become ``c * tanh(s / c)`` before masking, and the backward
multiplies ``dS`` by ``1 - tanh^2``. Sink logits (``HAS_SINK``: one float32 per batch
entry, in base-2 units) are the forward's initial state, ``m_i = s_h`` and
``l_i = 1`` (the sink seen, with a zero value, before any key); the backward kernels
need nothing more, because the stored ``lse`` includes the sink (the sink logits'
own gradient, ``-sum_i exp2(s_h - lse_i) D_i``, is a row sum computed outside).

FLOP count (for the TFLOP/s figures of the benchmark): the forward does two
matrix products of ``2 * L * S * E`` flops each, ``4 * B * L * S * E`` in all
(about half of that with a causal mask when ``L == S``); the backward does five
(``Q K^T`` again, ``dV``, ``dP``, ``dQ``, ``dK``), counted as 2.5 times the forward.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _tanh(x):
    """``tanh(x)`` as ``2 * sigmoid(2x) - 1`` (the interpreter and every GPU have sigmoid)."""
    return 2.0 * tl.sigmoid(2.0 * x) - 1.0


@triton.jit
def _dot(a, b, IEEE: tl.constexpr):
    """``a @ b`` in float32; exact IEEE products when ``IEEE`` (float32 inputs).

    Without ``IEEE``, the tensor cores' default (exact for 16-bit inputs).
    """
    if IEEE:
        out = tl.dot(a, b, input_precision="ieee")
    else:
        out = tl.dot(a, b)
    return out


@triton.jit
def _dot_acc(a, b, acc, IEEE: tl.constexpr):
    """``acc + a @ b``, accumulated by the product itself (see :func:`_dot`)."""
    if IEEE:
        out = tl.dot(a, b, acc, input_precision="ieee")
    else:
        out = tl.dot(a, b, acc)
    return out


@triton.jit
def _visible(rows, cols, S, offset, lo_off, sinks, CAUSAL: tl.constexpr, WINDOW: tl.constexpr):
    """``(len(rows), len(cols))``: key ``j`` exists and query ``i`` sees it (causal, window, sinks)."""
    visible = cols[None, :] < S
    if CAUSAL:
        visible = visible & (cols[None, :] <= rows[:, None] + offset)
    if WINDOW:
        visible = visible & ((cols[None, :] >= rows[:, None] + lo_off) | (cols[None, :] < sinks))
    return visible


@triton.jit
def _key_blocks(start_m, S, offset, lo_off, sinks, BLOCK_M: tl.constexpr,
                BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr, WINDOW: tl.constexpr):
    """The key blocks that queries ``[start_m, start_m + BLOCK_M)`` visit, as two ranges.

    Returns ``(first_stop, second_start, hi)``: the blocks ``[0, first_stop)`` are
    visible to every row (without a window; the sink blocks with one, masked), the
    blocks ``[second_start, hi)`` cross the causal diagonal, the window's edge or the
    end of the keys, and need masks; the blocks between are hidden from every row.
    """
    hi = S
    full = (S // BLOCK_N) * BLOCK_N
    if CAUSAL:
        # the last row (start_m + BLOCK_M - 1) sees keys j <= start_m + BLOCK_M - 1 + offset
        hi = tl.minimum(S, tl.maximum(start_m + BLOCK_M + offset, 0))
        # the first row sees keys j <= start_m + offset: whole blocks below that are full
        full = tl.minimum(full, (tl.maximum(start_m + offset + 1, 0) // BLOCK_N) * BLOCK_N)
    first_stop = full
    second_start = full
    if WINDOW:
        # the first row sees keys j >= start_m + lo_off (and the sinks): skip the blocks
        # before that, visit the sink blocks, then the band, all masked
        second_start = (tl.maximum(start_m + lo_off, 0) // BLOCK_N) * BLOCK_N
        first_stop = tl.minimum(tl.cdiv(sinks, BLOCK_N) * BLOCK_N, second_start)
    return first_stop, second_start, hi


@triton.jit
def _fwd_inner(acc, l_i, m_i, q, K, V, BIAS, stride_kn, stride_vn, offs_m, offs_n, offs_e,
               offs_ev, lo, hi, S, qk_scale, offset, lo_off, sinks, cap_in, cap_out,
               BLOCK_N: tl.constexpr, MASKED: tl.constexpr, CAUSAL: tl.constexpr,
               HAS_BIAS: tl.constexpr, IEEE: tl.constexpr, WINDOW: tl.constexpr,
               SOFTCAP: tl.constexpr):
    """Fold the key blocks ``[lo, hi)`` into the running state ``(acc, l_i, m_i)``.

    ``MASKED`` blocks may cross the causal diagonal or the end of the keys;
    the others are known to be fully visible, and skip that work.
    """
    for start_n in range(lo, hi, BLOCK_N):
        start_n = tl.multiple_of(start_n, BLOCK_N)
        cols = start_n + offs_n  # (BLOCK_N,) key indices
        if MASKED:
            k = tl.load(K + cols[:, None] * stride_kn + offs_e[None, :],
                        mask=cols[:, None] < S, other=0.0)
        else:
            k = tl.load(K + cols[:, None] * stride_kn + offs_e[None, :])
        # scores, base 2: (BLOCK_M, E) x (E, BLOCK_N) -> (BLOCK_M, BLOCK_N)
        s = _dot(q, tl.trans(k), IEEE) * qk_scale
        if SOFTCAP:  # c * tanh(s / c) in natural units: cap_in = ln 2 / c, cap_out = c log2 e
            s = cap_out * _tanh(s * cap_in)
        if MASKED:
            visible = _visible(offs_m, cols, S, offset, lo_off, sinks, CAUSAL, WINDOW)
            s = tl.where(visible, s, float("-inf"))
        if HAS_BIAS:
            s += tl.load(BIAS + cols, mask=cols < S, other=float("-inf"))[None, :]
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # no (-inf) - (-inf)
        p = tl.exp2(s - m_safe[:, None])  # (BLOCK_M, BLOCK_N)
        alpha = tl.exp2(m_i - m_safe)  # rescales what was summed before
        l_i = l_i * alpha + tl.sum(p, 1)
        if MASKED:
            v = tl.load(V + cols[:, None] * stride_vn + offs_ev[None, :],
                        mask=cols[:, None] < S, other=0.0)
        else:
            v = tl.load(V + cols[:, None] * stride_vn + offs_ev[None, :])
        acc = acc * alpha[:, None]
        acc = _dot_acc(p.to(v.dtype), v, acc, IEEE)  # (BLOCK_M, BLOCK_N) x (BLOCK_N, EV)
        m_i = m_new
    return acc, l_i, m_i


@triton.jit
def attn_fwd(Q, K, V, BIAS, SINK, Out, LSE, VISITS,
             stride_qb, stride_qm, stride_kb, stride_kn, stride_vb, stride_vn,
             stride_ob, stride_om, stride_bias,
             L, S, qk_scale, offset, lo_off, sinks, cap_in, cap_out,
             E: tl.constexpr, EV: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
             CAUSAL: tl.constexpr, HAS_BIAS: tl.constexpr, IEEE: tl.constexpr,
             WINDOW: tl.constexpr, SOFTCAP: tl.constexpr, COUNT: tl.constexpr,
             HAS_SINK: tl.constexpr):
    """One block of ``BLOCK_M`` queries of batch entry ``b``: ``Out`` and ``LSE`` (base 2).

    With ``COUNT``, also the number of keys whose scores the block computed, into
    ``VISITS[b, program]`` (int32; for tests of the tile choice). With ``HAS_SINK``,
    ``SINK[b]`` is batch entry ``b``'s sink logit (base 2), the running state's start.
    """
    start_m = tl.program_id(0) * BLOCK_M
    b = tl.program_id(1).to(tl.int64)
    offs_m = start_m + tl.arange(0, BLOCK_M)  # query indices
    offs_n = tl.arange(0, BLOCK_N)
    offs_e = tl.arange(0, E)
    offs_ev = tl.arange(0, EV)
    Q += b * stride_qb
    K += b * stride_kb
    V += b * stride_vb
    BIAS += b * stride_bias
    q = tl.load(Q + offs_m[:, None] * stride_qm + offs_e[None, :],
                mask=offs_m[:, None] < L, other=0.0)  # (BLOCK_M, E)

    if HAS_SINK:  # the sink seen first: m_0 = s_h, l_0 = exp2(s_h - m_0) = 1, acc_0 = 0
        m_i = tl.zeros([BLOCK_M], dtype=tl.float32) + tl.load(SINK + b)
        l_i = tl.full([BLOCK_M], 1.0, dtype=tl.float32)
    else:
        m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)  # running max
        l_i = tl.zeros([BLOCK_M], dtype=tl.float32)  # running sum of exp2
    acc = tl.zeros([BLOCK_M, EV], dtype=tl.float32)  # running output

    # key blocks [0, first_stop): all visible (or the sinks'); [second_start, hi): masked
    first_stop, second_start, hi = _key_blocks(start_m, S, offset, lo_off, sinks, BLOCK_M,
                                               BLOCK_N, CAUSAL, WINDOW)
    acc, l_i, m_i = _fwd_inner(acc, l_i, m_i, q, K, V, BIAS, stride_kn, stride_vn,
                               offs_m, offs_n, offs_e, offs_ev, 0, first_stop, S, qk_scale,
                               offset, lo_off, sinks, cap_in, cap_out,
                               BLOCK_N, WINDOW, CAUSAL, HAS_BIAS, IEEE, WINDOW, SOFTCAP)
    acc, l_i, m_i = _fwd_inner(acc, l_i, m_i, q, K, V, BIAS, stride_kn, stride_vn,
                               offs_m, offs_n, offs_e, offs_ev, second_start, hi, S, qk_scale,
                               offset, lo_off, sinks, cap_in, cap_out,
                               BLOCK_N, True, CAUSAL, HAS_BIAS, IEEE, WINDOW, SOFTCAP)
    if COUNT:  # the keys whose scores the two loops computed: their trip counts x BLOCK_N
        visits = (tl.cdiv(first_stop, BLOCK_N)
                  + tl.cdiv(tl.maximum(hi - second_start, 0), BLOCK_N)) * BLOCK_N
        tl.store(VISITS + b * tl.num_programs(0) + tl.program_id(0), visits)  # int32

    alive = l_i > 0.0  # False where every key of the row is masked
    l_safe = tl.where(alive, l_i, 1.0)
    out = acc / l_safe[:, None]  # acc is 0 on dead rows, so the output is 0
    lse = tl.where(alive, m_i + tl.log2(l_safe), float("inf"))
    tl.store(Out + b * stride_ob + offs_m[:, None] * stride_om + offs_ev[None, :],
             out.to(Out.dtype.element_ty), mask=offs_m[:, None] < L)
    tl.store(LSE + b * L + offs_m, lse, mask=offs_m < L)


@triton.jit
def attn_bwd_dkdv(Q, K, V, BIAS, dO, LSE, Delta, dK, dV,
                  stride_qb, stride_qm, stride_kb, stride_kn, stride_vb, stride_vn,
                  stride_ob, stride_om, stride_bias,
                  L, S, qk_scale, scale, offset, lo_off, sinks, cap_in, cap_out,
                  E: tl.constexpr, EV: tl.constexpr, BLOCK_M: tl.constexpr,
                  BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr, HAS_BIAS: tl.constexpr,
                  IEEE: tl.constexpr, WINDOW: tl.constexpr, SOFTCAP: tl.constexpr):
    """``dK`` and ``dV`` for one block of ``BLOCK_N`` keys, looping over the query blocks.

    Works on transposed tiles (keys as rows): ``pT = exp2(k q^T * qk_scale - lse)``,
    ``dV += pT dO``, ``dpT = v dO^T``, ``dsT = pT * (dpT - Delta)``, ``dK += dsT q``.
    Rows beyond ``L`` load ``lse = +inf``, so their ``pT`` is 0 with no mask; columns
    beyond ``S`` give garbage that is never stored.
    """
    start_n = tl.program_id(0) * BLOCK_N
    b = tl.program_id(1).to(tl.int64)
    cols = start_n + tl.arange(0, BLOCK_N)  # key indices
    offs_m = tl.arange(0, BLOCK_M)
    offs_e = tl.arange(0, E)
    offs_ev = tl.arange(0, EV)
    Q += b * stride_qb
    dO += b * stride_ob
    LSE += b * L
    Delta += b * L
    k = tl.load(K + b * stride_kb + cols[:, None] * stride_kn + offs_e[None, :],
                mask=cols[:, None] < S, other=0.0)  # (BLOCK_N, E)
    v = tl.load(V + b * stride_vb + cols[:, None] * stride_vn + offs_ev[None, :],
                mask=cols[:, None] < S, other=0.0)  # (BLOCK_N, EV)
    bias = tl.zeros([BLOCK_N], dtype=tl.float32)
    if HAS_BIAS:
        bias = tl.load(BIAS + b * stride_bias + cols, mask=cols < S, other=float("-inf"))
    dk = tl.zeros([BLOCK_N, E], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, EV], dtype=tl.float32)

    lo = 0
    mid = 0
    if CAUSAL:
        # the first row that sees key start_n is start_n - offset; the first row that
        # sees every key of this block is start_n + BLOCK_N - 1 - offset
        lo = (tl.maximum(start_n - offset, 0) // BLOCK_M) * BLOCK_M
        mid = tl.cdiv(tl.maximum(start_n + BLOCK_N - 1 - offset, 0), BLOCK_M) * BLOCK_M
        mid = tl.maximum(mid, lo)
    last = L
    if WINDOW:
        # rows i with j >= i + lo_off for a key j of this block: i < start_n + BLOCK_N - lo_off,
        # unless the block holds a sink (seen by every later row); every block is masked
        if start_n >= sinks:
            last = tl.minimum(L, tl.maximum(start_n + BLOCK_N - lo_off, 0))
        mid = tl.maximum(last, lo)
    for stage in tl.static_range(2):
        if stage == 0:
            start, stop = lo, tl.minimum(mid, L)  # blocks crossing the diagonal (or band)
        else:
            start, stop = tl.maximum(mid, lo), last  # blocks that see the whole key block
        for start_m in range(start, stop, BLOCK_M):
            rows = start_m + offs_m  # query indices
            q = tl.load(Q + rows[:, None] * stride_qm + offs_e[None, :],
                        mask=rows[:, None] < L, other=0.0)  # (BLOCK_M, E)
            do = tl.load(dO + rows[:, None] * stride_om + offs_ev[None, :],
                         mask=rows[:, None] < L, other=0.0)  # (BLOCK_M, EV)
            lse = tl.load(LSE + rows, mask=rows < L, other=float("inf"))
            delta = tl.load(Delta + rows, mask=rows < L, other=0.0)
            sT = _dot(k, tl.trans(q), IEEE) * qk_scale  # (BLOCK_N, E) x (E, BLOCK_M)
            if SOFTCAP:
                tT = _tanh(sT * cap_in)
                sT = cap_out * tT
            if HAS_BIAS:
                sT += bias[:, None]
            pT = tl.exp2(sT - lse[None, :])  # the weights of this tile, transposed
            if CAUSAL and stage == 0:
                pT = tl.where(cols[:, None] <= rows[None, :] + offset, pT, 0.0)
            if WINDOW:
                pT = tl.where((cols[:, None] >= rows[None, :] + lo_off) | (cols[:, None] < sinks),
                              pT, 0.0)
            dv = _dot_acc(pT.to(do.dtype), do, dv, IEEE)
            dpT = _dot(v, tl.trans(do), IEEE)  # (BLOCK_N, BLOCK_M)
            dsT = pT * (dpT - delta[None, :])  # softmax backward, transposed
            if SOFTCAP:
                dsT = dsT * (1.0 - tT * tT)  # back through c * tanh(s / c)
            dk = _dot_acc(dsT.to(q.dtype), q, dk, IEEE)
    dk = dk * scale
    tl.store(dK + b * stride_kb + cols[:, None] * stride_kn + offs_e[None, :],
             dk.to(dK.dtype.element_ty), mask=cols[:, None] < S)
    tl.store(dV + b * stride_vb + cols[:, None] * stride_vn + offs_ev[None, :],
             dv.to(dV.dtype.element_ty), mask=cols[:, None] < S)


@triton.jit
def attn_bwd_dq(Q, K, V, BIAS, dO, LSE, Delta, dQ,
                stride_qb, stride_qm, stride_kb, stride_kn, stride_vb, stride_vn,
                stride_ob, stride_om, stride_bias,
                L, S, qk_scale, scale, offset, lo_off, sinks, cap_in, cap_out,
                E: tl.constexpr, EV: tl.constexpr, BLOCK_M: tl.constexpr,
                BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr, HAS_BIAS: tl.constexpr,
                IEEE: tl.constexpr, WINDOW: tl.constexpr, SOFTCAP: tl.constexpr):
    """``dQ`` for one block of ``BLOCK_M`` queries, looping over the key blocks.

    ``p = exp2(q k^T * qk_scale - lse)``, ``dp = dO v^T``, ``ds = p * (dp - Delta)``,
    ``dQ += ds k``. Columns beyond ``S`` are masked (they would get weight otherwise).
    """
    start_m = tl.program_id(0) * BLOCK_M
    b = tl.program_id(1).to(tl.int64)
    rows = start_m + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_e = tl.arange(0, E)
    offs_ev = tl.arange(0, EV)
    K += b * stride_kb
    V += b * stride_vb
    BIAS += b * stride_bias
    q = tl.load(Q + b * stride_qb + rows[:, None] * stride_qm + offs_e[None, :],
                mask=rows[:, None] < L, other=0.0)
    do = tl.load(dO + b * stride_ob + rows[:, None] * stride_om + offs_ev[None, :],
                 mask=rows[:, None] < L, other=0.0)
    lse = tl.load(LSE + b * L + rows, mask=rows < L, other=float("inf"))
    delta = tl.load(Delta + b * L + rows, mask=rows < L, other=0.0)
    dq = tl.zeros([BLOCK_M, E], dtype=tl.float32)

    first_stop, second_start, hi = _key_blocks(start_m, S, offset, lo_off, sinks, BLOCK_M,
                                               BLOCK_N, CAUSAL, WINDOW)  # as the forward
    for stage in tl.static_range(2):
        if stage == 0:
            start, stop = 0, first_stop  # fully visible key blocks (sink blocks: masked)
        else:
            start, stop = second_start, hi  # blocks that cross the diagonal or the end
        for start_n in range(start, stop, BLOCK_N):
            cols = start_n + offs_n
            k = tl.load(K + cols[:, None] * stride_kn + offs_e[None, :],
                        mask=cols[:, None] < S, other=0.0)  # (BLOCK_N, E)
            v = tl.load(V + cols[:, None] * stride_vn + offs_ev[None, :],
                        mask=cols[:, None] < S, other=0.0)  # (BLOCK_N, EV)
            s = _dot(q, tl.trans(k), IEEE) * qk_scale
            dp = _dot(do, tl.trans(v), IEEE)
            if SOFTCAP:
                t = _tanh(s * cap_in)
                s = cap_out * t
            if HAS_BIAS:
                s += tl.load(BIAS + cols, mask=cols < S, other=float("-inf"))[None, :]
            p = tl.exp2(s - lse[:, None])  # (BLOCK_M, BLOCK_N)
            if stage == 1 or WINDOW:
                p = tl.where(_visible(rows, cols, S, offset, lo_off, sinks, CAUSAL, WINDOW), p, 0.0)
            ds = p * (dp - delta[:, None])
            if SOFTCAP:
                ds = ds * (1.0 - t * t)  # back through c * tanh(s / c)
            dq = _dot_acc(ds.to(k.dtype), k, dq, IEEE)
    dq = dq * scale
    tl.store(dQ + b * stride_qb + rows[:, None] * stride_qm + offs_e[None, :],
             dq.to(dQ.dtype.element_ty), mask=rows[:, None] < L)
