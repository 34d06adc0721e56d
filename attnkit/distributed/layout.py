"""How a sequence is cut into shards, one per rank: contiguous or zigzag.

With ``P`` ranks and ``n`` positions::

    contiguous (P = 2, n = 8)          zigzag (P = 2, n = 8: 2P = 4 chunks)
    rank 0: 0 1 2 3                    rank 0: chunks 0 and 3 -> 0 1 | 6 7
    rank 1: 4 5 6 7                    rank 1: chunks 1 and 2 -> 2 3 | 4 5

Under a causal mask, query ``i`` does ``i + 1`` units of work, so a contiguous
split gives the last rank about ``2P - 1`` times the work of the first. Zigzag
pairs an early chunk with a late one: every rank gets the same total (up to
rounding). Lengths need not divide: chunk sizes differ by at most one (as
``numpy.array_split``).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from ..core._arrays import array_kind
from ..serving.decoding import split_sizes

Layout = Literal["contiguous", "zigzag"]
LAYOUTS: tuple[str, ...] = ("contiguous", "zigzag")

__all__ = ["LAYOUTS", "Layout", "shard", "shard_positions", "shard_sizes", "unshard"]


def _check_layout(layout: Any) -> Layout:
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be 'contiguous' or 'zigzag'; got {layout!r}")
    return layout


def _check_rank(rank: Any, world_size: Any) -> tuple[int, int]:
    for name, value in (("world_size", world_size), ("rank", rank)):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{name} must be an integer; got {value!r}")
    if world_size < 1:
        raise ValueError(f"world_size must be a positive integer; got {world_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must lie in [0, world_size) = [0, {world_size}); got {rank}")
    return int(rank), int(world_size)


def shard_positions(n: int, rank: int, world_size: int, *, layout: Layout = "contiguous") -> np.ndarray:
    """The global positions (of ``n``) that rank ``rank`` holds, in its local order.

    Example:
        >>> shard_positions(8, 0, 2, layout="zigzag")
        array([0, 1, 6, 7])
        >>> shard_positions(5, 1, 2)
        array([3, 4])
    """
    rank, world_size = _check_rank(rank, world_size)
    layout = _check_layout(layout)
    if layout == "contiguous":
        sizes = split_sizes(n, world_size)
        start = sum(sizes[:rank])
        return np.arange(start, start + sizes[rank])
    sizes = split_sizes(n, 2 * world_size)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    early, late = rank, 2 * world_size - 1 - rank
    return np.concatenate([np.arange(starts[early], starts[early + 1]),
                           np.arange(starts[late], starts[late + 1])])


def shard_sizes(n: int, world_size: int, *, layout: Layout = "contiguous") -> list[int]:
    """How many of ``n`` positions each rank holds.

    Example:
        >>> shard_sizes(10, 4), shard_sizes(10, 4, layout="zigzag")
        ([3, 3, 2, 2], [3, 3, 2, 2])
    """
    return [len(shard_positions(n, r, world_size, layout=layout)) for r in range(world_size)]


def _check_dim(x: Any, dim: Any) -> int:
    if isinstance(dim, (bool, np.bool_)) or not isinstance(dim, numbers.Integral):
        raise TypeError(f"dim must be an integer; got {dim!r}")
    if not -x.ndim <= dim < x.ndim:
        raise ValueError(f"dim must lie in [-{x.ndim}, {x.ndim}) for shape {tuple(x.shape)}; got {dim}")
    return int(dim) % x.ndim


def shard(x: Any, rank: int, world_size: int, *, layout: Layout = "contiguous", dim: int = -2) -> Any:
    """Rank ``rank``'s shard of ``x`` along the sequence axis ``dim``.

    Shapes: ``x (..., n, ...)`` -> ``(..., n_r, ...)`` where ``n_r`` is
    ``shard_sizes(n, world_size, layout=layout)[rank]`` (``n = x.shape[dim]``).

    Args:
        x: a NumPy array or torch tensor (q, k, v: ``dim=-2``; a key-padding mask
            ``(..., 1, S)``: ``dim=-1``).
        rank: this rank, ``0 <= rank < world_size``.
        world_size: the number of ranks ``P``.
        layout: ``"contiguous"`` (rank ``r`` holds the ``r``-th of ``P`` chunks) or
            ``"zigzag"`` (chunks ``r`` and ``2P - 1 - r`` of ``2P``: equal causal work).
        dim: the sequence axis.

    Returns:
        A new contiguous array or tensor of the same kind, dtype and device.

    Raises:
        TypeError: ``x`` not an array or tensor; non-integer ``rank``/``world_size``/``dim``.
        ValueError: a rank outside ``[0, world_size)``, an unknown layout, a bad ``dim``.

    Example:
        >>> import numpy as np
        >>> shard(np.arange(8)[:, None], 0, 2, layout="zigzag").ravel()
        array([0, 1, 6, 7])
    """
    kind = array_kind(x)
    if kind == "other":
        raise TypeError(f"x must be a numpy.ndarray or torch.Tensor; got {type(x).__name__}")
    axis = _check_dim(x, dim)
    pos = shard_positions(int(x.shape[axis]), rank, world_size, layout=layout)
    if kind == "numpy":
        return np.ascontiguousarray(np.take(x, pos, axis=axis))
    import torch

    return torch.index_select(x, axis, torch.from_numpy(pos).to(x.device)).contiguous()


def unshard(shards: Sequence[Any], *, layout: Layout = "contiguous", dim: int = -2) -> Any:
    """Reassemble the full array from every rank's shard (the inverse of :func:`shard`).

    Shapes: ``shards[r] (..., n_r, ...)`` for ``r = 0 .. P-1`` -> ``(..., n, ...)``.

    Args:
        shards: the shards of ranks ``0 .. P-1``, in rank order (all NumPy or all torch).
        layout: the layout they were made with.
        dim: the sequence axis.

    Returns:
        The concatenation along ``dim``, put back into position order.

    Raises:
        ValueError: no shards, or shard lengths that no ``n`` gives under ``layout``.
        TypeError: a mix of kinds, or a non-array.

    Example:
        >>> import numpy as np
        >>> x = np.arange(10.0).reshape(5, 2)
        >>> parts = [shard(x, r, 3, layout="zigzag") for r in range(3)]
        >>> bool((unshard(parts, layout="zigzag") == x).all())
        True
    """
    shards = list(shards)
    layout = _check_layout(layout)
    if not shards:
        raise ValueError("shards must hold one shard per rank; got none")
    kinds = {array_kind(s) for s in shards}
    if "other" in kinds:
        raise TypeError("shards must be numpy.ndarray or torch.Tensor")
    if len(kinds) > 1:
        raise TypeError("shards must be all NumPy arrays or all torch tensors; got a mix")
    axis = _check_dim(shards[0], dim)
    P = len(shards)
    got = [int(s.shape[axis]) for s in shards]
    n = sum(got)
    if got != shard_sizes(n, P, layout=layout):
        raise ValueError(
            f"shard lengths {got} along dim {dim} are not those of a {layout} split of {n} "
            f"positions over {P} ranks ({shard_sizes(n, P, layout=layout)}); pass the shards in rank order"
        )
    order = np.argsort(np.concatenate([shard_positions(n, r, P, layout=layout) for r in range(P)]))
    if kinds == {"numpy"}:
        return np.take(np.concatenate(shards, axis=axis), order, axis=axis)
    import torch

    full = torch.cat(shards, dim=axis)
    return torch.index_select(full, axis, torch.from_numpy(order).to(full.device))
