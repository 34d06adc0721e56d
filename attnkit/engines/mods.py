"""Score modifiers shared by the engines: soft-capping and the user's ``score_mod``.

Both act on scaled scores, before any mask::

    s = q k^T * scale
    s = c * tanh(s / c)                       softcap=c (Gemma 2, FlashAttention)
    s = score_mod(s, b, h, q_idx, kv_idx)     flex_attention's signature

The index arguments are broadcastable integer arrays (NumPy arrays for NumPy
engines, tensors for torch engines): the batch dimensions ``...`` of the call are
viewed as ``(B, H)`` with ``H`` the last of them (the heads) and ``B`` the product
of the others (1 for each that is missing), so for ``q (B, H, L, E)`` they are
PyTorch's ``b`` and ``h``. With ``enable_gqa=True``, ``h`` is the query head.
A tiled engine calls :func:`apply_score_mods` on each tile with the tile's row and
column ranges.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..core._arrays import is_tensor, torch_module
from ..core._validate import AttentionSpec


def batch_as_bh(batch: tuple[int, ...]) -> tuple[int, int]:
    """``(B, H)`` for batch dimensions ``...``: ``H`` the last one, ``B`` the product of the rest.

    Example:
        >>> batch_as_bh((2, 3, 4)), batch_as_bh(()), batch_as_bh((5,))
        ((6, 4), (1, 1), (1, 5))
    """
    if not batch:
        return 1, 1
    return math.prod(batch[:-1]), batch[-1]


def apply_score_mods(scores: Any, spec: AttentionSpec, i0: int, i1: int, j0: int, j1: int) -> Any:
    """Soft-cap and ``score_mod`` a block ``scores (..., i1 - i0, j1 - j0)`` of scaled scores.

    Args:
        scores: NumPy array or tensor of scaled scores for queries ``[i0, i1)`` and
            keys ``[j0, j1)``, with batch dimensions that broadcast to ``spec.batch``.
        spec: the validated call (``softcap``, ``score_mod``, ``batch``).
        i0, i1, j0, j1: the block's query and key ranges.

    Returns:
        The modified scores, of the same kind and dtype (batch broadcast to
        ``spec.batch`` when ``score_mod`` is given); ``scores`` itself when the call
        has neither modifier.
    """
    if spec.softcap is None and spec.score_mod is None:
        return scores
    torch_in = is_tensor(scores)
    if spec.softcap is not None:
        c = spec.softcap
        scores = (scores / c).tanh() * c if torch_in else np.tanh(scores / c) * c
    if spec.score_mod is None:
        return scores
    B, H = batch_as_bh(spec.batch)
    bq, bk = i1 - i0, j1 - j0
    if torch_in:
        torch = torch_module()
        dev = scores.device
        s4 = scores.expand(*spec.batch, bq, bk).reshape(B, H, bq, bk)
        b = torch.arange(B, device=dev).view(B, 1, 1, 1)
        h = torch.arange(H, device=dev).view(1, H, 1, 1)
        qi = torch.arange(i0, i1, device=dev).view(bq, 1)
        ki = torch.arange(j0, j1, device=dev).view(1, bk)
        got = spec.score_mod(s4, b, h, qi, ki)
        if not isinstance(got, torch.Tensor):
            got = torch.as_tensor(got, device=dev)
        return got.to(scores.dtype).expand(B, H, bq, bk).reshape(*spec.batch, bq, bk)
    s4 = np.broadcast_to(scores, (*spec.batch, bq, bk)).reshape(B, H, bq, bk)
    b = np.arange(B).reshape(B, 1, 1, 1)
    h = np.arange(H).reshape(1, H, 1, 1)
    qi = np.arange(i0, i1).reshape(bq, 1)
    ki = np.arange(j0, j1).reshape(1, bk)
    got = np.asarray(spec.score_mod(s4, b, h, qi, ki), dtype=scores.dtype)
    return np.broadcast_to(got, (B, H, bq, bk)).reshape(*spec.batch, bq, bk)
