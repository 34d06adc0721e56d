"""A 2-D arrangement of the ranks for context parallelism: Ulysses groups inside, rings across.

``P = P_ulysses x P_ring`` ranks form a grid; rank ``r`` sits at
``(ring_rank, ulysses_rank) = divmod(r, P_ulysses)``::

    P = 4 as 2 x 2                  ulysses groups (rows): {0, 1}, {2, 3}
        ulysses rank ->  0   1      ring groups (columns):  {0, 2}, {1, 3}
        ring rank 0:     r0  r1
        ring rank 1:     r2  r3

Consecutive ranks share a Ulysses group because its all-to-all moves the most
data and wants the fastest links (the GPUs of one NVLink domain); the ring, which
overlaps its traffic with compute, runs across groups. The sequence is cut in
two levels (:func:`shard_2d`): first into ``P_ring`` shards (contiguous or
zigzag), then each of those contiguously into ``P_ulysses`` pieces, so that a
Ulysses group's all-to-all reassembles exactly one ring shard.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch.distributed as dist

from ..core._validate import choice, integer, positive_int
from ._group import require_group, timeout_delta
from .layout import LAYOUTS, Layout, shard, unshard

__all__ = ["Mesh", "current_mesh", "make_mesh", "shard_2d", "unshard_2d"]


@dataclass(frozen=True)
class Mesh:
    """This rank's place in a ``P_ulysses x P_ring`` grid, and the two groups it belongs to.

    Attributes:
        ulysses_size, ring_size: ``P_ulysses`` and ``P_ring``.
        ulysses_rank, ring_rank: this rank's column and row, ``divmod(rank, P_ulysses)``
            reversed.
        ulysses_group: the group of the ``P_ulysses`` consecutive ranks of this row.
        ring_group: the group of the ``P_ring`` ranks of this column.
    """

    ulysses_size: int
    ring_size: int
    ulysses_rank: int
    ring_rank: int
    ulysses_group: Any
    ring_group: Any


_CURRENT: list[Mesh] = []  # the mesh that launch(mesh=...) built in this process


def make_mesh(ulysses_size: int, ring_size: int, *, timeout: float | None = None) -> Mesh:
    """Build the Ulysses and ring sub-groups of a ``P_ulysses x P_ring`` grid (call on every rank).

    Every rank of the default group must call it, with the same sizes: creating
    a group is itself collective (each rank creates every group, in the same
    order, as ``torch.distributed.new_group`` requires).

    Args:
        ulysses_size: ``P_ulysses``, ranks per Ulysses group (the consecutive ranks).
        ring_size: ``P_ring``, ranks per ring; ``P_ulysses * P_ring`` must be the world size.
        timeout: seconds any collective of the new groups may wait (default: the
            default group's).

    Returns:
        This rank's :class:`Mesh`.

    Raises:
        RuntimeError: no initialised process group.
        TypeError, ValueError: sizes that are not positive integers or whose
            product is not the world size.

    Example (inside :func:`attnkit.distributed.launch`; ``launch(fn, 4, mesh=(2, 2))``
    builds it for you)::

        mesh = make_mesh(2, 2)      # on rank 3: ulysses group {2, 3}, ring group {1, 3}
    """
    rank, world = require_group("make_mesh", None)
    pu, pr = positive_int("ulysses_size", ulysses_size), positive_int("ring_size", ring_size)
    if pu * pr != world:
        raise ValueError(f"ulysses_size * ring_size must equal the world size {world}; got "
                         f"ulysses_size={pu}, ring_size={pr} (product {pu * pr})")
    delta = timeout_delta(timeout)
    ring_rank, ulysses_rank = divmod(rank, pu)
    ulysses_group = ring_group = None
    for i in range(pr):  # every rank creates every group, in the same order
        g = dist.new_group([i * pu + j for j in range(pu)], timeout=delta)
        if i == ring_rank:
            ulysses_group = g
    for j in range(pu):
        g = dist.new_group([i * pu + j for i in range(pr)], timeout=delta)
        if j == ulysses_rank:
            ring_group = g
    mesh = Mesh(pu, pr, ulysses_rank, ring_rank, ulysses_group, ring_group)
    _CURRENT[:] = [mesh]
    return mesh


def current_mesh() -> Mesh:
    """The mesh built in this process by :func:`make_mesh` (or by ``launch(..., mesh=...)``).

    Raises:
        RuntimeError: none has been built here.
    """
    if not _CURRENT:
        raise RuntimeError("no mesh has been built in this process: call make_mesh(P_ulysses, P_ring) "
                           "on every rank, or launch(fn, P, mesh=(P_ulysses, P_ring))")
    return _CURRENT[0]


def _grid(rank: int, ulysses_size: int, ring_size: int) -> tuple[int, int]:
    pu, pr = positive_int("ulysses_size", ulysses_size), positive_int("ring_size", ring_size)
    return divmod(integer("rank", rank, minimum=0, maximum=pu * pr - 1), pu)


def shard_2d(x: Any, rank: int, ulysses_size: int, ring_size: int, *,
             layout: Layout = "contiguous", dim: int = -2) -> Any:
    """Rank ``rank``'s piece of ``x`` in a ``P_ulysses x P_ring`` grid (two-level sharding).

    The sequence axis is cut into ``P_ring`` shards by ``layout``; the ring
    shard of this rank's row is cut contiguously into ``P_ulysses`` pieces, and
    the rank takes the piece of its column.

    Shapes: ``x (..., n, ...)`` -> ``(..., n_r, ...)`` along ``dim``.

    Raises:
        TypeError, ValueError: as :func:`attnkit.distributed.shard`; a rank
            outside ``[0, P_ulysses * P_ring)``.

    Example:
        >>> import numpy as np
        >>> [shard_2d(np.arange(8)[:, None], r, 2, 2, layout="zigzag").ravel().tolist()
        ...  for r in range(4)]
        [[0, 1], [6, 7], [2, 3], [4, 5]]
    """
    ring_rank, ulysses_rank = _grid(rank, ulysses_size, ring_size)
    ring_shard = shard(x, ring_rank, ring_size, layout=layout, dim=dim)
    return shard(ring_shard, ulysses_rank, ulysses_size, layout="contiguous", dim=dim)


def unshard_2d(shards: Sequence[Any], ulysses_size: int, ring_size: int, *,
               layout: Layout = "contiguous", dim: int = -2) -> Any:
    """The full array from the pieces of ranks ``0 .. P-1`` (the inverse of :func:`shard_2d`).

    Example:
        >>> import numpy as np
        >>> x = np.arange(10.0)[:, None]
        >>> parts = [shard_2d(x, r, 2, 2, layout="zigzag") for r in range(4)]
        >>> bool((unshard_2d(parts, 2, 2, layout="zigzag") == x).all())
        True
    """
    shards = list(shards)
    pu, pr = positive_int("ulysses_size", ulysses_size), positive_int("ring_size", ring_size)
    if len(shards) != pu * pr:
        raise ValueError(f"shards must hold one piece per rank, {pu * pr}; got {len(shards)}")
    layout = choice("layout", layout, LAYOUTS)
    rows = [unshard(shards[i * pu:(i + 1) * pu], layout="contiguous", dim=dim) for i in range(pr)]
    return unshard(rows, layout=layout, dim=dim)
