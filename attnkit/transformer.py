"""A small Transformer built from attnkit's layers, and the induction task it learns.

The block of the Transformer has two sub-layers, each wrapped in a residual
connection and a layer normalisation:

* the **attention sub-layer** (:class:`attnkit.layers.MultiHeadAttention`) mixes
  information *across positions*: output ``i`` is a weighted sum over positions;
* the **feed-forward sub-layer** (:class:`FeedForward`) applies *the same* two-layer
  network to every position on its own: output ``i`` depends on input ``i`` only.

Pre-LN (as most current models) normalises the input of each sub-layer,
``x + F(LN(x))``; post-LN (the 2017 paper) normalises the sum, ``LN(x + F(x))``.

* :class:`FeedForward`, :class:`TransformerBlock` (encoder, causal decoder, or decoder
  with cross-attention), :class:`TinyTransformer` (a decoder-only language model).
* :func:`induction_batch`, :func:`train_induction`, :func:`induction_accuracy`: the
  induction task (predict the token that followed the previous occurrence of the
  current token), learned on a CPU in seconds, deterministically.
* :func:`previous_token_score`, :func:`induction_score`: what a head's weights look like.
* :func:`ablate_heads`: switch heads off, to test what they *cause* rather than what
  their weights *show*.

Shape letters::

    B batch   L positions (queries)   S keys (memory)   D model width
    H heads   V vocabulary size

This module imports torch; ``import attnkit`` alone does not.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .layers import MultiHeadAttention

__all__ = [
    "FeedForward",
    "TinyTransformer",
    "TrainingRun",
    "TransformerBlock",
    "ablate_heads",
    "earlier_occurrence",
    "induction_accuracy",
    "induction_batch",
    "induction_loss",
    "induction_positions",
    "induction_score",
    "previous_token_score",
    "train_induction",
]

_NORMS = ("pre", "post")


def _positive_int(name: str, n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{name} must be a positive integer; got {n!r}")
    return int(n)


def _norm(norm: Any) -> str:
    if norm not in _NORMS:
        raise ValueError(f"norm must be 'pre' or 'post'; got {norm!r}")
    return str(norm)


def _seq(name: str, x: Any, width: int) -> Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(x).__name__}")
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
        d_model = _positive_int("d_model", d_model)
        d_ff = 4 * d_model if d_ff is None else _positive_int("d_ff", d_ff)
        acts = {"gelu": nn.GELU, "relu": nn.ReLU}
        if activation not in acts:
            raise ValueError(f"activation must be 'gelu' or 'relu'; got {activation!r}")
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

    Args:
        d_model: model width ``D``. num_heads: heads ``H`` (must divide ``D``).
        d_ff: feed-forward hidden width (default ``4 D``).
        norm: ``"pre"`` or ``"post"``.
        feed_forward: include the feed-forward sub-layer (``False`` gives an
            attention-only block, as in studies of induction heads).
        cross_attention: add a cross-attention sub-layer after self-attention.
        num_kv_heads, rope: passed to :class:`attnkit.layers.MultiHeadAttention`.

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
                 num_kv_heads: int | None = None, rope: bool = False) -> None:
        super().__init__()
        self.d_model = _positive_int("d_model", d_model)
        self.norm = _norm(norm)
        self.attn = MultiHeadAttention(self.d_model, num_heads, num_kv_heads=num_kv_heads, rope=rope)
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
                return_weights: bool = False) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        """Run the block; see the class docstring for shapes."""
        x = _seq("x", x, self.d_model)
        if (memory is None) != (self.cross is None):
            raise ValueError("memory must be given exactly when the block has cross_attention; "
                             f"cross_attention={self.cross is not None}, memory given: "
                             f"{memory is not None}")
        weights: dict[str, Tensor] = {}

        def self_attn(h: Tensor) -> tuple[Tensor, Any]:
            return self.attn(h, mask=mask, causal=causal, return_weights=True)

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
        d_ff, norm, feed_forward: as :class:`TransformerBlock`.

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
                 feed_forward: bool = True) -> None:
        super().__init__()
        self.vocab_size = _positive_int("vocab_size", vocab_size)
        self.max_len = _positive_int("max_len", max_len)
        self.d_model = _positive_int("d_model", d_model)
        _positive_int("num_layers", num_layers)
        self.norm = _norm(norm)
        self.tok_emb = nn.Embedding(self.vocab_size, self.d_model)
        self.pos_emb = nn.Embedding(self.max_len, self.d_model)
        self.blocks = nn.ModuleList(
            TransformerBlock(self.d_model, num_heads, d_ff=d_ff, norm=norm, feed_forward=feed_forward)
            for _ in range(num_layers)
        )
        self.ln_final = nn.LayerNorm(self.d_model) if norm == "pre" else nn.Identity()
        self.unembed = nn.Linear(self.d_model, self.vocab_size)

    def forward(self, tokens: Tensor, *, return_weights: bool = False
                ) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Logits for the next token at every position (and each layer's weights)."""
        if not isinstance(tokens, torch.Tensor):
            raise TypeError(f"tokens must be a torch.Tensor; got {type(tokens).__name__}")
        if tokens.ndim != 2 or tokens.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"tokens must be an integer tensor of shape (B, L); got "
                             f"{tuple(tokens.shape)} of dtype {tokens.dtype}")
        L = tokens.shape[1]
        if L > self.max_len:
            raise ValueError(f"tokens has length {L}; this model takes at most max_len = {self.max_len}")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.vocab_size):
            raise ValueError(f"tokens must lie in [0, {self.vocab_size}); got values in "
                             f"[{int(tokens.min())}, {int(tokens.max())}]")
        pos = torch.arange(L, device=tokens.device)
        x = self.tok_emb(tokens) + self.pos_emb(pos)  # (B, L) -> (B, L, D)
        weights = []
        for block in self.blocks:
            x, w = block(x, causal=True, return_weights=True)
            weights.append(w["self"])  # (B, H, L, L)
        logits = self.unembed(self.ln_final(x))  # (B, L, D) -> (B, L, V)
        return (logits, weights) if return_weights else logits


