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

# Every name of attnkit.serving.sizing, served from here too (its __all__ is this package's).
from .sizing import *  # noqa: F403
from .sizing import __all__ as __all__
