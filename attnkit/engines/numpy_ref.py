"""The NumPy reference engine: the executable definition of attention.

Every other engine is tested against this one. It is written to be read::

    scores  = q @ k^T * scale          (..., L, E) x (..., E, S) -> (..., L, S)
    scores  = c * tanh(scores / c)     soft-capping (softcap=c)
    scores  = score_mod(scores, b, h, q_idx, kv_idx)
    scores += float mask               (-inf entries mask a key)
    scores[~allowed] = -inf            (boolean mask AND causal AND window/sinks)
    weights = softmax(scores)          each row sums to 1, or is 0 if fully masked;
                                       with sink logits s_h, exp(s_h) joins each
                                       denominator (the row sums to less than 1)
    out     = weights @ v              (..., L, S) x (..., S, Ev) -> (..., L, Ev)
    lse     = log(sum(exp(scores)))    on request: what merges partial results
                                       (+ exp(s_h) inside the log, with sink logits)

Half-precision inputs are computed in float32 (so that ``q @ k^T`` cannot overflow
float16's range of +-65504) and the result is cast back. Grouped-query heads
(``enable_gqa``) arrive here as broadcast batch dimensions (see
:func:`attnkit.attention`).
"""

from __future__ import annotations

import numpy as np

from ..core._arrays import work_dtype
from ..core._validate import AttentionSpec
from ..core.masks import combined_bool_mask, softmax_lse
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
        spec: AttentionSpec, return_lse: bool = False) -> tuple[np.ndarray, ...]:
    """Attention on validated NumPy inputs; returns ``(out, weights)``, or ``(out, weights, lse)``.

    ``weights`` is ``None`` unless ``spec.return_weights``; ``lse (..., L)`` (with
    ``return_lse``) is the log-sum-exp of each row of masked scores, in the working
    precision (``-inf`` for a row that sees no key).
    """
    out_dtype = q.dtype
    work = work_dtype(q)
    q, k, v = (x.astype(work, copy=False) for x in (q, k, v))
    scores = (q @ np.swapaxes(k, -1, -2)) * work(spec.scale)  # (..., L, S)
    scores = apply_score_mods(scores, spec, 0, spec.L, 0, spec.S)
    if spec.mask_kind == "float":
        scores = scores + mask.astype(work, copy=False)
    allowed = combined_bool_mask(mask, spec.causal, spec.L, spec.S, window=spec.window,
                                 sinks=spec.sinks)
    if allowed is not None:
        scores = np.where(allowed, scores, -np.inf)
    sink = None
    if spec.sink_logits is not None:  # (...) -> (..., 1, 1): one logit per row of its head
        sink = np.broadcast_to(spec.sink_logits, spec.batch).astype(work)[..., None, None]
    weights, lse = softmax_lse(scores, axis=-1, sink=sink)  # (..., L, S) and (..., L)
    out = weights @ v  # (..., L, S) x (..., S, Ev) -> (..., L, Ev)
    out = np.broadcast_to(out, spec.out_shape).astype(out_dtype)
    weights = (np.broadcast_to(weights, spec.weights_shape).astype(out_dtype)
               if spec.return_weights else None)  # a copy only when asked for
    if return_lse:
        return out, weights, np.broadcast_to(lse, (*spec.batch, spec.L))
    return out, weights
