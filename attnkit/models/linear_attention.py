r"""Kernelised linear attention (Katharopoulos et al. 2020): a parallel form and a recurrence.

Replace :math:`e^{q \cdot k}` by :math:`\phi(q) \cdot \phi(k)` with a positive feature
map :math:`\phi(x) = \operatorname{elu}(x) + 1`. Causal attention then becomes

.. math::

    o_i = \frac{\phi(q_i)^\top S_i}{\phi(q_i)^\top z_i}, \qquad
    S_i = S_{i-1} + \phi(k_i)\, v_i^\top, \qquad z_i = z_{i-1} + \phi(k_i),

a recurrence whose state :math:`(S_i, z_i)` has ``d_k x d_v + d_k`` numbers whatever
the length: decoding costs ``O(d_k d_v)`` per token and no KV cache. The parallel form
computes the same outputs from the ``L x S`` matrix :math:`\phi(Q)\phi(K)^\top` with a
causal mask, which is how it trains.

Shapes::

    q (..., L, d_k)   k (..., S, d_k)   v (..., S, d_v)   out (..., L, d_v)
    state: S (..., d_k, d_v), z (..., d_k)

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
    r""":math:`\phi(x) = \operatorname{elu}(x) + 1`, positive everywhere (Katharopoulos et al.).

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
    r"""Linear attention in its parallel form, :math:`\phi(Q)\phi(K)^\top` masked and normalised.

    Row ``i`` is :math:`\sum_j a_{ij} v_j / \sum_j a_{ij}` with
    :math:`a_{ij} = \phi(q_i) \cdot \phi(k_j)` (``j <= i + S - L`` when ``causal``,
    bottom-right aligned).

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

        a = fq @ fk.transpose(-1, -2)  # (..., L, d_k) x (..., d_k, S) -> (..., L, S)
        if causal:
            vis = torch.ones(L, S, dtype=torch.bool, device=q.device).tril(S - L)
            a = a.masked_fill(~vis, 0.0)
        return (a @ v) / (a.sum(-1, keepdim=True) + eps)
    a = fq @ np.swapaxes(fk, -1, -2)  # (..., L, S)
    if causal:
        a = np.where(np.tril(np.ones((L, S), dtype=bool), S - L), a, 0.0)
    return (a @ v) / (a.sum(-1, keepdims=True) + eps)


def linear_attention_recurrent(q: Any, k: Any, v: Any, state: tuple[Any, Any] | None = None,
                               *, eps: float = 0.0) -> tuple[Any, tuple[Any, Any]]:
    r"""Causal linear attention as a recurrence over tokens, with a ``d_k x d_v`` state.

    Token ``t`` (query, key and value ``t``, ``L = S``) updates
    :math:`S \leftarrow S + \phi(k_t) v_t^\top`, :math:`z \leftarrow z + \phi(k_t)` and
    reads :math:`o_t = \phi(q_t)^\top S / (\phi(q_t)^\top z)`. Passing the returned
    state back in continues the sequence (decoding one token at a time).

    Returns:
        ``(out (..., L, d_v), (S (..., d_k, d_v), z (..., d_k)))``.

    Raises:
        TypeError, ValueError: inputs that do not fit the legend, ``L != S``.

    Example:
        >>> q = k = v = np.ones((2, 3))
        >>> out, (S, z) = linear_attention_recurrent(q, k, v)
        >>> S.shape, z.tolist()
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
            S_ = q.new_zeros((*batch, d_k, d_v))
            z = q.new_zeros((*batch, d_k))
        else:
            S_, z = state
    else:
        lib_stack = np.stack
        if state is None:
            S_, z = np.zeros((*batch, d_k, d_v)), np.zeros((*batch, d_k))
        else:
            S_, z = state
    outs = []
    for t in range(int(q.shape[-2])):
        S_ = S_ + fk[..., t, :, None] * v[..., t, None, :]  # rank-one update phi(k_t) v_t^T
        z = z + fk[..., t, :]
        num = (fq[..., t, :, None] * S_).sum(-2)  # phi(q_t)^T S: (..., d_v)
        den = (fq[..., t, :] * z).sum(-1)[..., None] + eps
        outs.append(num / den)
    return lib_stack(outs, -2), (S_, z)
