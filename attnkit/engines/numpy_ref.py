"""The NumPy reference engine: the executable definition of attention.

Every other engine is tested against this one. It is written to be read::

    scores  = q @ k^T * scale          (..., L, E) x (..., E, S) -> (..., L, S)
    scores += float mask               (-inf entries mask a key)
    scores[~allowed] = -inf            (boolean mask AND causal mask)
    weights = softmax(scores)          each row sums to 1, or is 0 if fully masked
    out     = weights @ v              (..., L, S) x (..., S, Ev) -> (..., L, Ev)

Half-precision inputs are computed in float32 (so that ``q @ k^T`` cannot overflow
float16's range of +-65504) and the result is cast back.
"""

from __future__ import annotations

import numpy as np

from .._validate import AttentionSpec
from ..masks import combined_bool_mask, softmax

ARRAY = "numpy"
RETURNS_WEIGHTS = True


def available() -> tuple[bool, str]:
    """The reference engine runs wherever NumPy does."""
    return True, "NumPy"


def run(q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray | None,
        spec: AttentionSpec) -> tuple[np.ndarray, np.ndarray | None]:
    """Attention on validated NumPy inputs; returns ``(out, weights)``."""
    out_dtype = q.dtype
    work = np.float64 if q.dtype == np.float64 else np.float32
    q, k, v = (x.astype(work, copy=False) for x in (q, k, v))
    scores = (q @ np.swapaxes(k, -1, -2)) * work(spec.scale)  # (..., L, S)
    if spec.mask_kind == "float":
        scores = scores + mask.astype(work, copy=False)
    allowed = combined_bool_mask(mask, spec.causal, spec.L, spec.S)
    if allowed is not None:
        scores = np.where(allowed, scores, -np.inf)
    weights = softmax(scores, axis=-1)  # (..., L, S)
    out = weights @ v  # (..., L, S) x (..., S, Ev) -> (..., L, Ev)
    out = np.broadcast_to(out, spec.out_shape).astype(out_dtype)
    weights = np.broadcast_to(weights, spec.weights_shape).astype(out_dtype)
    return out, weights
