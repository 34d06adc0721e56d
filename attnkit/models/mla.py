r"""Multi-head latent attention (DeepSeek-V2/V3): a latent cache, a naive and an absorbed path.

Keys and values are up-projections of one shared latent per token,
:math:`c_j = W_{DKV} x_j` (width ``d_c``), plus one rotary key :math:`k^R_j` (width
``d_R``) shared by every head; the cache holds only :math:`(c_j, k^R_j)`. Head ``h``
scores with

.. math::

    s_{ij} = \tau\,\bigl(q^C_{i,h} \cdot W_{UK,h} c_j + q^R_{i,h} \cdot k^R_j\bigr),
    \qquad \tau = 1/\sqrt{d_h + d_R},

and reads values :math:`W_{UV,h} c_j`. Two exact ways to compute it:

* **naive**: up-project every cached latent to per-head keys and values, then
  ordinary multi-head attention (``O(S d_c H (d_h + d_v))`` per step);
* **absorbed**: fold :math:`W_{UK,h}` into the query,
  :math:`\tilde q_{i,h} = W_{UK,h}^\top q^C_{i,h}`, attend over the latents themselves
  (one key/value "head" shared by all ``H`` query heads: multi-query attention of width
  ``d_c + d_R``), then apply :math:`W_{UV,h}` to the weighted latent.

RoPE rotates only the decoupled parts :math:`q^R, k^R`: a rotation of
:math:`W_{UK,h} c_j` would put a position-dependent matrix between
:math:`W_{UK,h}` and the query, and nothing could be folded.

Shape letters::

    B batch   L queries   S (T) cached tokens   D model width (embed_dim)
    H heads   d_h = head_dim   d_R = rope_dim   d_v = v_head_dim   d_c = kv_latent

This module imports torch; ``import attnkit`` alone does not.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ..core._validate import choice, positive_int, real
from ..core.attention import attention
from .positions import apply_rope

__all__ = ["LatentCache", "MultiHeadLatentAttention"]


class LatentCache:
    """The per-token latents ``c`` and shared RoPE keys ``k_rope`` of one MLA layer.

    Shapes::

        c       (B, T, d_c)   the compressed keys/values of every token so far
        k_rope  (B, T, d_R)   the rotated key part, shared by all heads

    Per token and layer it holds ``d_c + d_R`` numbers, against ``2 H d_h`` for a
    multi-head KV cache.

    Example:
        >>> cache = LatentCache()
        >>> _ = cache.append(torch.zeros(1, 3, 8), torch.zeros(1, 3, 2))
        >>> cache.length, cache.nbytes
        (3, 120)
    """

    def __init__(self) -> None:
        self.c: Tensor | None = None
        self.k_rope: Tensor | None = None

    @property
    def length(self) -> int:
        """Number of cached tokens ``T``."""
        return 0 if self.c is None else int(self.c.shape[1])

    @property
    def nbytes(self) -> int:
        """Bytes held by the latents and the RoPE keys."""
        if self.c is None or self.k_rope is None:
            return 0
        return sum(x.numel() * x.element_size() for x in (self.c, self.k_rope))

    def append(self, c: Tensor, k_rope: Tensor) -> tuple[Tensor, Tensor]:
        """Append new tokens; return all cached ``(c, k_rope)``.

        Shapes: ``c (B, T_new, d_c)``, ``k_rope (B, T_new, d_R)``.

        Raises:
            TypeError: not tensors.
            ValueError: not 3-D, ``c`` and ``k_rope`` that disagree in ``(B, T_new)``,
                or widths/dtypes that differ from what the cache holds.
        """
        for name, x in (("c", c), ("k_rope", k_rope)):
            if not isinstance(x, torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor; got {type(x).__name__}")
            if x.ndim != 3:
                raise ValueError(f"{name} must have shape (B, T, width); got {tuple(x.shape)}")
        if c.shape[:2] != k_rope.shape[:2]:
            raise ValueError(
                f"c and k_rope must agree in (B, T); got c {tuple(c.shape)}, k_rope {tuple(k_rope.shape)}"
            )
        if self.c is None or self.k_rope is None:
            self.c, self.k_rope = c, k_rope
        else:
            for name, new, old in (("c", c, self.c), ("k_rope", k_rope, self.k_rope)):
                if new.shape[0] != old.shape[0] or new.shape[-1] != old.shape[-1] \
                        or new.dtype != old.dtype:
                    raise ValueError(f"{name} of shape {tuple(new.shape)} and dtype {new.dtype} "
                                     f"does not fit the cache, which holds {tuple(old.shape)} "
                                     f"of {old.dtype}")
            self.c = torch.cat([self.c, c], dim=1)  # (B, T, d_c) + (B, T_new, d_c)
            self.k_rope = torch.cat([self.k_rope, k_rope], dim=1)
        return self.c, self.k_rope

    def reset(self) -> None:
        """Forget every cached token."""
        self.c = self.k_rope = None

    def __repr__(self) -> str:
        return f"LatentCache(length={self.length}, nbytes={self.nbytes})"


class MultiHeadLatentAttention(nn.Module):
    r"""Multi-head latent attention with a latent cache, as in DeepSeek-V2 and V3.

    Projections (bias-free, as in DeepSeek's models; the RMSNorms they put on the
    latents are left out, since they change nothing about caching or absorption)::

        c_Q = W_DQ x            (d_c')      only when q_latent is given; else q from x
        q^C = W_UQ c_Q          (H, d_h)    q^R = RoPE(W_QR c_Q)   (H, d_R)
        c   = W_DKV x           (d_c)       cached
        k^R = RoPE(W_KR x)      (d_R)       cached, shared by the heads
        k^C_h = W_UK,h c        (d_h)       v_h = W_UV,h c          (d_v)
        out = W_O [o_1; ...; o_H]

    Shapes::

        x      (B, L, D)  or (L, D)
        out    same leading shape, last dimension D

    Args:
        embed_dim: ``D``. num_heads: ``H``. kv_latent: ``d_c``, the cached latent.
        head_dim: ``d_h`` of the non-rotary query/key part (default ``D / H``).
        rope_dim: ``d_R`` of the decoupled rotary part (even).
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
        r"""The score scale :math:`1/\sqrt{d_h + d_R}` (the width of a whole query)."""
        return 1.0 / math.sqrt(self.head_dim + self.rope_dim)

    @property
    def cache_numbers_per_token(self) -> int:
        """Numbers the latent cache holds per token: ``d_c + d_R``."""
        return self.kv_latent + self.rope_dim

    # ------------------------------------------------------------------ pieces
    def _queries(self, x: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
        """``q^C (B, H, L, d_h)`` and rotated ``q^R (B, H, L, d_R)``."""
        B, L, _ = x.shape
        cq = x if self.q_down is None else self.q_down(x)  # (B, L, d_c') or (B, L, D)
        q_c = self.q_up(cq).view(B, L, self.num_heads, self.head_dim).transpose(1, 2)
        q_r = self.q_rope(cq).view(B, L, self.num_heads, self.rope_dim).transpose(1, 2)
        q_r = apply_rope(q_r, positions, base=self.rope_base)  # (B, H, L, d_R)
        return q_c, q_r

    def latents(self, x: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
        """What the cache stores for ``x (B, L, D)``: ``c (B, L, d_c)``, ``k^R (B, L, d_R)``."""
        c = self.kv_down(x)  # (B, L, D) x (D, d_c) -> (B, L, d_c)
        k_r = apply_rope(self.k_rope(x), positions, base=self.rope_base)  # (B, L, d_R)
        return c, k_r

    def _attend_naive(self, q_c: Tensor, q_r: Tensor, c: Tensor, k_r: Tensor,
                      causal: Any) -> Tensor:
        """Up-project every latent to per-head keys and values, then MHA. -> (B, H, L, d_v)."""
        B, S, _ = c.shape
        H = self.num_heads
        k_c = self.k_up(c).view(B, S, H, self.head_dim).transpose(1, 2)  # (B, H, S, d_h)
        v = self.v_up(c).view(B, S, H, self.v_head_dim).transpose(1, 2)  # (B, H, S, d_v)
        k_rh = k_r.unsqueeze(1).expand(B, H, S, self.rope_dim)  # shared by the heads
        q = torch.cat([q_c, q_r], dim=-1)  # (B, H, L, d_h + d_R)
        k = torch.cat([k_c, k_rh], dim=-1)  # (B, H, S, d_h + d_R)
        return attention(q, k, v, causal=causal, scale=self.scale, backend="torch")

    def _attend_absorbed(self, q_c: Tensor, q_r: Tensor, c: Tensor, k_r: Tensor,
                         causal: Any) -> Tensor:
        """Fold W_UK into the queries and W_UV after the weights: MQA over latents."""
        H, dh, dv, dc = self.num_heads, self.head_dim, self.v_head_dim, self.kv_latent
        w_uk = self.k_up.weight.view(H, dh, dc)  # row block h of W_UK: (d_h, d_c)
        w_uv = self.v_up.weight.view(H, dv, dc)  # (d_v, d_c) per head
        q_lat = torch.einsum("bhld,hdc->bhlc", q_c, w_uk)  # W_UK,h^T q^C: (B, H, L, d_c)
        q = torch.cat([q_lat, q_r], dim=-1)  # (B, H, L, d_c + d_R)
        k = torch.cat([c, k_r], dim=-1).unsqueeze(1)  # (B, 1, S, d_c + d_R): one shared head
        o_lat = attention(q, k, c.unsqueeze(1), causal=causal, scale=self.scale,
                          backend="torch")  # (B, H, L, d_c): weighted latents
        return torch.einsum("bhlc,hvc->bhlv", o_lat, w_uv)  # W_UV,h o: (B, H, L, d_v)

    # ------------------------------------------------------------------ forward
    def forward(self, x: Tensor, *, cache: LatentCache | None = None, causal: Any = False,
                mode: str = "naive") -> Tensor:
        """Attend ``x`` to itself (and to what ``cache`` holds).

        Args:
            x: ``(B, L, D)`` or ``(L, D)``.
            cache: a :class:`LatentCache`; the new tokens' latents are appended and the
                queries attend to everything cached (use ``causal="bottom-right"``).
            causal: as :func:`attnkit.attention`.
            mode: ``"naive"`` (up-project the latents) or ``"absorbed"`` (attend over
                the latents); equal up to rounding.

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
        q_c, q_r = self._queries(x, positions)
        c, k_r = self.latents(x, positions)
        if cache is not None:
            c, k_r = cache.append(c, k_r)
        attend = self._attend_naive if mode == "naive" else self._attend_absorbed
        o = attend(q_c, q_r, c, k_r, causal)  # (B, H, L, d_v)
        B, H, L, dv = o.shape
        out = self.out_proj(o.transpose(1, 2).reshape(B, L, H * dv))  # (B, L, D)
        return out[0] if squeeze else out

    def extra_repr(self) -> str:
        """The sizes, shown by ``print(layer)``."""
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, "
                f"kv_latent={self.kv_latent}, head_dim={self.head_dim}, "
                f"rope_dim={self.rope_dim}, v_head_dim={self.v_head_dim}, "
                f"q_latent={self.q_latent}")
