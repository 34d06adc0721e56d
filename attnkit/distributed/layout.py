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

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch

from ..core._validate import array, choice, integer
from ..serving.decoding import split_sizes

Layout = Literal["contiguous", "zigzag"]
LAYOUTS: tuple[str, ...] = ("contiguous", "zigzag")

__all__ = ["LAYOUTS", "Layout", "shard", "shard_positions", "shard_sizes", "unshard"]


def shard_positions(n: int, rank: int, world_size: int, *, layout: Layout = "contiguous") -> np.ndarray:
    """The global positions (of ``n``) that rank ``rank`` holds, in its local order.

    Example:
        >>> shard_positions(8, 0, 2, layout="zigzag")
        array([0, 1, 6, 7])
        >>> shard_positions(5, 1, 2)
        array([3, 4])
    """
    world_size = integer("world_size", world_size, minimum=1)
    rank = integer("rank", rank, minimum=0, maximum=world_size - 1)
    layout = choice("layout", layout, LAYOUTS)
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


def _axis(x: Any, dim: Any) -> int:
    """``dim`` as an axis of ``x`` (``0 <= axis < x.ndim``)."""
    return integer("dim", dim, minimum=-x.ndim, maximum=x.ndim - 1) % x.ndim


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
        ValueError: a rank outside ``[0, world_size)``, an unknown layout, a ``dim``
            outside ``x``'s dimensions.

    Example:
        >>> import numpy as np
        >>> shard(np.arange(8)[:, None], 0, 2, layout="zigzag").ravel()
        array([0, 1, 6, 7])
    """
    kind = array("x", x)
    axis = _axis(x, dim)
    pos = shard_positions(int(x.shape[axis]), rank, world_size, layout=layout)
    if kind == "numpy":
        return np.ascontiguousarray(np.take(x, pos, axis=axis))
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
        ValueError: no shards; shards that differ in a dimension other than ``dim``
            (or in their number of dimensions); shard lengths that no ``n`` gives
            under ``layout``.
        TypeError: a mix of kinds, or a non-array.

    Example:
        >>> import numpy as np
        >>> x = np.arange(10.0).reshape(5, 2)
        >>> parts = [shard(x, r, 3, layout="zigzag") for r in range(3)]
        >>> bool((unshard(parts, layout="zigzag") == x).all())
        True
    """
    shards = list(shards)
    layout = choice("layout", layout, LAYOUTS)
    if not shards:
        raise ValueError("shards must hold one shard per rank; got none")
    kinds = {array(f"shards[{r}]", s) for r, s in enumerate(shards)}
    if len(kinds) > 1:
        raise TypeError("shards must be all NumPy arrays or all torch tensors; got a mix")
    axis = _axis(shards[0], dim)
    _check_same_widths(shards, axis, dim)
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
    full = torch.cat(shards, dim=axis)
    return torch.index_select(full, axis, torch.from_numpy(order).to(full.device))


def _check_same_widths(shards: list[Any], axis: int, dim: int) -> None:
    """Every shard has the shape of shard 0 but along ``axis`` (the sequence axis ``dim``)."""
    first = tuple(shards[0].shape)
    for r, x in enumerate(shards):
        shape = tuple(x.shape)
        if len(shape) != len(first) or shape[:axis] + shape[axis + 1:] != first[:axis] + first[axis + 1:]:
            raise ValueError(
                f"shards must have the same shape in every dimension but the sequence axis "
                f"dim={dim}; got shards[0] of shape {first} and shards[{r}] of shape {shape}"
            )
