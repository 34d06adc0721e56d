"""``attention()``: the one public entry point to every engine."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from . import registry
from ._arrays import to_numpy, to_torch, torch_module
from ._validate import AttentionSpec, CausalArg, ScoreMod, Window, check_attention_args


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
    window: Window | None = None,
    sinks: int = 0,
    softcap: float | None = None,
    enable_gqa: bool = False,
    score_mod: ScoreMod | None = None,
    sink_logits: Any = None,
) -> Any:
    r"""Scaled dot-product attention, :math:`\mathrm{softmax}(q k^\top \cdot scale + mask)\, v`.

    Shapes (as PyTorch's ``scaled_dot_product_attention``)::

        q     (..., L, E)    L queries of width E
        k     (..., S, E)    S keys of width E
        v     (..., S, Ev)   S values of width Ev
        mask  broadcastable to (..., L, S)
        sink_logits broadcastable to (...)   e.g. (H,): one learned logit per head
        out   (..., L, Ev)
        weights (..., L, S)  (when return_weights=True)

    The leading batch dimensions ``...`` of q, k and v broadcast against each other.

    Without the variants (``window``, ``sinks``, ``softcap``, ``score_mod``,
    ``enable_gqa``, ``sink_logits``), equivalent to these lines of NumPy, which every engine matches
    to rounding (the NumPy reference engine is the same formula, written out)::

        >>> def equivalent(q, k, v, mask=None, causal=False, scale=None):
        ...     L, S, E = q.shape[-2], k.shape[-2], q.shape[-1]
        ...     scores = q @ np.swapaxes(k, -1, -2) * (1 / np.sqrt(E) if scale is None else scale)
        ...     allowed = np.ones((L, S), bool)                  # scores: (..., L, S)
        ...     if mask is not None and mask.dtype == bool:      # True = takes part
        ...         allowed = allowed & mask
        ...     elif mask is not None:                           # floating: added
        ...         scores = scores + mask
        ...     if causal:                                       # key j <= query i + shift
        ...         shift = S - L if causal == "bottom-right" else 0
        ...         allowed = allowed & (np.arange(S) <= np.arange(L)[:, None] + shift)
        ...     scores = np.where(allowed, scores, -np.inf)
        ...     m = scores.max(-1, keepdims=True)                # stable: subtract the row max
        ...     e = np.exp(scores - np.where(np.isfinite(m), m, 0.0))
        ...     z = e.sum(-1, keepdims=True)                     # 0 on a row that sees no key
        ...     return (e / np.where(z > 0, z, 1.0)) @ v         # ... and that row is 0
        >>> rng = np.random.default_rng(0)
        >>> q, k, v = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 5, 4)), rng.normal(size=(2, 5, 2))
        >>> for kw in ({}, {"mask": rng.random((3, 5)) < 0.5, "causal": "bottom-right"},
        ...            {"mask": np.log(rng.random((2, 1, 5))), "causal": True, "scale": 0.5}):
        ...     assert np.allclose(attention(q, k, v, **kw), equivalent(q, k, v, **kw))

    Args:
        q, k, v: NumPy arrays or torch tensors of one real floating dtype. The
            result is of the same kind (and, for tensors, on q's device).
        mask: boolean (``True`` = the key takes part) or floating (added to the
            scaled scores; ``-inf`` masks), broadcastable to ``(..., L, S)``.
        causal: ``False``; ``True`` or ``"top-left"`` (query ``i`` sees keys
            ``j <= i``, as PyTorch's ``is_causal``); ``"bottom-right"`` (query ``i``
            sees ``j <= i + S - L``, as FlashAttention and KV-cache decoding).
            Combined with ``mask`` by AND. See :mod:`attnkit.core.masks` for pictures.
        scale: factor applied to ``q @ k^T``; default ``1 / sqrt(E)``.
        backend: an engine name from :func:`attnkit.backends`: ``"numpy"`` (the
            reference), ``"torch"``, ``"sdpa"``, ``"flash"``, ``"triton"``.
        return_weights: also return the ``(..., L, S)`` weights (engines that
            never form them raise ``ValueError``).
        window: ``(left, right)``, a sliding window: query ``i`` sees keys
            ``i' - left <= j <= i' + right`` with ``i' = i + S - L`` (bottom-right
            aligned, as FlashAttention's ``window_size``); ``None`` on a side leaves
            it unbounded. ANDed with ``causal`` and ``mask``::

                window=(2, 0), L = S = 5      window=(1, 1), L = S = 5
                    1 . . . .                     1 1 . . .
                    1 1 . . .                     1 1 1 . .
                    1 1 1 . .                     . 1 1 1 .
                    . 1 1 1 .                     . . 1 1 1
                    . . 1 1 1                     . . . 1 1

        sinks: the first ``sinks`` keys are exempt from the window's left bound
            (still subject to its right bound, ``causal`` and ``mask``): attention
            sinks, as StreamingLLM::

                window=(1, 0), sinks=2, L = S = 5
                    1 . . . .
                    1 1 . . .
                    1 1 1 . .
                    1 1 1 1 .
                    1 1 . 1 1

        softcap: ``c > 0``: scores become ``c * tanh(scores / c)`` after scaling and
            before masking (Gemma 2, FlashAttention).
        enable_gqa: grouped-query attention, exactly as PyTorch SDPA's: ``q (..., Hq,
            L, E)`` with ``k, v (..., Hkv, S, E)``, ``Hq`` a multiple of ``Hkv``; each
            group of ``Hq / Hkv`` consecutive query heads shares one key/value head.
            The masks and the output have ``Hq`` heads.
        score_mod: ``f(score, b, h, q_idx, kv_idx) -> score``, applied to the scaled
            (and soft-capped) scores before the masks, with broadcastable integer
            index arrays (NumPy arrays for NumPy engines, tensors for torch
            engines), as ``torch.nn.attention.flex_attention``'s. ``b`` and ``h``
            index the batch dimensions viewed as ``(B, H)`` (``H`` the last one;
            the query head with ``enable_gqa``). ALiBi, T5's bias and soft-capping
            are score modifiers (examples below). Tensors it captures get gradients
            from ``backend="torch"``; the flash engine differentiates only q, k, v.
        sink_logits: learned sink logits (gpt-oss): one logit ``s_h`` per head,
            broadcastable to the batch dimensions ``...`` (shape ``(H,)`` for
            ``q (B, H, L, E)``; with ``enable_gqa``, one per query head), an array
            of ``q``'s kind. Each joins every softmax denominator of its head as
            one more key with score ``s_h`` and a zero value, so a head can give
            its weight to nothing::

                w_ij = exp(s_ij) / (exp(s_h) + sum_j' exp(s_ij'))
                o_i  = sum_j w_ij v_j          (the weights sum to less than 1)

            Unrelated to ``sinks=N`` (the first N *real* keys, kept in view by a
            window). A tensor that requires grad gets its gradient from the
            engines that carry gradients. A row whose every key is masked gets a
            zero output (its weight goes to the sink).

    Returns:
        ``out``, or ``(out, weights)`` when ``return_weights`` is true. A query
        whose every key is masked gets a zero output row and zero weights (naive
        code returns NaN there). ``L = 0`` or ``S = 0`` give zero-sized or zero
        outputs.

    Raises:
        TypeError, ValueError: bad arguments, with a message naming the argument
            and the shape or dtype it got (see :func:`attnkit.check_attention_args`);
            an argument the engine does not support (its declared capabilities,
            :func:`attnkit.engines.capabilities`), tensors that require grad for an
            engine that computes no gradients (never a silently lost gradient).
        RuntimeError: a known engine that cannot run on this machine.

    Example:
        >>> import numpy as np
        >>> from attnkit import attention, example
        >>> attention(example.Q, example.K, example.V)[0].round(4)
        array([0.2254, 0.4135, 0.2964, 0.2964])

        A sliding window of the last two tokens, with the first token as a sink:

        >>> out, w = attention(example.Q, example.Q, example.V, causal=True, window=(1, 0),
        ...                    sinks=1, return_weights=True)
        >>> (w > 0).astype(int)
        array([[1, 0, 0, 0, 0],
               [1, 1, 0, 0, 0],
               [1, 1, 1, 0, 0],
               [1, 0, 1, 1, 0],
               [1, 0, 0, 1, 1]])

        Score modifiers: ALiBi (a head-dependent linear penalty on distance), T5's
        bias (a table indexed by relative position) and soft-capping:

        >>> rng = np.random.default_rng(0)
        >>> q, k, v = (rng.normal(size=(1, 4, 6, 8)) for _ in range(3))  # (B, H, n, E)
        >>> def alibi(s, b, h, q_idx, kv_idx):
        ...     slope = 2.0 ** (-8.0 * (h + 1) / 4)            # one slope per head
        ...     return s - slope * abs(q_idx - kv_idx)
        >>> from attnkit.models.positions import alibi_bias
        >>> bool(np.allclose(attention(q, k, v, score_mod=alibi),
        ...                  attention(q, k, v, mask=alibi_bias(4, 6))))
        True
        >>> table = rng.normal(size=11)                       # learned: one per offset
        >>> def t5(s, b, h, q_idx, kv_idx):
        ...     return s + table[np.clip(kv_idx - q_idx, -5, 5) + 5]
        >>> attention(q, k, v, score_mod=t5).shape
        (1, 4, 6, 8)
        >>> def cap30(s, b, h, q_idx, kv_idx):
        ...     return 30.0 * np.tanh(s / 30.0)
        >>> bool(np.allclose(attention(q, k, v, score_mod=cap30), attention(q, k, v, softcap=30)))
        True
    """
    spec = check_attention_args(
        q, k, v, mask=mask, causal=causal, scale=scale, return_weights=return_weights,
        window=window, sinks=sinks, softcap=softcap, enable_gqa=enable_gqa, score_mod=score_mod,
        sink_logits=sink_logits,
    )
    try:
        engine = registry.load(backend)
    except ImportError as exc:
        raise RuntimeError(f"backend {backend!r} cannot run here: {exc}") from exc
    engine.CAPS.refuse(backend, spec, mask)
    ok, why = engine.available()
    if not ok:
        raise RuntimeError(f"backend {backend!r} cannot run here: {why}")

    if spec.L == 0 or spec.S == 0:
        return _empty_result(q, spec)

    native = engine.CAPS.native
    target = spec.kind if native == "any" else native
    q2, k2, v2, mask2 = _convert((q, k, v, mask), target, like=q)
    inner = spec
    if spec.sink_logits is not None and target != spec.kind:  # the engine's kind, as q, k, v
        inner = dataclasses.replace(spec, sink_logits=_convert((spec.sink_logits,), target,
                                                               like=q)[0])
    if spec.groups > 1:
        q2, k2, v2, mask2, inner = group_heads(q2, k2, v2, mask2, inner)
    out, weights = engine.run(q2, k2, v2, mask2, inner)
    if spec.groups > 1:
        out = out.reshape(spec.out_shape)
        weights = None if weights is None else weights.reshape(spec.weights_shape)
    out = _convert_back(out, spec, q)
    if not return_weights:
        return out
    return out, _convert_back(weights, spec, q)


def group_heads(q: Any, k: Any, v: Any, mask: Any, spec: AttentionSpec) -> tuple[Any, ...]:
    """``enable_gqa``: view the heads as ``(Hkv, groups)``; keys and values broadcast.

    ``q (..., Hq, L, E)`` becomes ``(..., Hkv, g, L, E)`` and ``k (..., Hkv, S, E)``
    becomes ``(..., Hkv, 1, S, E)``, so every engine sees ordinary broadcast batch
    dimensions (no copy of the keys and values); a mask with a heads axis is split
    or lifted the same way, and sink logits (one per query head) are split. The
    score modifier's head index is mapped back to the query head. Ring attention
    groups its shards with the same views.

    Returns:
        ``(q, k, v, mask, spec)``: the views, and the spec of the grouped call.
        Undo with ``out.reshape(spec.out_shape)`` (the original spec).

    Example:
        >>> from attnkit import check_attention_args
        >>> x, kv = np.ones((6, 3, 2)), np.ones((2, 4, 2))
        >>> spec = check_attention_args(x, kv, kv, enable_gqa=True)
        >>> [t.shape for t in group_heads(x, kv, kv, None, spec)[:3]]
        [(2, 3, 3, 2), (2, 1, 4, 2), (2, 1, 4, 2)]
    """
    g = spec.groups
    hkv = spec.batch[-1] // g

    def split(x: Any) -> Any:  # (..., Hq, n, w) -> (..., Hkv, g, n, w)
        return x.reshape(*x.shape[:-3], hkv, g, *x.shape[-2:])

    def lift(x: Any) -> Any:  # (..., Hkv, n, w) -> (..., Hkv, 1, n, w)
        return x.reshape(*x.shape[:-2], 1, *x.shape[-2:])

    q, k, v = split(q), lift(k), lift(v)
    if mask is not None and mask.ndim >= 3:
        mask = split(mask) if mask.shape[-3] != 1 else lift(mask)
    mod = spec.score_mod
    if mod is not None:
        def mod_grouped(s: Any, b: Any, h: Any, qi: Any, ki: Any, _f: Any = mod) -> Any:
            return _f(s, b // hkv, (b % hkv) * g + h, qi, ki)
        mod = mod_grouped
    sink = spec.sink_logits
    if sink is not None:  # broadcast to (..., Hq), then split as the queries: (..., Hkv, g)
        sink = (np.broadcast_to(sink, spec.batch) if isinstance(sink, np.ndarray)
                else sink.expand(spec.batch))
        sink = sink.reshape(*spec.batch[:-1], hkv, g)
    inner = dataclasses.replace(spec, batch=(*spec.batch[:-1], hkv, g), groups=1, score_mod=mod,
                                sink_logits=sink)
    return q, k, v, mask, inner


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
        t = torch_module().from_numpy(np.ascontiguousarray(x))
        return t.to(device=like.device, dtype=like.dtype)
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
