"""A small Transformer built from attnkit's layers.

The block of the Transformer has two sub-layers, each wrapped in a residual
connection and a layer normalisation:

* the **attention sub-layer** (:class:`attnkit.models.layers.MultiHeadAttention`) mixes
  information *across positions*: output ``i`` is a weighted sum over positions;
* the **feed-forward sub-layer** (:class:`FeedForward`) applies *the same* two-layer
  network to every position on its own: output ``i`` depends on input ``i`` only.

Pre-LN (as most current models) normalises the input of each sub-layer,
``x + F(LN(x))``; post-LN (the 2017 paper) normalises the sum, ``LN(x + F(x))``.

* :class:`FeedForward`, :class:`TransformerBlock` (encoder, causal decoder, or decoder
  with cross-attention), :class:`TinyTransformer` (a decoder-only language model).
  The induction task it learns is in :mod:`attnkit.models.induction`.

Shape letters::

    B batch   L positions (queries)   S keys (memory)   D model width
    H heads   V vocabulary size

This module imports torch; ``import attnkit`` alone does not.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..core._validate import array, choice, positive_int
from .layers import MultiHeadAttention

__all__ = [
    "FeedForward",
    "TinyTransformer",
    "TransformerBlock",
]

_NORMS = ("pre", "post")


def _attn_inputs(inputs: Any, x: Tensor) -> dict[str, Tensor]:
    if inputs is None:
        return {}
    if not isinstance(inputs, Mapping):
        raise TypeError(f"attn_inputs must be a mapping or None; got {type(inputs).__name__}")
    out = {}
    for name, t in inputs.items():
        name = choice("attn_inputs keys", name, ("query", "key", "value"))
        array(f"attn_inputs[{name!r}]", t, "torch")
        if t.shape != x.shape:
            raise ValueError(f"attn_inputs[{name!r}] must have x's shape {tuple(x.shape)}; "
                             f"got {tuple(t.shape)}")
        out[name] = t
    return out


def _seq(name: str, x: Any, width: int) -> Tensor:
    array(name, x, "torch")
    if x.ndim != 3 or x.shape[-1] != width:
        raise ValueError(f"{name} must have shape (B, L, {width}); got {tuple(x.shape)}")
    return x


# --------------------------------------------------------------------- sub-layers
class FeedForward(nn.Module):
    """The position-wise feed-forward network: ``W_2 act(W_1 x + b_1) + b_2`` per position.

    The same two linear maps are applied to every position independently; nothing
    here looks at another position (contrast with attention).

    Shapes::

        x    (..., D)      any leading dimensions, e.g. (B, L, D)
        out  (..., D)

    Args:
        d_model: model width ``D``.
        d_ff: hidden width (default ``4 * d_model``, as in the 2017 paper).
        activation: ``"gelu"`` (default) or ``"relu"``.

    Raises:
        ValueError: a non-positive width or an unknown activation.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> FeedForward(8)(torch.randn(2, 5, 8)).shape
        torch.Size([2, 5, 8])
    """

    def __init__(self, d_model: int, d_ff: int | None = None, *, activation: str = "gelu") -> None:
        super().__init__()
        d_model = positive_int("d_model", d_model)
        d_ff = 4 * d_model if d_ff is None else positive_int("d_ff", d_ff)
        acts = {"gelu": nn.GELU, "relu": nn.ReLU}
        activation = choice("activation", activation, list(acts))
        self.w_1 = nn.Linear(d_model, d_ff)
        self.act = acts[activation]()
        self.w_2 = nn.Linear(d_ff, d_model)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the network to each position: ``(..., D) -> (..., D)``."""
        return self.w_2(self.act(self.w_1(x)))  # (..., D) -> (..., d_ff) -> (..., D)


