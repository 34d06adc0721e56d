"""``attention()``: the one public entry point to every engine."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import engines
from ._arrays import to_numpy, to_torch
from ._validate import AttentionSpec, CausalArg, check_attention_args


def attention(
    q: Any,
    k: Any,
    v: Any,
    *,
    mask: Any = None,
    causal: CausalArg = False,
    scale: float | None = None,
    backend: str = "numpy",
    return_weights: bool = False,
) -> Any:
    r"""Scaled dot-product attention, :math:`\mathrm{softmax}(q k^\top \cdot scale + mask)\, v`.

    Shapes (as PyTorch's ``scaled_dot_product_attention``)::

        q     (..., L, E)    L queries of width E
        k     (..., S, E)    S keys of width E
        v     (..., S, Ev)   S values of width Ev
        mask  broadcastable to (..., L, S)
        out   (..., L, Ev)
        weights (..., L, S)  (when return_weights=True)

    The leading batch dimensions ``...`` of q, k and v broadcast against each other.

    Args:
        q, k, v: NumPy arrays or torch tensors of one real floating dtype. The
            result is of the same kind (and, for tensors, on q's device).
        mask: boolean (``True`` = the key takes part) or floating (added to the
            scaled scores; ``-inf`` masks), broadcastable to ``(..., L, S)``.
        causal: ``False``; ``True`` or ``"top-left"`` (query ``i`` sees keys
            ``j <= i``, as PyTorch's ``is_causal``); ``"bottom-right"`` (query ``i``
            sees ``j <= i + S - L``, as FlashAttention and KV-cache decoding).
            Combined with ``mask`` by AND. See :mod:`attnkit.masks` for pictures.
        scale: factor applied to ``q @ k^T``; default ``1 / sqrt(E)``.
        backend: an engine name from :func:`attnkit.backends`: ``"numpy"`` (the
            reference), ``"torch"``, ``"sdpa"``, ``"flash"``, ``"triton"``.
        return_weights: also return the ``(..., L, S)`` weights (engines that
            never form them raise ``ValueError``).

    Returns:
        ``out``, or ``(out, weights)`` when ``return_weights`` is true. A query
        whose every key is masked gets a zero output row and zero weights (naive
        code returns NaN there). ``L = 0`` or ``S = 0`` give zero-sized or zero
        outputs.

    Raises:
        TypeError, ValueError: bad arguments, with a message naming the argument
            and the shape or dtype it got (see :func:`attnkit.check_attention_args`).
        RuntimeError: a known engine that cannot run on this machine.

    Example:
        >>> from attnkit import attention, example
        >>> attention(example.Q, example.K, example.V)[0].round(4)
        array([0.2254, 0.4135, 0.2964, 0.2964])
    """
    spec = check_attention_args(
        q, k, v, mask=mask, causal=causal, scale=scale, return_weights=return_weights
    )
    engine = engines.load(backend)
    if return_weights and not engine.RETURNS_WEIGHTS:
        raise ValueError(
            f"backend {backend!r} never forms the (..., L, S) weight matrix, so it cannot "
            "return it; use backend='numpy' or 'torch' for return_weights=True"
        )
    ok, why = engine.available()
    if not ok:
        raise RuntimeError(f"backend {backend!r} cannot run here: {why}")

    if spec.L == 0 or spec.S == 0:
        return _empty_result(q, spec)

    target = spec.kind if engine.ARRAY == "any" else engine.ARRAY
    args = _convert((q, k, v, mask), target, like=q)
    out, weights = engine.run(*args, spec)
    out = _convert_back(out, spec, q)
    if not return_weights:
        return out
    return out, _convert_back(weights, spec, q)


def _convert(xs: tuple, target: str, like: Any) -> list:
    if target == "numpy":
        return [None if x is None else to_numpy(x) for x in xs]
    return [None if x is None else to_torch(x, like=like) for x in xs]


def _convert_back(x: Any, spec: AttentionSpec, like: Any) -> Any:
    if spec.kind == "numpy":
        if isinstance(x, np.ndarray):
            return x
        return x.detach().cpu().numpy().astype(like.dtype, copy=False)
    if isinstance(x, np.ndarray):
        import torch

        return torch.from_numpy(np.ascontiguousarray(x)).to(device=like.device, dtype=like.dtype)
    return x


def _empty_result(q: Any, spec: AttentionSpec) -> Any:
    """L = 0 or S = 0: no query, or nothing to attend to (a zero output)."""
    if spec.kind == "numpy":
        out = np.zeros(spec.out_shape, dtype=q.dtype)
        weights = np.zeros(spec.weights_shape, dtype=q.dtype)
    else:
        out = q.new_zeros(spec.out_shape)
        weights = q.new_zeros(spec.weights_shape)
    return (out, weights) if spec.return_weights else out
