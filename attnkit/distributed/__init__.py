"""Attention beyond one device: the sequence split across processes (context parallelism).

* :func:`shard`, :func:`unshard` - cut a sequence into per-rank shards (contiguous or
  zigzag) and put it back together.
* :func:`ring_attention` - each rank's shard of exact attention, key/value blocks
  passed around a ring of ``torch.distributed`` ranks (gloo or NCCL), merged by
  log-sum-exp; differentiable (the backward is a second ring).
* :func:`all_gather_attention` - the comparison strategy: all-gather K/V, then attend.
* :func:`launch` - run a function on P local processes forming one group.

``python -m attnkit.distributed --nproc 4`` checks the engine against single-device
attention. Needs torch (importing this package imports it).
"""

from __future__ import annotations

from .launch import launch, local_device
from .layout import shard, shard_positions, shard_sizes, unshard
from .ring import all_gather_attention, ring_attention

__all__ = [
    "all_gather_attention",
    "launch",
    "local_device",
    "ring_attention",
    "shard",
    "shard_positions",
    "shard_sizes",
    "unshard",
]
