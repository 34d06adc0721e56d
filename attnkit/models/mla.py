r"""Multi-head latent attention (DeepSeek-V2/V3): a latent cache, a naive and an absorbed path.

Keys and values are up-projections of one shared latent per token,
:math:`\xi_j = W_{DKV} x_j` (width ``d_c``; DeepSeek writes :math:`c^{KV}_j`), plus one
rotary key :math:`k^{\mathrm{rope}}_j` (width ``d_rope``) shared by every head; the cache
holds only :math:`(\xi_j, k^{\mathrm{rope}}_j)`. Head ``h`` scores with

.. math::

    s_{ij} = \tau\,\bigl(q^{\mathrm{nope}}_{i,h} \cdot W_{UK,h}\, \xi_j
    + q^{\mathrm{rope}}_{i,h} \cdot k^{\mathrm{rope}}_j\bigr),
    \qquad \tau = 1/\sqrt{d_h + d_{\mathrm{rope}}},

and reads values :math:`W_{UV,h}\, \xi_j` ("nope": the part without positions, "rope":
the rotary part, as in DeepSeek's released code). Two exact ways to compute it, the two
"modes" of DeepSeek's kernels:

* **naive** (MHA mode): up-project every cached latent to per-head keys and values,
  then ordinary multi-head attention (``S d_c H (d_h + d_v)`` multiply-adds per step
  before attention starts, then ``H (d_h + d_rope + d_v)`` per (query, key) pair);
* **absorbed** (MQA mode): fold :math:`W_{UK,h}` into the query,
  :math:`\tilde q_{i,h} = W_{UK,h}^\top q^{\mathrm{nope}}_{i,h}`, attend over the latents
  themselves (one key head of width ``d_c + d_rope`` shared by all ``H`` query heads,
  whose first ``d_c`` entries are also the value: multi-query attention), then apply
  :math:`W_{UV,h}` to the weighted latent (``H (2 d_c + d_rope)`` per pair). The ``H``
  heads' queries are stacked into one ``(L H) x (d_c + d_rope)`` matrix, so each
  product against the latents is one matrix product that reads the cache once.

RoPE rotates only the decoupled parts :math:`q^{\mathrm{rope}}, k^{\mathrm{rope}}`: a
rotation of :math:`W_{UK,h} \xi_j` would put a position-dependent matrix between
:math:`W_{UK,h}` and the query, and nothing could be folded.

Shape letters::

    B batch   L queries   S (T) cached tokens   D model width (embed_dim)
    H heads   d_h = head_dim   d_rope = rope_dim   d_v = v_head_dim   d_c = kv_latent

This module imports torch; ``import attnkit`` alone does not.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..core._validate import choice, normalise_causal, positive_int, real
from ..core.attention import attention
from ..core.masks import causal_mask
from .positions import apply_rope

__all__ = ["LatentCache", "MultiHeadLatentAttention"]


class LatentCache:
    r"""The cache of one MLA layer: per token, its latent and its shared RoPE key, in one row.

    Each token's row is ``[xi_j; k^rope_j]``, ``d_c + d_rope`` numbers: the one key that
    all heads share in the absorbed (MQA) mode, whose first ``d_c`` entries are also
    the value (the layout of DeepSeek's FlashMLA kernels). Shapes::

        kv      (B, T, d_c + d_rope)   the rows of every token so far
        latent  (B, T, d_c)            a view of the first d_c columns: the latents xi_j
        k_rope  (B, T, d_rope)         a view of the last d_rope columns: k^rope_j

    Per token and layer it holds ``d_c + d_rope`` numbers, against ``2 H d_h`` for a
    multi-head KV cache.

    Example:
        >>> cache = LatentCache()
        >>> _ = cache.append(torch.zeros(1, 3, 8), torch.zeros(1, 3, 2))
        >>> cache.length, cache.nbytes, tuple(cache.latent.shape)
        (3, 120, (1, 3, 8))
    """

    def __init__(self) -> None:
        self.kv: Tensor | None = None
        self.kv_latent = 0

    @property
    def length(self) -> int:
        """Number of cached tokens ``T``."""
        return 0 if self.kv is None else int(self.kv.shape[1])

    @property
    def nbytes(self) -> int:
        """Bytes held by the latents and the RoPE keys."""
        return 0 if self.kv is None else self.kv.numel() * self.kv.element_size()

    @property
    def latent(self) -> Tensor | None:
        """The cached latents ``(B, T, d_c)`` (a view), or ``None`` when empty."""
        return None if self.kv is None else self.kv[..., :self.kv_latent]

    @property
    def k_rope(self) -> Tensor | None:
        """The cached rotary keys ``(B, T, d_rope)`` (a view), or ``None`` when empty."""
        return None if self.kv is None else self.kv[..., self.kv_latent:]

    def append(self, latent: Tensor, k_rope: Tensor) -> Tensor:
        """Append new tokens; return every cached row ``kv (B, T, d_c + d_rope)``.

        Shapes: ``latent (B, T_new, d_c)``, ``k_rope (B, T_new, d_rope)``.

        Raises:
            TypeError: not tensors.
            ValueError: not 3-D, ``latent`` and ``k_rope`` that disagree in
                ``(B, T_new)``, or widths/dtypes that differ from what the cache holds.
        """
        for name, x in (("latent", latent), ("k_rope", k_rope)):
            if not isinstance(x, torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor; got {type(x).__name__}")
            if x.ndim != 3:
                raise ValueError(f"{name} must have shape (B, T, width); got {tuple(x.shape)}")
        if latent.shape[:2] != k_rope.shape[:2]:
            raise ValueError(f"latent and k_rope must agree in (B, T); got latent "
                             f"{tuple(latent.shape)}, k_rope {tuple(k_rope.shape)}")
        rows = torch.cat([latent, k_rope], dim=-1)  # (B, T_new, d_c + d_rope)
        if self.kv is None:
            self.kv, self.kv_latent = rows, int(latent.shape[-1])
        else:
            if latent.shape[0] != self.kv.shape[0] or latent.shape[-1] != self.kv_latent \
                    or rows.shape[-1] != self.kv.shape[-1] or rows.dtype != self.kv.dtype:
                raise ValueError(f"latent {tuple(latent.shape)} and k_rope {tuple(k_rope.shape)} "
                                 f"of dtype {rows.dtype} do not fit the cache, which holds rows "
                                 f"{tuple(self.kv.shape)} of {self.kv.dtype} with "
                                 f"d_c = {self.kv_latent}")
            self.kv = torch.cat([self.kv, rows], dim=1)  # (B, T + T_new, d_c + d_rope)
        return self.kv

    def reset(self) -> None:
        """Forget every cached token."""
        self.kv, self.kv_latent = None, 0

    def __repr__(self) -> str:
        return f"LatentCache(length={self.length}, nbytes={self.nbytes})"


class MultiHeadLatentAttention(nn.Module):
    r"""Multi-head latent attention with a latent cache, as in DeepSeek-V2 and V3.

    Projections (bias-free, as in DeepSeek's models; the RMSNorms they put on the
    latents are left out, since they change nothing about caching or absorption)::

        xi_Q    = W_DQ x            (d_c')     only when q_latent is given; else q from x
        q^nope  = W_UQ xi_Q         (H, d_h)   q^rope = RoPE(W_QR xi_Q)     (H, d_rope)
        xi      = W_DKV x           (d_c)      cached
        k^rope  = RoPE(W_KR x)      (d_rope)   cached, shared by the heads
        k^nope_h = W_UK,h xi        (d_h)      v_h = W_UV,h xi               (d_v)
        out     = W_O [o_1; ...; o_H]

    Shapes::

        x      (B, L, D)  or (L, D)
        out    same leading shape, last dimension D

    Args:
        embed_dim: ``D``. num_heads: ``H``. kv_latent: ``d_c``, the cached latent.
        head_dim: ``d_h`` of the non-rotary query/key part (default ``D / H``).
        rope_dim: ``d_rope`` of the decoupled rotary part (even).
        v_head_dim: ``d_v`` (default ``head_dim``).
        q_latent: ``d_c'`` of the query's low-rank path, or ``None`` for a direct
            query projection.
        rope_base: RoPE's frequency base.

    Raises:
        ValueError: a size that is not a positive integer (``kv_latent = 0`` is
            refused: ``d_c`` must be at least 1), an odd ``rope_dim``, or ``D`` not
            divisible by ``H`` when ``head_dim`` is not given.

    Example:
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> mla = MultiHeadLatentAttention(32, 4, kv_latent=8, rope_dim=4).double()
        >>> x = torch.randn(1, 5, 32, dtype=torch.float64)
        >>> a, b = mla(x, causal=True), mla(x, causal=True, mode="absorbed")
        >>> bool((a - b).abs().max() < 1e-12)
        True
    """

    def __init__(self, embed_dim: int, num_heads: int, *, kv_latent: int,
                 head_dim: int | None = None, rope_dim: int = 64,
                 v_head_dim: int | None = None, q_latent: int | None = None,
                 rope_base: float = 10000.0) -> None:
        super().__init__()
        self.embed_dim = positive_int("embed_dim", embed_dim)
        self.num_heads = positive_int("num_heads", num_heads)
        self.kv_latent = positive_int("kv_latent", kv_latent)
        if head_dim is None:
            if embed_dim % num_heads:
                raise ValueError(f"embed_dim must be divisible by num_heads when head_dim is not "
                                 f"given; got embed_dim={embed_dim}, num_heads={num_heads}")
            head_dim = embed_dim // num_heads
        self.head_dim = positive_int("head_dim", head_dim)
        self.rope_dim = positive_int("rope_dim", rope_dim)
        if self.rope_dim % 2:
            raise ValueError(f"rope_dim must be even (RoPE rotates pairs); got {rope_dim}")
        self.v_head_dim = positive_int("v_head_dim", head_dim if v_head_dim is None else v_head_dim)
        self.q_latent = None if q_latent is None else positive_int("q_latent", q_latent)
        self.rope_base = real("rope_base", rope_base, above=1.0)
        H, dh, dr, dv, dc = self.num_heads, self.head_dim, self.rope_dim, self.v_head_dim, \
            self.kv_latent
        q_in = embed_dim if self.q_latent is None else self.q_latent
        self.q_down = None if self.q_latent is None else nn.Linear(embed_dim, self.q_latent,
                                                                   bias=False)
        self.q_up = nn.Linear(q_in, H * dh, bias=False)  # W_UQ (or W_Q)
        self.q_rope = nn.Linear(q_in, H * dr, bias=False)  # W_QR
        self.kv_down = nn.Linear(embed_dim, dc, bias=False)  # W_DKV
        self.k_rope = nn.Linear(embed_dim, dr, bias=False)  # W_KR
        self.k_up = nn.Linear(dc, H * dh, bias=False)  # W_UK, all heads stacked
        self.v_up = nn.Linear(dc, H * dv, bias=False)  # W_UV, all heads stacked
        self.out_proj = nn.Linear(H * dv, embed_dim, bias=False)  # W_O

    @property
    def scale(self) -> float:
        r"""The score scale :math:`1/\sqrt{d_h + d_{\mathrm{rope}}}` (the width of a whole query)."""
        return 1.0 / math.sqrt(self.head_dim + self.rope_dim)

    @property
    def cache_numbers_per_token(self) -> int:
        """Numbers the latent cache holds per token: ``d_c + d_rope``."""
        return self.kv_latent + self.rope_dim

    # ------------------------------------------------------------------ pieces
    def _queries(self, x: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
        """``q^nope (B, H, L, d_h)`` and rotated ``q^rope (B, H, L, d_rope)``."""
        B, L, _ = x.shape
        xq = x if self.q_down is None else self.q_down(x)  # (B, L, d_c') or (B, L, D)
        q_nope = self.q_up(xq).view(B, L, self.num_heads, self.head_dim).transpose(1, 2)
        q_rope = self.q_rope(xq).view(B, L, self.num_heads, self.rope_dim).transpose(1, 2)
        q_rope = apply_rope(q_rope, positions, base=self.rope_base)  # (B, H, L, d_rope)
        return q_nope, q_rope

    def latents(self, x: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
        """What the cache stores for ``x (B, L, D)``: ``latent (B, L, d_c)``, ``k^rope (B, L, d_rope)``."""
        latent = self.kv_down(x)  # (B, L, D) x (D, d_c) -> (B, L, d_c)
        k_rope = apply_rope(self.k_rope(x), positions, base=self.rope_base)  # (B, L, d_rope)
        return latent, k_rope

    def _attend_naive(self, q_nope: Tensor, q_rope: Tensor, kv: Tensor, causal: Any) -> Tensor:
        """MHA mode: up-project every latent to per-head keys and values. -> (B, H, L, d_v).

        ``kv (B, S, d_c + d_rope)`` holds the cached rows ``[xi_j; k^rope_j]``.
        """
        B, S, _ = kv.shape
        H, dc = self.num_heads, self.kv_latent
        latent, k_rope = kv[..., :dc], kv[..., dc:]  # views: (B, S, d_c), (B, S, d_rope)
        k_nope = self.k_up(latent).view(B, S, H, self.head_dim).transpose(1, 2)  # (B, H, S, d_h)
        v = self.v_up(latent).view(B, S, H, self.v_head_dim).transpose(1, 2)  # (B, H, S, d_v)
        k_rh = k_rope.unsqueeze(1).expand(B, H, S, self.rope_dim)  # shared by the heads
        q = torch.cat([q_nope, q_rope], dim=-1)  # (B, H, L, d_h + d_rope)
        k = torch.cat([k_nope, k_rh], dim=-1)  # (B, H, S, d_h + d_rope)
        return attention(q, k, v, causal=causal, scale=self.scale, backend="torch")

    def _attend_absorbed(self, q_nope: Tensor, q_rope: Tensor, kv: Tensor, causal: Any) -> Tensor:
        """MQA mode: W_UK folded into the queries, W_UV after the weights. -> (B, H, L, d_v).

        ``kv (B, S, d_c + d_rope)`` holds the cached rows ``[xi_j; k^rope_j]``: they are
        the one key head, and their first ``d_c`` columns the one value head. The ``H``
        heads' absorbed queries are stacked into one ``(B, L H, d_c + d_rope)`` matrix
        (row ``l H + h`` is query ``l`` of head ``h``), so the scores and the weighted
        latents are each one matrix product that reads the cache once: no copy of the
        cache per head (which broadcasting one key head over ``H`` query heads makes)
        and no ``H`` separate products.
        """
        B, H, L, _ = q_nope.shape
        S = kv.shape[1]
        dh, dv, dc = self.head_dim, self.v_head_dim, self.kv_latent
        w_uk = self.k_up.weight.view(H, dh, dc)  # row block h of W_UK: (d_h, d_c)
        w_uv = self.v_up.weight.view(H, dv, dc)  # (d_v, d_c) per head
        q_lat = torch.einsum("bhld,hdc->blhc", q_nope, w_uk)  # W_UK,h^T q^nope: (B, L, H, d_c)
        q = torch.cat([q_lat, q_rope.transpose(1, 2)], dim=-1)  # (B, L, H, d_c + d_rope)
        q = q.reshape(B, L * H, dc + self.rope_dim)  # every head's queries in one matrix
        mask = None
        align = normalise_causal(causal)
        if align is not None:
            vis = causal_mask(L, S, alignment=align)  # (L, S): key j visible to query l
            if not vis.all():  # one decoding step (L = 1, bottom-right) sees every key
                mask = torch.from_numpy(np.repeat(vis, H, axis=0)).to(kv.device)  # (L H, S)
        o_lat = attention(q, kv, kv[..., :dc], mask=mask, scale=self.scale,
                          backend="torch")  # (B, L H, S) weights x (B, S, d_c) -> (B, L H, d_c)
        o_lat = o_lat.view(B, L, H, dc)  # the weighted latents of each head
        return torch.einsum("blhc,hvc->bhlv", o_lat, w_uv)  # W_UV,h o: (B, H, L, d_v)

    # ------------------------------------------------------------------ forward
    def forward(self, x: Tensor, *, cache: LatentCache | None = None, causal: Any = False,
                mode: str = "naive") -> Tensor:
        """Attend ``x`` to itself (and to what ``cache`` holds).

        Args:
            x: ``(B, L, D)`` or ``(L, D)``.
            cache: a :class:`LatentCache`; the new tokens' latents are appended and the
                queries attend to everything cached (use ``causal="bottom-right"``).
            causal: as :func:`attnkit.attention`.
            mode: ``"naive"`` (MHA mode: up-project the latents) or ``"absorbed"``
                (MQA mode: attend over the latents); equal up to rounding.

        Returns:
            ``(B, L, D)`` (or ``(L, D)``).

        Raises:
            TypeError: ``x`` not a tensor, ``cache`` not a :class:`LatentCache`.
            ValueError: wrong shape of ``x`` or an unknown ``mode``.
        """
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor; got {type(x).__name__}")
        if x.ndim not in (2, 3) or x.shape[-1] != self.embed_dim:
            raise ValueError(f"x must have shape (B, L, {self.embed_dim}) or (L, {self.embed_dim}); "
                             f"got {tuple(x.shape)}")
        choice("mode", mode, ("naive", "absorbed"))
        if cache is not None and not isinstance(cache, LatentCache):
            raise TypeError(f"cache must be a LatentCache or None; got {type(cache).__name__}")
        squeeze = x.ndim == 2
        if squeeze:
            x = x.unsqueeze(0)
        start = 0 if cache is None else cache.length
        positions = torch.arange(start, start + x.shape[1])
        q_nope, q_rope = self._queries(x, positions)
        latent, k_rope = self.latents(x, positions)
        if cache is not None:
            kv = cache.append(latent, k_rope)  # every cached row, the new ones last
        else:
            kv = torch.cat([latent, k_rope], dim=-1)  # (B, L, d_c + d_rope)
        attend = self._attend_naive if mode == "naive" else self._attend_absorbed
        o = attend(q_nope, q_rope, kv, causal)  # (B, H, L, d_v)
        B, H, L, dv = o.shape
        out = self.out_proj(o.transpose(1, 2).reshape(B, L, H * dv))  # (B, L, D)
        return out[0] if squeeze else out

    def extra_repr(self) -> str:
        """The sizes, shown by ``print(layer)``."""
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, "
                f"kv_latent={self.kv_latent}, head_dim={self.head_dim}, "
                f"rope_dim={self.rope_dim}, v_head_dim={self.v_head_dim}, "
                f"q_latent={self.q_latent}")
