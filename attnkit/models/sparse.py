r"""Sparse attention with a learned indexer (DeepSeek-V3.2's DSA): score, select, attend.

Three steps, each a function here, each on NumPy arrays or torch tensors:

1. :func:`indexer_scores` - a small indexer with ``H^I`` heads scores every key for
   every query, :math:`\iota_{ij} = \sum_{h} \nu_{i,h}\,\operatorname{ReLU}(q^I_{i,h}
   \cdot k^I_j)` (DeepSeek writes :math:`I_{t,s}` and :math:`w^I_{t,j}`; still one number
   per (query, key) pair: quadratic, but with few, narrow heads);
2. :func:`select_topk` - the ``k`` (the book's :math:`\kappa`) keys with the largest
   index scores per query, the set :math:`J_i` (:func:`window_selection` gives a
   sliding window's keys in the same form);
3. :func:`topk_attention` - exact softmax attention of each query over *its* selected
   keys only, by gathering them: ``O(L k (E + Ev))`` time and memory, no ``L x S``
   matrix.

:func:`topk_attention` equals ``attnkit.attention(q, k, v, mask=selection_mask(...))``
(the same selection written as an ``L x S`` boolean mask), forward and backward.

Shapes::

    q        (..., L, E)        k (..., S, E)      v (..., S, Ev)
    q_index  (..., L, H_I, d_I) k_index (..., S, d_I)   weights (..., L, H_I)
    scores   (..., L, S)        idx, valid (..., L, k)

Causal selection is bottom-right aligned (query ``i`` sees keys ``s <= i + S - L``), as
in KV-cache decoding.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..core._arrays import array_kind
from ..core._validate import integer, normalise_causal, positive_int
from ..core.attention import attention

__all__ = [
    "indexer_scores",
    "indexer_topk",
    "select_topk",
    "selection_mask",
    "topk_attention",
    "window_selection",
]


def _kind(name: str, x: Any) -> str:
    kind = array_kind(x)
    if kind == "other":
        raise TypeError(f"{name} must be a numpy.ndarray or torch.Tensor; got {type(x).__name__}")
    return kind


def _visible(L: int, S: int, causal: Any, like: Any) -> Any:
    """Boolean (L, S): key s visible to query i (all True without a causal mask)."""
    align = normalise_causal(causal)
    i = np.arange(L)[:, None]
    s = np.arange(S)[None, :]
    if align is None:
        vis = np.ones((L, S), dtype=bool)
    else:
        vis = s <= i + (S - L if align == "bottom-right" else 0)
    if array_kind(like) == "torch":
        import torch

        return torch.from_numpy(vis).to(like.device)
    return vis


def indexer_scores(q_index: Any, k_index: Any, weights: Any, *, causal: Any = False) -> Any:
    r"""The lightning indexer's scores, one per (query, key) pair.

    .. math::

        \iota_{ij} = \sum_{h=1}^{H_I} \nu_{i,h}\, \mathrm{ReLU}(q^I_{i,h} \cdot k^I_j)

    Shapes::

        q_index  (..., L, H_I, d_I)   H_I indexer heads per query
        k_index  (..., S, d_I)        one indexer key per token, shared by the heads
        weights  (..., L, H_I)        per-query weight nu of each head
        out      (..., L, S)          -inf where ``causal`` hides the key

    Args:
        q_index, k_index, weights: NumPy arrays or torch tensors (one kind).
        causal: ``False``, ``True``/``"top-left"`` or ``"bottom-right"``.

    Returns:
        The scores, of the inputs' kind and dtype.

    Raises:
        TypeError: inputs that are not arrays/tensors, or of mixed kinds.
        ValueError: shapes that do not fit the legend.

    Example:
        >>> q = np.array([[[1.0, 0.0], [0.0, 1.0]]])        # L=1, H_I=2, d_I=2
        >>> k = np.array([[2.0, -1.0], [-1.0, 3.0]])        # S=2
        >>> indexer_scores(q, k, np.array([[1.0, 0.5]]))
        array([[2. , 1.5]])
    """
    kinds = {_kind(n, x) for n, x in (("q_index", q_index), ("k_index", k_index),
                                      ("weights", weights))}
    if len(kinds) > 1:
        raise TypeError("q_index, k_index and weights must all be NumPy arrays or all torch tensors")
    if q_index.ndim < 3 or k_index.ndim < 2 or weights.ndim < 2:
        raise ValueError("expected q_index (..., L, H_I, d_I), k_index (..., S, d_I), weights "
                         f"(..., L, H_I); got {tuple(q_index.shape)}, {tuple(k_index.shape)}, "
                         f"{tuple(weights.shape)}")
    L, H_I, d_I = (int(d) for d in q_index.shape[-3:])
    if int(k_index.shape[-1]) != d_I or tuple(weights.shape[-2:]) != (L, H_I):
        raise ValueError(f"shapes do not fit: q_index {tuple(q_index.shape)}, k_index "
                         f"{tuple(k_index.shape)} (last dimension must be d_I = {d_I}), weights "
                         f"{tuple(weights.shape)} (must end in (L, H_I) = ({L}, {H_I}))")
    S = int(k_index.shape[-2])
    if "torch" in kinds:
        import torch

        dots = torch.einsum("...lhd,...sd->...lhs", q_index, k_index)  # (..., L, H_I, S)
        scores = torch.einsum("...lh,...lhs->...ls", weights, torch.relu(dots))
        vis = _visible(L, S, causal, scores)
        return scores.masked_fill(~vis, float("-inf"))
    dots = np.einsum("...lhd,...sd->...lhs", q_index, k_index)  # (..., L, H_I, S)
    scores = np.einsum("...lh,...lhs->...ls", weights, np.maximum(dots, 0))
    return np.where(_visible(L, S, causal, scores), scores, -np.inf)


def select_topk(scores: Any, k: int) -> tuple[Any, Any]:
    """The ``k`` keys with the largest scores for each query.

    Shapes: ``scores (..., L, S)`` -> ``idx (..., L, k)`` (int64, key positions,
    largest score first) and ``valid (..., L, k)`` (bool: the key is visible, i.e. its
    score is not ``-inf``; a query with fewer than ``k`` visible keys gets invalid slots).
    Keys tied with the ``k``-th largest score may be chosen either way. NumPy selects
    by a partition (``O(S)`` per query) and sorts only the ``k`` chosen.

    Raises:
        TypeError: ``scores`` not an array/tensor.
        ValueError: ``k`` not a positive integer, or ``k > S``.

    Example:
        >>> idx, valid = select_topk(np.array([[0.1, 3.0, -np.inf, 2.0]]), 3)
        >>> idx.tolist(), valid.tolist()
        ([[1, 3, 0]], [[True, True, True]])
    """
    kind = _kind("scores", scores)
    k = positive_int("k", k)
    S = int(scores.shape[-1])
    if k > S:
        raise ValueError(f"k must be at most the number of keys S = {S}; got k = {k}")
    if kind == "torch":
        import torch

        top, idx = torch.topk(scores, k, dim=-1)
        return idx, torch.isfinite(top)
    part = np.argpartition(-scores, k - 1, axis=-1)[..., :k]  # the k largest, in any order
    top = np.take_along_axis(scores, part, axis=-1)
    order = np.argsort(-top, axis=-1, kind="stable")  # largest first
    idx = np.take_along_axis(part, order, axis=-1)
    return idx.astype(np.int64), np.isfinite(np.take_along_axis(top, order, axis=-1))


def indexer_topk(q_index: Any, k_index: Any, weights: Any, k: int, *, causal: Any = "bottom-right",
                 block_q: int = 256) -> tuple[Any, Any]:
    """:func:`indexer_scores` then :func:`select_topk`, in blocks of ``block_q`` queries.

    The same selection as ``select_topk(indexer_scores(...), k)`` without ever holding
    the ``L x S`` scores: memory ``O(block_q S + L k)``. Under a causal mask a block
    scores only the keys its last query can see. Time is still ``O(L S H_I d_I)``: the
    indexer is quadratic, only cheaper per pair than the attention it feeds.

    Shapes and errors: as :func:`indexer_scores` and :func:`select_topk`.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> qi, ki, w = rng.random((6, 2, 3)), rng.random((6, 3)), rng.random((6, 2))
        >>> a = indexer_topk(qi, ki, w, 2, block_q=4)
        >>> b = select_topk(indexer_scores(qi, ki, w, causal="bottom-right"), 2)
        >>> bool((a[0] == b[0]).all() and (a[1] == b[1]).all())
        True
    """
    block_q = positive_int("block_q", block_q)
    if q_index.ndim < 3:
        raise ValueError(f"q_index must be (..., L, H_I, d_I); got {tuple(q_index.shape)}")
    L, S = int(q_index.shape[-3]), int(k_index.shape[-2])
    k = positive_int("k", k)
    if k > S:
        raise ValueError(f"k must be at most the number of keys S = {S}; got k = {k}")
    align = normalise_causal(causal)
    torch_in = array_kind(q_index) == "torch"
    idx_parts, valid_parts = [], []
    for lo in range(0, L, block_q):
        hi = min(L, lo + block_q)
        if align is None:
            s_end = S
        else:  # keys up to the block's last query's position
            s_end = min(S, hi - 1 + (S - L if align == "bottom-right" else 0) + 1)
        s_end = max(s_end, k)  # at least k columns, so top-k is defined (extra ones masked)
        scores = indexer_scores(q_index[..., lo:hi, :, :], k_index[..., :s_end, :],
                                weights[..., lo:hi, :])  # (..., l, s_end), unmasked
        if align is not None:
            i = np.arange(lo, hi)[:, None] + (S - L if align == "bottom-right" else 0)
            vis = np.arange(s_end)[None, :] <= i
            if torch_in:
                import torch

                scores = scores.masked_fill(~torch.from_numpy(vis).to(scores.device),
                                            float("-inf"))
            else:
                scores = np.where(vis, scores, -np.inf)
        idx, valid = select_topk(scores, k)
        idx_parts.append(idx)
        valid_parts.append(valid)
    if torch_in:
        import torch

        return torch.cat(idx_parts, dim=-2), torch.cat(valid_parts, dim=-2)
    return np.concatenate(idx_parts, axis=-2), np.concatenate(valid_parts, axis=-2)


def window_selection(L: int, S: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    """A causal sliding window in the form of a selection: the last ``window`` keys.

    Query ``i`` (bottom-right aligned, at position ``i' = i + S - L``) selects keys
    ``i' - window + 1 .. i'``; slots before key 0 are invalid.

    Returns:
        ``idx, valid`` of shape ``(L, window)`` (NumPy; convert with ``torch.from_numpy``).

    Raises:
        ValueError: ``L`` or ``S`` not positive, ``L > S``, or a ``window`` that is not
            a positive integer (a negative window is refused) or exceeds ``S``.

    Example:
        >>> idx, valid = window_selection(2, 4, 3)
        >>> idx.tolist(), valid.tolist()
        ([[0, 1, 2], [1, 2, 3]], [[True, True, True], [True, True, True]])
    """
    L, S = positive_int("L", L), positive_int("S", S)
    if L > S:
        raise ValueError(f"L must be at most S for a bottom-right window; got L={L}, S={S}")
    w = integer("window", window, minimum=1, maximum=S)
    last = np.arange(L)[:, None] + (S - L)  # (L, 1): each query's own position
    idx = last - (w - 1) + np.arange(w)[None, :]  # (L, w)
    valid = idx >= 0
    return np.maximum(idx, 0).astype(np.int64), valid


def selection_mask(idx: Any, valid: Any, S: int) -> Any:
    """The selection as an ``(..., L, S)`` boolean mask (True = the key takes part).

    This is the ``L x S`` object that :func:`topk_attention` never builds; it exists
    to check it against :func:`attnkit.attention`.

    Example:
        >>> selection_mask(np.array([[2, 0]]), np.array([[True, False]]), 3).tolist()
        [[False, False, True]]
    """
    kind = _kind("idx", idx)
    S = positive_int("S", S)
    # invalid slots write into a spare column S, dropped at the end
    if kind == "torch":
        import torch

        target = torch.where(valid, idx, torch.full_like(idx, S))
        mask = torch.zeros((*idx.shape[:-1], S + 1), dtype=torch.bool, device=idx.device)
        return mask.scatter(-1, target, True)[..., :S]
    target = np.where(valid, idx, S)
    mask = np.zeros((*idx.shape[:-1], S + 1), dtype=bool)
    np.put_along_axis(mask, target, True, axis=-1)
    return mask[..., :S]


def _gather_block(kb: Any, vb: Any, ib: Any, lo: int, hi: int) -> tuple[Any, Any]:
    """Each query's selected keys and values for queries ``lo:hi``: a copy of each row.

    ``kb (nb, S, E)``, ``vb (nb, S, Ev)``, ``ib (nb, L, K)`` -> ``(nb, hi - lo, K, E)``
    and ``(nb, hi - lo, K, Ev)``. This copy is the memory traffic that top-k attention
    adds to the arithmetic; the benchmark times it alone.
    """
    nb, S, E = (int(d) for d in kb.shape)
    Ev, K = int(vb.shape[-1]), int(ib.shape[-1])
    sel = ib[:, lo:hi].reshape(nb, (hi - lo) * K)  # (nb, l*K) key positions
    if array_kind(kb) == "torch":  # rows of the flattened (nb * S, E) keys
        import torch

        flat = (sel + (torch.arange(nb, device=ib.device) * S)[:, None]).reshape(-1)
        k_sel = kb.reshape(nb * S, E).index_select(0, flat)  # (nb * l * K, E)
        v_sel = vb.reshape(nb * S, Ev).index_select(0, flat)
    else:
        rows = np.arange(nb)[:, None]
        k_sel, v_sel = kb[rows, sel], vb[rows, sel]  # (nb, l*K, E), (nb, l*K, Ev)
    return k_sel.reshape(nb, hi - lo, K, E), v_sel.reshape(nb, hi - lo, K, Ev)


def topk_attention(q: Any, k: Any, v: Any, idx: Any, valid: Any = None, *,
                   scale: float | None = None, block_q: int = 128) -> Any:
    r"""Attention of each query over its own selected keys, by gathering them.

    For query ``i`` with selected keys :math:`J_i` (``idx[..., i, :]`` where ``valid``):

    .. math::

        o_i = \sum_{j \in J_i} \frac{e^{s_{ij}}}{\sum_{j' \in J_i} e^{s_{ij'}}}\, v_j,
        \qquad s_{ij} = \tau\, q_i \cdot k_j .

    The keys and values are gathered per query, ``(block_q, k, E)`` at a time, in
    blocks of ``block_q`` queries, so the time is ``O(L k (E + Ev))`` and the working
    memory ``O(block_q k (E + Ev))`` besides the ``(L, Ev)`` output, independent of
    ``S`` beyond the inputs; the attention itself is :func:`attnkit.attention` (one query
    against its ``k`` keys), so a query with no valid key gets a zero row.
    Differentiable in torch (the gather's backward scatters into ``dk``, ``dv``).

    Shapes::

        q (..., L, E)   k (..., S, E)   v (..., S, Ev)   idx, valid (..., L, k)
        out (..., L, Ev)

    Args:
        q, k, v: arrays or tensors of one kind and dtype; batch dimensions ``...``
            must be equal for q, k, v and idx (no broadcasting).
        idx: integer key positions in ``[0, S)``. valid: booleans (default all True).
        scale: default ``1/sqrt(E)``.
        block_q: queries gathered at once (a memory bound, not a result change).

    Returns:
        The output, of the inputs' kind.

    Raises:
        TypeError: mixed kinds, or non-integer ``idx``.
        ValueError: shapes that do not fit the legend, indices outside ``[0, S)``.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> q, k, v = rng.standard_normal((3, 6, 4))
        >>> idx, valid = select_topk(q @ k.T, 2)
        >>> full = attention(q, k, v, mask=selection_mask(idx, valid, 6))
        >>> bool(np.abs(topk_attention(q, k, v, idx, valid) - full).max() < 1e-12)
        True
    """
    kinds = {_kind(n, x) for n, x in (("q", q), ("k", k), ("v", v), ("idx", idx))}
    if len(kinds) > 1:
        raise TypeError("q, k, v and idx must all be NumPy arrays or all torch tensors")
    torch_in = "torch" in kinds
    if "int" not in str(idx.dtype):
        raise TypeError(f"idx must hold integers; got dtype {idx.dtype}")
    if q.ndim < 2 or k.ndim != q.ndim or v.ndim != q.ndim or idx.ndim != q.ndim:
        raise ValueError(f"q, k, v and idx must have the same number of dimensions (>= 2); got "
                         f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}, "
                         f"idx {tuple(idx.shape)}")
    batch = tuple(q.shape[:-2])
    L, E = int(q.shape[-2]), int(q.shape[-1])
    S, Ev, K = int(k.shape[-2]), int(v.shape[-1]), int(idx.shape[-1])
    if tuple(k.shape) != (*batch, S, E) or tuple(v.shape[:-1]) != (*batch, S) \
            or tuple(idx.shape[:-1]) != (*batch, L):
        raise ValueError(f"shapes do not fit q (..., L, E), k (..., S, E), v (..., S, Ev), idx "
                         f"(..., L, k) with equal batch dimensions; got q {tuple(q.shape)}, "
                         f"k {tuple(k.shape)}, v {tuple(v.shape)}, idx {tuple(idx.shape)}")
    if valid is None:
        valid = idx.new_ones(idx.shape, dtype=bool) if torch_in else np.ones(idx.shape, bool)
    if tuple(valid.shape) != tuple(idx.shape):
        raise ValueError(f"valid must have idx's shape {tuple(idx.shape)}; got {tuple(valid.shape)}")
    if K and (int(idx.min()) < 0 or int(idx.max()) >= S):
        raise ValueError(f"idx must hold key positions in [0, {S}); got values in "
                         f"[{int(idx.min())}, {int(idx.max())}]")
    block_q = positive_int("block_q", block_q)
    tau = 1.0 / math.sqrt(E) if scale is None else float(scale)
    nb = int(np.prod(batch)) if batch else 1
    qb, kb, vb = q.reshape(nb, L, E), k.reshape(nb, S, E), v.reshape(nb, S, Ev)
    ib, mb = idx.reshape(nb, L, K), valid.reshape(nb, L, K)
    backend = "torch" if torch_in else "numpy"
    outs = []
    for lo in range(0, L, block_q):
        hi = min(L, lo + block_q)
        k_sel, v_sel = _gather_block(kb, vb, ib, lo, hi)  # one key set per query
        q_blk = qb[:, lo:hi, None, :]  # (nb, l, 1, E): each query is its own "batch"
        m_blk = mb[:, lo:hi, None, :]  # (nb, l, 1, K)
        o = attention(q_blk, k_sel, v_sel, mask=m_blk, scale=tau, backend=backend)
        outs.append(o[:, :, 0, :])  # (nb, l, Ev)
    if torch_in:
        import torch

        out = torch.cat(outs, dim=1)
    else:
        out = np.concatenate(outs, axis=1)
    return out.reshape(*batch, L, Ev)
