"""Attention at serving scale.

* :mod:`attnkit.serving.sizing` - model shapes, GPU figures, KV-cache bytes, the
  roofline cost of prefill and decoding, cache quantisation (re-exported here, so
  ``from attnkit import serving; serving.GPUS`` works).
* :mod:`attnkit.serving.decoding` - split-KV (FlashDecoding) attention and the exact
  log-sum-exp merge of partial results.
* :mod:`attnkit.serving.paged` - a paged KV cache: block tables over a shared pool.

Nothing here needs torch at import time.
"""

from __future__ import annotations

from .sizing import (
    GPU,
    GPUS,
    MODELS,
    GiB,
    ModelShape,
    Quantized,
    StepCost,
    decode_cost,
    kv_bytes_per_token,
    kv_cache_bytes_for,
    prefill_cost,
    quantize,
    sequences_that_fit,
)

__all__ = [
    "GPU",
    "GPUS",
    "GiB",
    "MODELS",
    "ModelShape",
    "Quantized",
    "StepCost",
    "decode_cost",
    "kv_bytes_per_token",
    "kv_cache_bytes_for",
    "prefill_cost",
    "quantize",
    "sequences_that_fit",
]
