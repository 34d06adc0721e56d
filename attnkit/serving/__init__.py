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
* :mod:`attnkit.serving.simulator` - the same scheduler on a roofline clock: a
  published model shape on a datasheet GPU (re-exported here).
* :mod:`attnkit.serving.speculative` - speculative decoding with a token tree,
  verified by the target in one pass (re-exported here; imports torch when first used).
* :mod:`attnkit.serving.fp8` - FP8 caches (e4m3, e5m2) with per-head scales
  (re-exported here; ``quantize_fp8`` imports torch when called).

Nothing here needs torch at import time.
"""

from __future__ import annotations

import importlib
from typing import Any

from . import fp8 as _fp8
from . import scheduler as _scheduler
from . import simulator as _simulator
from . import sizing as _sizing

# Every name of sizing, scheduler, simulator and fp8, served from here too.
from .fp8 import *  # noqa: F403
from .scheduler import *  # noqa: F403
from .simulator import *  # noqa: F403
from .sizing import *  # noqa: F403

#: The names of the engine and of speculative decoding, imported on first use (they need torch).
_LAZY = {
    **{name: "attnkit.serving.engine" for name in ("PagedEngine", "generate_alone", "serve")},
    **{name: "attnkit.serving.speculative" for name in (
        "SpeculativeRun", "accept_child", "check_tree", "draft_model", "estimate_acceptance",
        "expected_speedup", "expected_tokens_per_pass", "measure_speculation",
        "speculative_generate", "tree_depths", "tree_from_branching", "tree_mask")},
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'attnkit.serving' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [*_sizing.__all__, *_scheduler.__all__, *_simulator.__all__, *_fp8.__all__, *_LAZY]