class TransformerBlock(nn.Module):
    """One Transformer block: self-attention, optional cross-attention, feed-forward.

    Each sub-layer ``F`` sits in a residual connection with a layer norm::

        pre-LN:   x = x + F(LN(x))        (most current models)
        post-LN:  x = LN(x + F(x))        (Vaswani et al., 2017)

    An **encoder** block is ``causal=False`` self-attention + feed-forward; a
    **decoder** block of a language model uses ``causal=True``; the decoder of an
    encoder-decoder model adds cross-attention (``cross_attention=True``): queries
    from ``x``, keys and values from the encoder's output ``memory``.

    Shapes::

        x        (B, L, D)
        memory   (B, S, D)             with cross_attention=True (S may differ from L)
        mask     broadcastable to (B, H, L, L): self-attention mask (True = takes part)
        memory_mask broadcastable to (B, H, L, S): e.g. the source's padding
        out      (B, L, D)
        weights  {"self": (B, H, L, L), "cross": (B, H, L, S)} with return_weights=True
        attn_inputs {"query" | "key" | "value": (B, L, D)}: see ``forward``

    Args:
        d_model: model width ``D``. num_heads: heads ``H`` (must divide ``D``).
        d_ff: feed-forward hidden width (default ``4 D``).
        norm: ``"pre"`` or ``"post"``.
        feed_forward: include the feed-forward sub-layer (``False`` gives an
            attention-only block, as in studies of induction heads).
        cross_attention: add a cross-attention sub-layer after self-attention.
        num_kv_heads, rope: passed to :class:`attnkit.models.layers.MultiHeadAttention`.
        qk_norm, softcap: passed to the self-attention's
            :class:`~attnkit.models.layers.MultiHeadAttention` (RMSNorm of each head's
            queries and keys; soft-capping of its scores); default off.

    Raises:
        ValueError: bad widths or head counts, an unknown ``norm``; in ``forward``,
            inputs of the wrong shape or a ``memory`` that does not match ``cross_attention``.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> block = TransformerBlock(16, num_heads=2, cross_attention=True)
        >>> block(torch.randn(3, 4, 16), memory=torch.randn(3, 9, 16), causal=True).shape
        torch.Size([3, 4, 16])
    """

    def __init__(self, d_model: int, num_heads: int, *, d_ff: int | None = None,
                 norm: str = "pre", feed_forward: bool = True, cross_attention: bool = False,
                 num_kv_heads: int | None = None, rope: bool = False, qk_norm: bool = False,
                 softcap: float | None = None) -> None:
        super().__init__()
        self.d_model = positive_int("d_model", d_model)
        self.norm = choice("norm", norm, _NORMS)
        self.attn = MultiHeadAttention(self.d_model, num_heads, num_kv_heads=num_kv_heads, rope=rope,
                                       qk_norm=qk_norm, softcap=softcap)
        self.ln_attn = nn.LayerNorm(self.d_model)
        self.cross = MultiHeadAttention(self.d_model, num_heads) if cross_attention else None
        self.ln_cross = nn.LayerNorm(self.d_model) if cross_attention else None
        self.ff = FeedForward(self.d_model, d_ff) if feed_forward else None
        self.ln_ff = nn.LayerNorm(self.d_model) if feed_forward else None

    def _sublayer(self, x: Tensor, ln: nn.LayerNorm, f: Any) -> tuple[Tensor, Any]:
        if self.norm == "pre":
            y, extra = f(ln(x))
            return x + y, extra  # x + F(LN(x))
        y, extra = f(x)
        return ln(x + y), extra  # LN(x + F(x))

    def forward(self, x: Tensor, *, memory: Tensor | None = None, mask: Any = None,
                memory_mask: Any = None, causal: bool | str = False,
                return_weights: bool = False, attn_inputs: Mapping[str, Tensor] | None = None,
                attend: Any = None) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        """Run the block; see the class docstring for shapes.

        ``attn_inputs`` is for interventions: ``{"key": x_k}`` computes the
        self-attention's keys from the residual stream ``x_k`` instead of ``x``
        (``"query"`` and ``"value"`` likewise), while everything else, the residual
        connection included, still uses ``x``. With pre-LN the replacement is
        normalised by the same layer norm as ``x``. The tensors have ``x``'s shape.
        :func:`attnkit.models.induction.ablate_path` uses it to remove one layer's
        output from one input of a later layer's attention.

        ``attend`` replaces the self-attention call (see
        :meth:`attnkit.models.layers.MultiHeadAttention.forward`); the weights are then
        not available.

        Raises:
            ValueError: see the class docstring; an ``attn_inputs`` key other than
                ``"query"``, ``"key"``, ``"value"``, or a tensor not shaped like ``x``;
                ``attn_inputs`` and ``attend`` given together.
        """
        x = _seq("x", x, self.d_model)
        replaced = _attn_inputs(attn_inputs, x)
        if replaced and attend is not None:
            raise ValueError("attn_inputs and attend cannot be given together: attend "
                             "replaces the whole self-attention call")
        if (memory is None) != (self.cross is None):
            raise ValueError("memory must be given exactly when the block has cross_attention; "
                             f"cross_attention={self.cross is not None}, memory given: "
                             f"{memory is not None}")
        weights: dict[str, Tensor] = {}

        def self_attn(h: Tensor) -> tuple[Tensor, Any]:
            if attend is not None:  # a serving engine's cache: no weights to return
                return self.attn(h, attend=attend), None
            if not replaced:
                return self.attn(h, mask=mask, causal=causal, return_weights=True)
            # an intervention: some of query, key, value read another residual stream
            def read(name: str) -> Tensor:
                if name not in replaced:
                    return h
                return self.ln_attn(replaced[name]) if self.norm == "pre" else replaced[name]

            q_in, k_in, v_in = read("query"), read("key"), read("value")
            return self.attn(q_in, k_in, v_in, mask=mask, causal=causal, return_weights=True)

        x, weights["self"] = self._sublayer(x, self.ln_attn, self_attn)
        if self.cross is not None and self.ln_cross is not None:
            memory = _seq("memory", memory, self.d_model)
            if memory.shape[0] != x.shape[0]:
                raise ValueError(f"memory must have batch size {x.shape[0]}; got {tuple(memory.shape)}")

            def cross_attn(h: Tensor) -> tuple[Tensor, Any]:
                # queries from the decoder, keys and values from the encoder: (B, L, D) x (B, S, D)
                return self.cross(h, memory, memory, mask=memory_mask, return_weights=True)

            x, weights["cross"] = self._sublayer(x, self.ln_cross, cross_attn)
        if self.ff is not None and self.ln_ff is not None:
            ff = self.ff
            x, _ = self._sublayer(x, self.ln_ff, lambda h: (ff(h), None))
        return (x, weights) if return_weights else x


