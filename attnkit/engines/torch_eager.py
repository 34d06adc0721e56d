"""The PyTorch engine: the reference formula written with torch operations.

Runs on any device (the device of ``q``), supports autograd, and keeps the same
semantics as the NumPy reference. Half-precision inputs are computed in float32
and cast back, so float16 scores cannot overflow.
"""

from __future__ import annotations

from typing import Any

from .._validate import AttentionSpec
from ..masks import combined_bool_mask

ARRAY = "torch"
RETURNS_WEIGHTS = True


def available() -> tuple[bool, str]:
    """Available when torch imports."""
    try:
        import torch  # noqa: F401
    except ImportError as exc:  # pragma: no cover - torch is a book requirement
        return False, f"torch is not installed ({exc})"
    return True, "PyTorch eager"


def stable_softmax(scores: Any) -> Any:
    """Softmax over the last dimension; a row of all ``-inf`` gives zeros, not NaN."""
    import torch

    m = scores.detach().amax(dim=-1, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    e = torch.exp(scores - m)
    z = e.sum(dim=-1, keepdim=True)
    return e / torch.where(z > 0, z, torch.ones_like(z))


def run(q: Any, k: Any, v: Any, mask: Any, spec: AttentionSpec) -> tuple[Any, Any]:
    """Attention on validated tensors; returns ``(out, weights)``."""
    import torch

    out_dtype = q.dtype
    work = torch.float64 if q.dtype == torch.float64 else torch.float32
    q, k, v = q.to(work), k.to(work), v.to(work)
    scores = torch.matmul(q, k.transpose(-2, -1)) * spec.scale  # (..., L, E) x (..., E, S)
    if spec.mask_kind == "float":
        scores = scores + mask.to(work)
    allowed = combined_bool_mask(mask, spec.causal, spec.L, spec.S, xp="torch")
    if allowed is not None:
        scores = scores.masked_fill(~allowed.to(scores.device), float("-inf"))
    weights = stable_softmax(scores)  # (..., L, S)
    out = torch.matmul(weights, v)  # (..., L, S) x (..., S, Ev) -> (..., L, Ev)
    out = out.expand(spec.out_shape).to(out_dtype)
    weights = weights.expand(spec.weights_shape).to(out_dtype)
    return out, weights
