"""``NumpyAttention``: the formula as a small NumPy class; importing it needs no torch."""

from __future__ import annotations

import numpy as np

from ..core._validate import array, real
from ..core.attention import attention

__all__ = ["NumpyAttention"]


class NumpyAttention:
    """Scaled dot-product attention as a small NumPy class.

    The four steps (compare, scale, normalise, aggregate) are done by
    :func:`attnkit.attention` with the NumPy reference engine::

        scores  = q @ k.T * scale     (..., L, E) x (..., E, S) -> (..., L, S)
        weights = softmax(scores)     masked keys get weight 0; rows sum to 1
        out     = weights @ v         (..., L, S) x (..., S, Ev) -> (..., L, Ev)

    Args:
        scale: factor applied to ``q @ k^T``; ``None`` means ``1 / sqrt(E)``.

    Example:
        >>> from attnkit import example
        >>> NumpyAttention()(example.Q, example.K, example.V)[0].round(4)
        array([0.2254, 0.4135, 0.2964, 0.2964])
    """

    def __init__(self, scale: float | None = None) -> None:
        self.scale = None if scale is None else real("scale", scale)

    def __call__(
        self,
        q: np.ndarray,
        k: np.ndarray,
        v: np.ndarray,
        mask: np.ndarray | None = None,
        causal: bool | str = False,
        return_weights: bool = False,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Attend: ``q (..., L, E)``, ``k (..., S, E)``, ``v (..., S, Ev)`` -> ``(..., L, Ev)``.

        ``mask`` is boolean (True = the key takes part) or floating (added to the
        scores); ``causal`` is False, True/"top-left" or "bottom-right". With
        ``return_weights`` the ``(..., L, S)`` weights come back too.

        Raises:
            TypeError: inputs that are not NumPy arrays (or see :func:`attnkit.attention`).
        """
        for name, x in (("q", q), ("k", k), ("v", v)):
            array(name, x, "numpy")
        return attention(q, k, v, mask=mask, causal=causal, scale=self.scale,
                         backend="numpy", return_weights=return_weights)

    def __repr__(self) -> str:
        return f"NumpyAttention(scale={self.scale})"
