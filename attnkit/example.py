"""The shared example of the book: "The cat sat on mat", d_k = d_v = 4.

Rows are tokens, columns are dimensions 0..3. In a trained model these would be
``Q = X W_Q``, ``K = X W_K`` and ``V = X W_V``; here they are fixed so that every
chapter starts from the same numbers. The arrays are read-only float64.

Attributes:
    tokens: the five tokens, in order.
    Q: queries, shape ``(5, 4)``.
    K: keys, shape ``(5, 4)``.
    V: values, shape ``(5, 4)``.
    d_k: the query/key width, 4.
"""

from __future__ import annotations

import numpy as np


def _frozen(rows: list[list[float]]) -> np.ndarray:
    a = np.array(rows, dtype=np.float64)
    a.flags.writeable = False
    return a


tokens: tuple[str, ...] = ("The", "cat", "sat", "on", "mat")

Q: np.ndarray = _frozen([
    [1, 0, 1, 0],
    [0, 2, 0, 1],
    [1, 1, 1, 0],
    [0, 0, 1, 1],
    [1, 0, 0, 1],
])

K: np.ndarray = _frozen([
    [0, 1, 0, 1],
    [1, 0, 1, 0],
    [1, 1, 0, 0],
    [0, 0, 1, 1],
    [1, 0, 0.5, 0.5],
])

V: np.ndarray = _frozen([
    [1, 0, 0, 0],
    [0, 1, 0, 0],
    [0, 0, 1, 0],
    [0, 0, 0, 1],
    [0.5, 0.5, 0.5, 0.5],
])

d_k: int = Q.shape[1]

__all__ = ["tokens", "Q", "K", "V", "d_k"]
