"""attnkit: scaled dot-product attention, one definition and several engines.

>>> import attnkit
>>> out = attnkit.attention(attnkit.example.Q, attnkit.example.K, attnkit.example.V)
>>> out.shape
(5, 4)

Public API:

* :func:`attention` - the one entry point; ``backend=`` picks the engine.
* :func:`backends` - the engines usable on this machine.
* :mod:`example` - the shared example of the book (``tokens``, ``Q``, ``K``, ``V``).
* :func:`causal_mask`, :func:`key_padding_mask`, :func:`softmax` - the shared semantics.
* :func:`check_attention_args` - the validation routine every engine uses.
* :class:`NumpyAttention` and :func:`flash_attention_numpy` (NumPy only).
* Building blocks (need torch; imported on first use): :class:`MultiHeadAttention`
  (multi-head, multi-query and grouped-query, with a :class:`KVCache`),
  :class:`SelfAttention`, :class:`ScaledDotProductAttention`,
  and the positional pieces :func:`sinusoidal_positions`, :func:`apply_rope`,
  :func:`alibi_bias`, :class:`RelativePositionBias`.

Importing attnkit needs neither torch, a GPU nor Triton.
"""

from __future__ import annotations

import importlib
from typing import Any

from . import example
from .core._validate import AttentionSpec, check_attention_args
from .core.attention import attention
from .core.masks import causal_mask, causal_offset, key_padding_mask, softmax
from .engines import backends
from .engines.flash_numpy import flash_attention_numpy
from .models.numpy_attention import NumpyAttention

__version__ = "0.1.0"

#: Names served lazily from submodules, so that importing attnkit stays light.
_LAZY = {
    "ScaledDotProductAttention": "attnkit.models.layers",
    "SelfAttention": "attnkit.models.layers",
    "MultiHeadAttention": "attnkit.models.layers",
    "MultiHeadLatentAttention": "attnkit.models.mla",
    "KVCache": "attnkit.models.layers",
    "RelativePositionBias": "attnkit.models.layers",
    "repeat_kv": "attnkit.models.layers",
    "kv_cache_bytes": "attnkit.models.layers",
    "sinusoidal_positions": "attnkit.models.positions",
    "rope_angles": "attnkit.models.positions",
    "apply_rope": "attnkit.models.positions",
    "alibi_slopes": "attnkit.models.positions",
    "alibi_bias": "attnkit.models.positions",
    "flash_attention_torch": "attnkit.engines.flash_torch",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'attnkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "AttentionSpec",
    "NumpyAttention",
    "attention",
    "backends",
    "causal_mask",
    "causal_offset",
    "check_attention_args",
    "example",
    "flash_attention_numpy",
    "key_padding_mask",
    "softmax",
    "__version__",
    *_LAZY,
]
