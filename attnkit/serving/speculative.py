"""Speculative decoding with a token tree, verified by the target model in one pass.

A small *draft* model guesses several tokens ahead; the large *target* model then
checks all the guesses in **one** forward pass and keeps the longest run it
agrees with, plus one token of its own (Leviathan et al. 2023, "Fast inference from
transformers via speculative decoding"; Chen et al. 2023). A *token tree* drafts
several alternatives at once (Miao et al. 2024, SpecInfer): a node's children are
different guesses for the token after it. Nodes are numbered ``0 .. n - 1`` and
described by their parents (``-1``: a child of the *root*, the newest committed
token)::

    parents = (-1, -1, 0, 0, 1, 2)           root
                                             ├── 0 ── 2 ── 5
                                             │    └── 3
                                             └── 1 ── 4

The target runs on ``[root, node 0, ..., node n - 1]`` at once, each node at the
position ``(committed tokens - 1) + depth``, under a **tree attention mask**
(:func:`tree_mask`): every token sees the whole cache, itself and its ancestors,
and nothing else, so each node's output is what the target would compute had
that branch been the sequence. Acceptance walks down from the root:

* greedy (``temperature=0``): the children are the draft's most likely tokens;
  the walk moves to the child whose token is the target's argmax at the current
  node, and stops where none is; the target's argmax there is the extra token. The
  output is exactly plain greedy decoding's (the tests check it);
* sampling (``temperature > 0``): the children are drawn independently from the
  draft's distribution ``q`` at their parent; each in turn is accepted with
  probability ``min(1, p(x) / q(x))``, and after a rejection ``p`` becomes
  ``normalise(max(0, p - q))`` (:func:`accept_child`; SpecInfer's multi-step
  speculative sampling, which for a chain is Leviathan et al.'s rule): the output is
  distributed as sampling from the target alone.

The keys and values of the root and of the accepted nodes, computed in the
verification pass, go into the target's cache: they depend only on their
ancestors, which are exactly the accepted tokens.

A pass of the target yields ``1 +`` (accepted draft tokens) tokens. If each draft
token of a chain of ``gamma`` is accepted with probability ``alpha``, independently,
the expected number is ``(1 - alpha**(gamma + 1)) / (1 - alpha)`` (Leviathan et al.
2023, equation 1; :func:`expected_tokens_per_pass`), and the expected speed-up,
with a draft pass costing ``c`` target passes, that divided by ``gamma c + 1``
(their theorem 3.8; :func:`expected_speedup`).

:func:`draft_model` makes a draft from chapter 10's model by keeping its first
layers (sharing their weights, its embeddings and its output layer). This module
imports torch.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..core._validate import integer, positive_int, real
from ..models.transformer import TinyTransformer

__all__ = [
    "SpeculativeRun",
    "accept_child",
    "check_tree",
    "draft_model",
    "estimate_acceptance",
    "expected_speedup",
    "expected_tokens_per_pass",
    "measure_speculation",
    "speculative_generate",
    "tree_depths",
    "tree_from_branching",
    "tree_mask",
]


# ---------------------------------------------------------------------- trees
def check_tree(parents: Any) -> tuple[int, ...]:
    """Check a token tree given by its parents; return them as a tuple of ints.

    Args:
        parents: one integer per node: its parent's index, or ``-1`` for a child of
            the root (the newest committed token).

    Returns:
        The parents, as a tuple.

    Raises:
        TypeError: not a sequence of integers.
        ValueError: a parent index out of range (below -1 or at least the number of
            nodes), or a cycle (a node that is its own ancestor).

    Example:
        >>> check_tree([-1, 0, 0])
        (-1, 0, 0)
        >>> check_tree([1, 0])
        Traceback (most recent call last):
        ...
        ValueError: parents must describe a tree; node 0 is its own ancestor (a cycle: 0 -> 1 -> 0)
    """
    if isinstance(parents, (str, bytes)) or not isinstance(parents, Sequence):
        if not isinstance(parents, np.ndarray):
            raise TypeError(f"parents must be a sequence of integers; got {type(parents).__name__}")
    ps = tuple(integer(f"parents[{i}]", p) for i, p in enumerate(parents))
    n = len(ps)
    for i, p in enumerate(ps):
        if not -1 <= p < n:
            raise ValueError(f"parents[{i}] must be -1 (the root) or a node index in [0, {n}); got {p}")
    for i in range(n):
        path, u = [i], ps[i]
        while u != -1:
            path.append(u)
            if u == i:
                raise ValueError("parents must describe a tree; node "
                                 f"{i} is its own ancestor (a cycle: {' -> '.join(map(str, path))})")
            if len(path) > n + 1:
                break  # a cycle above i, reported from one of its own nodes
            u = ps[u]
    return ps


def tree_depths(parents: Any) -> list[int]:
    """Each node's depth: 1 for the root's children, 2 for theirs, ...

    Example:
        >>> tree_depths([-1, -1, 0, 0, 1, 2])
        [1, 1, 2, 2, 2, 3]
    """
    ps = check_tree(parents)
    depth: list[int] = []
    for i in range(len(ps)):
        d, u = 1, ps[i]
        while u != -1:
            d, u = d + 1, ps[u]
        depth.append(d)
    return depth


def tree_mask(parents: Any) -> np.ndarray:
    """The tree attention mask: ``mask[i, j]`` is True when node ``j`` is node ``i`` or its ancestor.

    Shapes::

        parents (n,)  ->  mask (n, n) bool

    In the verification pass every node also sees the whole cache and the root
    (the newest committed token), which this mask leaves out.

    Raises:
        TypeError, ValueError: as :func:`check_tree`.

    Example:
        >>> tree_mask([-1, -1, 0, 0, 1, 2]).astype(int)
        array([[1, 0, 0, 0, 0, 0],
               [0, 1, 0, 0, 0, 0],
               [1, 0, 1, 0, 0, 0],
               [1, 0, 0, 1, 0, 0],
               [0, 1, 0, 0, 1, 0],
               [1, 0, 1, 0, 0, 1]])
    """
    ps = check_tree(parents)
    n = len(ps)
    mask = np.zeros((n, n), dtype=bool)
    for i in range(n):
        u = i
        while u != -1:
            mask[i, u] = True
            u = ps[u]
    return mask


def tree_from_branching(branching: Sequence[int]) -> tuple[int, ...]:
    """The parents of a tree in which every node at depth ``d`` has ``branching[d]`` children.

    ``(1,) * gamma`` is a chain of ``gamma`` draft tokens; ``(2, 2)`` is a root with two
    children with two each (six nodes). Nodes are numbered level by level.

    Raises:
        TypeError, ValueError: a branching factor that is not a positive integer.

    Example:
        >>> tree_from_branching((2, 2)), tree_from_branching((1, 1, 1))
        ((-1, -1, 0, 0, 1, 1), (-1, 0, 1))
    """
    parents: list[int] = []
    level = [-1]
    for d, b in enumerate(branching):
        b = positive_int(f"branching[{d}]", b)
        nxt = []
        for u in level:
            for _ in range(b):
                parents.append(u)
                nxt.append(len(parents) - 1)
        level = nxt
    return tuple(parents)


# ---------------------------------------------------------------------- acceptance
def accept_child(p: Any, q: Any, children: Sequence[int], rng: np.random.Generator) -> tuple[int | None, int]:
    """The standard acceptance rule at one node of a sampled token tree.

    The children's tokens were drawn independently from the draft's distribution
    ``q``; the target's is ``p``. Child ``k`` (token ``x``) is accepted with
    probability ``min(1, r(x) / q(x))``, where ``r`` starts as ``p`` and after each
    rejection becomes ``normalise(max(0, r - q))``; if every child is rejected, a token
    is drawn from the last ``r``. The token that results is distributed as ``p``
    (Leviathan et al. 2023, appendix A.1, for one child; Miao et al. 2024 for several).

    Args:
        p, q: probability vectors over the vocabulary ``(V,)``.
        children: the children's tokens, in order.
        rng: a NumPy generator.

    Returns:
        ``(k, token)``: the index of the accepted child and its token, or ``(None,
        token)`` with the token drawn from the residual distribution.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> accept_child(np.array([0.0, 1.0]), np.array([0.5, 0.5]), [0, 0], rng)   # p never draws 0
        (None, 1)
    """
    r = np.asarray(p, dtype=np.float64).copy()
    qq = np.asarray(q, dtype=np.float64)
    for k, x in enumerate(children):
        if rng.random() * qq[x] < r[x]:  # probability min(1, r(x) / q(x))
            return k, int(x)
        r = np.maximum(r - qq, 0.0)
        total = r.sum()
        if total <= 0:  # r <= q everywhere: r and q were equal; nothing left to correct
            r = np.asarray(p, dtype=np.float64).copy()
            total = r.sum()
        r /= total
    return None, int(rng.choice(r.size, p=r))


def expected_tokens_per_pass(alpha: float, gamma: int) -> float:
    """Leviathan et al. (2023), equation 1: tokens per target pass, ``(1 - alpha**(gamma+1)) / (1 - alpha)``.

    Each of ``gamma`` chained draft tokens is accepted with probability ``alpha``,
    independently; the pass keeps the accepted run and adds one token of its own.

    Raises:
        TypeError, ValueError: ``alpha`` outside ``[0, 1]``, ``gamma`` not a
            non-negative integer.

    Example:
        >>> [expected_tokens_per_pass(a, g) for a, g in ((0.5, 2), (1.0, 4), (0.0, 4))]
        [1.75, 5.0, 1.0]
    """
    alpha = real("alpha", alpha, minimum=0)
    if alpha > 1:
        raise ValueError(f"alpha must be a probability in [0, 1]; got {alpha}")
    gamma = integer("gamma", gamma, minimum=0)
    if alpha == 1.0:
        return float(gamma + 1)
    return (1.0 - alpha ** (gamma + 1)) / (1.0 - alpha)


def expected_speedup(alpha: float, gamma: int, cost_ratio: float) -> float:
    """Leviathan et al. (2023), theorem 3.8: ``(1 - alpha**(gamma+1)) / ((1 - alpha)(gamma c + 1))``.

    The expected wall-time improvement over plain decoding when a draft pass costs
    ``c = cost_ratio`` target passes (and verifying costs one target pass).

    Raises:
        TypeError, ValueError: as :func:`expected_tokens_per_pass`; a negative ``cost_ratio``.

    Example:
        >>> round(expected_speedup(0.8, 4, 0.1), 3)
        2.401
    """
    c = real("cost_ratio", cost_ratio, minimum=0)
    return expected_tokens_per_pass(alpha, gamma) / (gamma * c + 1.0)


def estimate_acceptance(accepted: Sequence[int], gamma: int) -> float:
    """The acceptance rate ``alpha`` that best explains accepted counts of a chain of ``gamma``.

    A pass that accepted ``a < gamma`` tokens saw ``a`` acceptances and one rejection;
    one that accepted all ``gamma``, ``gamma`` acceptances. The maximum-likelihood
    estimate is acceptances over trials: ``sum(a) / (sum(a) + #passes with a < gamma)``.

    Raises:
        TypeError, ValueError: no passes, a count outside ``[0, gamma]``.

    Example:
        >>> round(estimate_acceptance([2, 0, 1, 2], gamma=2), 4)    # 5 acceptances in 7 trials
        0.7143
    """
    gamma = positive_int("gamma", gamma)
    counts = [integer(f"accepted[{i}]", a, minimum=0, maximum=gamma) for i, a in enumerate(accepted)]
    if not counts:
        raise ValueError("accepted must hold at least one pass; got none")
    trials = sum(counts) + sum(1 for a in counts if a < gamma)
    return sum(counts) / trials if trials else 1.0


# ---------------------------------------------------------------------- models
def draft_model(target: TinyTransformer, num_layers: int) -> TinyTransformer:
    """A draft made of the target's first ``num_layers`` layers, its embeddings and output layer.

    The draft shares the target's weights (a copy of the module structure, not of
    the parameters): it reads the target's intermediate representation with the
    target's own output layer (an early exit), which predicts the target's next
    token often enough to be worth verifying.

    Raises:
        TypeError: not a ``TinyTransformer``. ValueError: ``num_layers`` outside
            ``[1, target's layers]``.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> m = TinyTransformer(vocab_size=8, max_len=8, d_model=8, num_heads=2, num_layers=4)
        >>> d = draft_model(m, 1)
        >>> len(d.blocks), d.blocks[0] is m.blocks[0], d.unembed is m.unembed
        (1, True, True)
    """
    if not isinstance(target, TinyTransformer):
        raise TypeError(f"target must be a TinyTransformer; got {type(target).__name__}")
    k = integer("num_layers", num_layers, minimum=1, maximum=len(target.blocks))
    draft = copy.copy(target)  # a new module object whose submodules are the target's
    draft._modules = dict(target._modules)
    draft.blocks = nn.ModuleList(list(target.blocks)[:k])
    return draft


class _Cache:
    """Keys and values of the committed tokens, per layer: (1, Hkv, T, Dh)."""

    def __init__(self, layers: int) -> None:
        self.k: list[Tensor | None] = [None] * layers
        self.v: list[Tensor | None] = [None] * layers
        self.length = 0

    def commit(self, new: list[tuple[Tensor, Tensor]], rows: list[int]) -> None:
        idx = torch.tensor(rows, dtype=torch.long, device=new[0][0].device)
        for layer, (k, v) in enumerate(new):
            k, v = k[:, :, idx], v[:, :, idx]
            old_k, old_v = self.k[layer], self.v[layer]
            self.k[layer] = k if old_k is None else torch.cat([old_k, k], dim=2)
            self.v[layer] = v if old_v is None else torch.cat([old_v, v], dim=2)
        self.length += len(rows)


def _pass(model: TinyTransformer, cache: _Cache, tokens: list[int], positions: list[int],
          mask: np.ndarray) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
    """Run ``model`` on new ``tokens``: each sees the cache and the new tokens ``mask`` allows.

    Returns the logits ``(n, V)`` and each layer's new keys and values (1, Hkv, n, Dh).
    """
    p = next(model.parameters())
    n, t = len(tokens), cache.length
    allowed = torch.cat([torch.ones(n, t, dtype=torch.bool), torch.from_numpy(mask)], dim=1)
    allowed = allowed.to(p.device)
    new: list[tuple[Tensor, Tensor]] = []

    def attend(layer: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        # q (1, H, n, Dh); k, v (1, Hkv, n, Dh): the new tokens; the cache holds t before them
        new.append((k, v))
        ck, cv = cache.k[layer], cache.v[layer]
        keys = k if ck is None else torch.cat([ck, k], dim=2)  # (1, Hkv, t + n, Dh)
        values = v if cv is None else torch.cat([cv, v], dim=2)
        group = q.shape[1] // keys.shape[1]
        if group > 1:  # grouped-query attention: each key/value head serves `group` query heads
            keys, values = keys.repeat_interleave(group, 1), values.repeat_interleave(group, 1)
        scores = q @ keys.transpose(-1, -2) / math.sqrt(q.shape[-1])  # (1, H, n, t + n)
        scores = scores.masked_fill(~allowed, float("-inf"))
        return torch.softmax(scores, dim=-1) @ values  # (1, H, n, Dh)

    ids = torch.tensor([tokens], dtype=torch.long, device=p.device)
    pos = torch.tensor(positions, dtype=torch.long, device=p.device)
    logits = model(ids, positions=pos, attend=attend)[0]  # (n, V)
    return logits, new


def _causal(n: int) -> np.ndarray:
    return np.tril(np.ones((n, n), dtype=bool))


@dataclass
class SpeculativeRun:
    """What :func:`speculative_generate` returns.

    Attributes:
        tokens: the generated tokens (``max_new_tokens`` of them).
        accepted: draft tokens accepted in each target pass (the pass adds one more).
        draft_passes: forward passes of the draft model (one per tree level per
            target pass).
        tree: the parents of the token tree.

    Example:
        >>> r = SpeculativeRun([4, 1, 1, 7, 2], accepted=[2, 0, 1], draft_passes=6, tree=(-1, 0))
        >>> r.target_passes, r.tokens_per_pass
        (3, 2.0)
    """

    tokens: list[int]
    accepted: list[int] = field(default_factory=list)
    draft_passes: int = 0
    tree: tuple[int, ...] = ()

    @property
    def target_passes(self) -> int:
        """Verification passes of the target (the prompt's prefill not counted)."""
        return len(self.accepted)

    @property
    def tokens_per_pass(self) -> float:
        """Tokens produced per target pass: ``mean(accepted) + 1`` (1 for plain decoding)."""
        return float(np.mean(self.accepted)) + 1.0 if self.accepted else float("nan")


@torch.no_grad()
def speculative_generate(target: TinyTransformer, draft: TinyTransformer, prompt: Sequence[int],
                         max_new_tokens: int, *, tree: Any = (-1, 0, 1),
                         temperature: float = 0.0, seed: int = 0) -> SpeculativeRun:
    """Generate ``max_new_tokens`` tokens, drafting a token tree and verifying it in one target pass.

    Per target pass: the draft fills the tree level by level (one draft pass per
    level, each over the draft's uncommitted tokens and the tree so far, under the
    tree mask); the target runs once on the root and the whole tree under the tree
    mask; acceptance walks down from the root (see the module docstring); the
    accepted tokens and one token of the target's own are committed.

    Shapes (one verification pass; ``n`` tree nodes, ``T`` committed tokens)::

        input   root + n nodes, at positions T - 1 + depth (the root's depth is 0)
        mask    (n + 1, T - 1 + n + 1): all of the cache, then tree_mask with the root
        logits  (n + 1, V): row 0 predicts the root's next token, row i + 1 node i's

    Args:
        target: the model whose output this is (a ``TinyTransformer``).
        draft: the model that guesses (e.g. :func:`draft_model`); same vocabulary.
        prompt: token ids (at least one). max_new_tokens: tokens to produce.
        tree: the parents of the token tree (:func:`check_tree`; default a chain of
            two); :func:`tree_from_branching` builds regular ones. ``()`` drafts
            nothing (plain decoding, one token per pass).
        temperature: 0 for greedy decoding (the children are the draft's most likely
            tokens, in order); above 0 to sample from ``softmax(logits / temperature)``
            (the children drawn from the draft's distribution, accepted by
            :func:`accept_child`).
        seed: the seed of the sampling.

    Returns:
        A :class:`SpeculativeRun`.

    Raises:
        TypeError: models that are not ``TinyTransformer`` s, a bad tree.
        ValueError: models of different vocabularies, a bad tree (:func:`check_tree`),
            a prompt, output and tree longer than the model's ``max_len``, a negative
            temperature.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> m = TinyTransformer(vocab_size=16, max_len=32, d_model=16, num_heads=2, num_layers=3).double()
        >>> out = speculative_generate(m, draft_model(m, 1), [1, 2, 3], 8, tree=tree_from_branching((2, 1)))
        >>> from attnkit.serving.engine import generate_alone
        >>> out.tokens == generate_alone(m, [1, 2, 3], 8), out.target_passes <= 8
        (True, True)
    """
    for name, m in (("target", target), ("draft", draft)):
        if not isinstance(m, TinyTransformer):
            raise TypeError(f"{name} must be a TinyTransformer; got {type(m).__name__}")
    if draft.vocab_size != target.vocab_size:
        raise ValueError(f"draft and target must share a vocabulary; got {draft.vocab_size} and "
                         f"{target.vocab_size} tokens")
    parents = check_tree(tree)
    n = len(parents)
    depth = tree_depths(parents)
    levels = max(depth, default=0)
    n_new = integer("max_new_tokens", max_new_tokens, minimum=1)
    temp = real("temperature", temperature, minimum=0)
    rng = np.random.default_rng(integer("seed", seed, minimum=0))
    tokens = [integer(f"prompt[{i}]", t, minimum=0, maximum=target.vocab_size - 1)
              for i, t in enumerate(prompt)]
    if not tokens:
        raise ValueError("prompt must hold at least one token; got none")
    longest = len(tokens) + n_new - 1 + levels
    for name, m in (("target", target), ("draft", draft)):
        if longest > m.max_len:
            raise ValueError(f"prompt ({len(tokens)}) + max_new_tokens ({n_new}) - 1 + the tree's "
                             f"depth ({levels}) exceeds the {name}'s max_len = {m.max_len}")
    target.eval()
    draft.eval()
    children: dict[int, list[int]] = {u: [] for u in range(-1, n)}
    for i, p in enumerate(parents):
        children[p].append(i)
    full = np.zeros((n + 1, n + 1), dtype=bool)  # the root, then the nodes
    full[:, 0] = True
    full[1:, 1:] = tree_mask(parents)
    full[0, 0] = True

    def dist(logits: Tensor) -> np.ndarray:
        x = logits.double().cpu().numpy() / temp
        e = np.exp(x - x.max())
        return e / e.sum()

    t_cache, d_cache = _Cache(len(target.blocks)), _Cache(len(draft.blocks))
    if len(tokens) > 1:  # prefill: every prompt token but the last (the first pass's root)
        for model, cache in ((target, t_cache), (draft, d_cache)):
            _, kv = _pass(model, cache, tokens[:-1], list(range(len(tokens) - 1)),
                          _causal(len(tokens) - 1))
            cache.commit(kv, list(range(len(tokens) - 1)))
    pending = [tokens[-1]]  # committed tokens whose keys and values the draft has not cached
    out: list[int] = []
    result = SpeculativeRun(out, tree=parents)
    while len(out) < n_new:
        # ---- draft the tree, level by level
        node_tok: list[int] = [0] * n
        q_at: dict[int, np.ndarray] = {}
        base, np_ = d_cache.length, len(pending)
        last_kv = None
        for level in range(1, levels + 1):
            known = [i for i in range(n) if depth[i] < level]
            m = np.zeros((np_ + len(known), np_ + len(known)), dtype=bool)
            m[:np_, :np_] = _causal(np_)
            m[np_:, :np_] = True
            if known:
                m[np_:, np_:] = tree_mask(parents)[np.ix_(known, known)]
            positions = [base + j for j in range(np_)] + [base + np_ - 1 + depth[i] for i in known]
            logits, last_kv = _pass(draft, d_cache, pending + [node_tok[i] for i in known], positions, m)
            result.draft_passes += 1
            row = {-1: np_ - 1, **{i: np_ + j for j, i in enumerate(known)}}
            for u in [-1, *known]:
                kids = [c for c in children[u] if depth[c] == level]
                if not kids:
                    continue
                lg = logits[row[u]]
                if temp == 0:
                    top = torch.topk(lg, min(len(kids), lg.numel())).indices.tolist()
                    for j, c in enumerate(kids):
                        node_tok[c] = int(top[min(j, len(top) - 1)])
                else:
                    q = q_at[u] = dist(lg)
                    for c in kids:
                        node_tok[c] = int(rng.choice(q.size, p=q))
        if last_kv is not None:
            d_cache.commit(last_kv, list(range(np_)))  # the pending tokens' rows: the cache only
        # ---- verify: one target pass over the root and the whole tree
        base_t = t_cache.length  # the root's position
        logits, kv = _pass(target, t_cache, [tokens[-1], *node_tok],
                           [base_t] + [base_t + d for d in depth], full)
        # ---- accept, walking down from the root
        u, path = -1, []
        while True:
            lg = logits[0 if u == -1 else u + 1]
            kids = children[u]
            if temp == 0:
                best = int(lg.argmax())
                match = [c for c in kids if node_tok[c] == best]
                if match:
                    u = match[0]
                    path.append(u)
                    continue
                bonus = best
                break
            p = dist(lg)
            if not kids:
                bonus = int(rng.choice(p.size, p=p))
                break
            k, tok = accept_child(p, q_at[u], [node_tok[c] for c in kids], rng)
            if k is None:
                bonus = tok
                break
            u = kids[k]
            path.append(u)
        t_cache.commit(kv, [0] + [c + 1 for c in path])  # the root and the accepted nodes
        new = [node_tok[c] for c in path] + [bonus]
        result.accepted.append(len(path))
        pending = new  # the draft caches them at its next pass
        tokens += new
        out += new
    del out[n_new:]
    return result


def measure_speculation(target: TinyTransformer, draft: TinyTransformer,
                        prompts: Sequence[Sequence[int]], max_new_tokens: int, *,
                        tree: Any = (-1, 0, 1), temperature: float = 0.0,
                        seed: int = 0) -> dict[str, Any]:
    """Accepted tokens per target pass over several prompts, and Leviathan et al.'s prediction.

    Runs :func:`speculative_generate` on every prompt and pools the passes. For a
    chain of ``gamma`` draft tokens, it also estimates the acceptance rate
    (:func:`estimate_acceptance`) and gives the tokens per pass that equation 1
    predicts from it (:func:`expected_tokens_per_pass`), to set beside the measured
    figure: they differ where acceptances are not independent and equally likely.

    Args:
        target, draft, max_new_tokens, tree, temperature, seed: as
            :func:`speculative_generate` (prompt ``i`` uses ``seed + i``).
        prompts: token-id sequences (at least one).

    Returns:
        A dict: ``tokens_per_pass`` (tokens over target passes), ``target_passes``,
        ``draft_passes``, ``tokens``, ``accepted`` (every pass's count), ``gamma`` (the
        tree's depth), ``nodes``, and for a chain ``alpha`` and ``predicted_tokens_per_pass``
        (``None`` for a branching tree).

    Raises:
        TypeError, ValueError: as :func:`speculative_generate`; no prompts.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> m = TinyTransformer(vocab_size=16, max_len=32, d_model=16, num_heads=2, num_layers=3)
        >>> r = measure_speculation(m, m, [[1, 2], [3]], 9, tree=(-1, 0))   # the target as its own draft
        >>> r["tokens_per_pass"], r["alpha"], r["predicted_tokens_per_pass"]
        (3.0, 1.0, 3.0)
    """
    prompts = list(prompts)
    if not prompts:
        raise ValueError("prompts must hold at least one prompt; got none")
    parents = check_tree(tree)
    depth = max(tree_depths(parents), default=0)
    runs = [speculative_generate(target, draft, p, max_new_tokens, tree=parents,
                                 temperature=temperature, seed=integer("seed", seed, minimum=0) + i)
            for i, p in enumerate(prompts)]
    accepted = [a for r in runs for a in r.accepted]
    produced = sum(a + 1 for a in accepted)  # before each run's last pass is cut to max_new_tokens
    chain = depth > 0 and parents == tuple(range(-1, depth - 1))
    alpha = estimate_acceptance(accepted, depth) if chain else None
    return {
        "tokens_per_pass": produced / len(accepted),
        "target_passes": len(accepted),
        "draft_passes": sum(r.draft_passes for r in runs),
        "tokens": sum(len(r.tokens) for r in runs),
        "accepted": accepted,
        "gamma": depth,
        "nodes": len(parents),
        "alpha": alpha,
        "predicted_tokens_per_pass": (expected_tokens_per_pass(alpha, depth)
                                      if alpha is not None else None),
    }
