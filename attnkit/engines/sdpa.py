"""PyTorch's fused ``scaled_dot_product_attention`` with attnkit's semantics on top.

What this wrapper adds to the fused kernel:

* bottom-right causal alignment (``is_causal`` is top-left only), built as a mask;
* a combined mask when ``mask``, ``causal`` and ``window``/``sinks`` are given
  (a window becomes a boolean mask: SDPA has no window argument, so it computes
  every tile);
* zero output rows (and finite gradients) for queries whose every key is masked:
  such rows are given one visible key for the kernel and zeroed afterwards, so no
  backend's NaN can leak into the forward or the backward;
* any number of batch dimensions: the fused kernels want ``(N, H, L, E)``, so the
  inputs are viewed as 4-D (otherwise PyTorch quietly falls back to its math path).

The fused kernels do not materialise the weights, so ``return_weights=True`` is an
error here (use ``backend="torch"``); they have no soft-capping or score modifier
(use ``backend="torch"`` or ``"flash"``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..core._validate import AttentionSpec
from ..core.masks import combined_bool_mask
from .base import Capabilities

CAPS = Capabilities(
    native="torch", gradients=True, mask_gradients=True, devices=("cpu", "cuda"),
    features=frozenset({"window", "sinks", "enable_gqa"}),
    notes="PyTorch's fused kernel; a window is a boolean mask",
)


def available() -> tuple[bool, str]:
    """Available when torch provides ``F.scaled_dot_product_attention``."""
    if not hasattr(F, "scaled_dot_product_attention"):  # pragma: no cover
        return False, "this torch has no scaled_dot_product_attention"
    return True, "PyTorch fused SDPA"


def run(q: Any, k: Any, v: Any, mask: Any, spec: AttentionSpec) -> tuple[Any, None]:
    """Attention through ``F.scaled_dot_product_attention``; returns ``(out, None)``."""
    q = _as_4d(q.expand(*spec.batch, spec.L, spec.E))
    k = _as_4d(k.expand(*spec.batch, spec.S, spec.E))
    v = _as_4d(v.expand(*spec.batch, spec.S, spec.Ev))
    if mask is None and spec.causal in (None, "top-left") and spec.window is None:
        # The fast path: no mask to build. Top-left rows always see key 0 when S > 0,
        # so no row is fully masked.
        out = F.scaled_dot_product_attention(
            q, k, v, is_causal=spec.causal == "top-left", scale=spec.scale
        )
        return out.reshape(spec.out_shape), None
    if mask is not None:
        mask = _as_4d(mask.expand(*spec.batch, spec.L, spec.S))

    allowed = combined_bool_mask(mask, spec.causal, spec.L, spec.S, xp="torch",
                                 window=spec.window, sinks=spec.sinks)
    bias = mask.to(q.dtype) if spec.mask_kind == "float" else None
    visible = allowed
    if bias is not None:
        finite = torch.isfinite(bias) | (bias > 0)
        visible = finite if visible is None else (visible.to(q.device) & finite)
    visible = visible.to(q.device)
    dead = ~visible.any(dim=-1, keepdim=True)  # (..., L, 1): rows with no visible key
    if allowed is not None:
        allowed = allowed.to(q.device) | dead
    if bias is not None:
        bias = torch.where(dead, torch.zeros_like(bias), bias)
    if bias is None:
        attn_mask = allowed
    elif allowed is None:
        attn_mask = bias
    else:
        attn_mask = bias.masked_fill(~allowed, float("-inf"))
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=spec.scale)
    out = torch.where(dead, torch.zeros((), dtype=out.dtype, device=out.device), out)
    return out.reshape(spec.out_shape), None


def _as_4d(x: Any) -> Any:
    """View ``(..., n, d)`` as ``(N, H, n, d)``: pad with leading 1s or merge leading dims."""
    if x.dim() < 4:
        return x.reshape((1,) * (4 - x.dim()) + tuple(x.shape))
    return x.reshape(-1, x.shape[-3], x.shape[-2], x.shape[-1])