# --------------------------------------------------------------------- the task
def induction_batch(batch_size: int, length: int, vocab_size: int, *,
                    generator: torch.Generator | None = None) -> Tensor:
    """Random sequences whose last part repeats a segment: ``[p q r | a b c d | a b c d]``.

    Each row is a prefix, a segment of ``P`` tokens, and the same segment again,
    with the period ``P`` drawn per row between ``length // 4`` and ``length // 2``
    (so the distance to copy from varies and cannot be learned as a fixed offset).
    All tokens before the repeat are distinct, so in the repeat the next token is
    predictable exactly by *induction*: find the earlier occurrence of the current
    token and copy the token that followed it. Elsewhere it cannot be predicted.

    Shapes::

        out  (batch_size, length) int64, values in [0, vocab_size)

    Args:
        batch_size: sequences ``B``. length: ``L`` (at least 4).
        vocab_size: ``V``; at least ``L - L // 4`` so that the tokens before the
            repeat can be distinct.
        generator: a seeded ``torch.Generator`` (default: a fresh one seeded 0).

    Raises:
        ValueError: non-positive sizes, ``length < 4`` or a vocabulary too small.

    Example:
        >>> x = induction_batch(2, 8, 10, generator=torch.Generator().manual_seed(0))
        >>> tuple(x.shape), bool(induction_positions(x).any(1).all())
        ((2, 8), True)
    """
    B = _positive_int("batch_size", batch_size)
    L = _positive_int("length", length)
    V = _positive_int("vocab_size", vocab_size)
    if L < 4:
        raise ValueError(f"length must be at least 4; got {L}")
    p_min, p_max = max(L // 4, 2), L // 2
    if V < L - p_min:
        raise ValueError(f"vocab_size must be at least length - length // 4 = {L - p_min} so that "
                         f"the tokens before the repeat are distinct; got {V}")
    g = torch.Generator().manual_seed(0) if generator is None else generator
    distinct = torch.argsort(torch.rand(B, V, generator=g), dim=1)  # (B, V): a permutation per row
    period = torch.randint(p_min, p_max + 1, (B,), generator=g)  # (B,)
    t = torch.arange(L)
    start = (L - period)[:, None]  # (B, 1): first position of the repeat
    # before the repeat: distinct tokens; in the repeat: the token P positions earlier
    src = torch.where(t[None, :] < start, t[None, :], t[None, :] - period[:, None])  # (B, L)
    return torch.gather(distinct, 1, src)


def earlier_occurrence(tokens: Tensor) -> Tensor:
    """For each position, the last earlier position holding the same token (``-1`` if none).

    Shapes: ``tokens (B, L)`` integers -> ``(B, L)`` int64.

    Raises:
        TypeError, ValueError: not an integer tensor of shape ``(B, L)``.

    Example:
        >>> earlier_occurrence(torch.tensor([[5, 6, 5, 6]])).tolist()
        [[-1, -1, 0, 1]]
    """
    if not isinstance(tokens, torch.Tensor):
        raise TypeError(f"tokens must be a torch.Tensor; got {type(tokens).__name__}")
    if tokens.ndim != 2 or tokens.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"tokens must be an integer tensor of shape (B, L); got "
                         f"{tuple(tokens.shape)} of dtype {tokens.dtype}")
    L = tokens.shape[1]
    same = tokens[:, :, None] == tokens[:, None, :]  # (B, L, L): same[b, t, s]
    earlier = same & torch.ones(L, L, dtype=torch.bool).tril(-1)  # s < t only
    idx = torch.arange(L).expand_as(earlier)
    last = torch.where(earlier, idx, torch.full_like(idx, -1)).amax(-1)  # (B, L)
    return last


