"""The induction task that :class:`attnkit.models.transformer.TinyTransformer` learns.

* :func:`induction_batch`, :func:`train_induction`, :func:`induction_accuracy`: the
  induction task (predict the token that followed the previous occurrence of the
  current token), learned on a CPU in seconds, deterministically.
* :func:`previous_token_score`, :func:`induction_score`: what a head's weights look like.
* :func:`ablate_heads`: switch heads off, to test what they *cause* rather than what
  their weights *show*.

Shape letters::

    B batch   L positions (queries)   H heads   V vocabulary size

This module imports torch; ``import attnkit`` alone does not.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..core._validate import array, positive_int, real
from .transformer import TinyTransformer

__all__ = [
    "TrainingRun",
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
    B = positive_int("batch_size", batch_size)
    L = positive_int("length", length)
    V = positive_int("vocab_size", vocab_size)
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
    array("tokens", tokens, "torch")
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
    steps = positive_int("steps", steps)
    batch_size = positive_int("batch_size", batch_size)
    length = model.max_len if length is None else positive_int("length", length)
    if length > model.max_len:
        raise ValueError(f"length = {length} exceeds the model's max_len = {model.max_len}")
    induction_batch(1, length, model.vocab_size)  # validates length against the vocabulary
    lr = real("lr", lr, positive=True)
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
