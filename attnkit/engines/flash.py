"""The FlashAttention engine: tiled attention with the online softmax, NumPy or torch.

NumPy inputs run :mod:`attnkit.engines.flash_numpy` (no torch needed); torch inputs
run :mod:`attnkit.engines.flash_torch` (a ``torch.autograd.Function`` with a
recomputing backward, on any device). Both visit only the tiles that the causal
mask and the window leave (:class:`attnkit.core.masks.Band`); what they share is in
:mod:`attnkit.engines._online`.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..core._validate import AttentionSpec
from . import _online
from .base import FEATURES, Capabilities
from .flash_numpy import flash_attention_numpy, forward

#: Gradients flow to q, k and v of torch inputs (the torch half); NumPy inputs never need any.
CAPS = Capabilities(
    native="any", gradients=True, devices=("cpu", "cuda"), features=frozenset(FEATURES),
    tiled=True, notes="tiled online softmax; never forms the (L, S) matrix",
)

__all__ = ["CAPS", "available", "flash_attention_numpy", "run"]


def available() -> tuple[bool, str]:
    """The NumPy path runs wherever NumPy does (the torch path needs torch)."""
    return True, "tiled online softmax (NumPy or torch)"


def run(q: Any, k: Any, v: Any, mask: Any, spec: AttentionSpec) -> tuple[Any, None]:
    """Attention on validated inputs of either kind; returns ``(out, None)``."""
    if spec.kind == "numpy":
        out, _ = forward(q, k, v, mask, spec, *_online.call_blocks(spec))
        return out, None
    # The torch half imports torch at its top: it is imported on the first tensor call.
    flash_torch = importlib.import_module("attnkit.engines.flash_torch")
    return flash_torch.flash_attention_torch(q, k, v, mask=mask, spec=spec), None