def induction_positions(tokens: Tensor) -> Tensor:
    """Positions whose next token induction predicts: the token occurred before, not last.

    Shapes: ``tokens (B, L)`` -> ``(B, L)`` bool; ``logits[:, t]`` at a True position
    should predict ``tokens[:, earlier + 1]``, which for :func:`induction_batch` is
    ``tokens[:, t + 1]``.

    Example:
        >>> induction_positions(torch.tensor([[5, 6, 7, 5, 6, 7]])).tolist()
        [[False, False, False, True, True, False]]
    """
    pos = earlier_occurrence(tokens) >= 0
    pos[:, -1] = False  # the last position has no next token to predict
    return pos


def _check_model_tokens(model: Any, tokens: Any) -> None:
    if not isinstance(model, TinyTransformer):
        raise TypeError(f"model must be a TinyTransformer; got {type(model).__name__}")
    if not isinstance(tokens, torch.Tensor) or tokens.ndim != 2:
        shape = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
        raise ValueError(f"tokens must be a (B, L) tensor from induction_batch; got {shape}")


def induction_loss(model: TinyTransformer, tokens: Tensor) -> Tensor:
    """Mean cross-entropy (nats) of the next-token predictions that induction makes possible.

    Shapes: ``tokens (B, L)`` from :func:`induction_batch` -> a scalar tensor.

    Raises:
        TypeError, ValueError: not a :class:`TinyTransformer`, or tokens not ``(B, L)``.
    """
    _check_model_tokens(model, tokens)
    where = induction_positions(tokens)[:, :-1]  # (B, L - 1)
    logits = model(tokens)[:, :-1][where]  # (N, V)
    return nn.functional.cross_entropy(logits, tokens[:, 1:][where])


@torch.no_grad()
def induction_accuracy(model: TinyTransformer, tokens: Tensor) -> float:
    """Fraction of induction positions whose most likely next token is right.

    Shapes: ``tokens (B, L)`` from :func:`induction_batch` -> a float in [0, 1].

    Raises:
        TypeError, ValueError: not a :class:`TinyTransformer`, or tokens not ``(B, L)``.
    """
    _check_model_tokens(model, tokens)
    was_training = model.training
    model.eval()
    where = induction_positions(tokens)[:, :-1]
    pred = model(tokens)[:, :-1].argmax(-1)  # (B, L - 1)
    model.train(was_training)
    return float((pred[where] == tokens[:, 1:][where]).float().mean())


