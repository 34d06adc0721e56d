"""Small helpers that tell NumPy arrays from torch tensors without importing torch.

Importing attnkit must not import torch (it is slow and optional); these helpers
look at ``sys.modules`` so that torch is only touched when the caller already
uses it.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np


def is_tensor(x: Any) -> bool:
    """Return True when ``x`` is a ``torch.Tensor`` (without importing torch)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def array_kind(x: Any) -> str:
    """``"numpy"`` for an ndarray, ``"torch"`` for a tensor, ``"other"`` otherwise."""
    if isinstance(x, np.ndarray):
        return "numpy"
    if is_tensor(x):
        return "torch"
    return "other"


def dtype_name(x: Any) -> str:
    """The dtype of an array or tensor as a short string, e.g. ``"float32"``."""
    return str(x.dtype).replace("torch.", "")


def to_numpy(x: Any) -> np.ndarray:
    """A NumPy view or copy of ``x``; bfloat16 tensors become float32."""
    if isinstance(x, np.ndarray):
        return x
    import torch

    t = x.detach()
    if t.dtype == torch.bfloat16:
        t = t.float()
    return t.cpu().numpy()


def to_torch(x: Any, like: Any = None) -> Any:
    """A tensor for ``x`` on the device of ``like`` (CPU when ``like`` is None)."""
    import torch

    if isinstance(x, torch.Tensor):
        t = x
    else:
        # torch cannot wrap a read-only array (such as attnkit.example.Q): copy it.
        a = np.ascontiguousarray(x)
        t = torch.from_numpy(a if a.flags.writeable else a.copy())
    if like is not None and isinstance(like, torch.Tensor) and t.device != like.device:
        t = t.to(like.device)
    return t
