"""How large the attention logits grow in training, with and without QK-norm and soft-capping.

Two ways to keep the scores ``s_ij`` of attention bounded, both in
:class:`attnkit.models.layers.MultiHeadAttention`:

* **QK-norm** (``qk_norm=True``): an RMSNorm with a learned gain on each head's
  queries and keys, so ``|s_ij| = |q_i . k_j| / sqrt(Dh) <= sqrt(Dh) max|gamma_q|
  max|gamma_k|``: the bound moves only as fast as the gains train;
* **soft-capping** (``softcap=c``): ``s <- c tanh(s / c)``, so ``|s_ij| < c``
  whatever the weights.

* :func:`attention_logit_stats` - the largest score and the mean entropy of the
  attention weights of a :class:`~attnkit.models.transformer.TinyTransformer` on a batch.
* :func:`train_logit_controls` - chapter 10's induction model trained four ways
  (neither, QK-norm, soft-capping, both) from the same initial weights and batches,
  with both quantities tracked through training.

Shape letters::

    B batch   L positions   H heads   V vocabulary size

This module imports torch; ``import attnkit`` alone does not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..core._validate import choice, integer, positive_int, real
from .induction import (
    _single_thread_deterministic,
    induction_accuracy,
    induction_batch,
    induction_loss,
)
from .transformer import TinyTransformer

__all__ = ["VARIANTS", "LogitTrace", "attention_logit_stats", "train_logit_controls"]

#: The four settings :func:`train_logit_controls` compares: ``(qk_norm, softcap on)``.
VARIANTS: dict[str, tuple[bool, bool]] = {
    "neither": (False, False),
    "qk_norm": (True, False),
    "softcap": (False, True),
    "both": (True, True),
}


@torch.no_grad()
def attention_logit_stats(model: TinyTransformer, tokens: torch.Tensor) -> tuple[float, float]:
    """The largest score ``max |s_ij|`` and the mean attention entropy on a batch.

    Over every layer, head, sequence and query ``i`` of ``tokens``, counting only the
    keys ``j <= i`` the causal model lets a query see. The scores are those the
    softmax receives (after QK-norm and soft-capping); the entropy of a row of
    weights is ``-sum_j w_ij ln w_ij`` (nats; 0 for a row that puts all its weight on
    one key, ``ln(i + 1)`` for a uniform row).

    Shapes: ``tokens (B, L)`` integers in ``[0, V)``.

    Returns:
        ``(largest_score, mean_entropy)`` as Python floats.

    Raises:
        TypeError: ``model`` not a :class:`TinyTransformer`.
        ValueError: ``tokens`` that the model refuses.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> model = TinyTransformer(vocab_size=8, max_len=6, d_model=16, softcap=2.0)
        >>> top, ent = attention_logit_stats(model, torch.randint(0, 8, (4, 6)))
        >>> top < 2.0, 0.0 < ent < math.log(6)
        (True, True)
    """
    if not isinstance(model, TinyTransformer):
        raise TypeError(f"model must be a TinyTransformer; got {type(model).__name__}")
    seen: list[torch.Tensor] = []
    attns = [block.attn for block in model.blocks]
    for attn in attns:
        attn.scores_hook = seen.append  # (B, H, L, L) scores of each layer
    was_training = model.training
    model.eval()
    try:
        _, weights = model(tokens, return_weights=True)
    finally:
        for attn in attns:
            attn.scores_hook = None
        model.train(was_training)
    L = tokens.shape[1]
    visible = torch.ones(L, L, dtype=torch.bool).tril()  # j <= i
    largest = max(float(s.abs().masked_fill(~visible, 0.0).amax()) for s in seen)
    ent = [-(w * torch.log(w.clamp_min(1e-30))).masked_fill(~visible, 0.0).sum(-1).mean()
           for w in weights]  # per layer: the mean over B, H, L
    return largest, float(torch.stack(ent).mean())


@dataclass
class LogitTrace:
    """One variant's training: the probe's largest score and entropy at the checkpoints.

    Attributes:
        variant: a key of :data:`VARIANTS`.
        steps: the checkpoints (optimiser steps taken; 0 is the initial model).
        largest_score: ``max |s_ij|`` on the probe batch at each checkpoint.
        entropy: mean attention entropy (nats) on the probe batch at each checkpoint.
        losses: the training loss of every step (nats).
        accuracy: induction accuracy on the probe batch after training.
        model: the trained model (not part of the trace's equality).
    """

    variant: str
    steps: list[int] = field(default_factory=list)
    largest_score: list[float] = field(default_factory=list)
    entropy: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    accuracy: float = 0.0
    model: Any = field(default=None, compare=False, repr=False)


def train_logit_controls(
    variants: Sequence[str] = tuple(VARIANTS),
    *,
    softcap: float = 5.0,
    steps: int = 400,
    every: int = 25,
    batch_size: int = 32,
    lr: float = 1e-2,
    seed: int = 0,
    init_seed: int = 0,
    vocab_size: int = 24,
    max_len: int = 16,
    d_model: int = 32,
    num_heads: int = 1,
    num_layers: int = 2,
    probe_size: int = 256,
) -> dict[str, LogitTrace]:
    """Train chapter 10's induction model with neither, QK-norm, soft-capping or both.

    Every variant starts from the same initial weights (``torch.manual_seed(init_seed)``
    before building the model; the norms' gains start at 1 and take no random
    numbers) and sees the same batches (a generator seeded with ``seed``), trained
    as :func:`attnkit.models.induction.train_induction` does (AdamW, weight decay
    0.01, one thread, deterministic algorithms), so the runs differ only in the
    variant. Every ``every`` steps, :func:`attention_logit_stats` on a fixed probe
    batch (seed ``seed + 1``) records the largest score and the mean entropy.

    Args:
        variants: keys of :data:`VARIANTS`.
        softcap: the cap ``c`` of the variants that soft-cap.
        steps: optimiser steps. every: steps between checkpoints.
        batch_size: sequences per step. lr: AdamW's learning rate.
        seed: seed of the training batches (the probe uses ``seed + 1``).
        init_seed: seed of the initial weights.
        vocab_size, max_len, d_model, num_heads, num_layers: the model
            (:class:`~attnkit.models.transformer.TinyTransformer`; chapter 10's sizes).
        probe_size: sequences in the probe batch.

    Returns:
        ``{variant: LogitTrace}``, in the order of ``variants``.

    Raises:
        TypeError: counts or rates of the wrong type.
        ValueError: an unknown variant, non-positive counts or rates, or sizes that
            :func:`~attnkit.models.induction.induction_batch` refuses.

    Example:
        >>> runs = train_logit_controls(["neither", "softcap"], steps=4, every=2,
        ...                             softcap=1.0, d_model=16, probe_size=8)
        >>> runs["softcap"].steps, max(runs["softcap"].largest_score) < 1.0
        ([0, 2, 4], True)
    """
    if isinstance(variants, str):
        raise TypeError(f"variants must be a sequence of names; got the string {variants!r}")
    variants = [choice("variants", v, list(VARIANTS)) for v in variants]
    softcap = real("softcap", softcap, positive=True)
    steps = positive_int("steps", steps)
    every = positive_int("every", every)
    batch_size = positive_int("batch_size", batch_size)
    lr = real("lr", lr, positive=True)
    probe_size = positive_int("probe_size", probe_size)
    seed, init_seed = integer("seed", seed), integer("init_seed", init_seed)
    probe = induction_batch(probe_size, max_len, vocab_size,
                            generator=torch.Generator().manual_seed(seed + 1))
    runs: dict[str, LogitTrace] = {}
    for name in variants:
        qk_norm, capped = VARIANTS[name]
        torch.manual_seed(init_seed)
        model = TinyTransformer(vocab_size, max_len, d_model, num_heads, num_layers,
                                qk_norm=qk_norm, softcap=softcap if capped else None)
        run = LogitTrace(variant=name)
        g = torch.Generator().manual_seed(seed)
        with _single_thread_deterministic():
            opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
            for step in range(steps + 1):
                if step % every == 0 or step == steps:
                    top, ent = attention_logit_stats(model, probe)
                    run.steps.append(step)
                    run.largest_score.append(top)
                    run.entropy.append(ent)
                if step == steps:
                    break
                model.train()
                loss = induction_loss(model, induction_batch(batch_size, max_len, vocab_size,
                                                             generator=g))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                run.losses.append(float(loss.detach()))
        run.accuracy = induction_accuracy(model, probe)
        run.model = model
        if not all(map(math.isfinite, run.losses)):
            run.accuracy = float("nan")  # diverged: say so rather than score it
        runs[name] = run
    return runs
