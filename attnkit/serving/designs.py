"""Cache arithmetic of the attention designs of 2024-2026, from published shapes.

Chapter 13 compares what each design keeps per token of context. Everything here is
arithmetic on shapes (no torch, no GPU):

* :class:`LatentShape` with :data:`DEEPSEEK_V2` and :data:`DEEPSEEK_V3`: multi-head
  latent attention (MLA), whose cache holds a latent of ``kv_latent`` numbers and one
  shared RoPE key of ``rope_dim`` numbers per token and layer;
  :func:`cache_numbers_per_token` compares it with MHA, GQA and MQA of the same model,
  :meth:`LatentShape.attention_macs` counts the multiply-adds of its two modes (naive
  = MHA mode, absorbed = MQA mode) and :func:`mla_crossover_queries` says where they
  cost the same; :func:`fp8_with_scales_bytes` and :func:`mla_fp8_cache_bytes` give the
  bytes of the FP8 cache format of DeepSeek's released kernels.
* :class:`AttentionStack` with :data:`GEMMA_STACKS` (Gemma 2 9B/27B, Gemma 3 12B/27B):
  the order of local (sliding-window) and global layers; :func:`stack_kv_bytes` is the
  KV cache of one sequence at a given context, :func:`local_reach` how far the local
  layers alone carry information (chapter 11's theorem on stacked windows).
* :class:`IndexerShape` with :data:`DEEPSEEK_V32_INDEXER`: multiply-adds per
  (query, key) pair of DeepSeek-V3.2's indexer against the attention it feeds.

Conventions: a "number" is one cached scalar; bytes = numbers x bytes per number;
``GiB = 2**30``.

Example:
    >>> cache_numbers_per_token(DEEPSEEK_V3, "MLA", layers=1)
    576
    >>> cache_numbers_per_token(DEEPSEEK_V3, "MHA", layers=1)
    32768
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ..core._validate import choice, integer, positive_int

__all__ = [
    "DEEPSEEK_V2",
    "DEEPSEEK_V3",
    "DEEPSEEK_V32_INDEXER",
    "GEMMA_STACKS",
    "AttentionStack",
    "IndexerShape",
    "LatentShape",
    "cache_numbers_per_token",
    "fp8_with_scales_bytes",
    "layer_kinds",
    "local_reach",
    "mla_crossover_queries",
    "mla_fp8_cache_bytes",
    "stack_kv_bytes",
]

LayerKind = Literal["local", "global"]


# ----------------------------------------------------------------------------- MLA
@dataclass(frozen=True)
class LatentShape:
    """The attention shape of a model with multi-head latent attention.

    Attributes:
        name: a label. layers: attention layers. d_model: model width.
        heads: query heads ``H``. head_dim: the width ``d_h`` of each head's
            non-rotary query/key part (and, in the MHA comparison, of a key or value).
        rope_dim: width ``d_rope`` of the decoupled RoPE query/key part.
        v_head_dim: width of each head's value. kv_latent: ``d_c``, the cached
            latent. q_latent: ``d_c'``, the query latent (not cached).
        source: where the shape comes from.
    """

    name: str
    layers: int
    d_model: int
    heads: int
    head_dim: int
    rope_dim: int
    v_head_dim: int
    kv_latent: int
    q_latent: int
    source: str

    def __post_init__(self) -> None:
        for f in ("layers", "d_model", "heads", "head_dim", "rope_dim", "v_head_dim",
                  "kv_latent", "q_latent"):
            positive_int(f, getattr(self, f))

    def pair_macs(self, mode: str) -> int:
        """Multiply-adds per (query, key) pair of one layer, all heads, in one mode.

        ``"naive"`` (MHA mode): ``H (d_h + d_rope + d_v)`` (a score over the whole query,
        a weighted value); ``"absorbed"`` (MQA mode): ``H (2 d_c + d_rope)`` (a score over
        the latent and the rotary key, a weighted latent).

        Raises:
            ValueError: an unknown mode.

        Example:
            >>> DEEPSEEK_V3.pair_macs("naive"), DEEPSEEK_V3.pair_macs("absorbed")
            (40960, 139264)
        """
        choice("mode", mode, ("naive", "absorbed"))
        if mode == "naive":
            return self.heads * (self.head_dim + self.rope_dim + self.v_head_dim)
        return self.heads * (2 * self.kv_latent + self.rope_dim)

    def attention_macs(self, *, queries: int, keys: int, mode: str) -> int:
        """Multiply-adds of one layer's attention: ``queries`` queries, each against all ``keys``.

        The projections of the new tokens, the same in both modes, are not counted.

        * ``"naive"`` (MHA mode): up-project every key's latent to ``H`` keys and values,
          ``S d_c H (d_h + d_v)``, then ``L S`` pairs at :meth:`pair_macs`;
        * ``"absorbed"`` (MQA mode): fold ``W_UK`` into each query, ``L H d_h d_c``, then
          ``L S`` pairs at :meth:`pair_macs`, then ``W_UV``, ``L H d_c d_v``.

        Raises:
            ValueError: counts that are not positive integers, an unknown mode.

        Example:
            >>> DEEPSEEK_V3.attention_macs(queries=1, keys=1, mode="naive")
            16818176
        """
        L, S = positive_int("queries", queries), positive_int("keys", keys)
        pairs = L * S * self.pair_macs(mode)
        up = self.kv_latent * self.heads * (self.head_dim + self.v_head_dim)
        return (S if mode == "naive" else L) * up + pairs


#: DeepSeek-V2 (arXiv:2405.04434, section 2.1 and its Table 1; the released configuration).
DEEPSEEK_V2 = LatentShape("DeepSeek-V2", layers=60, d_model=5120, heads=128, head_dim=128,
                          rope_dim=64, v_head_dim=128, kv_latent=512, q_latent=1536,
                          source="DeepSeek-V2 technical report, section 2.1; config.json")
#: DeepSeek-V3 (arXiv:2412.19437, section 4.2; the released configuration).
DEEPSEEK_V3 = LatentShape("DeepSeek-V3", layers=61, d_model=7168, heads=128, head_dim=128,
                          rope_dim=64, v_head_dim=128, kv_latent=512, q_latent=1536,
                          source="DeepSeek-V3 technical report, section 4.2; config.json")


def cache_numbers_per_token(shape: LatentShape, design: str, *, kv_heads: int | None = None,
                            layers: int | None = None) -> int:
    """Numbers cached per token of context, over ``layers`` layers, for one design.

    ``"MHA"``: ``2 H d_h`` per layer (a key and a value of width ``d_h`` per head, the
    convention of DeepSeek-V2's Table 1); ``"GQA"``: ``2 H_kv d_h``; ``"MQA"``:
    ``2 d_h``; ``"MLA"``: ``d_c + d_rope`` (the latent and the shared RoPE key).

    Args:
        shape: the model. design: ``"MHA"``, ``"GQA"``, ``"MQA"`` or ``"MLA"``.
        kv_heads: key/value heads for ``"GQA"`` (required there, ignored elsewhere).
        layers: layers to count (default: all of the model's).

    Returns:
        The count (multiply by bytes per number for bytes).

    Raises:
        TypeError: ``shape`` not a :class:`LatentShape`.
        ValueError: an unknown design, or ``"GQA"`` without a positive ``kv_heads``.

    Example:
        >>> cache_numbers_per_token(DEEPSEEK_V3, "GQA", kv_heads=8, layers=1)
        2048
    """
    if not isinstance(shape, LatentShape):
        raise TypeError(f"shape must be a LatentShape; got {type(shape).__name__}")
    choice("design", design, ("MHA", "GQA", "MQA", "MLA"))
    n_l = shape.layers if layers is None else positive_int("layers", layers)
    if design == "MLA":
        per_layer = shape.kv_latent + shape.rope_dim
    elif design == "MHA":
        per_layer = 2 * shape.heads * shape.head_dim
    elif design == "MQA":
        per_layer = 2 * shape.head_dim
    else:
        if kv_heads is None:
            raise ValueError("kv_heads must be given for design='GQA'; got None")
        per_layer = 2 * integer("kv_heads", kv_heads, minimum=1, maximum=shape.heads) * shape.head_dim
    return per_layer * n_l


def mla_crossover_queries(shape: LatentShape, keys: int) -> float:
    """The number of queries per step at which MLA's two modes cost the same multiply-adds.

    With ``L`` queries against ``S`` keys, the absorbed (MQA) mode costs less below it
    and the naive (MHA) mode above it (:meth:`LatentShape.attention_macs`): solve
    ``S U + L S p_n = L U + L S p_a`` for ``L``, with ``U = d_c H (d_h + d_v)`` and
    ``p_n, p_a`` the two modes' :meth:`LatentShape.pair_macs`. As ``S`` grows it tends
    to ``U / (p_a - p_n)``.

    Raises:
        TypeError: ``shape`` not a :class:`LatentShape`.
        ValueError: ``keys`` not a positive integer, or a shape whose absorbed pair is
            not dearer than the naive one (then no crossover exists).

    Example:
        >>> round(mla_crossover_queries(DEEPSEEK_V3, 131072), 1)
        170.4
    """
    if not isinstance(shape, LatentShape):
        raise TypeError(f"shape must be a LatentShape; got {type(shape).__name__}")
    S = positive_int("keys", keys)
    up = shape.kv_latent * shape.heads * (shape.head_dim + shape.v_head_dim)
    extra = shape.pair_macs("absorbed") - shape.pair_macs("naive")
    if extra <= 0:
        raise ValueError(f"the absorbed mode's pair must cost more than the naive mode's for a "
                         f"crossover; got {shape.pair_macs('absorbed')} <= "
                         f"{shape.pair_macs('naive')}")
    return S * up / (S * extra + up)


def fp8_with_scales_bytes(numbers: int, *, block: int = 128, scale_bytes: int = 4) -> int:
    """Bytes of ``numbers`` values stored in FP8 with one FP32 scale per ``block`` values.

    The format of DeepSeek's FP8 caches: FlashMLA's "FP8 with scale" latent (512 FP8
    values and 4 FP32 scales) and the FP8 indexer keys of DeepSeek-V3.2's released
    inference code (one FP32 scale per 128 values).

    Raises:
        ValueError: counts that are not positive integers.

    Example:
        >>> fp8_with_scales_bytes(512), fp8_with_scales_bytes(128)
        (528, 132)
    """
    n = positive_int("numbers", numbers)
    block = positive_int("block", block)
    return n + positive_int("scale_bytes", scale_bytes) * -(-n // block)


def mla_fp8_cache_bytes(shape: LatentShape) -> int:
    """Bytes per token and layer of the MLA cache in FlashMLA's "FP8 with scale" format.

    The latent in FP8 with FP32 scales (:func:`fp8_with_scales_bytes`) and the rotary
    key in BF16, not quantised (FlashMLA's README: 656 bytes for DeepSeek-V3.2).

    Example:
        >>> mla_fp8_cache_bytes(DEEPSEEK_V3)
        656
    """
    if not isinstance(shape, LatentShape):
        raise TypeError(f"shape must be a LatentShape; got {type(shape).__name__}")
    return fp8_with_scales_bytes(shape.kv_latent) + 2 * shape.rope_dim


# ----------------------------------------------------------------------------- local/global
def layer_kinds(layers: int, pattern: Sequence[str]) -> list[LayerKind]:
    """The kind of each layer when ``pattern`` repeats from the first layer on.

    Args:
        layers: number of layers. pattern: a non-empty sequence of ``"local"`` and
            ``"global"``, e.g. Gemma 3's five local layers then one global.

    Returns:
        ``layers`` kinds; the pattern is cut where the layers end.

    Raises:
        ValueError: ``layers`` not positive, an empty pattern or an unknown kind.

    Example:
        >>> layer_kinds(5, ["local", "global"])
        ['local', 'global', 'local', 'global', 'local']
    """
    n = positive_int("layers", layers)
    if len(pattern) == 0:
        raise ValueError("pattern must hold at least one of 'local', 'global'; got an empty one")
    for p in pattern:
        choice("pattern entry", p, ("local", "global"))
    return [pattern[i % len(pattern)] for i in range(n)]  # type: ignore[misc]


@dataclass(frozen=True)
class AttentionStack:
    """The attention layers of a model that mixes local and global layers.

    Attributes:
        name: a label. layers: attention layers. kv_heads, head_dim: of every layer.
        pattern: the repeating order of ``"local"``/``"global"`` layers (from layer 0).
        window: keys a local layer's query sees (itself and ``window - 1`` before it).
        context: the context length the model was trained for (tokens).
        source: where the shape comes from.
    """

    name: str
    layers: int
    kv_heads: int
    head_dim: int
    pattern: tuple[str, ...]
    window: int
    context: int
    source: str

    def __post_init__(self) -> None:
        for f in ("layers", "kv_heads", "head_dim", "window", "context"):
            positive_int(f, getattr(self, f))
        layer_kinds(self.layers, self.pattern)

    @property
    def kinds(self) -> list[LayerKind]:
        """The kind of each layer."""
        return layer_kinds(self.layers, self.pattern)

    @property
    def n_local(self) -> int:
        """Number of local (sliding-window) layers."""
        return self.kinds.count("local")

    @property
    def n_global(self) -> int:
        """Number of global layers."""
        return self.kinds.count("global")

    def with_pattern(self, pattern: Sequence[str], window: int | None = None,
                     name: str | None = None) -> AttentionStack:
        """The same shape with another layer pattern (and window)."""
        return AttentionStack(name or f"{self.name}, {'/'.join(pattern)}", self.layers,
                              self.kv_heads, self.head_dim, tuple(pattern),
                              self.window if window is None else window, self.context,
                              self.source)


_G2 = "Gemma 2 technical report (arXiv:2408.00118), Table 1; google/gemma_pytorch config.py"
_G3 = "Gemma 3 technical report (arXiv:2503.19786), section 2; google/gemma_pytorch config.py"
#: Published shapes of Gemma 2 (1:1, window 4,096) and Gemma 3 (5:1, window 1,024).
GEMMA_STACKS: dict[str, AttentionStack] = {
    "Gemma 2 9B": AttentionStack("Gemma 2 9B", 42, 8, 256, ("local", "global"), 4096, 8192, _G2),
    "Gemma 2 27B": AttentionStack("Gemma 2 27B", 46, 16, 128, ("local", "global"), 4096, 8192,
                                  _G2),
    "Gemma 3 12B": AttentionStack("Gemma 3 12B", 48, 8, 256, ("local",) * 5 + ("global",), 1024,
                                  131072, _G3),
    "Gemma 3 27B": AttentionStack("Gemma 3 27B", 62, 16, 128, ("local",) * 5 + ("global",), 1024,
                                  131072, _G3),
}


def stack_kv_bytes(stack: AttentionStack, context: int, *, bytes_per_number: int = 2,
                   batch: int = 1) -> int:
    """Bytes of the KV cache of ``batch`` sequences of ``context`` tokens.

    A global layer keeps every token; a local layer keeps the last ``window`` tokens
    (a ring buffer), ``min(context, window)``. Per kept token and layer:
    ``2 x kv_heads x head_dim`` numbers.

    Raises:
        TypeError: ``stack`` not an :class:`AttentionStack`.
        ValueError: a count that is not a positive integer.

    Example:
        >>> s = GEMMA_STACKS["Gemma 3 27B"]
        >>> stack_kv_bytes(s, 1024) == stack_kv_bytes(s.with_pattern(["global"]), 1024)
        True
    """
    if not isinstance(stack, AttentionStack):
        raise TypeError(f"stack must be an AttentionStack; got {type(stack).__name__}")
    t = positive_int("context", context)
    b = positive_int("bytes_per_number", bytes_per_number)
    batch = positive_int("batch", batch)
    kept = sum(t if kind == "global" else min(t, stack.window) for kind in stack.kinds)
    return 2 * stack.kv_heads * stack.head_dim * kept * b * batch


def local_reach(n_layers: int, window: int) -> int:
    """Positions back that ``n_layers`` stacked causal windows of ``window`` keys reach.

    Chapter 11's theorem: the output at ``i`` can depend on input ``j`` iff
    ``i - n_layers (window - 1) <= j <= i``; this returns ``n_layers (window - 1)``.

    Raises:
        ValueError: ``n_layers`` negative or ``window`` not a positive integer
            (a negative window has no meaning).

    Example:
        >>> local_reach(3, 4)
        9
    """
    n = integer("n_layers", n_layers, minimum=0)
    w = positive_int("window", window)
    return n * (w - 1)


# ----------------------------------------------------------------------------- indexer
@dataclass(frozen=True)
class IndexerShape:
    """DeepSeek-V3.2's lightning indexer and the top-k it selects.

    Attributes:
        heads: indexer heads ``H^I``. head_dim: their width ``d^I``. top_k: keys
        kept per query. source: where the figures come from.
    """

    heads: int
    head_dim: int
    top_k: int
    source: str

    def __post_init__(self) -> None:
        for f in ("heads", "head_dim", "top_k"):
            positive_int(f, getattr(self, f))

    @property
    def macs_per_pair(self) -> int:
        """Multiply-adds the indexer spends on one (query, key) pair.

        ``H^I`` dot products of width ``d^I`` plus one weight per head: ``H^I (d^I + 1)``.
        """
        return self.heads * (self.head_dim + 1)

    @property
    def key_bytes_fp8(self) -> int:
        """Bytes per token and layer of the indexer's key cache in FP8 with FP32 scales.

        DeepSeek-V3.2's released inference code keeps each token's indexer key as
        ``d^I`` FP8 values and one FP32 scale per 128 (:func:`fp8_with_scales_bytes`).

        Example:
            >>> DEEPSEEK_V32_INDEXER.key_bytes_fp8
            132
        """
        return fp8_with_scales_bytes(self.head_dim)


#: DeepSeek-V3.2 (arXiv:2512.02556, section 2.1; the released configuration:
#: index_n_heads 64, index_head_dim 128, index_topk 2048).
DEEPSEEK_V32_INDEXER = IndexerShape(64, 128, 2048, "DeepSeek-V3.2 report, section 2.1; "
                                    "config.json (index_n_heads, index_head_dim, index_topk)")
