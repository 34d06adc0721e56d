"""Attention layers built on :func:`attnkit.attention`: one definition of the math.

Every class here does the bookkeeping of a layer (projections, heads, caches,
positions) and hands the attention itself to :func:`attnkit.attention`, so the
semantics (mask meaning, causal alignment, fully masked rows) are those of the
rest of the library.

* :class:`NumpyAttention` - the formula as a small NumPy class (defined in
  :mod:`attnkit.models.numpy_attention`, which needs no torch; re-exported here).
* :class:`ScaledDotProductAttention` - the same as a parameter-free ``nn.Module``.
* :class:`SelfAttention` - one head with learned ``W_Q, W_K, W_V``.
* :class:`MultiHeadAttention` - heads, output projection, multi-query / grouped-query
  attention (``num_kv_heads``), a :class:`KVCache` for decoding, optional RoPE, and
  :meth:`MultiHeadAttention.from_torch` to load ``torch.nn.MultiheadAttention`` weights.
* :class:`KVCache`, :func:`kv_cache_bytes` - the decoding pieces; :func:`repeat_kv`, the
  copy that grouped-query attention avoids (the layers pass ``enable_gqa`` instead).
* :class:`RelativePositionBias` - T5's learned, bucketed relative-position bias.

Shape letters (as in PyTorch's ``scaled_dot_product_attention``)::

    B batch   L queries   S keys/values   D model width (embed_dim)
    H query heads   Hkv key/value heads   Dh head width (D / H)

A layer with parameters trains only through an engine that carries gradients
(``attnkit.engines.capabilities(name).gradients``): while its parameters require
grad and grad is enabled, any other backend is a ``ValueError`` before anything is
computed (under ``torch.no_grad()``, or with frozen parameters, every engine serves).

This module imports torch; ``import attnkit`` alone does not.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..core._validate import array, choice, flag, positive_int, real
from ..core.attention import attention
from ..core.registry import declaring
from ..engines import ENGINES, capabilities
from .numpy_attention import NumpyAttention
from .positions import apply_rope, relative_position_bucket

__all__ = [
    "KVCache",
    "MultiHeadAttention",
    "NumpyAttention",
    "RelativePositionBias",
    "ScaledDotProductAttention",
    "SelfAttention",
    "kv_cache_bytes",
    "repeat_kv",
]


# --------------------------------------------------------------------------- checks
def _tensor(name: str, x: Any, width: int | None = None) -> Tensor:
    array(name, x, "torch")
    if x.ndim not in (2, 3):
        raise ValueError(
            f"{name} must have shape (B, L, D) or (L, D); got shape {tuple(x.shape)}"
        )
    if width is not None and x.shape[-1] != width:
        raise ValueError(
            f"{name} must have last dimension {width} (embed_dim); got shape {tuple(x.shape)}"
        )
    return x


def _trains_through_backend(module: nn.Module, args: Any) -> None:
    """Forward pre-hook: a layer that trains refuses an engine that carries no gradients.

    Raises:
        ValueError: grad is enabled, the layer has parameters that require grad, and
            its backend declares no gradients (they would be lost silently: only the
            layers after attention would train).
    """
    del args
    if not torch.is_grad_enabled() or not any(p.requires_grad for p in module.parameters()):
        return
    if not capabilities(module.backend).gradients:
        raise ValueError(
            f"{type(module).__name__} is training (its parameters require grad), but backend "
            f"{module.backend!r} computes no gradients, so its projections would get none; use "
            f"a backend that carries gradients ({', '.join(map(repr, declaring('gradients')))}), "
            "or run under torch.no_grad() (or freeze the parameters) for inference"
        )


# ------------------------------------------------------------------ single head
class ScaledDotProductAttention(nn.Module):
    """Scaled dot-product attention as a parameter-free ``nn.Module``.

    Shapes::

        q     (..., L, E)   k (..., S, E)   v (..., S, Ev)
        mask  broadcastable to (..., L, S): bool (True = takes part) or float (added)
        out   (..., L, Ev)   weights (..., L, S) with return_weights=True

    Args:
        scale: factor applied to ``q @ k^T``; ``None`` means ``1 / sqrt(E)``.
        backend: the :func:`attnkit.attention` engine: ``"torch"`` (default; can
            return weights) or ``"sdpa"`` (PyTorch's fused kernels).

    Example:
        >>> sdpa = ScaledDotProductAttention()
        >>> sdpa(torch.ones(2, 3, 4), torch.ones(2, 5, 4), torch.ones(2, 5, 6)).shape
        torch.Size([2, 3, 6])
    """

    def __init__(self, scale: float | None = None, backend: str = "torch") -> None:
        super().__init__()
        self.scale = (None if scale is None else real("scale", scale))
        self.backend = choice("backend", backend, sorted(ENGINES))

    def forward(
        self,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        mask: Tensor | None = None,
        causal: bool | str = False,
        return_weights: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Attend; see the class docstring for shapes and :func:`attnkit.attention` for errors."""
        return attention(q, k, v, mask=mask, causal=causal, scale=self.scale,
                         backend=self.backend, return_weights=return_weights)

    def extra_repr(self) -> str:
        """The module's settings, for ``repr``."""
        return f"scale={self.scale}, backend={self.backend!r}"


class SelfAttention(nn.Module):
    """One attention head over a sequence: ``attention(x W_Q, x W_K, x W_V)``.

    Shapes::

        x     (B, L, D) or (L, D)
        mask  broadcastable to (B, L, L): bool (True = takes part) or float (added)
        out   (B, L, d_v) or (L, d_v)

    Args:
        embed_dim: the input width ``D``.
        d_k: query/key width (default ``D``). d_v: value width (default ``d_k``).
        bias: whether the projections have a bias (default False, as in the formula).
        backend: the :func:`attnkit.attention` engine (``"torch"`` or ``"sdpa"``).

    Raises:
        ValueError: non-positive widths or an unknown backend; in ``forward``, an
            ``x`` whose last dimension is not ``embed_dim``, or training through a
            backend that computes no gradients.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> head = SelfAttention(8, d_k=4)
        >>> head(torch.randn(2, 5, 8), causal=True).shape
        torch.Size([2, 5, 4])
    """

    def __init__(self, embed_dim: int, d_k: int | None = None, d_v: int | None = None,
                 *, bias: bool = False, backend: str = "torch") -> None:
        super().__init__()
        self.embed_dim = positive_int("embed_dim", embed_dim)
        d_k = self.embed_dim if d_k is None else positive_int("d_k", d_k)
        d_v = d_k if d_v is None else positive_int("d_v", d_v)
        self.backend = choice("backend", backend, sorted(ENGINES))
        self.W_q = nn.Linear(self.embed_dim, d_k, bias=bias)
        self.W_k = nn.Linear(self.embed_dim, d_k, bias=bias)
        self.W_v = nn.Linear(self.embed_dim, d_v, bias=bias)
        self.register_forward_pre_hook(_trains_through_backend)

    def forward(self, x: Tensor, mask: Tensor | None = None, causal: bool | str = False,
                return_weights: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Project ``x`` to queries, keys and values and attend (one head)."""
        x = _tensor("x", x, self.embed_dim)
        q = self.W_q(x)  # (B, L, D) -> (B, L, d_k)
        k = self.W_k(x)  # (B, L, D) -> (B, L, d_k)
        v = self.W_v(x)  # (B, L, D) -> (B, L, d_v)
        return attention(q, k, v, mask=mask, causal=causal, backend=self.backend,
                         return_weights=return_weights)


# ------------------------------------------------------------------ KV cache
def repeat_kv(x: Any, n_rep: int) -> Any:
    """Repeat each key/value head ``n_rep`` times, so that ``Hkv`` heads serve ``H`` queries.

    Grouped-query attention lets query heads ``g * n_rep .. (g + 1) * n_rep - 1``
    share key/value head ``g``. Repeating the heads (a copy; a broadcast view would
    do the same without one) turns it back into ordinary multi-head attention.

    Shapes::

        x    (B, Hkv, S, Dh)          (or any (..., Hkv, S, Dh))
        out  (B, Hkv * n_rep, S, Dh)  head h of out is head h // n_rep of x

    Args:
        x: a torch tensor or NumPy array with at least 3 dimensions.
        n_rep: how many query heads share each key/value head (``H // Hkv``).

    Raises:
        TypeError: ``x`` not an array/tensor. ValueError: fewer than 3 dimensions or
            a non-positive ``n_rep``.

    Example:
        >>> repeat_kv(torch.arange(2.0).reshape(1, 2, 1, 1), 3).flatten().tolist()
        [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    """
    n_rep = positive_int("n_rep", n_rep)
    kind = array("x", x)
    if x.ndim < 3:
        raise ValueError(f"x must have shape (..., Hkv, S, Dh); got {tuple(x.shape)}")
    if n_rep == 1:
        return x
    return x.repeat_interleave(n_rep, dim=-3) if kind == "torch" else np.repeat(x, n_rep, axis=-3)


def kv_cache_bytes(*, layers: int, kv_heads: int, head_dim: int, tokens: int,
                   batch: int = 1, bytes_per_element: int = 2) -> int:
    """Bytes a KV cache holds: ``2 (K and V) x layers x batch x kv_heads x tokens x head_dim``.

    Args:
        layers: attention layers. kv_heads: key/value heads per layer (``H`` for
            multi-head, 1 for multi-query, the group count for grouped-query).
        head_dim: width of one head. tokens: cached positions per sequence.
        batch: sequences. bytes_per_element: 2 for float16/bfloat16, 4 for float32.

    Raises:
        ValueError: an argument that is not a positive integer.

    Example:
        >>> kv_cache_bytes(layers=1, kv_heads=1, head_dim=4, tokens=5)
        80
    """
    counts = {"layers": layers, "kv_heads": kv_heads, "head_dim": head_dim, "tokens": tokens,
              "batch": batch, "bytes_per_element": bytes_per_element}
    n = 2
    for name, value in counts.items():
        n *= positive_int(name, value)
    return n


class KVCache:
    """The keys and values of every token seen so far, for one attention layer.

    When a decoder generates token ``t`` it needs the keys and values of tokens
    ``0 .. t``; those of ``0 .. t-1`` do not change, so they are kept here and each
    step appends one new position instead of recomputing all of them.

    Shapes::

        k, v  (B, Hkv, T, Dh)   T = the tokens appended so far

    This teaching version grows by concatenation; production caches preallocate
    ``(B, Hkv, max_len, Dh)`` buffers and write into them.

    Example:
        >>> cache = KVCache()
        >>> k, v = cache.append(torch.zeros(1, 2, 3, 4), torch.zeros(1, 2, 3, 4))
        >>> cache.length, cache.nbytes
        (3, 192)
    """

    def __init__(self) -> None:
        self.k: Tensor | None = None
        self.v: Tensor | None = None

    @property
    def length(self) -> int:
        """Number of cached positions ``T``."""
        return 0 if self.k is None else int(self.k.shape[-2])

    @property
    def nbytes(self) -> int:
        """Bytes held by the cached keys and values."""
        if self.k is None or self.v is None:
            return 0
        return self.k.numel() * self.k.element_size() + self.v.numel() * self.v.element_size()

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Append new positions and return all cached keys and values.

        Shapes: ``k, v (B, Hkv, T_new, Dh)`` -> ``(B, Hkv, T + T_new, Dh)`` each.

        Raises:
            TypeError: ``k`` or ``v`` not a tensor.
            ValueError: not 4-D, k and v that disagree in ``B, Hkv, T_new``, or
                shapes/dtypes that differ from what the cache holds.
        """
        for name, x in (("k", k), ("v", v)):
            array(name, x, "torch")
            if x.ndim != 4:
                raise ValueError(f"{name} must have shape (B, Hkv, T, Dh); got {tuple(x.shape)}")
        if k.shape[:3] != v.shape[:3]:
            raise ValueError(
                f"k and v must agree in (B, Hkv, T); got k {tuple(k.shape)}, v {tuple(v.shape)}"
            )
        if self.k is None or self.v is None:
            self.k, self.v = k, v
        else:
            for name, new, old in (("k", k, self.k), ("v", v, self.v)):
                if new.shape[:2] != old.shape[:2] or new.shape[-1] != old.shape[-1]:
                    raise ValueError(
                        f"{name} of shape {tuple(new.shape)} does not fit the cache, which "
                        f"holds {tuple(old.shape)} (B, Hkv and Dh must match)"
                    )
                if new.dtype != old.dtype:
                    raise ValueError(f"{name} has dtype {new.dtype}; the cache holds {old.dtype}")
            self.k = torch.cat([self.k, k], dim=-2)  # (B, Hkv, T, Dh) + (B, Hkv, T_new, Dh)
            self.v = torch.cat([self.v, v], dim=-2)
        return self.k, self.v

    def reset(self) -> None:
        """Forget every cached position."""
        self.k = self.v = None

    def __repr__(self) -> str:
        shape = None if self.k is None else tuple(self.k.shape)
        return f"KVCache(length={self.length}, k_shape={shape}, nbytes={self.nbytes})"


# ------------------------------------------------------------------ multi-head
class MultiHeadAttention(nn.Module):
    r"""Multi-head attention with optional grouped-query heads, KV cache and RoPE.

    .. math::

        \mathrm{MHA}(x) = \mathrm{concat}(\mathrm{head}_1, \dots, \mathrm{head}_H)\, W_O,
        \quad \mathrm{head}_h = \mathrm{attention}(x W_Q^{(h)}, x W_K^{(g(h))}, x W_V^{(g(h))})

    where query head ``h`` uses key/value head ``g(h) = h // (H / Hkv)``.
    ``num_kv_heads = num_heads`` is ordinary multi-head attention, ``1`` is
    multi-query attention, anything between is grouped-query attention: the ``Hkv``
    key/value heads are passed to :func:`attnkit.attention` with ``enable_gqa=True``
    and broadcast to their groups of query heads, never copied (:func:`repeat_kv`
    is the copy this avoids).

    Shapes (batch first, like ``nn.MultiheadAttention(batch_first=True)``)::

        query        (B, L, D) or (L, D)
        key, value   (B, S, D) or (S, D)      default: query (self-attention)
        mask         broadcastable to (B, H, L, S_total): bool (True = takes part)
                     or float (added to the scores); S_total includes cached keys
        out          (B, L, D) or (L, D)
        weights      (B, H, L, S_total)       with return_weights=True

    Args:
        embed_dim: model width ``D``.
        num_heads: query heads ``H``; ``D`` must be divisible by ``H``.
        num_kv_heads: key/value heads ``Hkv`` (default ``H``); must divide ``H``.
        bias: whether the four projections have biases (default True, as PyTorch).
        rope: rotate queries and keys with :func:`attnkit.models.positions.apply_rope`
            (positions continue from the cache length when decoding).
        rope_base: RoPE frequency base.
        backend: the :func:`attnkit.attention` engine: ``"torch"`` (default; can
            return weights) or ``"sdpa"``.
        qk_norm: normalise each head's query and key with an RMSNorm over its
            ``Dh`` numbers, with a learned gain ``gamma`` (one per query/key number,
            shared by the heads), before RoPE: ``q <- gamma_q * q / rms(q)``, as
            Qwen3 does. Then ``|s_ij| <= sqrt(Dh) max|gamma_q| max|gamma_k|``.
        softcap: soft-capping ``c * tanh(s / c)`` of the scores (``None``: off);
            passed to :func:`attnkit.attention`, so ``|s_ij| < c``.

    Raises:
        ValueError: widths or head counts that do not divide, an unknown backend, a
            ``softcap`` that is not positive; in ``forward``, training through a
            backend that computes no gradients or lacks ``softcap``.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> mha = MultiHeadAttention(16, num_heads=4, num_kv_heads=2)
        >>> mha(torch.randn(3, 7, 16), causal=True).shape
        torch.Size([3, 7, 16])
    """

    def __init__(self, embed_dim: int, num_heads: int, *, num_kv_heads: int | None = None,
                 bias: bool = True, rope: bool = False, rope_base: float = 10000.0,
                 backend: str = "torch", qk_norm: bool = False,
                 softcap: float | None = None) -> None:
        super().__init__()
        D = positive_int("embed_dim", embed_dim)
        H = positive_int("num_heads", num_heads)
        Hkv = H if num_kv_heads is None else positive_int("num_kv_heads", num_kv_heads)
        if D % H:
            raise ValueError(f"embed_dim must be divisible by num_heads; got {D} and {H}")
        if H % Hkv:
            raise ValueError(
                f"num_heads must be a multiple of num_kv_heads; got {H} and {Hkv}"
            )
        self.embed_dim, self.num_heads, self.num_kv_heads = D, H, Hkv
        self.head_dim = D // H
        if rope and self.head_dim % 2:
            raise ValueError(f"rope needs an even head width; got head_dim = {self.head_dim}")
        self.rope, self.rope_base = bool(rope), float(rope_base)
        self.backend = choice("backend", backend, sorted(ENGINES))
        self.q_proj = nn.Linear(D, H * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(D, Hkv * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(D, Hkv * self.head_dim, bias=bias)
        self.out_proj = nn.Linear(H * self.head_dim, D, bias=bias)
        self.qk_norm = flag("qk_norm", qk_norm)
        self.q_norm = nn.RMSNorm(self.head_dim, eps=1e-6) if self.qk_norm else None
        self.k_norm = nn.RMSNorm(self.head_dim, eps=1e-6) if self.qk_norm else None
        self.softcap = None if softcap is None else real("softcap", softcap, positive=True)
        self.register_forward_pre_hook(_trains_through_backend)

    def forward(
        self,
        query: Tensor,
        key: Tensor | None = None,
        value: Tensor | None = None,
        *,
        mask: Any = None,
        causal: bool | str = False,
        cache: KVCache | None = None,
        return_weights: bool = False,
        attend: Any = None,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Attend from ``query`` to ``key``/``value`` (default: to itself).

        With a ``cache``, the new keys and values are appended to it first and the
        queries attend to everything cached. Use ``causal="bottom-right"`` then: the
        ``L`` new queries are the *last* ``L`` positions of the ``S_total`` keys.

        ``attend``, a callable ``attend(q, k, v) -> out`` with ``q (B, H, L, Dh)``,
        ``k, v (B, Hkv, S, Dh)`` (after RoPE) and ``out (B, H, L, Dh)``, replaces the
        attention call (and ``mask``, ``causal`` and ``cache``): a serving engine
        uses it to store the keys and values in its own cache and attend through it
        (:mod:`attnkit.serving.engine`). The projections around it are unchanged.

        Raises:
            TypeError, ValueError: inputs of the wrong type or width, key/value of
                different lengths, a cache combined with top-left causal masking, an
                ``attend`` that is not callable or is combined with a cache or
                ``return_weights``.
        """
        query = _tensor("query", query, self.embed_dim)
        key = query if key is None else _tensor("key", key, self.embed_dim)
        value = key if value is None else _tensor("value", value, self.embed_dim)
        if not (query.ndim == key.ndim == value.ndim):
            raise ValueError(
                "query, key and value must all be batched (3-D) or all unbatched (2-D); got "
                f"{tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}"
            )
        if key.shape[:-1] != value.shape[:-1]:
            raise ValueError(
                f"key and value must have the same (B, S); got {tuple(key.shape)} and "
                f"{tuple(value.shape)}"
            )
        if cache is not None and not isinstance(cache, KVCache):
            raise TypeError(f"cache must be a KVCache or None; got {type(cache).__name__}")
        if cache is not None and (causal is True or causal == "top-left"):
            raise ValueError(
                "with a KV cache the new queries are the last positions: use "
                f"causal='bottom-right' (top-left would hide the cached keys); got {causal!r}"
            )
        if attend is not None and not callable(attend):
            raise TypeError(f"attend must be a callable attend(q, k, v) -> out; got "
                            f"{type(attend).__name__}")
        if attend is not None and (cache is not None or return_weights):
            raise ValueError("attend replaces the attention call: it cannot be combined with a "
                             "cache or return_weights")
        unbatched = query.ndim == 2
        if unbatched:
            query, key, value = query[None], key[None], value[None]
        B, L, _ = query.shape
        S = key.shape[1]
        H, Hkv, Dh = self.num_heads, self.num_kv_heads, self.head_dim

        q = self.q_proj(query).view(B, L, H, Dh).transpose(1, 2)  # (B, L, D) -> (B, H, L, Dh)
        k = self.k_proj(key).view(B, S, Hkv, Dh).transpose(1, 2)  # (B, S, D) -> (B, Hkv, S, Dh)
        v = self.v_proj(value).view(B, S, Hkv, Dh).transpose(1, 2)  # (B, Hkv, S, Dh)
        if self.q_norm is not None and self.k_norm is not None:  # per head, over Dh
            q, k = self.q_norm(q), self.k_norm(k)
        if self.rope:
            t0 = 0 if cache is None else cache.length  # position of the first new token
            q = apply_rope(q, positions=np.arange(t0 + S - L, t0 + S), base=self.rope_base)
            k = apply_rope(k, positions=np.arange(t0, t0 + S), base=self.rope_base)
        if cache is not None:
            k, v = cache.append(k, v)  # (B, Hkv, S_total, Dh): the past and the new
        if self.scores_hook is not None:  # what the softmax sees, for probes
            self.scores_hook(self._scores(q, k))
        if attend is not None:
            if self.softcap is not None:
                raise ValueError("attend= runs the caller's attention, which applies no softcap; "
                                 f"this layer has softcap={self.softcap}")
            out, weights = attend(q, k, v), None  # (B, H, L, Dh), through the caller's cache
        else:
            # query heads h * (H / Hkv) .. (h + 1) * (H / Hkv) - 1 share key/value head h
            result = attention(q, k, v, mask=mask, causal=causal, backend=self.backend,
                               return_weights=return_weights, enable_gqa=Hkv < H,
                               softcap=self.softcap)
            out, weights = result if return_weights else (result, None)
        out = out.transpose(1, 2).reshape(B, L, H * Dh)  # (B, H, L, Dh) -> (B, L, H * Dh)
        out = self.out_proj(out)  # (B, L, H * Dh) -> (B, L, D)
        if unbatched:
            out = out[0]
            weights = None if weights is None else weights[0]
        return (out, weights) if return_weights else out

    #: A function that receives the scaled scores ``s_ij`` of every forward call,
    #: ``(B, H, L, S_total)`` after QK-norm, RoPE and soft-capping and before any mask
    #: (``None``: off). For probes such as
    #: :func:`attnkit.models.logit_control.attention_logit_stats`.
    scores_hook: Any = None

    def _scores(self, q: Tensor, k: Tensor) -> Tensor:
        """``(B, H, L, Dh)`` queries, ``(B, Hkv, S, Dh)`` keys -> ``(B, H, L, S)`` scores."""
        g = self.num_heads // self.num_kv_heads
        k = k.repeat_interleave(g, dim=1) if g > 1 else k  # (B, H, S, Dh)
        s = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(self.head_dim)
        return s if self.softcap is None else self.softcap * torch.tanh(s / self.softcap)

    @classmethod
    def from_torch(
        cls, mha: nn.MultiheadAttention, *, backend: str = "torch"
    ) -> MultiHeadAttention:
        """A copy of ``torch.nn.MultiheadAttention``'s weights in this module.

        PyTorch stores the three input projections stacked in ``in_proj_weight``
        (``(3 D, D)``: rows for Q, then K, then V). Note that PyTorch's boolean
        ``attn_mask`` and ``key_padding_mask`` mean the opposite of attnkit's:
        there ``True`` = *masked*, here ``True`` = *takes part*.

        Raises:
            TypeError: ``mha`` not an ``nn.MultiheadAttention``.
            ValueError: separate key/value widths (``kdim``/``vdim``),
                ``add_bias_kv`` or ``add_zero_attn``, which this module lacks.
        """
        if not isinstance(mha, nn.MultiheadAttention):
            raise TypeError(f"mha must be a torch.nn.MultiheadAttention; got {type(mha).__name__}")
        if not mha._qkv_same_embed_dim or mha.bias_k is not None or mha.add_zero_attn:
            raise ValueError(
                "mha must use kdim = vdim = embed_dim, add_bias_kv=False and "
                "add_zero_attn=False to be copied"
            )
        bias = mha.in_proj_bias is not None
        new = cls(mha.embed_dim, mha.num_heads, bias=bias, backend=backend)
        new = new.to(device=mha.in_proj_weight.device, dtype=mha.in_proj_weight.dtype)
        with torch.no_grad():
            w_q, w_k, w_v = mha.in_proj_weight.chunk(3, dim=0)  # (3 D, D) -> 3 x (D, D)
            new.q_proj.weight.copy_(w_q)
            new.k_proj.weight.copy_(w_k)
            new.v_proj.weight.copy_(w_v)
            new.out_proj.weight.copy_(mha.out_proj.weight)
            if bias:
                b_q, b_k, b_v = mha.in_proj_bias.chunk(3)
                new.q_proj.bias.copy_(b_q)
                new.k_proj.bias.copy_(b_k)
                new.v_proj.bias.copy_(b_v)
                new.out_proj.bias.copy_(mha.out_proj.bias)
        return new

    def extra_repr(self) -> str:
        """The module's settings, for ``repr``."""
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, "
                f"num_kv_heads={self.num_kv_heads}, head_dim={self.head_dim}, "
                f"rope={self.rope}, backend={self.backend!r}"
                + (", qk_norm=True" if self.qk_norm else "")
                + ("" if self.softcap is None else f", softcap={self.softcap:g}"))


# ------------------------------------------------------------------ T5 bias
class RelativePositionBias(nn.Module):
    """T5's learned relative-position bias: one scalar per (distance bucket, head).

    The distance ``key_pos - query_pos`` is mapped to a bucket by
    :func:`attnkit.models.positions.relative_position_bucket` (exact for small distances,
    logarithmic beyond); an embedding table turns each bucket into a bias per head,
    which is added to the scores. Pass the result as a floating ``mask``.

    Shapes::

        out  (H, L, S)   query i at position i + S - L (bottom-right)

    Args:
        num_heads: heads ``H``. num_buckets, max_distance: as in T5 (32, 128).
        bidirectional: encoder-style (True) or causal decoder-style (False) buckets.

    Example:
        >>> rpb = RelativePositionBias(num_heads=2, num_buckets=8, max_distance=16)
        >>> rpb(3, 5).shape
        torch.Size([2, 3, 5])
    """

    def __init__(self, num_heads: int, *, num_buckets: int = 32, max_distance: int = 128,
                 bidirectional: bool = True) -> None:
        super().__init__()
        self.num_heads = positive_int("num_heads", num_heads)
        self.num_buckets = positive_int("num_buckets", num_buckets)
        self.max_distance = positive_int("max_distance", max_distance)
        self.bidirectional = bool(bidirectional)
        relative_position_bucket(np.zeros(1, dtype=np.int64), bidirectional=self.bidirectional,
                                 num_buckets=self.num_buckets, max_distance=self.max_distance)
        self.bias = nn.Embedding(self.num_buckets, self.num_heads)

    def buckets(self, L: int, S: int | None = None) -> np.ndarray:
        """The ``(L, S)`` integer bucket of every (query, key) pair."""
        L = int(L)
        S = L if S is None else int(S)
        rel = np.arange(S)[None, :] - (np.arange(L)[:, None] + S - L)  # key_pos - query_pos
        return relative_position_bucket(rel, bidirectional=self.bidirectional,
                                        num_buckets=self.num_buckets,
                                        max_distance=self.max_distance)

    def forward(self, L: int, S: int | None = None) -> Tensor:
        """The ``(H, L, S)`` bias for ``L`` queries and ``S`` keys."""
        idx = torch.from_numpy(self.buckets(L, S)).to(self.bias.weight.device)
        return self.bias(idx).permute(2, 0, 1)  # (L, S) -> (L, S, H) -> (H, L, S)
