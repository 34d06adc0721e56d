"""Position information for attention: sinusoids, RoPE, ALiBi and T5's relative buckets.

Attention by itself is permutation equivariant: shuffle the tokens and the outputs
shuffle the same way, so "cat sat" and "sat cat" look alike to it. Each function
here puts order back in a different place::

    sinusoidal_positions   added to the embeddings x before the projections
    apply_rope             rotates q and k, so q_i . k_j depends on j - i only
    alibi_bias             a fixed per-head penalty  -slope * |i - j|  added to the scores
    relative_position_bucket
                           T5's buckets of j - i; a learned bias per (bucket, head)
                           (the module is attnkit.models.layers.RelativePositionBias)

Everything here works on NumPy arrays and, where it takes an array, on torch tensors
too; importing this module does not import torch.

Query positions, when the query length ``L`` differs from the key length ``S``, are
aligned bottom-right (query ``i`` sits at position ``i + S - L``), as in KV-cache
decoding where the queries are the newest tokens.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..core._arrays import array_kind, torch_module
from ..core._validate import array, integer, real

__all__ = [
    "alibi_bias",
    "alibi_slopes",
    "apply_rope",
    "relative_position_bucket",
    "rope_angles",
    "sinusoidal_positions",
]


def sinusoidal_positions(n_positions: int, dim: int, *, base: float = 10000.0) -> np.ndarray:
    r"""The fixed sinusoidal position table of the original Transformer.

    .. math::

        \mathrm{PE}_{i,\,2u} = \sin(i / \mathrm{base}^{2u/d}), \qquad
        \mathrm{PE}_{i,\,2u+1} = \cos(i / \mathrm{base}^{2u/d})

    Shapes::

        out   (n_positions, dim)    row i is added to the embedding of token i

    Args:
        n_positions: number of positions ``i = 0 .. n_positions - 1``.
        dim: embedding width ``d`` (even).
        base: the wavelength base (10000 in the Transformer paper).

    Returns:
        A float64 array; column pair ``(2u, 2u+1)`` is a sinusoid of wavelength
        ``2 pi base^(2u/d)``, from ``2 pi`` (u = 0) up to nearly ``2 pi base``.

    Raises:
        ValueError: a negative ``n_positions``, an odd or non-positive ``dim``, or
            ``base <= 1``.

    Example:
        >>> sinusoidal_positions(2, 4).round(4)
        array([[0.    , 1.    , 0.    , 1.    ],
               [0.8415, 0.5403, 0.01  , 1.    ]])
    """
    n = integer("n_positions", n_positions, minimum=0)
    d = integer("dim", dim, minimum=2)
    if d % 2:
        raise ValueError(f"dim must be even (sine/cosine pairs); got {dim}")
    angles = rope_angles(np.arange(n), d, base=base)  # (n, d/2)
    table = np.empty((n, d))
    table[:, 0::2] = np.sin(angles)
    table[:, 1::2] = np.cos(angles)
    return table


def rope_angles(positions: Any, dim: int, *, base: float = 10000.0) -> np.ndarray:
    r"""Rotation angles :math:`i\,\theta_u`, :math:`\theta_u = \mathrm{base}^{-2u/d}`, of RoPE.

    Shapes::

        positions  (n,)          integer or real positions
        out        (n, dim/2)    angle of pair u at position i

    Args:
        positions: 1-D array-like of positions (NumPy, list or CPU tensor).
        dim: the width ``d`` being rotated (even).
        base: the frequency base (10000 in RoFormer).

    Returns:
        A float64 array of angles.

    Raises:
        ValueError: ``positions`` not 1-D, an odd ``dim``, or ``base <= 1``.

    Example:
        >>> rope_angles([0, 1], 4).round(4)
        array([[0.  , 0.  ],
               [1.  , 0.01]])
    """
    d = integer("dim", dim, minimum=2)
    if d % 2:
        raise ValueError(f"dim must be even (RoPE rotates pairs); got {dim}")
    b = real("base", base, above=1.0)
    if array_kind(positions) == "torch":
        positions = positions.detach().cpu().numpy()
    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim != 1:
        raise ValueError(f"positions must be 1-D; got shape {pos.shape}")
    inv_freq = b ** (-np.arange(0, d, 2) / d)  # (d/2,): 1, b^(-2/d), ...
    return pos[:, None] * inv_freq[None, :]  # (n, 1) x (1, d/2) -> (n, d/2)


def apply_rope(x: Any, positions: Any = None, *, base: float = 10000.0) -> Any:
    r"""Rotary position embedding: rotate each pair of columns ``(2u, 2u+1)`` by ``i * theta_u``.

    Applied to queries and keys (not values). Because the transpose of a rotation by
    ``i theta`` followed by one by ``j theta`` is a rotation by ``(j - i) theta``,

    .. math::

        \langle \mathcal{R}_i q,\, \mathcal{R}_j k \rangle
        = \langle q,\, \mathcal{R}_{j-i} k \rangle,

    the score of a query at position ``i`` and a key at ``j`` depends on the
    positions only through ``j - i``. Pairs are adjacent columns, as in the
    RoFormer paper (some libraries pair column ``u`` with ``u + d/2`` instead; the
    two are the same up to a fixed permutation of the columns).

    Shapes::

        x          (..., L, D)   D even; queries or keys, any batch/head dimensions
        positions  (L,)          default 0 .. L-1
        out        (..., L, D)   same kind, dtype and device as x

    Args:
        x: NumPy array or torch tensor of a floating dtype.
        positions: position of each of the ``L`` rows (e.g. ``t0 + arange(L)`` for
            tokens appended to a KV cache that already holds ``t0``).
        base: frequency base (10000 in RoFormer and LLaMA-2).

    Returns:
        The rotated array; norms of the pairs are unchanged.

    Raises:
        TypeError: ``x`` not an array/tensor of a floating dtype.
        ValueError: ``x`` with fewer than 2 dimensions or an odd last dimension, or
            ``positions`` whose length is not ``L``.

    Example:
        >>> x = np.array([[1.0, 0.0]])
        >>> apply_rope(x, positions=[np.pi / 2]).round(4)
        array([[0., 1.]])
    """
    kind = array("x", x)
    if "float" not in str(x.dtype):
        raise TypeError(f"x must have a floating dtype; got {x.dtype} with shape {tuple(x.shape)}")
    if x.ndim < 2 or x.shape[-1] % 2:
        raise ValueError(
            f"x must have shape (..., L, D) with D even; got shape {tuple(x.shape)}"
        )
    L, D = int(x.shape[-2]), int(x.shape[-1])
    pos = np.arange(L) if positions is None else positions
    angles = rope_angles(pos, D, base=base)  # (L, D/2)
    if angles.shape[0] != L:
        raise ValueError(
            f"positions must give one position per row of x (L = {L}); got {angles.shape[0]}"
        )
    cos, sin = np.cos(angles), np.sin(angles)
    if kind == "torch":
        torch = torch_module()
        cos = torch.from_numpy(cos).to(device=x.device, dtype=x.dtype)
        sin = torch.from_numpy(sin).to(device=x.device, dtype=x.dtype)
        x1, x2 = x[..., 0::2], x[..., 1::2]  # (..., L, D/2) each
        return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)
    cos, sin = cos.astype(x.dtype), sin.astype(x.dtype)
    x1, x2 = x[..., 0::2], x[..., 1::2]  # (..., L, D/2) each
    out = np.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), axis=-1)  # (..., L, D/2, 2)
    return out.reshape(x.shape)


def alibi_slopes(num_heads: int) -> np.ndarray:
    r"""ALiBi's per-head slopes: a geometric sequence starting at ``2^(-8/H)``.

    For ``H`` a power of two the slopes are :math:`2^{-8h/H}`, ``h = 1 .. H``
    (8 heads: 1/2, 1/4, ..., 1/256). Otherwise the slopes of the nearest power of
    two below ``H`` are followed by every other slope of twice that power, as in the
    ALiBi authors' code.

    Shapes::

        out  (num_heads,)

    Raises:
        ValueError: ``num_heads`` not a positive integer.

    Example:
        >>> alibi_slopes(4) * 256
        array([64., 16.,  4.,  1.])
    """
    H = integer("num_heads", num_heads, minimum=1)

    def power_of_two(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (h + 1) for h in range(n)]

    if H & (H - 1) == 0:
        return np.array(power_of_two(H))
    below = 2 ** int(math.floor(math.log2(H)))
    extra = power_of_two(2 * below)[0::2][: H - below]
    return np.array(power_of_two(below) + extra)


def alibi_bias(num_heads: int, L: int, S: int | None = None) -> np.ndarray:
    r"""ALiBi's additive score bias ``-slope_h * |i - j|`` for query position i, key position j.

    Add it to the scaled scores (pass it as a floating ``mask``). Nearby keys are
    penalised little, distant ones linearly more, with a different rate per head.
    The paper uses causal models, where only ``j <= i`` is visible; the future half
    of this symmetric matrix is then masked anyway.

    Shapes::

        out  (num_heads, L, S)   query i at position i + S - L (bottom-right)

    Args:
        num_heads: number of heads ``H`` (slopes from :func:`alibi_slopes`).
        L: number of queries. S: number of keys (default ``L``).

    Raises:
        ValueError: counts that are not non-negative integers (``num_heads >= 1``).

    Example:
        >>> alibi_bias(8, 3)[0]  # head 0 of 8 has slope 1/2
        array([[ 0. , -0.5, -1. ],
               [-0.5,  0. , -0.5],
               [-1. , -0.5,  0. ]])
    """
    slopes = alibi_slopes(num_heads)
    L = integer("L", L, minimum=0)
    S = L if S is None else integer("S", S, minimum=0)
    m = np.arange(L)[:, None] + (S - L)  # (L, 1) query positions
    n = np.arange(S)[None, :]  # (1, S) key positions
    dist = np.abs(m - n)[None]  # (1, L, S)
    return 0.0 - slopes[:, None, None] * dist  # (H, 1, 1) x (1, L, S) -> (H, L, S); 0, not -0


def relative_position_bucket(
    relative_position: Any,
    *,
    bidirectional: bool = True,
    num_buckets: int = 32,
    max_distance: int = 128,
) -> np.ndarray:
    """T5's bucket index for each relative position ``key_pos - query_pos``.

    Small distances get a bucket each; larger ones share logarithmically wider
    buckets up to ``max_distance``, beyond which all distances share the last
    bucket. With ``bidirectional=True`` half of the buckets are for keys after the
    query and half for keys before it; otherwise keys after the query go to bucket 0.

    Shapes::

        relative_position  any shape, integers
        out                same shape, integers in [0, num_buckets)

    Raises:
        ValueError: ``num_buckets`` < 2 (< 4 when bidirectional) or
            ``max_distance`` not larger than the exact range.

    Example:
        >>> relative_position_bucket(np.arange(-3, 4), num_buckets=8, max_distance=8)
        array([2, 2, 1, 0, 5, 6, 6])
    """
    nb = integer("num_buckets", num_buckets, minimum=4 if bidirectional else 2)
    rel = np.asarray(relative_position)
    if not np.issubdtype(rel.dtype, np.integer):
        raise ValueError(f"relative_position must hold integers; got dtype {rel.dtype}")
    n = -rel  # distance back from the query (positive: the key comes earlier)
    bucket = np.zeros(rel.shape, dtype=np.int64)
    if bidirectional:
        nb //= 2
        bucket += (n < 0) * nb  # keys after the query use the upper half
        n = np.abs(n)
    else:
        n = np.maximum(n, 0)
    max_exact = nb // 2
    md = integer("max_distance", max_distance, minimum=max_exact + 1)
    n_safe = np.maximum(n, 1).astype(np.float64)  # log(0) is never used below
    large = max_exact + (
        np.log(n_safe / max_exact) / math.log(md / max_exact) * (nb - max_exact)
    ).astype(np.int64)
    large = np.minimum(large, nb - 1)
    return bucket + np.where(n < max_exact, n, large)
