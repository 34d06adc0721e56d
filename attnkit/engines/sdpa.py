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
  inputs are viewed as 4-D (otherwise PyTorch quietly falls back to its math path);
* learned sink logits (``sink_logits``), **emulated exactly**: SDPA has no such
  argument, so each head gets one more key, whose score is its sink logit and whose
  value is zero. With the scale moved into the queries, ``[q * scale, 1]`` against
  ``[k, 0]`` gives the scores and against ``[0, s_h]`` gives ``s_h``; the extra key
  is visible to every query. This copies q, k and v once (one more column, one more
  key), and with a causal mask, window or mask the boolean mask is built; gradients
  reach the sink logits through the extra key.

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
    features=frozenset({"window", "sinks", "enable_gqa", "sink_logits"}),
    notes="PyTorch's fused kernel; a window is a boolean mask; sink logits as one more key",
)


def available() -> tuple[bool, str]:
    """Available when torch provides ``F.scaled_dot_product_attention``."""
    if not hasattr(F, "scaled_dot_product_attention"):  # pragma: no cover
        return False, "this torch has no scaled_dot_product_attention"
    return True, "PyTorch fused SDPA"


def run(q: Any, k: Any, v: Any, mask: Any, spec: AttentionSpec) -> tuple[Any, None]:
    """Attention through ``F.scaled_dot_product_attention``; returns ``(out, None)``."""
    if spec.sink_logits is not None:
        return _run_with_sink_key(q, k, v, mask, spec), None
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


def _run_with_sink_key(q: Any, k: Any, v: Any, mask: Any, spec: AttentionSpec) -> Any:
    """``sink_logits`` through SDPA: one more key with score ``s_h`` and a zero value.

    Shapes: ``q (..., L, E)``, ``k (..., S, E)``, ``v (..., S, Ev)`` become
    ``(N, H, L, E + 1)``, ``(N, H, S + 1, E + 1)``, ``(N, H, S + 1, Ev)``::

        [q * scale, 1] . [k_j, 0]  = scale * q . k_j      the scores, unchanged
        [q * scale, 1] . [0,  s_h] = s_h                  the sink's score
        value of the extra key: 0                          it takes weight, adds nothing

    The extra key (the last) is visible to every query, so no row is fully masked:
    a row that sees no real key puts all its weight on the sink and its output is 0.
    """
    B, L, S, E, Ev = spec.batch, spec.L, spec.S, spec.E, spec.Ev
    q = _as_4d(q.expand(*B, L, E))
    k = _as_4d(k.expand(*B, S, E))
    v = _as_4d(v.expand(*B, S, Ev))
    sink = spec.sink_logits.to(device=q.device, dtype=q.dtype).expand(B).reshape(*q.shape[:2])
    q1 = torch.cat([q * spec.scale, q.new_ones(*q.shape[:-1], 1)], dim=-1)  # (N, H, L, E + 1)
    k_sink = torch.cat([k.new_zeros(*k.shape[:2], 1, E), sink[..., None, None]], dim=-1)
    k1 = torch.cat([torch.cat([k, k.new_zeros(*k.shape[:-1], 1)], dim=-1), k_sink], dim=-2)
    v1 = torch.cat([v, v.new_zeros(*v.shape[:2], 1, Ev)], dim=-2)  # (N, H, S + 1, Ev)
    allowed = combined_bool_mask(mask, spec.causal, L, S, xp="torch", window=spec.window,
                                 sinks=spec.sinks)
    attn_mask = None
    if allowed is not None or spec.mask_kind == "float":
        if allowed is None:
            allowed = torch.ones((), dtype=torch.bool)
        allowed = _as_4d(allowed.to(q.device).expand(*B, L, S))
        allowed = torch.cat([allowed, allowed.new_ones(*allowed.shape[:-1], 1)], dim=-1)
        attn_mask = allowed
        if spec.mask_kind == "float":
            bias = _as_4d(mask.to(q.dtype).expand(*B, L, S))
            bias = torch.cat([bias, bias.new_zeros(*bias.shape[:-1], 1)], dim=-1)
            attn_mask = bias.masked_fill(~allowed, float("-inf"))
    out = F.scaled_dot_product_attention(q1, k1, v1, attn_mask=attn_mask, scale=1.0)
    return out.reshape(spec.out_shape)


def _as_4d(x: Any) -> Any:
    """View ``(..., n, d)`` as ``(N, H, n, d)``: pad with leading 1s or merge leading dims."""
    if x.dim() < 4:
        return x.reshape((1,) * (4 - x.dim()) + tuple(x.shape))
    return x.reshape(-1, x.shape[-3], x.shape[-2], x.shape[-1])
