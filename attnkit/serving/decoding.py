"""Split-KV decoding (FlashDecoding) and the exact log-sum-exp merge it rests on.

Attention of a query row over a set of keys is a weighted average whose weights
are ``exp(score_j - lse)``, where ``lse = log(sum_j exp(score_j))``. Split the keys
into disjoint chunks ``K_1, ..., K_C``; attend over each chunk on its own, keeping
its output ``out_c`` and its log-sum-exp ``lse_c``; then::

    lse = log(sum_c exp(lse_c))                       (the log-sum-exp of the lse_c)
    out = sum_c exp(lse_c - lse) * out_c              (each chunk weighted by its mass)

is *exactly* the attention over all keys, in any order of the chunks (the same
rescaling as the online softmax of chapter 8, applied once per chunk instead of
once per tile). :func:`merge_partials` is that step; it is the one primitive
shared by split-KV decoding (:func:`split_kv_attention`), the paged KV cache
(:mod:`attnkit.serving.paged`) and ring attention across processes
(:mod:`attnkit.distributed`).

A chunk that gives a query no visible key (every key masked) contributes
``out_c = 0`` and ``lse_c = -inf``: weight ``exp(-inf) = 0``. A query with no
visible key in any chunk gets a zero output and ``lse = -inf``, as in
:func:`attnkit.attention`.

Shapes::

    q      (..., L, E)     L queries (decoding: one or a few new tokens)
    k      (..., S, E)     S cached keys
    v      (..., S, Ev)    S cached values
    out_c  (..., L, Ev)    one chunk's partial output
    lse_c  (..., L)        one chunk's log-sum-exp of scaled scores (natural log)
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ..core import registry
from ..core._arrays import torch_module, work_dtype
from ..core._validate import (
    AttentionSpec,
    CausalArg,
    array,
    check_attention_args,
    flag,
    integer,
    positive_int,
)
from ..core.masks import Band, causal_offset

__all__ = ["merge_partials", "partial_attention", "split_kv_attention", "split_sizes"]


def split_sizes(n: int, parts: int) -> list[int]:
    """Sizes of ``parts`` contiguous chunks of ``n`` items, as equal as possible.

    The first ``n % parts`` chunks get one item more (as ``numpy.array_split``).

    Example:
        >>> split_sizes(10, 4)
        [3, 3, 2, 2]
    """
    n = integer("n", n, minimum=0)
    parts = positive_int("parts", parts)
    base, extra = divmod(n, parts)
    return [base + (1 if c < extra else 0) for c in range(parts)]


# ----------------------------------------------------------------------------- merge


def merge_partials(outs: Sequence[Any], lses: Sequence[Any]) -> tuple[Any, Any]:
    r"""Merge partial attention results over disjoint key sets, exactly.

    With :math:`\mathrm{lse} = \log \sum_c e^{\mathrm{lse}_c}`, the merged output is
    :math:`\sum_c e^{\mathrm{lse}_c - \mathrm{lse}}\, \mathrm{out}_c`.

    Shapes::

        outs[c]  (..., L, Ev)    partial outputs (each normalised over its own keys)
        lses[c]  (..., L)        their log-sum-exps (-inf where a chunk saw no key)
        out      (..., L, Ev)    lse (..., L)

    Args:
        outs: one partial output per chunk; NumPy arrays or torch tensors (all of
            one kind), whose shapes broadcast against each other.
        lses: the matching log-sum-exps, natural logarithm; ``-inf`` marks a query
            for which the chunk had no visible key (its ``out`` row is ignored).

    Returns:
        ``(out, lse)``: the attention over the union of the chunks' keys and its
        log-sum-exp. A query with ``-inf`` in every chunk gets a zero row and
        ``lse = -inf``. ``out`` has the dtype of ``outs[0]``, ``lse`` that of
        ``lses[0]``. For torch inputs the merge is differentiable (autograd).

    Raises:
        ValueError: no partials, ``outs`` and ``lses`` of different lengths, or an
            ``lse`` whose shape is not ``out.shape[:-1]``.
        TypeError: a mix of NumPy arrays and torch tensors, or a non-array entry.

    Example:
        >>> import numpy as np
        >>> from attnkit import attention, example
        >>> q, k, v = example.Q, example.K, example.V
        >>> parts = [partial_attention(q, k[s], v[s]) for s in (slice(0, 2), slice(2, 5))]
        >>> out, lse = merge_partials(*zip(*parts))
        >>> bool(np.allclose(out, attention(q, k, v)))
        True
    """
    outs, lses = list(outs), list(lses)
    if len(outs) == 0:
        raise ValueError("merge_partials needs at least one partial result; got none")
    if len(outs) != len(lses):
        raise ValueError(
            f"outs and lses must have the same length; got {len(outs)} outputs and {len(lses)} lses"
        )
    kinds = {array(f"{name}[{c}]", x) for name, xs in (("outs", outs), ("lses", lses))
             for c, x in enumerate(xs)}
    if len(kinds) > 1:
        raise TypeError("outs and lses must be all NumPy arrays or all torch tensors; got a mix")
    for c, (o, s) in enumerate(zip(outs, lses)):
        if o.ndim < 1 or tuple(s.shape) != tuple(o.shape[:-1]):
            raise ValueError(
                f"lses[{c}] must have shape outs[{c}].shape[:-1]; got out {tuple(o.shape)} "
                f"and lse {tuple(s.shape)}"
            )
    if kinds == {"numpy"}:
        return _merge_numpy(outs, lses)
    return _merge_torch(outs, lses)


def _merge_numpy(outs: list[np.ndarray], lses: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    work = work_dtype(np.result_type(*lses))
    lse_stack = np.stack(np.broadcast_arrays(*[s.astype(work, copy=False) for s in lses]))
    m = lse_stack.max(axis=0)  # (..., L): the largest lse_c, -inf if every chunk is empty
    m_safe = np.where(np.isfinite(m), m, 0.0)  # no -inf - -inf
    w = np.exp(lse_stack - m_safe)  # (C, ..., L): each chunk's mass, relative to the largest
    z = w.sum(axis=0)  # (..., L)
    alive = z > 0
    with np.errstate(divide="ignore"):
        lse = np.where(alive, m_safe + np.log(np.where(alive, z, 1.0)), -np.inf).astype(work)
    frac = w / np.where(alive, z, 1.0)  # (C, ..., L): exp(lse_c - lse)
    out = sum(f[..., None] * o.astype(work, copy=False) for f, o in zip(frac, outs))
    out = np.where(alive[..., None], out, 0.0)
    return out.astype(outs[0].dtype, copy=False), lse.astype(lses[0].dtype, copy=False)


def _merge_torch(outs: list[Any], lses: list[Any]) -> tuple[Any, Any]:
    torch = torch_module()
    work = work_dtype(functools.reduce(torch.promote_types, [s.dtype for s in lses]))
    lse_stack = torch.stack(torch.broadcast_tensors(*[s.to(work) for s in lses]))
    m = lse_stack.amax(dim=0).detach()  # the shift cancels: no gradient needed through it
    m_safe = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    w = torch.exp(lse_stack - m_safe)  # (C, ..., L)
    z = w.sum(dim=0)
    alive = z > 0
    z_safe = torch.where(alive, z, torch.ones_like(z))
    lse = torch.where(alive, m_safe + torch.log(z_safe), torch.full_like(z, float("-inf")))
    frac = w / z_safe
    out = sum(f[..., None] * o.to(work) for f, o in zip(frac.unbind(0), outs))
    out = torch.where(alive[..., None], out, torch.zeros_like(out))
    return out.to(outs[0].dtype), lse.to(lses[0].dtype)


# ----------------------------------------------------------------------------- one chunk


def partial_attention(
    q: Any,
    k: Any,
    v: Any,
    *,
    mask: Any = None,
    causal: CausalArg = False,
    scale: float | None = None,
) -> tuple[Any, Any]:
    """Attention over one chunk of keys, with the log-sum-exp needed to merge it later.

    Shapes::

        q (..., L, E)   k (..., S, E)   v (..., S, Ev)   mask broadcastable to (..., L, S)
        out (..., L, Ev)   lse (..., L)

    Computed directly (one ``(L, S)`` tile of scores), so for torch tensors it is
    differentiable by autograd through both ``out`` and ``lse``. Meant for chunks:
    decoding queries against a slice of the cache, one block of a paged cache.

    Args:
        q, k, v, mask, causal, scale: as :func:`attnkit.attention` (the causal
            alignment refers to this chunk's own ``L`` and ``S``).

    Returns:
        ``(out, lse)``: ``out`` in the dtype of ``q`` (half precision computed in
        float32), ``lse`` in the working precision (float64 for float64 inputs,
        float32 otherwise); a query that sees no key gets a zero row and ``-inf``.

    Raises:
        TypeError, ValueError: as :func:`attnkit.attention`.

    Example:
        >>> from attnkit import example
        >>> out, lse = partial_attention(example.Q, example.K, example.V)
        >>> out[0].round(4), float(lse[0].round(4))
        (array([0.2254, 0.4135, 0.2964, 0.2964]), 2.2119)
    """
    spec = check_attention_args(q, k, v, mask=mask, causal=causal, scale=scale)
    return _partial(q, k, v, mask, spec, col0=0, S_total=spec.S)


def _partial(q: Any, k: Any, v: Any, mask: Any, spec: AttentionSpec, col0: int,
             S_total: int) -> tuple[Any, Any]:
    """Partial attention on validated inputs: keys ``col0 .. col0 + S`` of ``S_total``.

    ``mask`` is already sliced to this chunk's columns; the causal rule uses the
    global key positions ``col0 + j`` against ``S_total``. The reference engine of
    the inputs' kind (:mod:`attnkit.engines.numpy_ref`, :mod:`attnkit.engines.torch_eager`)
    computes the chunk and its log-sum-exp.
    """
    L, S = spec.L, int(k.shape[-2])
    if S == 0:  # nothing to attend to: a zero output, and lse = -inf
        zeros = np.zeros if spec.kind == "numpy" else q.new_zeros
        return (zeros(spec.out_shape, dtype=q.dtype),
                _full((*spec.batch, L), -np.inf, work_dtype(q), like=q))
    chunk = dataclasses.replace(spec, S=S, causal=None, return_weights=False)
    if spec.causal is not None:  # query i sees global key col0 + j iff col0 + j <= i + offset
        band = Band(L, S, causal_offset(L, S_total, spec.causal) - col0, None, 0)
        visible = band.mask(np.arange(L)[:, None], np.arange(S)[None, :])  # (L, S)
        if spec.kind == "torch":
            visible = torch_module().from_numpy(visible).to(q.device)
        mask, kind = _and_visible(mask, spec.mask_kind, visible, spec.kind)
        chunk = dataclasses.replace(chunk, mask_kind=kind)
    engine = registry.load("numpy" if spec.kind == "numpy" else "torch")
    out, _, lse = engine.run(q, k, v, mask, chunk, return_lse=True)
    return out, lse


def _and_visible(mask: Any, kind: str | None, visible: Any, xp: str) -> tuple[Any, str]:
    """``mask`` combined with a boolean ``visible``: AND for a boolean mask, ``-inf`` added to a float one."""
    if kind is None:
        return visible, "bool"
    if kind == "bool":
        return mask & visible, "bool"
    if xp == "numpy":
        hidden = np.where(visible, 0.0, -np.inf)
    else:
        hidden = torch_module().zeros(visible.shape, dtype=mask.dtype, device=mask.device)
        hidden.masked_fill_(~visible, float("-inf"))
    return mask + hidden, "float"


def _full(shape: tuple[int, ...], value: float, dtype: Any, like: Any) -> Any:
    """An array of ``value`` of the kind (and device) of ``like``."""
    if isinstance(like, np.ndarray):
        return np.full(shape, value, dtype=dtype)
    return like.new_full(shape, value, dtype=dtype)


# ----------------------------------------------------------------------------- split-KV


def split_kv_attention(
    q: Any,
    k: Any,
    v: Any,
    *,
    num_splits: int,
    causal: CausalArg = False,
    mask: Any = None,
    scale: float | None = None,
    workers: int = 1,
    return_lse: bool = False,
) -> Any:
    """Split-KV attention (FlashDecoding): key chunks computed independently, merged exactly.

    The ``S`` keys are cut into ``num_splits`` contiguous chunks (sizes from
    :func:`split_sizes`); each chunk's partial result ``(out_c, lse_c)`` comes from
    :func:`partial_attention`, and :func:`merge_partials` combines them. Meant for
    decoding, where ``L`` is one or a few new tokens and ``S`` is a long cache: one
    query row leaves nothing to parallelise over but the keys.

    Shapes (as :func:`attnkit.attention`)::

        q     (..., L, E)      k (..., S, E)      v (..., S, Ev)
        mask  broadcastable to (..., L, S)
        out   (..., L, Ev)     lse (..., L)  (with return_lse=True)

    Args:
        q, k, v: NumPy arrays or torch tensors of one floating dtype.
        num_splits: number of key chunks (a positive integer; more chunks than keys
            leaves the extra chunks empty, which is allowed and changes nothing).
        causal: as :func:`attnkit.attention`; decoding wants ``"bottom-right"``
            (the last query is the newest token and sees every key).
        mask: boolean (``True`` = takes part) or floating (added), broadcastable
            to ``(..., L, S)``.
        scale: factor on ``q @ k^T``; default ``1 / sqrt(E)``.
        workers: threads that compute chunks concurrently (NumPy and torch release
            the GIL in their kernels); 1 computes them one after another.
        return_lse: also return the merged log-sum-exp ``(..., L)``.

    Returns:
        ``out (..., L, Ev)`` equal to ``attnkit.attention(q, k, v, ...)`` up to
        rounding, or ``(out, lse)``. Torch inputs are differentiable (autograd
        through each chunk and the merge).

    Raises:
        TypeError, ValueError: as :func:`attnkit.attention`; ``ValueError`` for a
            ``num_splits`` or ``workers`` that is not a positive integer.

    Example:
        >>> from attnkit import attention, example
        >>> out = split_kv_attention(example.Q, example.K, example.V, num_splits=2)
        >>> out[0].round(4)
        array([0.2254, 0.4135, 0.2964, 0.2964])
    """
    spec = check_attention_args(q, k, v, mask=mask, causal=causal, scale=scale)
    num_splits = positive_int("num_splits", num_splits)
    workers = positive_int("workers", workers)
    return_lse = flag("return_lse", return_lse)
    L, S = spec.L, spec.S
    if mask is not None:  # a view at full size, so that chunks are column slices of it
        if spec.kind == "numpy":
            mask = np.broadcast_to(mask, (*spec.batch, L, S))
        else:
            mask = mask.to(q.device).expand(*spec.batch, L, S)

    bounds, j0 = [], 0
    for size in split_sizes(S, num_splits):
        if size > 0:
            bounds.append((j0, j0 + size))
        j0 += size

    def chunk(b: tuple[int, int]) -> tuple[Any, Any]:
        a, z = b
        m = None if mask is None else mask[..., a:z]
        return _partial(q, k[..., a:z, :], v[..., a:z, :], m, spec, col0=a, S_total=S)

    if not bounds:  # S = 0: nothing to attend to
        out, lse = _partial(q, k, v, mask, spec, col0=0, S_total=0)
        return (out, lse) if return_lse else out
    if workers == 1 or len(bounds) == 1:
        parts = [chunk(b) for b in bounds]
    else:
        with ThreadPoolExecutor(max_workers=min(workers, len(bounds))) as pool:
            parts = list(pool.map(chunk, bounds))
    out, lse = merge_partials([p[0] for p in parts], [p[1] for p in parts])
    return (out, lse) if return_lse else out