@dataclass
class TrainingRun:
    """What :func:`train_induction` returns: the loss after every step and the settings."""

    losses: list[float] = field(default_factory=list)
    steps: int = 0
    batch_size: int = 0
    length: int = 0
    seed: int = 0


@contextlib.contextmanager
def _single_thread_deterministic() -> Iterator[None]:
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(deterministic)
        torch.set_num_threads(threads)


def train_induction(model: TinyTransformer, *, steps: int = 600, batch_size: int = 32,
                    length: int | None = None, lr: float = 3e-3, seed: int = 0) -> TrainingRun:
    """Train ``model`` on fresh induction batches with AdamW; deterministic and single-threaded.

    Each step draws a new batch from a generator seeded with ``seed``, so every run
    with the same arguments and initial weights gives the same losses on a given
    machine. Training runs on one thread with deterministic algorithms (the settings
    are restored afterwards), so the thread count does not change the result.

    Args:
        model: a :class:`TinyTransformer`.
        steps: optimiser steps. batch_size: sequences per step.
        length: sequence length ``L`` (default the model's ``max_len``).
        lr: AdamW learning rate. seed: seed of the batches.

    Returns:
        A :class:`TrainingRun` with the loss of every step (nats, over the
        positions that induction can predict).

    Raises:
        TypeError: ``model`` not a :class:`TinyTransformer`.
        ValueError: non-positive counts, a non-positive ``lr``, ``length > max_len``
            or a vocabulary too small for :func:`induction_batch`.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> model = TinyTransformer(vocab_size=8, max_len=8, d_model=16, num_layers=2)
        >>> len(train_induction(model, steps=3, batch_size=4).losses)
        3
    """
    if not isinstance(model, TinyTransformer):
        raise TypeError(f"model must be a TinyTransformer; got {type(model).__name__}")
    steps = _positive_int("steps", steps)
    batch_size = _positive_int("batch_size", batch_size)
    length = model.max_len if length is None else _positive_int("length", length)
    if length > model.max_len:
        raise ValueError(f"length = {length} exceeds the model's max_len = {model.max_len}")
    induction_batch(1, length, model.vocab_size)  # validates length against the vocabulary
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr must be a positive finite number; got {lr!r}")
    run = TrainingRun(steps=steps, batch_size=batch_size, length=length, seed=int(seed))
    g = torch.Generator().manual_seed(int(seed))
    with _single_thread_deterministic():
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
        model.train()
        for _ in range(steps):
            tokens = induction_batch(batch_size, length, model.vocab_size, generator=g)
            loss = induction_loss(model, tokens)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            run.losses.append(float(loss.detach()))
        model.eval()
    return run


# --------------------------------------------------------------------- reading heads
def _weights(weights: Any) -> Tensor:
    w = torch.as_tensor(weights)
    if w.ndim < 2 or w.shape[-1] != w.shape[-2]:
        raise ValueError(f"weights must have shape (..., L, L); got {tuple(w.shape)}")
    return w


def previous_token_score(weights: Any) -> Tensor:
    """Mean weight that each query puts on the position just before it.

    Shapes: ``weights (..., L, L)`` (e.g. ``(B, H, L, L)``) -> ``(...)`` averaged
    over the queries ``1 .. L-1`` (query 0 has no previous token). A
    previous-token head scores close to 1.

    Raises:
        ValueError: weights that are not square in the last two dimensions, or ``L < 2``.

    Example:
        >>> previous_token_score(torch.diag(torch.ones(3), -1)).item()  # ones below the diagonal
        1.0
    """
    w = _weights(weights)
    if w.shape[-1] < 2:
        raise ValueError(f"weights need L >= 2; got {tuple(w.shape)}")
    return torch.diagonal(w, offset=-1, dim1=-2, dim2=-1).mean(-1)