class TinyTransformer(nn.Module):
    """A small decoder-only language model: embeddings, causal blocks, unembedding.

    Token and learned position embeddings are added, passed through
    ``num_layers`` causal :class:`TransformerBlock` s, normalised (pre-LN) and mapped
    to logits over the vocabulary.

    Shapes::

        tokens   (B, L) integers in [0, V), L <= max_len
        logits   (B, L, V)          logits[b, t] predicts tokens[b, t + 1]
        weights  list of num_layers tensors (B, H, L, L), with return_weights=True

    Args:
        vocab_size: ``V``. max_len: longest sequence. d_model: width ``D``.
        num_heads: heads per layer. num_layers: blocks.
        d_ff, norm, feed_forward, qk_norm, softcap: as :class:`TransformerBlock`
            (QK-norm and soft-capping in every block's self-attention; default off).

    Raises:
        ValueError: bad sizes; in ``forward``, tokens of the wrong shape, dtype or range.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> model = TinyTransformer(vocab_size=10, max_len=8, d_model=16, num_heads=2, num_layers=2)
        >>> model(torch.zeros(3, 8, dtype=torch.long)).shape
        torch.Size([3, 8, 10])
    """

    def __init__(self, vocab_size: int, max_len: int, d_model: int = 64, num_heads: int = 1,
                 num_layers: int = 2, *, d_ff: int | None = None, norm: str = "pre",
                 feed_forward: bool = True, qk_norm: bool = False,
                 softcap: float | None = None) -> None:
        super().__init__()
        self.vocab_size = positive_int("vocab_size", vocab_size)
        self.max_len = positive_int("max_len", max_len)
        self.d_model = positive_int("d_model", d_model)
        positive_int("num_layers", num_layers)
        self.norm = choice("norm", norm, _NORMS)
        self.tok_emb = nn.Embedding(self.vocab_size, self.d_model)
        self.pos_emb = nn.Embedding(self.max_len, self.d_model)
        self.blocks = nn.ModuleList(
            TransformerBlock(self.d_model, num_heads, d_ff=d_ff, norm=norm, feed_forward=feed_forward,
                             qk_norm=qk_norm, softcap=softcap)
            for _ in range(num_layers)
        )
        self.ln_final = nn.LayerNorm(self.d_model) if norm == "pre" else nn.Identity()
        self.unembed = nn.Linear(self.d_model, self.vocab_size)

    def forward(self, tokens: Tensor, *, return_weights: bool = False, positions: Any = None,
                attend: Any = None) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Logits for the next token at every position (and each layer's weights).

        A serving engine runs the model on the new tokens of several sequences at
        once, laid end to end in one row (``B = 1``), with each token's own
        ``positions`` (``(L,)`` integers below ``max_len``; default ``0 .. L - 1``) and
        an ``attend(layer, q, k, v) -> out`` that replaces each layer's attention
        call: it stores the keys and values in the engine's cache and attends through
        it (see :mod:`attnkit.serving.engine`; no weights are returned then).

        Raises:
            ValueError: tokens of the wrong shape, dtype or range; positions of the
                wrong shape or beyond ``max_len``; ``attend`` with ``return_weights``.
        """
        array("tokens", tokens, "torch")
        if tokens.ndim != 2 or tokens.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"tokens must be an integer tensor of shape (B, L); got "
                             f"{tuple(tokens.shape)} of dtype {tokens.dtype}")
        L = tokens.shape[1]
        if positions is None:
            if L > self.max_len:
                raise ValueError(f"tokens has length {L}; this model takes at most max_len = "
                                 f"{self.max_len}")
            pos = torch.arange(L, device=tokens.device)
        else:
            pos = torch.as_tensor(positions, device=tokens.device)
            if pos.shape != (L,) or pos.dtype not in (torch.int64, torch.int32):
                raise ValueError(f"positions must be {L} integers, one per token; got shape "
                                 f"{tuple(pos.shape)} of dtype {pos.dtype}")
            if L and (int(pos.min()) < 0 or int(pos.max()) >= self.max_len):
                raise ValueError(f"positions must lie in [0, max_len = {self.max_len}); got "
                                 f"values in [{int(pos.min())}, {int(pos.max())}]")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.vocab_size):
            raise ValueError(f"tokens must lie in [0, {self.vocab_size}); got values in "
                             f"[{int(tokens.min())}, {int(tokens.max())}]")
        if attend is not None and return_weights:
            raise ValueError("attend replaces the attention call, which then returns no weights: "
                             "do not combine it with return_weights=True")
        x = self.tok_emb(tokens) + self.pos_emb(pos)  # (B, L) -> (B, L, D)
        weights = []
        for layer, block in enumerate(self.blocks):
            if attend is not None:
                x = block(x, attend=functools.partial(attend, layer))
                continue
            x, w = block(x, causal=True, return_weights=True)
            weights.append(w["self"])  # (B, H, L, L)
        logits = self.unembed(self.ln_final(x))  # (B, L, D) -> (B, L, V)
        return (logits, weights) if return_weights else logits
