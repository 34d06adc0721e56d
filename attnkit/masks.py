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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._validate import Alignment, normalise_causal


def causal_offset(L: int, S: int, alignment: Alignment = "top-left") -> int:
    """Diagonal offset ``o`` such that query ``i`` may see key ``j`` iff ``j <= i + o``.

    ``o = 0`` for top-left alignment and ``o = S - L`` for bottom-right.
    """
    if alignment == "top-left":
        return 0
    if alignment == "bottom-right":
        return S - L
    raise ValueError(f"alignment must be 'top-left' or 'bottom-right'; got {alignment!r}")


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
    for name, n in (("L", L), ("S", S)):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"{name} must be a non-negative integer; got {n!r}")
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
    if isinstance(S, bool) or not isinstance(S, (int, np.integer)) or S < 0:
        raise ValueError(f"S must be a non-negative integer; got {S!r}")
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
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    if x.shape[axis] == 0:
        return np.zeros_like(x)
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)  # an all -inf slice: avoid -inf - -inf = nan
    e = np.exp(x - m)
    z = np.sum(e, axis=axis, keepdims=True)
    return e / np.where(z > 0, z, 1.0)


def combined_bool_mask(mask: Any, causal: Alignment | None, L: int, S: int, xp: str = "numpy"):
    """The boolean part of the masking: a boolean ``mask`` AND the causal mask.

    Returns ``None`` when nothing is masked by a boolean rule. A floating mask is not
    included (engines add it to the scores). ``xp`` is ``"numpy"`` or ``"torch"``;
    for torch the result lives on ``mask``'s device (CPU when there is no mask).
    """
    allowed = None
    if causal is not None:
        allowed = causal_mask(L, S, alignment=causal)
        if xp == "torch":
            import torch

            device = mask.device if mask is not None else None
            allowed = torch.from_numpy(allowed).to(device)
    if mask is not None and str(mask.dtype).endswith("bool"):
        allowed = mask if allowed is None else (allowed & mask)
    return allowed
