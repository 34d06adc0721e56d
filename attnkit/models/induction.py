"""The induction task that :class:`attnkit.models.transformer.TinyTransformer` learns.

* :func:`induction_batch`, :func:`train_induction`, :func:`induction_accuracy`: the
  induction task (predict the token that followed the previous occurrence of the
  current token), learned on a CPU in seconds, deterministically.
* :func:`previous_token_score`, :func:`induction_score`, :func:`induction_keys`: what a
  head's weights look like, and where it matters; :func:`train_induction` can record
  them during training (``track=``).
* :func:`ablate_heads` (zero- or mean-ablation) and :func:`ablate_path` (remove one
  layer's heads from one input, query, key or value, of a later layer): interventions
  that test what heads *cause* rather than what their weights *show*.

Shape letters::

    B batch   L positions (queries)   H heads   V vocabulary size

This module imports torch; ``import attnkit`` alone does not.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..core._validate import array, choice, integer, positive_int, real
from .transformer import TinyTransformer

__all__ = [
    "TrainingRun",
    "ablate_heads",
    "ablate_path",
    "earlier_occurrence",
    "context_guess",
    "induction_accuracy",
    "induction_batch",
    "induction_keys",
    "induction_loss",
    "induction_positions",
    "induction_score",
    "previous_token_score",
    "train_induction",
    "trained_induction_model",
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


def induction_keys(tokens: Tensor) -> Tensor:
    """The keys an induction head reads: ``s + 1`` for each induction position ``t`` with earlier ``s``.

    For :func:`induction_batch` these are the positions of the segment's first
    occurrence after its first token. A previous-token head matters at these keys:
    what it writes there is what an induction head's query matches.

    Shapes: ``tokens (B, L)`` -> ``(B, L)`` bool.

    Example:
        >>> induction_keys(torch.tensor([[5, 6, 7, 5, 6, 7]])).tolist()
        [[False, True, True, False, False, False]]
    """
    earlier = earlier_occurrence(tokens)
    where = induction_positions(tokens)
    keys = torch.zeros_like(where)
    b, t = torch.nonzero(where, as_tuple=True)
    keys[b, earlier[b, t] + 1] = True
    return keys


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


def context_guess(tokens: Tensor) -> dict[str, float]:
    """Loss and accuracy of a guess that uses the context but no induction: chance in context.

    At each position that induction predicts (:func:`induction_positions`), guess the
    next token uniformly among the tokens that have occurred exactly once so far, the
    current one excluded. In a sequence of :func:`induction_batch` the next token is
    always among them (the prefix is distinct and the segment is repeated once), so a
    model that knows only "the answer is a token seen once before" reaches this
    level. Compare with ``1 / V`` (chance over the vocabulary) and with what a model
    without induction reaches.

    Shapes: ``tokens (B, L)`` -> ``{"loss": mean ln(candidates) in nats, "accuracy":
    mean 1 / candidates}``.

    Raises:
        TypeError, ValueError: not an integer ``(B, L)`` tensor, or no induction position.

    Example:
        >>> g = context_guess(torch.tensor([[5, 6, 7, 5, 6, 7]]))  # candidates {6, 7}, then {7}
        >>> round(g["accuracy"], 2), round(g["loss"], 3)
        (0.75, 0.347)
    """
    where = induction_positions(tokens)  # validates tokens
    if not bool(where.any()):
        raise ValueError("tokens contain no position that induction predicts")
    L = tokens.shape[1]
    same = tokens[:, :, None] == tokens[:, None, :]  # (B, L, L): same[b, s, u]
    so_far = same.cumsum(-1)  # (B, L, L): so_far[b, s, t] = occurrences of tokens[b, s] in 0..t
    upto = torch.ones(L, L, dtype=torch.bool).tril()  # upto[t, s]: s <= t
    # once[b, t, s]: position s <= t holds a token seen exactly once in 0..t, not the current one
    once = upto[None] & (so_far.transpose(1, 2) == 1) & ~same.transpose(1, 2)
    n = once.sum(-1)[where].double()  # candidates at each induction position
    return {"loss": float(torch.log(n).mean()), "accuracy": float((1.0 / n).mean())}


@dataclass
class TrainingRun:
    """What :func:`train_induction` returns: the loss of every step, the settings, and a track.

    With ``track=`` tokens, the model is measured on them before the first step and
    after every ``track_every`` steps (and after the last): ``tracked_steps`` holds
    the number of steps done at each measurement, and for each measurement
    ``tracked_loss`` and ``tracked_accuracy`` (:func:`induction_loss`,
    :func:`induction_accuracy`), ``previous_token`` and ``induction`` (one list per
    layer of one score per head: :func:`previous_token_score` averaged over all
    queries, :func:`induction_score`) and ``previous_token_at_keys``
    (:func:`previous_token_score` over the keys of :func:`induction_keys` only).
    """

    losses: list[float] = field(default_factory=list)
    steps: int = 0
    batch_size: int = 0
    length: int = 0
    seed: int = 0
    tracked_steps: list[int] = field(default_factory=list)
    tracked_loss: list[float] = field(default_factory=list)
    tracked_accuracy: list[float] = field(default_factory=list)
    previous_token: list[list[list[float]]] = field(default_factory=list)
    previous_token_at_keys: list[list[list[float]]] = field(default_factory=list)
    induction: list[list[list[float]]] = field(default_factory=list)


@torch.no_grad()
def _measure(model: TinyTransformer, tokens: Tensor, run: TrainingRun, step: int) -> None:
    """One row of the track: loss, accuracy and every head's scores on ``tokens``."""
    was_training = model.training
    model.eval()
    logits, weights = model(tokens, return_weights=True)
    where = induction_positions(tokens)[:, :-1]
    loss = nn.functional.cross_entropy(logits[:, :-1][where], tokens[:, 1:][where])
    keys = induction_keys(tokens)
    run.tracked_steps.append(step)
    run.tracked_loss.append(float(loss))
    run.tracked_accuracy.append(
        float((logits[:, :-1].argmax(-1)[where] == tokens[:, 1:][where]).float().mean()))
    run.previous_token.append([previous_token_score(w).mean(0).tolist() for w in weights])
    run.previous_token_at_keys.append([previous_token_score(w, where=keys).tolist() for w in weights])
    run.induction.append([induction_score(w, tokens).tolist() for w in weights])
    model.train(was_training)


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
                    length: int | None = None, lr: float = 3e-3, seed: int = 0,
                    track: Tensor | None = None, track_every: int = 10) -> TrainingRun:
    """Train ``model`` on fresh induction batches with AdamW; deterministic and single-threaded.

    Each step draws a new batch from a generator seeded with ``seed``, so every run
    with the same arguments and initial weights gives the same losses on a given
    machine. Training runs on one thread with deterministic algorithms (the settings
    are restored afterwards), so the thread count does not change the result.
    Tracking measures the model without gradients and draws no random numbers, so
    the losses are the same with and without it.

    Args:
        model: a :class:`TinyTransformer`.
        steps: optimiser steps. batch_size: sequences per step.
        length: sequence length ``L`` (default the model's ``max_len``).
        lr: AdamW learning rate. seed: seed of the batches.
        track: ``(B, L)`` tokens from :func:`induction_batch` to measure the loss,
            the accuracy and every head's scores on during training (``None``: no track).
        track_every: steps between two measurements of the track.

    Returns:
        A :class:`TrainingRun` with the loss of every step (nats, over the
        positions that induction can predict) and the track.

    Raises:
        TypeError: ``model`` not a :class:`TinyTransformer`.
        ValueError: non-positive counts, a non-positive ``lr``, ``length > max_len``,
            a vocabulary too small for :func:`induction_batch`, or ``track`` not
            ``(B, L)`` tokens with a repeat.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> model = TinyTransformer(vocab_size=8, max_len=8, d_model=16, num_layers=2)
        >>> test = induction_batch(4, 8, 8)
        >>> run = train_induction(model, steps=3, batch_size=4, track=test, track_every=2)
        >>> len(run.losses), run.tracked_steps, len(run.induction[0])
        (3, [0, 2, 3], 2)
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
    track_every = positive_int("track_every", track_every)
    if track is not None:
        _check_model_tokens(model, track)
        if not bool(induction_positions(track).any()):
            raise ValueError("track must contain positions that induction predicts "
                             "(tokens from induction_batch)")
    run = TrainingRun(steps=steps, batch_size=batch_size, length=length, seed=int(seed))
    g = torch.Generator().manual_seed(int(seed))
    with _single_thread_deterministic():
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
        if track is not None:
            _measure(model, track, run, 0)
        model.train()
        for step in range(1, steps + 1):
            tokens = induction_batch(batch_size, length, model.vocab_size, generator=g)
            loss = induction_loss(model, tokens)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            run.losses.append(float(loss.detach()))
            if track is not None and (step % track_every == 0 or step == steps):
                _measure(model, track, run, step)
        model.eval()
    return run


#: State dicts of the models :func:`trained_induction_model` trained, by its arguments.
_TRAINED: dict[tuple[Any, ...], dict[str, Tensor]] = {}


def trained_induction_model(*, vocab_size: int = 16, max_len: int = 12, d_model: int = 32,
                            num_layers: int = 2, steps: int = 200, batch_size: int = 32,
                            lr: float = 1e-2, seed: int = 0) -> TinyTransformer:
    """A pre-LN :class:`TinyTransformer` with one head per layer, trained on the induction task.

    Initialised from ``torch.manual_seed(seed)`` (inside :func:`torch.random.fork_rng`,
    so the caller's random state is untouched) and trained by :func:`train_induction`
    with batches seeded by ``seed``. The first call with given arguments trains (about
    15 s on one CPU thread with the defaults, which reach an induction accuracy near 1);
    later calls in the same process return a fresh model with the same weights, so
    changing one returned model changes no other. Exercise sets use it to give every
    check the same trained model without training it again.

    Args:
        vocab_size, max_len, d_model, num_layers: the model's shape.
        steps, batch_size, lr, seed: as :func:`train_induction`; ``seed`` also seeds
            the initial weights.

    Returns:
        The trained model, in eval mode.

    Raises:
        TypeError, ValueError: as :class:`TinyTransformer` and :func:`train_induction`.

    Example:
        >>> a = trained_induction_model(vocab_size=8, max_len=8, d_model=16, steps=2, batch_size=4)
        >>> b = trained_induction_model(vocab_size=8, max_len=8, d_model=16, steps=2, batch_size=4)
        >>> a is b, all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
        (False, True)
    """
    config = dict(vocab_size=vocab_size, max_len=max_len, d_model=d_model, num_heads=1,
                  num_layers=num_layers)
    seed = integer("seed", seed)
    key = (vocab_size, max_len, d_model, num_layers, steps, batch_size, float(lr), seed)
    with torch.random.fork_rng():
        torch.manual_seed(int(seed))
        model = TinyTransformer(**config)
    if key not in _TRAINED:
        train_induction(model, steps=steps, batch_size=batch_size, lr=lr, seed=seed)
        _TRAINED[key] = {name: t.detach().clone() for name, t in model.state_dict().items()}
    else:
        model.load_state_dict(_TRAINED[key])
    return model.eval()


# --------------------------------------------------------------------- reading heads
def _weights(weights: Any) -> Tensor:
    w = torch.as_tensor(weights)
    if w.ndim < 2 or w.shape[-1] != w.shape[-2]:
        raise ValueError(f"weights must have shape (..., L, L); got {tuple(w.shape)}")
    return w


def previous_token_score(weights: Any, *, where: Tensor | None = None) -> Tensor:
    """Mean weight that each query puts on the position just before it.

    Shapes: ``weights (..., L, L)`` (e.g. ``(B, H, L, L)``) -> ``(...)`` averaged
    over the queries ``1 .. L-1`` (query 0 has no previous token). A
    previous-token head scores close to 1. With ``where (B, L)`` bool, for weights
    ``(B, ..., L, L)``: the mean over the batch and the queries where ``where`` is
    True (position 0 never counts) -> ``(...)``, e.g. ``(H,)``.

    Raises:
        ValueError: weights that are not square in the last two dimensions, ``L < 2``,
            a ``where`` that is not ``(B, L)`` for the weights, or selects no query.

    Example:
        >>> previous_token_score(torch.diag(torch.ones(3), -1)).item()  # ones below the diagonal
        1.0
    """
    w = _weights(weights)
    if w.shape[-1] < 2:
        raise ValueError(f"weights need L >= 2; got {tuple(w.shape)}")
    diag = torch.diagonal(w, offset=-1, dim1=-2, dim2=-1)  # (..., L - 1): query i + 1 -> key i
    if where is None:
        return diag.mean(-1)
    B, L = w.shape[0], w.shape[-1]
    array("where", where, "torch")
    if where.dtype != torch.bool or where.shape != (B, L) or w.ndim < 3:
        raise ValueError(f"where must be a bool tensor of shape ({B}, {L}) for weights of shape "
                         f"{tuple(w.shape)}; got {where.dtype} of shape {tuple(where.shape)}")
    sel = where[:, 1:].view(B, *([1] * (w.ndim - 3)), L - 1).expand_as(diag)
    count = sel.sum(dim=(0, -1))
    if bool((count == 0).any()):
        raise ValueError("where selects no query after position 0")
    return torch.where(sel, diag, torch.zeros_like(diag)).sum(dim=(0, -1)) / count


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


def _check_heads(model: Any, heads: Any) -> dict[int, list[int]]:
    """``{layer: [head, ...]}`` validated against ``model``."""
    if not isinstance(model, TinyTransformer):
        raise TypeError(f"model must be a TinyTransformer; got {type(model).__name__}")
    if not isinstance(heads, Mapping):
        raise TypeError(f"heads must be a mapping {{layer: [head, ...]}}; got {type(heads).__name__}")
    out: dict[int, list[int]] = {}
    for layer, hs in heads.items():
        layer = integer("a layer in heads", layer)
        if not 0 <= layer < len(model.blocks):
            raise ValueError(f"layer {layer} out of range: the model has {len(model.blocks)} layers")
        n_heads = model.blocks[layer].attn.num_heads
        out[layer] = [integer(f"a head in heads[{layer}]", h) for h in hs]
        for h in out[layer]:
            if not 0 <= h < n_heads:
                raise ValueError(f"head {h} out of range: layer {layer} has {n_heads} heads")
    return out


def _mode(mode: Any, reference: Any, model: TinyTransformer) -> None:
    mode = choice("mode", mode, ("zero", "mean"))
    if mode == "mean":
        if reference is None:
            raise ValueError("mode='mean' needs reference tokens to take the mean over")
        _check_model_tokens(model, reference)
    elif reference is not None:
        raise ValueError("reference is used only with mode='mean'")


@torch.no_grad()
def _mean_head_outputs(model: TinyTransformer, layers: Sequence[int], reference: Tensor
                       ) -> dict[int, Tensor]:
    """Each layer's concatenated head outputs (the input of ``W_O``), averaged over the batch.

    Returns ``{layer: (L, H * Dh)}``: the mean over the reference sequences at each position.
    """
    seen: dict[int, Tensor] = {}

    def keep(layer: int) -> Callable[..., None]:
        def hook(_module: nn.Module, args: tuple[Tensor, ...]) -> None:
            seen[layer] = args[0].mean(0)  # (B, L, H * Dh) -> (L, H * Dh)
        return hook

    handles = [model.blocks[layer].attn.out_proj.register_forward_pre_hook(keep(layer))
               for layer in layers]
    try:
        was_training = model.training
        model.eval()
        model(reference)
        model.train(was_training)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def _replace_heads(concat: Tensor, heads: Sequence[int], head_dim: int,
                   mean: Tensor | None) -> Tensor:
    """The concatenated head outputs ``(B, L, H * Dh)`` with ``heads`` zeroed or set to their mean."""
    out = concat.clone()
    L = concat.shape[1]
    for h in heads:
        cols = slice(h * head_dim, (h + 1) * head_dim)
        out[..., cols] = 0.0 if mean is None else mean[:L, cols]
    return out


@contextlib.contextmanager
def ablate_heads(model: TinyTransformer, heads: Mapping[int, Sequence[int]], *,
                 mode: str = "zero", reference: Tensor | None = None) -> Iterator[None]:
    """Switch attention heads off inside a ``with`` block: zero- or mean-ablation.

    Head ``h`` of layer ``l`` writes columns ``h*Dh .. (h+1)*Dh - 1`` of the input
    of that layer's output projection ``W_O``. Zero-ablation sets those columns to
    zero, which removes exactly that head's contribution ``head_h W_O^{(h)}``; the
    projection's bias ``b_O`` is still added, since it belongs to the layer and is
    the same vector whatever the heads compute. Mean-ablation sets them to their
    mean over the ``reference`` sequences at each position instead: the head then
    writes what it writes on average, so what is lost is only what it computes
    *from this input*, not the constant part that later layers may rely on.
    The model's weights are not changed; the forward hooks are removed on exit.

    Args:
        model: a :class:`TinyTransformer`.
        heads: ``{layer: [head, ...]}`` to switch off.
        mode: ``"zero"`` or ``"mean"``.
        reference: ``(B, L)`` tokens to average over (``mode="mean"`` only).

    Raises:
        TypeError: ``model`` not a :class:`TinyTransformer`.
        ValueError: a layer or head index out of range, an unknown ``mode``, or
            ``reference`` missing for (or given without) ``mode="mean"``.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> m = TinyTransformer(vocab_size=5, max_len=4, d_model=8, num_heads=2, num_layers=1)
        >>> x = torch.tensor([[0, 1, 2, 3]])
        >>> with ablate_heads(m, {0: [0, 1]}):
        ...     zeroed = m(x)
        >>> with torch.no_grad():  # the same as a layer whose W_O is zero
        ...     _ = m.blocks[0].attn.out_proj.weight.zero_()
        >>> bool(torch.allclose(zeroed, m(x)))
        True
    """
    chosen = _check_heads(model, heads)
    _mode(mode, reference, model)
    means = _mean_head_outputs(model, list(chosen), reference) if mode == "mean" else {}

    def replace(layer: int) -> Callable[..., tuple[Tensor]]:
        head_dim = model.blocks[layer].attn.head_dim

        def hook(_module: nn.Module, args: tuple[Tensor, ...]) -> tuple[Tensor]:
            return (_replace_heads(args[0], chosen[layer], head_dim, means.get(layer)),)
        return hook

    handles = [model.blocks[layer].attn.out_proj.register_forward_pre_hook(replace(layer))
               for layer in chosen]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def ablate_path(model: TinyTransformer, heads: Mapping[int, Sequence[int]], *, into: int,
                path: str = "key", mode: str = "zero", reference: Tensor | None = None
                ) -> Iterator[None]:
    """Remove some heads' output from one input (query, key or value) of a later layer only.

    In a pre-LN model the residual stream entering layer ``into`` is a sum, and the
    heads of earlier layers are terms of it. Inside the ``with`` block, the
    attention of layer ``into`` computes its ``path`` (``"query"``, ``"key"`` or
    ``"value"``) from the stream *without* those heads' terms (``mode="zero"``) or
    with each replaced by its mean over ``reference`` (``mode="mean"``); its other
    two inputs, its residual connection and every other layer see the full stream.
    Removing layer 1's previous-token head from layer 2's *keys* only tests
    K-composition: whether the induction head's keys read what the previous-token
    head wrote.

    Args:
        model: a pre-LN :class:`TinyTransformer`.
        heads: ``{layer: [head, ...]}`` whose output is removed; every layer must
            come before ``into``.
        into: the layer whose attention input is changed.
        path: ``"query"``, ``"key"`` or ``"value"``.
        mode, reference: as :func:`ablate_heads`.

    Raises:
        TypeError: ``model`` not a :class:`TinyTransformer`.
        ValueError: a post-LN model (its stream is not a sum of the heads' terms),
            indices out of range, a source layer not before ``into``, an unknown
            ``path`` or ``mode``.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> m = TinyTransformer(vocab_size=6, max_len=6, d_model=8, num_layers=2)
        >>> x = torch.tensor([[0, 1, 2, 0, 1, 2]])
        >>> with ablate_path(m, {0: [0]}, into=1, path="key"):
        ...     changed = m(x)
        >>> bool((changed - m(x)).abs().max() > 0)  # the keys of layer 2 read layer 1
        True
    """
    chosen = _check_heads(model, heads)
    if model.norm != "pre":
        raise ValueError("ablate_path needs a pre-LN model: in post-LN the residual stream "
                         f"is normalised after each sub-layer, not a sum; got norm={model.norm!r}")
    into = integer("into", into, minimum=0, maximum=len(model.blocks) - 1)
    if any(layer >= into for layer in chosen):
        raise ValueError(f"the heads removed must come from layers before into = {into}; "
                         f"got layers {sorted(chosen)}")
    path = choice("path", path, ("query", "key", "value"))
    _mode(mode, reference, model)
    means = _mean_head_outputs(model, list(chosen), reference) if mode == "mean" else {}
    removed: dict[int, Tensor] = {}

    def capture(layer: int) -> Callable[..., None]:
        attn = model.blocks[layer].attn
        keep = [h for h in range(attn.num_heads) if h not in chosen[layer]]

        def hook(module: nn.Module, args: tuple[Tensor, ...]) -> None:
            concat = args[0]  # (B, L, H * Dh): the heads' outputs before W_O
            replaced = _replace_heads(concat, chosen[layer], attn.head_dim, means.get(layer))
            # the change of this layer's output: (replaced - concat) W_O^T; the bias cancels
            delta = replaced - concat
            for h in keep:
                delta[..., h * attn.head_dim:(h + 1) * attn.head_dim] = 0.0
            removed[layer] = delta @ module.weight.T  # (B, L, H * Dh) -> (B, L, D)
        return hook

    def change_input(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
                     ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        x = args[0]
        other = sum(removed[layer] for layer in chosen)
        return args, {**kwargs, "attn_inputs": {path: x + other}}

    handles = [model.blocks[layer].attn.out_proj.register_forward_pre_hook(capture(layer))
               for layer in chosen]
    handles.append(model.blocks[into].register_forward_pre_hook(change_input, with_kwargs=True))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
