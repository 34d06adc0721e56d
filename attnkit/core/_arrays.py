"""What kind of array a value is (NumPy or torch), and the one accessor for the optional torch.

Importing attnkit must not import torch (it is slow and optional). These helpers
look at ``sys.modules`` to recognise a tensor, so torch is only touched when the
caller already uses it; :func:`torch_module` is the one place where the modules
that serve NumPy and torch alike import torch, on first use. Modules that always
need torch (the torch engines, the layers, distributed) import it at their top,
and are themselves imported only when used.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any

import numpy as np


def torch_module() -> ModuleType:
    """The ``torch`` module, imported on first use: attnkit's one lazy import of torch.

    Raises:
        ImportError: torch is not installed (``pip install torch``).

    Example:
        >>> torch_module().__name__
        'torch'
    """
    try:
        return importlib.import_module("torch")
    except ImportError as exc:  # pragma: no cover - torch is installed wherever tensors exist
        raise ImportError(f"this needs PyTorch, which is not installed here ({exc}); "
                          "pip install torch") from exc


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


def work_dtype(x: Any) -> Any:
    """The precision attnkit computes in: float64 for float64 inputs, float32 for the rest.

    Half precision (float16, bfloat16) is widened to float32, so that ``q @ k^T``
    cannot overflow float16's range and sums keep their digits.

    Args:
        x: a NumPy array or dtype (returns ``np.float64`` or ``np.float32``), or a
            torch tensor or dtype (returns ``torch.float64`` or ``torch.float32``).

    Example:
        >>> work_dtype(np.zeros(2, np.float16)), work_dtype(np.dtype("float64"))
        (<class 'numpy.float32'>, <class 'numpy.float64'>)
    """
    dtype = getattr(x, "dtype", x)
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(dtype, torch.dtype):
        return torch.float64 if dtype == torch.float64 else torch.float32
    return np.float64 if np.dtype(dtype) == np.float64 else np.float32


def needs_grad(x: Any) -> bool:
    """True when ``x`` is a tensor that requires grad and torch's grad mode is on.

    Example:
        >>> needs_grad(np.ones(3))
        False
    """
    return is_tensor(x) and x.requires_grad and sys.modules["torch"].is_grad_enabled()


def to_numpy(x: Any) -> np.ndarray:
    """A NumPy view or copy of ``x``; bfloat16 tensors become float32."""
    if isinstance(x, np.ndarray):
        return x
    t = x.detach()
    if t.dtype == torch_module().bfloat16:
        t = t.float()
    return t.cpu().numpy()


def to_torch(x: Any, like: Any = None) -> Any:
    """A tensor for ``x`` on the device of ``like`` (CPU when ``like`` is None)."""
    torch = torch_module()
    if isinstance(x, torch.Tensor):
        t = x
    else:
        # torch cannot wrap a read-only array (such as attnkit.example.Q): copy it.
        a = np.ascontiguousarray(x)
        t = torch.from_numpy(a if a.flags.writeable else a.copy())
    if like is not None and isinstance(like, torch.Tensor) and t.device != like.device:
        t = t.to(like.device)
    return t
