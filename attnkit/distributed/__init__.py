"""Attention beyond one device: the sequence, the heads or the cache split across processes.

* :func:`shard`, :func:`unshard` - cut a sequence into per-rank shards (contiguous or
  zigzag) and put it back together; :func:`shard_2d`, :func:`unshard_2d` for a
  ``P_ulysses x P_ring`` grid.
* :func:`ring_attention` - each rank's shard of exact attention, key/value blocks
  passed around a ring of ``torch.distributed`` ranks (gloo or NCCL), merged by
  log-sum-exp; differentiable (the backward is a second ring).
* :func:`ulysses_attention` - DeepSpeed-Ulysses: all-to-all from sequence shards to
  head shards of the whole sequence, attention, and back; differentiable.
* :func:`usp_attention` - 2-D context parallelism: Ulysses inside groups, the ring
  across them (:func:`make_mesh` builds the groups; ``launch(..., mesh=...)`` too).
* :func:`sharded_decode_attention`, :func:`all_reduce_partials` - decoding against
  a KV cache sliced over ranks, merged by two all-reduces (tree attention).
* :class:`TensorParallelAttention` - heads and their weights split over ranks,
  ``W_O``'s all-reduce at the end (Megatron-LM).
* :func:`all_gather_attention` - the comparison strategy: all-gather K/V, then attend.
* :func:`launch` - run a function on P local processes forming one group.

Every strategy checks its arguments on every rank and exchanges a summary of
them before any data moves, so a misuse raises the same error on every rank
instead of leaving the others waiting; every collective waits at most a
timeout. ``python -m attnkit.distributed --nproc 4`` checks the ring against
single-device attention. Needs torch (importing this package imports it).
"""

from __future__ import annotations

from .launch import launch, local_device
from .layout import shard, shard_positions, shard_sizes, unshard
from .mesh import Mesh, current_mesh, make_mesh, shard_2d, unshard_2d
from .ring import all_gather_attention, ring_attention
from .tensor_parallel import TensorParallelAttention
from .tree import all_reduce_partials, sharded_decode_attention
from .ulysses import kv_replication, ulysses_attention, usp_attention

__all__ = [
    "Mesh",
    "TensorParallelAttention",
    "all_gather_attention",
    "all_reduce_partials",
    "current_mesh",
    "kv_replication",
    "launch",
    "local_device",
    "make_mesh",
    "ring_attention",
    "shard",
    "shard_2d",
    "shard_positions",
    "shard_sizes",
    "sharded_decode_attention",
    "ulysses_attention",
    "unshard",
    "unshard_2d",
    "usp_attention",
]
