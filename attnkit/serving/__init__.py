"""Attention at serving scale.

* :mod:`attnkit.serving.sizing` - model shapes, GPU figures, KV-cache bytes, the
  roofline cost of prefill and decoding, cache quantisation (re-exported here, so
  ``from attnkit import serving; serving.GPUS`` works).
* :mod:`attnkit.serving.decoding` - split-KV (FlashDecoding) attention and the exact
  log-sum-exp merge of partial results.
* :mod:`attnkit.serving.paged` - a paged KV cache: block tables over a shared pool,
  shared blocks (fork, copy-on-write) and automatic prefix caching.
* :mod:`attnkit.serving.scheduler` - continuous batching: the scheduler (token
  budget, chunked prefill, preemption), its loop and a synthetic workload
  (re-exported here).
* :mod:`attnkit.serving.engine` - the chapter 10 Transformer served through the
  scheduler and a paged cache (re-exported here; its names import torch when first
  used).

Nothing here needs torch at import time.
"""

from __future__ import annotations

import importlib
from typing import Any

from . import scheduler as _scheduler
from . import sizing as _sizing

# Every name of attnkit.serving.sizing and attnkit.serving.scheduler, served from here too.
from .scheduler import *  # noqa: F403
from .sizing import *  # noqa: F403

#: The engine's names, imported on first use (the engine needs torch).
_LAZY = {name: "attnkit.serving.engine" for name in ("PagedEngine", "generate_alone", "serve")}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'attnkit.serving' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [*_sizing.__all__, *_scheduler.__all__, *_LAZY]
