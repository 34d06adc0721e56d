"""The PyTorch engine: the reference formula written with torch operations.

Runs on any device (the device of ``q``), supports autograd (through every
variant, ``score_mod`` included), and keeps the same semantics as the NumPy
reference. Half-precision inputs are computed in float32 and cast back, so
float16 scores cannot overflow.
"""

from __future__ import annotations

from typing import Any

import torch

from ..core._arrays import work_dtype
from ..core._validate import AttentionSpec
from ..core.masks import combined_bool_mask
from .base import FEATURES, Capabilities
from .mods import apply_score_mods

CAPS = Capabilities(
    native="torch", weights=True, gradients=True, mask_gradients=True, devices=("cpu", "cuda"),
    features=frozenset(FEATURES), notes="the formula in torch operations; autograd",
)


def available() -> tuple[bool, str]:
    """Available whenever this module imports (torch is installed)."""
    return True, "PyTorch eager"


def stable_softmax(scores: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dimension; a row of all ``-inf`` gives zeros, not NaN.

    Example:
        >>> stable_softmax(torch.tensor([[0.0, float("-inf")], [float("-inf")] * 2]))
        tensor([[1., 0.],
                [0., 0.]])
    """
    return softmax_lse(scores)[0]


def softmax_lse(scores: torch.Tensor, sink: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`stable_softmax` and the log-sum-exp of each row (``-inf`` for an all ``-inf`` row).

    Both are differentiable, with finite (zero) gradients on a row of all ``-inf``.
    With ``sink`` (finite logits broadcastable to ``(..., L, 1)``), ``exp(sink)`` joins
    each row's denominator (as :func:`attnkit.core.masks.softmax_lse`), and autograd
    carries the sink's gradient.

    Example:
        >>> w, lse = softmax_lse(torch.tensor([[0.0, 0.0], [float("-inf")] * 2]))
        >>> lse
        tensor([0.6931,   -inf])
        >>> softmax_lse(torch.tensor([[0.0, 0.0]]), sink=torch.tensor([[0.0]]))[0]
        tensor([[0.3333, 0.3333]])
    """
    m = scores.detach().amax(dim=-1, keepdim=True)  # the shift cancels: no gradient through it
    if sink is not None:
        m = torch.maximum(m, sink.detach())
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    e = torch.exp(scores - m)
    z = e.sum(dim=-1, keepdim=True)
    if sink is not None:
        z = z + torch.exp(sink - m)
    z_safe = torch.where(z > 0, z, torch.ones_like(z))
    lse = torch.where(z > 0, m + torch.log(z_safe), torch.full_like(z, float("-inf")))
    return e / z_safe, lse[..., 0]


def run(q: Any, k: Any, v: Any, mask: Any, spec: AttentionSpec,
        return_lse: bool = False) -> tuple[Any, ...]:
    """Attention on validated tensors; returns ``(out, weights)``, or ``(out, weights, lse)``.

    ``weights`` is ``None`` unless ``spec.return_weights``; ``lse (..., L)`` (with
    ``return_lse``) is the log-sum-exp of each row of masked scores, in the working
    precision (``-inf`` for a row that sees no key).
    """
    out_dtype = q.dtype
    work = work_dtype(q)
    q, k, v = q.to(work), k.to(work), v.to(work)
    scores = torch.matmul(q, k.transpose(-2, -1)) * spec.scale  # (..., L, E) x (..., E, S)
    scores = apply_score_mods(scores, spec, 0, spec.L, 0, spec.S)
    if spec.mask_kind == "float":
        scores = scores + mask.to(work)
    allowed = combined_bool_mask(mask, spec.causal, spec.L, spec.S, xp="torch",
                                 window=spec.window, sinks=spec.sinks)
    if allowed is not None:
        scores = scores.masked_fill(~allowed.to(scores.device), float("-inf"))
    sink = None
    if spec.sink_logits is not None:  # (...) -> (..., 1, 1): one logit per row of its head
        sink = spec.sink_logits.to(device=scores.device, dtype=work).expand(spec.batch)
        sink = sink[..., None, None]
    weights, lse = softmax_lse(scores, sink)  # (..., L, S) and (..., L)
    out = torch.matmul(weights, v)  # (..., L, S) x (..., S, Ev) -> (..., L, Ev)
    out = out.expand(spec.out_shape).to(out_dtype)
    weights = weights.expand(spec.weights_shape).to(out_dtype) if spec.return_weights else None
    if return_lse:
        return out, weights, lse.expand(*spec.batch, spec.L)
    return out, weights
