"""Masks and the numerically stable softmax: the semantics every engine shares.

Conventions (the same as PyTorch's ``scaled_dot_product_attention``):

* a **boolean** mask says which keys take part: ``True`` = attend, ``False`` = masked;
* a **floating** mask is *added* to the scaled scores (``-inf`` masks a key);
* a query row whose every key is masked gets **zero weights and a zero output**
  (textbook code returns NaN there: ``exp(-inf) / sum(exp(-inf)) = 0 / 0``).

Causal alignment when the query length ``L`` differs from the key length ``S``::

    top-left (PyTorch is_causal)       bottom-right (FlashAttention, KV cache)
    L = 2, S = 5: query i sees j <= i   L = 2, S = 5: query i sees j <= i + (S - L)
        1 0 0 0 0                            1 1 1 1 0
        1 1 0 0 0                            1 1 1 1 1

    L = 5, S = 2                        L = 5, S = 2
        1 0                                  0 0      <- fully masked: zero row
        1 1                                  0 0
        1 1                                  0 0
        1 1                                  1 0
        1 1                                  1 1

For ``L == S`` the two alignments coincide. Bottom-right is what decoding with a
KV cache needs: the last query is the newest token and sees every key.

Sliding windows and sinks (``window=(left, right)``, ``sinks=N``) are aligned
bottom-right, as FlashAttention's ``window_size``: query ``i`` stands at key
position ``i' = i + S - L`` and sees the keys ``i' - left <= j <= i' + right``;
``None`` on a side leaves it unbounded. The first ``sinks`` keys are exempt from
the left bound (not from the right bound, ``causal`` or ``mask``)::

    window=(2, 0), L = S = 6            window=(2, 0), sinks=1
        1 0 0 0 0 0                         1 0 0 0 0 0
        1 1 0 0 0 0                         1 1 0 0 0 0
        1 1 1 0 0 0                         1 1 1 0 0 0
        0 1 1 1 0 0                         1 1 1 1 0 0
        0 0 1 1 1 0                         1 0 1 1 1 0
        0 0 0 1 1 1                         1 0 0 1 1 1

    window=(1, 1), L = 2, S = 5         window=(0, 0), L = 4, S = 2
        0 0 1 1 1                           0 0      <- i' = -2: empty window
        0 0 0 1 1                           0 0      <- i' = -1: empty window
                                            1 0
                                            0 1

Every rule (boolean mask, causal, window with sinks) is combined by AND. The
causal mask and the window both bound ``j`` by ``i`` plus a constant, so together
they form a :class:`Band`: the tiled engines use it to skip tiles that no query
of a block can see, so that windowed attention costs ``O(L * (left + right))``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._arrays import torch_module
from ._validate import Alignment, AttentionSpec, Window, choice, integer, normalise_causal


def causal_offset(L: int, S: int, alignment: Alignment = "top-left") -> int:
    """Diagonal offset ``o`` such that query ``i`` may see key ``j`` iff ``j <= i + o``.

    ``o = 0`` for top-left alignment and ``o = S - L`` for bottom-right.
    """
    alignment = choice("alignment", alignment, ("top-left", "bottom-right"))
    return 0 if alignment == "top-left" else S - L


def causal_mask(L: int, S: int | None = None, *, alignment: Alignment = "top-left") -> np.ndarray:
    """Boolean causal mask of shape ``(L, S)``; ``True`` where query ``i`` may see key ``j``.

    Args:
        L: number of queries (rows).
        S: number of keys (columns); defaults to ``L``.
        alignment: ``"top-left"`` (PyTorch's ``is_causal``) or ``"bottom-right"``
            (FlashAttention, KV-cache decoding); see the module docstring.

    Returns:
        ``np.ndarray`` of dtype bool and shape ``(L, S)``.

    Example:
        >>> causal_mask(3).astype(int)
        array([[1, 0, 0],
               [1, 1, 0],
               [1, 1, 1]])
    """
    S = L if S is None else S
    L, S = integer("L", L, minimum=0), integer("S", S, minimum=0)
    alignment = normalise_causal(alignment) or "top-left"
    o = causal_offset(int(L), int(S), alignment)
    i = np.arange(L)[:, None]
    j = np.arange(S)[None, :]
    return j <= i + o


def key_padding_mask(lengths: Sequence[int] | np.ndarray, S: int) -> np.ndarray:
    """Boolean mask of shape ``(B, 1, S)`` that hides the padded keys of each sequence.

    Sequence ``b`` has ``lengths[b]`` real tokens followed by padding; its keys
    ``j >= lengths[b]`` are masked. The middle axis of size 1 broadcasts over the
    queries, so the result can be passed as ``mask`` for ``q (B, L, E)``; for
    ``q (B, H, L, E)`` use ``mask[:, None]``.

    Example:
        >>> key_padding_mask([2, 3], 3).astype(int)
        array([[[1, 1, 0]],
        <BLANKLINE>
               [[1, 1, 1]]])
    """
    lens = np.asarray(lengths)
    if lens.ndim != 1 or not np.issubdtype(lens.dtype, np.integer):
        raise ValueError(
            f"lengths must be a 1-D sequence of integers; got {lengths!r} with shape {lens.shape}"
        )
    S = integer("S", S, minimum=0)
    if np.any(lens < 0) or np.any(lens > S):
        raise ValueError(f"every entry of lengths must lie in [0, S={S}]; got {lens.tolist()}")
    return (np.arange(S)[None, :] < lens[:, None])[:, None, :]


def softmax(x: Any, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax along ``axis``; an all ``-inf`` slice gives zeros.

    Subtracting the row maximum first changes nothing mathematically (softmax is
    invariant to adding a constant to every entry) but keeps ``exp`` from
    overflowing: the largest exponent becomes ``exp(0) = 1``.

    Args:
        x: array-like of scores; ``-inf`` entries get weight 0.
        axis: the axis to normalise over.

    Returns:
        An array of the same shape; each slice along ``axis`` sums to 1, or is all
        zero when every entry was ``-inf``.

    Example:
        >>> softmax(np.array([1.0, 2.0, 3.0])).round(4)
        array([0.09  , 0.2447, 0.6652])
    """
    return softmax_lse(x, axis)[0]


def softmax_lse(x: Any, axis: int = -1, sink: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`softmax` along ``axis``, and the log-sum-exp of each slice.

    ``lse = m + log(sum(exp(x - m)))`` with ``m`` the slice's maximum: the
    normaliser that split-KV decoding and ring attention merge partial results by
    (``-inf`` for a slice whose every entry is ``-inf``).

    With ``sink`` (finite logits, broadcastable to ``x`` with ``axis`` of size 1),
    each slice's denominator gains ``exp(sink)``, a sink that takes weight but is not
    returned: the weights of a slice sum to less than 1, and ``lse`` includes it::

        weights_j = exp(x_j) / (exp(sink) + sum_j' exp(x_j'))

    Returns:
        ``(weights, lse)``: ``weights`` shaped as ``x``, ``lse`` without ``axis``.

    Example:
        >>> w, lse = softmax_lse(np.array([[0.0, 0.0], [-np.inf, -np.inf]]))
        >>> w.tolist(), lse.round(4).tolist()
        ([[0.5, 0.5], [0.0, 0.0]], [0.6931, -inf])
        >>> w, lse = softmax_lse(np.array([[0.0, 0.0]]), sink=np.array([[0.0]]))
        >>> w.round(4).tolist(), lse.round(4).tolist()   # a third of the weight on the sink
        ([[0.3333, 0.3333]], [1.0986])
    """
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    if sink is not None:
        sink = np.asarray(sink, dtype=x.dtype)
    if x.shape[axis] == 0:
        lse_shape = np.delete(x.shape, axis % x.ndim)
        if sink is None:
            return np.zeros_like(x), np.full(lse_shape, -np.inf, x.dtype)
        sink_lse = np.broadcast_to(sink, np.insert(lse_shape, axis % x.ndim, 1))
        return np.zeros_like(x), np.squeeze(sink_lse, axis=axis).copy()
    m = np.max(x, axis=axis, keepdims=True)
    if sink is not None:
        m = np.maximum(m, sink)  # finite: the sink is always there
    m = np.where(np.isfinite(m), m, 0.0)  # an all -inf slice: avoid -inf - -inf = nan
    e = np.exp(x - m)
    z = np.sum(e, axis=axis, keepdims=True)
    if sink is not None:
        z = z + np.exp(sink - m)
    with np.errstate(divide="ignore"):  # log(0) = -inf: a slice with nothing to attend to
        lse = np.squeeze(m + np.log(z), axis=axis)
    return e / np.where(z > 0, z, 1.0), lse


@dataclass(frozen=True)
class Band:
    """The keys each query may see under ``causal``, ``window`` and ``sinks``.

    Query ``i`` sees key ``j`` (``0 <= j < S``) iff ``j <= i + hi`` (when ``hi`` is
    not ``None``) and (``j >= i + lo`` when ``lo`` is not ``None``, or ``j < sinks``).
    ``hi`` is the tighter of the causal offset and the window's right bound,
    ``lo`` the window's left bound, both as offsets from ``i``.

    Example:
        >>> band = Band.of(4, 4, causal=None, window=(1, 0), sinks=0)
        >>> band.mask(np.arange(4)[:, None], np.arange(4)[None, :]).astype(int)
        array([[1, 0, 0, 0],
               [1, 1, 0, 0],
               [0, 1, 1, 0],
               [0, 0, 1, 1]])
    """

    L: int
    S: int
    hi: int | None
    lo: int | None
    sinks: int

    @classmethod
    def of(cls, L: int, S: int, causal: Alignment | None, window: Window | None,
           sinks: int = 0) -> Band:
        """The band of a call with these lengths, causal alignment, window and sinks."""
        his = [] if causal is None else [causal_offset(L, S, causal)]
        lo = None
        if window is not None:
            left, right = window
            if right is not None:
                his.append(S - L + right)
            if left is not None:
                lo = S - L - left
        return cls(L, S, min(his) if his else None, lo, sinks if lo is not None else 0)

    @classmethod
    def of_spec(cls, spec: AttentionSpec) -> Band:
        """The band of a validated call: its lengths, causal alignment, window and sinks.

        Example:
            >>> from attnkit import check_attention_args
            >>> x = np.ones((6, 2))
            >>> Band.of_spec(check_attention_args(x, x, x, causal=True, window=(2, 0)))
            Band(L=6, S=6, hi=0, lo=-2, sinks=0)
        """
        return cls.of(spec.L, spec.S, spec.causal, spec.window, spec.sinks)

    @property
    def bounded(self) -> bool:
        """True when some key is hidden from some query by the band."""
        return self.hi is not None or self.lo is not None

    @property
    def width(self) -> int | None:
        """The most keys one query sees besides the sinks, ``hi - lo + 1``; ``None`` if a side is open.

        Example:
            >>> Band.of(8, 8, causal="top-left", window=(3, 0)).width
            4
        """
        if self.hi is None or self.lo is None:
            return None
        return max(0, self.hi - self.lo + 1)

    def mask(self, rows: Any, cols: Any) -> Any:
        """Boolean visibility for broadcastable index arrays (NumPy or torch)."""
        ok = None
        if self.hi is not None:
            ok = cols <= rows + self.hi
        if self.lo is not None:
            low = cols >= rows + self.lo
            if self.sinks:
                low = low | (cols < self.sinks)
            ok = low if ok is None else (ok & low)
        if ok is None:
            return (rows >= 0) | (cols >= 0)  # all True, broadcast
        return ok

    def spans(self, i0: int, i1: int) -> list[tuple[int, int]]:
        """Key ranges ``[j0, j1)`` that some query of ``[i0, i1)`` sees (sinks first).

        Tiles outside these ranges are hidden from every query of the block, so a
        tiled engine skips them.
        """
        stop = self.S if self.hi is None else max(0, min(self.S, i1 - 1 + self.hi + 1))
        start = 0 if self.lo is None else max(0, min(stop, i0 + self.lo))
        out = []
        if self.sinks and start > 0:
            out.append((0, min(self.sinks, start, stop)))
        if stop > start:
            out.append((start, stop))
        return [(a, b) for a, b in out if b > a]

    def full(self, i0: int, i1: int, j0: int, j1: int) -> bool:
        """True when every query of ``[i0, i1)`` sees every key of ``[j0, j1)``."""
        if self.hi is not None and j1 - 1 > i0 + self.hi:
            return False
        if self.lo is not None and j0 < i1 - 1 + self.lo and j1 > self.sinks:
            return False
        return True

    def tiles(self, i0: int, i1: int, block_k: int) -> list[tuple[int, int, bool]]:
        """The key tiles ``(j0, j1, full)`` that a block of queries ``[i0, i1)`` visits."""
        out = []
        for a, b in self.spans(i0, i1):
            for j0 in range(a, b, block_k):
                j1 = min(j0 + block_k, b)
                out.append((j0, j1, self.full(i0, i1, j0, j1)))
        return out


def visible_mask(L: int, S: int, causal: Alignment | None = None, window: Window | None = None,
                 sinks: int = 0) -> np.ndarray | None:
    """Boolean ``(L, S)`` mask of what ``causal``, ``window`` and ``sinks`` let each query see.

    Returns ``None`` when neither a causal mask nor a window is given.

    Example:
        >>> visible_mask(3, 3, window=(0, 0)).astype(int)
        array([[1, 0, 0],
               [0, 1, 0],
               [0, 0, 1]])
    """
    band = Band.of(L, S, causal, window, sinks)
    if not band.bounded:
        return None
    return band.mask(np.arange(L)[:, None], np.arange(S)[None, :])


def combined_bool_mask(mask: Any, causal: Alignment | None, L: int, S: int, xp: str = "numpy",
                       window: Window | None = None, sinks: int = 0) -> Any:
    """The boolean part of the masking: a boolean ``mask`` AND the causal mask AND the window.

    Returns ``None`` when nothing is masked by a boolean rule. A floating mask is not
    included (engines add it to the scores). ``xp`` is ``"numpy"`` or ``"torch"``;
    for torch the result lives on ``mask``'s device (CPU when there is no mask).
    """
    allowed = visible_mask(L, S, causal, window, sinks)
    if allowed is not None and xp == "torch":
        device = mask.device if mask is not None else None
        allowed = torch_module().from_numpy(allowed).to(device)
    if mask is not None and str(mask.dtype).endswith("bool"):
        allowed = mask if allowed is None else (allowed & mask)
    return allowed