def induction_score(weights: Any, tokens: Tensor) -> Tensor:
    """Mean weight that a query puts on the token *after* the earlier occurrence of its own token.

    For a query at position ``t`` whose token last occurred at ``s < t``, an
    induction head attends to ``s + 1`` (the token to copy). The score averages that
    weight over every such query of every sequence.

    Shapes: ``weights (B, ..., L, L)`` (e.g. ``(B, H, L, L)``), ``tokens (B, L)`` ->
    ``(...)`` (e.g. ``(H,)``).

    Raises:
        ValueError: weights that are not ``(B, ..., L, L)`` for the tokens' ``B, L``,
            or tokens with no repeated token.

    Example:
        >>> w = torch.zeros(1, 4, 4); w[0, 2, 1] = 1.0
        >>> induction_score(w, torch.tensor([[3, 4, 3, 5]])).item()
        1.0
    """
    w = _weights(weights)
    t_mask = earlier_occurrence(tokens)  # validates tokens
    B, L = tokens.shape
    if w.shape[0] != B or w.shape[-1] != L:
        raise ValueError(f"weights must have shape ({B}, ..., {L}, {L}) for tokens of shape "
                         f"{tuple(tokens.shape)}; got {tuple(w.shape)}")
    where = t_mask >= 0
    if not bool(where.any()):
        raise ValueError("tokens contain no repeated token, so there is no induction target")
    target = (t_mask + 1).clamp(min=0)  # (B, L): the key an induction head should attend to
    extra = w.ndim - 3
    idx = target.view(B, *([1] * extra), L, 1).expand(*w.shape[:-1], 1)
    picked = torch.gather(w, -1, idx)[..., 0]  # (B, ..., L): weight on the target key
    mask = where.view(B, *([1] * extra), L).expand_as(picked)
    picked = torch.where(mask, picked, torch.zeros_like(picked))
    return picked.sum(dim=(0, -1)) / mask.sum(dim=(0, -1))


@contextlib.contextmanager
def ablate_heads(model: TinyTransformer, heads: Mapping[int, Sequence[int]]) -> Iterator[None]:
    """Switch attention heads off inside a ``with`` block (their output becomes zero).

    Head ``h`` of layer ``l`` writes columns ``h*Dh .. (h+1)*Dh - 1`` of the input
    of that layer's output projection; zeroing those columns of ``W_O`` removes
    exactly that head's contribution. The weights are restored on exit.

    Args:
        model: a :class:`TinyTransformer`.
        heads: ``{layer: [head, ...]}`` to switch off.

    Raises:
        TypeError: ``model`` not a :class:`TinyTransformer`.
        ValueError: a layer or head index out of range.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> m = TinyTransformer(vocab_size=5, max_len=4, d_model=8, num_heads=2, num_layers=1)
        >>> with ablate_heads(m, {0: [1]}):
        ...     float(m.blocks[0].attn.out_proj.weight.detach()[:, 4:].abs().sum())
        0.0
    """
    if not isinstance(model, TinyTransformer):
        raise TypeError(f"model must be a TinyTransformer; got {type(model).__name__}")
    saved = []
    for layer, hs in heads.items():
        if not 0 <= int(layer) < len(model.blocks):
            raise ValueError(f"layer {layer} out of range: the model has {len(model.blocks)} layers")
        attn = model.blocks[int(layer)].attn
        for h in hs:
            if not 0 <= int(h) < attn.num_heads:
                raise ValueError(f"head {h} out of range: layer {layer} has {attn.num_heads} heads")
        saved.append((attn.out_proj.weight, attn.out_proj.weight.detach().clone()))
        with torch.no_grad():
            for h in hs:
                attn.out_proj.weight[:, int(h) * attn.head_dim:(int(h) + 1) * attn.head_dim] = 0.0
    try:
        yield
    finally:
        with torch.no_grad():
            for param, value in saved:
                param.copy_(value)
