"""The NumPy reference engine: the executable definition of attention.

Every other engine is tested against this one. It is written to be read::

    scores  = q @ k^T * scale          (..., L, E) x (..., E, S) -> (..., L, S)
    scores  = c * tanh(scores / c)     soft-capping (softcap=c)
    scores  = score_mod(scores, b, h, q_idx, kv_idx)
    scores += float mask               (-inf entries mask a key)
    scores[~allowed] = -inf            (boolean mask AND causal AND window/sinks)
    weights = softmax(scores)          each row sums to 1, or is 0 if fully masked
    out     = weights @ v              (..., L, S) x (..., S, Ev) -> (..., L, Ev)

Half-precision inputs are computed in float32 (so that ``q @ k^T`` cannot overflow
float16's range of +-65504) and the result is cast back. Grouped-query heads
(``enable_gqa``) arrive here as broadcast batch dimensions (see
:func:`attnkit.attention`).
"""

from __future__ import annotations

import numpy as np

from ..core._validate import AttentionSpec
from ..core.masks import combined_bool_mask, softmax
from .base import FEATURES, Capabilities
from .mods import apply_score_mods

CAPS = Capabilities(
    native="numpy", weights=True, devices=("cpu",), features=frozenset(FEATURES),
    notes="the reference: forms the (L, S) matrix",
)


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
    scores = apply_score_mods(scores, spec, 0, spec.L, 0, spec.S)
    if spec.mask_kind == "float":
        scores = scores + mask.astype(work, copy=False)
    allowed = combined_bool_mask(mask, spec.causal, spec.L, spec.S, window=spec.window,
                                 sinks=spec.sinks)
    if allowed is not None:
        scores = np.where(allowed, scores, -np.inf)
    weights = softmax(scores, axis=-1)  # (..., L, S)
    out = weights @ v  # (..., L, S) x (..., S, Ev) -> (..., L, Ev)
    out = np.broadcast_to(out, spec.out_shape).astype(out_dtype)
    weights = np.broadcast_to(weights, spec.weights_shape).astype(out_dtype)
    return out, weights
