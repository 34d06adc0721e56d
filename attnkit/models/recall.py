"""Multi-query associative recall (Arora et al. 2023, Zoology), and a seeded CPU trainer.

A sequence lists ``N`` key-value pairs, then asks for the value of each key again::

    k_1 v_1 k_2 v_2 ... k_N v_N  q_1 q_2 ... q_N      (each q is one of the keys)
    target at q_m: the value that followed that key in the list

:func:`mqar_batch` draws such sequences; :class:`RecallModel` is a one-layer model
whose sequence mixer is softmax attention or linear attention
(:mod:`attnkit.models.linear_attention`), everything else identical, including the
parameter count; :func:`train_recall` trains one on a mixture of ``N`` and
:func:`recall_accuracy` measures it per ``N``.

Each position also sees the previous token's embedding (a token shift), so that one
attention layer can solve the task: the position of ``v_j`` then carries ``k_j``, and
a query can match it. Both mixers get the same shift.

This module imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..core._validate import choice, positive_int, real
from ..core.attention import attention
from .linear_attention import linear_attention

__all__ = ["RecallModel", "mqar_batch", "recall_accuracy", "train_recall"]


def mqar_batch(batch: int, pairs: int, *, vocab: int = 256,
               generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """A batch of multi-query associative-recall sequences.

    Keys come from tokens ``[0, vocab/2)``, values from ``[vocab/2, vocab)``; the keys
    of one sequence are distinct, the values random, and every key is queried once,
    in random order.

    Returns:
        ``tokens (batch, 3 pairs)`` (int64), ``targets (batch, 3 pairs)`` (the value to
        predict at each query position, ``-100`` elsewhere, ignored by the loss) and
        ``is_query (3 pairs,)`` (bool).

    Raises:
        ValueError: a count that is not a positive integer, or more pairs than keys.

    Example:
        >>> toks, tgt, is_q = mqar_batch(1, 2, vocab=8, generator=torch.Generator().manual_seed(0))
        >>> toks.shape, int(is_q.sum())
        (torch.Size([1, 6]), 2)
    """
    batch, pairs, vocab = (positive_int(n, x) for n, x in
                           (("batch", batch), ("pairs", pairs), ("vocab", vocab)))
    half = vocab // 2
    if pairs > half:
        raise ValueError(f"pairs must be at most vocab // 2 = {half} (distinct keys); got {pairs}")
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    keys = torch.argsort(torch.rand(batch, half, generator=g), dim=1)[:, :pairs]  # distinct
    values = torch.randint(half, vocab, (batch, pairs), generator=g)
    order = torch.argsort(torch.rand(batch, pairs, generator=g), dim=1)  # query order
    context = torch.stack([keys, values], dim=2).reshape(batch, 2 * pairs)  # k v k v ...
    queries = keys.gather(1, order)
    tokens = torch.cat([context, queries], dim=1)  # (batch, 3 pairs)
    targets = torch.full_like(tokens, -100)
    targets[:, 2 * pairs:] = values.gather(1, order)
    is_query = torch.zeros(3 * pairs, dtype=torch.bool)
    is_query[2 * pairs:] = True
    return tokens, targets, is_query


class RecallModel(nn.Module):
    """Embedding with a token shift, one causal sequence mixer, a classifier.

    ``h_t = W_in [e(x_t); e(x_{t-1})]``, then ``h = h + W_O mix(LN(h))`` where ``mix`` is
    causal softmax attention or causal linear attention over ``heads`` heads with the
    same ``W_Q, W_K, W_V`` shapes, then ``logits = W_out LN(h)``.

    Shapes: ``tokens (B, T)`` -> ``logits (B, T, vocab)``.

    Args:
        vocab: tokens. d_model: width. heads: attention heads (``d_model`` divisible).
        mixer: ``"softmax"`` or ``"linear"``.

    Raises:
        ValueError: sizes that are not positive integers, ``d_model`` not divisible by
            ``heads``, an unknown mixer.
    """

    def __init__(self, vocab: int, d_model: int = 64, heads: int = 1, *,
                 mixer: str = "softmax") -> None:
        super().__init__()
        self.vocab, self.d_model = positive_int("vocab", vocab), positive_int("d_model", d_model)
        self.heads = positive_int("heads", heads)
        if d_model % heads:
            raise ValueError(f"d_model must be divisible by heads; got {d_model} and {heads}")
        self.mixer = choice("mixer", mixer, ("softmax", "linear"))
        self.embed = nn.Embedding(vocab, d_model)
        self.w_in = nn.Linear(2 * d_model, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.w_o = nn.Linear(d_model, d_model)
        self.norm_out = nn.LayerNorm(d_model)
        self.w_out = nn.Linear(d_model, vocab)

    @property
    def state_numbers(self) -> int:
        """Numbers a linear mixer keeps per sequence while decoding (``H (d_h^2 + d_h)``)."""
        dh = self.d_model // self.heads
        return self.heads * (dh * dh + dh)

    def forward(self, tokens: Tensor) -> Tensor:
        """Logits ``(B, T, vocab)`` for ``tokens (B, T)``."""
        e = self.embed(tokens)  # (B, T, D)
        prev = torch.cat([torch.zeros_like(e[:, :1]), e[:, :-1]], dim=1)  # token shift
        h = self.w_in(torch.cat([e, prev], dim=-1))  # (B, T, 2D) -> (B, T, D)
        B, T, D = h.shape
        q, k, v = self.qkv(self.norm(h)).view(B, T, 3, self.heads, D // self.heads).unbind(2)
        q, k, v = (x.transpose(1, 2) for x in (q, k, v))  # (B, H, T, d_h) each
        if self.mixer == "softmax":
            o = attention(q, k, v, causal=True, backend="sdpa")  # fused: same result, faster
        else:
            o = linear_attention(q, k, v, causal=True, eps=1e-6)
        h = h + self.w_o(o.transpose(1, 2).reshape(B, T, D))
        return self.w_out(self.norm_out(h))


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train_recall` returns: the model and the loss of each step."""

    model: RecallModel
    losses: list[float]


