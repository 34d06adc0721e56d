r"""Kernelised linear attention (Katharopoulos et al. 2020): a parallel form and a recurrence.

Replace :math:`e^{q \cdot k}` by :math:`\psi(q) \cdot \psi(k)` with a positive feature
map :math:`\psi(x) = \operatorname{elu}(x) + 1`. Causal attention then becomes

.. math::

    o_i = \frac{\psi(q_i)^\top A_i}{\psi(q_i)^\top a_i}, \qquad
    A_i = A_{i-1} + \psi(k_i)\, v_i^\top, \qquad a_i = a_{i-1} + \psi(k_i),

a recurrence whose state :math:`(A_i, a_i)` has ``d_k x d_v + d_k`` numbers whatever
the length: decoding costs ``O(d_k d_v)`` per token and no KV cache. The parallel form
computes the same outputs from the ``L x S`` matrix :math:`\psi(Q)\psi(K)^\top` with a
causal mask, which is how it trains here (long sequences train in chunks instead:
the parallel form inside a chunk, the recurrence between chunks).

Shapes::

    q (..., L, d_k)   k (..., S, d_k)   v (..., S, d_v)   out (..., L, d_v)
    state: A (..., d_k, d_v), a (..., d_k)

Everything here works on NumPy arrays and torch tensors (differentiable).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core._arrays import array_kind
from ..core._validate import flag, real

__all__ = ["elu_feature_map", "linear_attention", "linear_attention_recurrent"]


def _check(q: Any, k: Any, v: Any) -> str:
    kinds = {array_kind(x) for x in (q, k, v)}
    if "other" in kinds or len(kinds) > 1:
        raise TypeError("q, k and v must all be NumPy arrays or all torch tensors; got "
                        f"{type(q).__name__}, {type(k).__name__}, {type(v).__name__}")
    if q.ndim < 2 or k.ndim != q.ndim or v.ndim != q.ndim:
        raise ValueError(f"q, k, v must be (..., L, d_k), (..., S, d_k), (..., S, d_v) with the "
                         f"same number of dimensions; got {tuple(q.shape)}, {tuple(k.shape)}, "
                         f"{tuple(v.shape)}")
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ValueError(f"q and k must share d_k and k and v must share S; got q "
                         f"{tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    return kinds.pop()


def elu_feature_map(x: Any) -> Any:
    r""":math:`\psi(x) = \operatorname{elu}(x) + 1`, positive everywhere (Katharopoulos et al.).

    Example:
        >>> elu_feature_map(np.array([-1.0, 0.0, 2.0])).round(4)
        array([0.3679, 1.    , 3.    ])
    """
    if array_kind(x) == "torch":
        import torch

        return torch.nn.functional.elu(x) + 1.0
    x = np.asarray(x)
    return np.where(x > 0, x + 1.0, np.exp(np.minimum(x, 0.0)))


def linear_attention(q: Any, k: Any, v: Any, *, causal: bool = True, eps: float = 0.0) -> Any:
    r"""Linear attention in its parallel form, :math:`\psi(Q)\psi(K)^\top` masked and normalised.

    Row ``i`` is :math:`\sum_j \psi(q_i) \cdot \psi(k_j)\, v_j / \sum_j \psi(q_i) \cdot
    \psi(k_j)` (``j <= i + S - L`` when ``causal``, bottom-right aligned).

    Args:
        q, k, v: see the module's shape legend.
        causal: mask keys after each query.
        eps: added to the denominator (0 in the exact form).

    Returns:
        ``(..., L, d_v)``.

    Raises:
        TypeError, ValueError: inputs that do not fit the legend.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> q, k, v = rng.standard_normal((3, 5, 4))
        >>> bool(np.allclose(linear_attention(q, k, v), linear_attention_recurrent(q, k, v)[0]))
        True
    """
    kind = _check(q, k, v)
    causal = flag("causal", causal)
    eps = real("eps", eps)
    fq, fk = elu_feature_map(q), elu_feature_map(k)
    L, S = int(q.shape[-2]), int(k.shape[-2])
    if kind == "torch":
        import torch

        sim = fq @ fk.transpose(-1, -2)  # (..., L, d_k) x (..., d_k, S) -> (..., L, S)
        if causal:
            vis = torch.ones(L, S, dtype=torch.bool, device=q.device).tril(S - L)
            sim = sim.masked_fill(~vis, 0.0)
        return (sim @ v) / (sim.sum(-1, keepdim=True) + eps)
    sim = fq @ np.swapaxes(fk, -1, -2)  # (..., L, S)
    if causal:
        sim = np.where(np.tril(np.ones((L, S), dtype=bool), S - L), sim, 0.0)
    return (sim @ v) / (sim.sum(-1, keepdims=True) + eps)


def linear_attention_recurrent(q: Any, k: Any, v: Any, state: tuple[Any, Any] | None = None,
                               *, eps: float = 0.0) -> tuple[Any, tuple[Any, Any]]:
    r"""Causal linear attention as a recurrence over tokens, with a ``d_k x d_v`` state.

    Token ``t`` (query, key and value ``t``, ``L = S``) updates
    :math:`A \leftarrow A + \psi(k_t) v_t^\top`, :math:`a \leftarrow a + \psi(k_t)` and
    reads :math:`o_t = \psi(q_t)^\top A / (\psi(q_t)^\top a)`. Passing the returned
    state back in continues the sequence (decoding one token at a time).

    Returns:
        ``(out (..., L, d_v), (A (..., d_k, d_v), a (..., d_k)))``.

    Raises:
        TypeError, ValueError: inputs that do not fit the legend, ``L != S``.

    Example:
        >>> q = k = v = np.ones((2, 3))
        >>> out, (A, a) = linear_attention_recurrent(q, k, v)
        >>> A.shape, a.tolist()
        ((3, 3), [4.0, 4.0, 4.0])
    """
    kind = _check(q, k, v)
    eps = real("eps", eps)
    if q.shape[-2] != k.shape[-2]:
        raise ValueError(f"the recurrence takes one query per key (L = S); got q {tuple(q.shape)}, "
                         f"k {tuple(k.shape)}")
    fq, fk = elu_feature_map(q), elu_feature_map(k)
    batch, d_k, d_v = tuple(q.shape[:-2]), int(q.shape[-1]), int(v.shape[-1])
    if kind == "torch":
        import torch

        lib_stack = torch.stack
        if state is None:
            A = q.new_zeros((*batch, d_k, d_v))
            a = q.new_zeros((*batch, d_k))
        else:
            A, a = state
    else:
        lib_stack = np.stack
        if state is None:
            A, a = np.zeros((*batch, d_k, d_v)), np.zeros((*batch, d_k))
        else:
            A, a = state
    outs = []
    for t in range(int(q.shape[-2])):
        A = A + fk[..., t, :, None] * v[..., t, None, :]  # rank-one update psi(k_t) v_t^T
        a = a + fk[..., t, :]
        num = (fq[..., t, :, None] * A).sum(-2)  # psi(q_t)^T A: (..., d_v)
        den = (fq[..., t, :] * a).sum(-1)[..., None] + eps
        outs.append(num / den)
    return lib_stack(outs, -2), (A, a)