def train_recall(mixer: str, pairs: Sequence[int], *, steps: int = 600, batch: int = 32,
                 vocab: int = 256, d_model: int = 64, heads: int = 1, lr: float = 3e-3,
                 seed: int = 0) -> TrainResult:
    """Train a :class:`RecallModel` on MQAR, each step with ``N`` drawn from ``pairs``.

    Adam, cross-entropy on the query positions only; the initial weights, the data and
    the choice of ``N`` all come from ``seed``.

    Raises:
        ValueError: counts that are not positive integers, an empty ``pairs``, a
            learning rate that is not positive.
    """
    steps, batch, seed = positive_int("steps", steps), positive_int("batch", batch), \
        positive_int("seed", seed + 1) - 1
    lr = real("lr", lr, positive=True)
    if len(pairs) == 0:
        raise ValueError("pairs must hold at least one number of key-value pairs")
    pairs = [positive_int("pairs entry", p) for p in pairs]
    torch.manual_seed(seed)
    model = RecallModel(vocab, d_model, heads, mixer=mixer)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed + 1)
    losses = []
    for _ in range(steps):
        n = pairs[int(torch.randint(len(pairs), (1,), generator=g))]
        tokens, targets, _ = mqar_batch(batch, n, vocab=vocab, generator=g)
        logits = model(tokens)
        loss = nn.functional.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1),
                                           ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return TrainResult(model, losses)


@torch.no_grad()
def recall_accuracy(model: RecallModel, pairs: int, *, batch: int = 256, seed: int = 1234) -> float:
    """Fraction of queries whose most likely token is the right value (fresh sequences).

    Raises:
        TypeError: ``model`` not a :class:`RecallModel`.
    """
    if not isinstance(model, RecallModel):
        raise TypeError(f"model must be a RecallModel; got {type(model).__name__}")
    g = torch.Generator().manual_seed(seed)
    tokens, targets, is_query = mqar_batch(batch, pairs, vocab=model.vocab, generator=g)
    pred = model(tokens).argmax(-1)
    return float((pred[:, is_query] == targets[:, is_query]).float().mean())
