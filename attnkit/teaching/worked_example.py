"""The worked example of chapter 4: the four steps of attention for one query, as data and HTML.

:func:`row_steps` computes the four steps itself (compare, scale, normalise with the
row maximum subtracted, aggregate), so that every intermediate number the chapter
shows comes from one place; the chapter then checks the weights and the output
against :func:`attnkit.attention`, an independent computation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from .. import example
from .explorers import stepper2d
from .html import heatmap_html, html_table
from .primitives import fmt_num, fmt_vec

#: Numbers in the worked example: integers without decimals, others to 4 d.p.
_num = partial(fmt_num, compact=True)
_vec = partial(fmt_vec, compact=True)

#: The four operations of attention, in order.
STAGES = ("1 compare", "2 scale", "3 normalise", "4 aggregate")


@dataclass(frozen=True)
class RowSteps:
    """Every intermediate value of attention for query ``i``.

    Shapes: ``q (E,)``, ``K (S, E)``, ``V (S, Ev)``, ``raw, scaled, exps, weights (S,)``,
    ``weighted (S, Ev)``, ``out (Ev,)``.
    """

    i: int
    token: str
    tokens: tuple[str, ...]
    q: np.ndarray
    K: np.ndarray
    V: np.ndarray
    scale: float
    raw: np.ndarray
    scaled: np.ndarray
    exps: np.ndarray
    weights: np.ndarray
    weighted: np.ndarray
    out: np.ndarray


def row_steps(
    i: int,
    Q: np.ndarray = example.Q,
    K: np.ndarray = example.K,
    V: np.ndarray = example.V,
    tokens: tuple[str, ...] = example.tokens,
) -> RowSteps:
    """The four steps of attention for query row ``i``, each computed here.

    1. compare: ``raw = K q_i`` (the dot products ``r_j = q_i . k_j``);
    2. scale: ``scaled = raw / sqrt(E)`` (the scores ``s_j``);
    3. normalise: ``exps = exp(scaled - max(scaled))``, ``weights = exps / sum(exps)``;
    4. aggregate: ``weighted = weights[:, None] * V`` and ``out = weighted.sum(0)``.

    Nothing is taken from :func:`attnkit.attention`, so comparing ``weights`` and
    ``out`` with its row ``i`` is a check of one computation against another.

    Shapes: ``Q (L, E)``, ``K (S, E)``, ``V (S, Ev)``, ``tokens`` of length ``S``.

    Args:
        i: the query row, ``0 <= i < L``.
        Q, K, V: queries, keys and values of one head (the book's example by default).
        tokens: a label per key (and per query, for the square example).

    Returns:
        A :class:`RowSteps` with every intermediate value.

    Raises:
        ValueError: ``i`` is not a row of ``Q``.

    Example:
        >>> s = row_steps(0)
        >>> [float(x) for x in s.raw]  # "The" against the five keys
        [0.0, 2.0, 1.0, 1.0, 1.5]
        >>> round(float(s.weights.sum()), 12), s.out.shape
        (1.0, (4,))
    """
    if not 0 <= i < Q.shape[0]:
        raise ValueError(f"i must be a row of Q (0..{Q.shape[0] - 1}); got {i}")
    scale = 1.0 / math.sqrt(Q.shape[-1])
    raw = K @ Q[i]  # 1 compare: (S, E) x (E,) -> (S,)
    scaled = raw * scale  # 2 scale: (S,)
    exps = np.exp(scaled - scaled.max())  # 3 normalise: shifted exponentials, (S,)
    weights = exps / exps.sum()  # (S,), sums to 1
    weighted = weights[:, None] * V  # 4 aggregate: each value row times its weight, (S, Ev)
    out = weighted.sum(axis=0)  # (Ev,)
    return RowSteps(i=i, token=tokens[i], tokens=tuple(tokens), q=Q[i], K=K, V=V, scale=scale,
                    raw=raw, scaled=scaled, exps=exps, weights=weights,
                    weighted=weighted, out=out)


def stage_rows(s: RowSteps, stage: int) -> tuple[list[list[object]], list[str], str]:
    """Table rows, column labels and a one-line explanation for one stage (0..3)."""
    keys = s.tokens
    if stage == 0:
        rows = [[k, _vec(s.K[j]), " + ".join(f"{_num(a)}·{_num(b)}" for a, b in zip(s.q, s.K[j])),
                 float(s.raw[j])] for j, k in enumerate(keys)]
        return rows, ["key", "k_j", "q·k_j term by term", "score"], (
            f"Compare: the query of “{s.token}”, q = {_vec(s.q)}, is dotted with every key.")
    if stage == 1:
        rows = [[k, float(s.raw[j]), float(s.scaled[j])] for j, k in enumerate(keys)]
        return rows, ["key", "score", f"score × {_num(s.scale)}"], (
            f"Scale: every score is divided by √d_k = {_num(1 / s.scale)}.")
    if stage == 2:
        rows = [[k, float(s.scaled[j]), float(s.exps[j]), float(s.weights[j])]
                for j, k in enumerate(keys)]
        return rows, ["key", "scaled", "exp(scaled − max)", "weight"], (
            f"Normalise: softmax; the exponentials, shifted by the row maximum "
            f"{_num(float(s.scaled.max()))}, sum to {s.exps.sum():.4f} (unshifted: "
            f"{float(np.exp(s.scaled).sum()):.4f}), and each weight is its exponential "
            "divided by that sum." + (" Tied largest weights are all highlighted."
                                      if np.isclose(s.weights, s.weights.max(), rtol=0.0,
                                                    atol=1e-9).sum() > 1 else ""))
    if stage == 3:
        rows = [[k, float(s.weights[j]), *map(float, s.weighted[j])] for j, k in enumerate(keys)]
        rows.append(["output", f"Σw = {s.weights.sum():.4f}", *map(float, s.out)])
        cols = ["key", "weight"] + [f"w·v[{d}]" for d in range(s.V.shape[1])]
        return rows, cols, (
            "Aggregate: the output is the weighted sum of the value rows "
            f"(last row; its weight column shows that the weights sum to one): {_vec(s.out)}.")
    raise ValueError(f"stage must be 0, 1, 2 or 3; got {stage}")


def stage_html(s: RowSteps, stage: int) -> str:
    """One stage for one query as an HTML table with its explanation."""
    rows, cols, text = stage_rows(s, stage)
    # Every key with the row's largest weight: a tie highlights all of them.
    best = np.flatnonzero(np.isclose(s.weights, s.weights.max(), rtol=0.0, atol=1e-9))
    if stage < 3:  # the winning keys' values in the stage's last column
        mark = [(int(b), len(cols) - 2) for b in best]
    else:  # the output row
        mark = [(len(rows) - 1, j) for j in range(1, len(cols) - 1)]
    return f"<p style='margin:0.3em 0'><b>{STAGES[stage]}</b> — {text}</p>" + html_table(
        [r[1:] for r in rows], [str(r[0]) for r in rows], cols[1:], highlight=mark)


def _explain(s: RowSteps, j: int) -> str:
    """How weight ``j`` of the row ``s`` was computed (the text of one tooltip)."""
    terms = " + ".join(f"{_num(a)}·{_num(b)}" for a, b in zip(s.q, s.K[j]))
    sj, m = float(s.scaled[j]), float(s.scaled.max())
    plain = float(np.exp(s.scaled).sum())
    return (
        f"{s.token} → {s.tokens[j]}\n"
        f"q·k = {terms} = {_num(float(s.raw[j]))}\n"
        f"scaled: {_num(float(s.raw[j]))} / √{s.q.shape[0]} = {_num(sj)}\n"
        f"weight = exp({_num(sj)}) / Σ exp(scaled) = {np.exp(sj):.4f} / {plain:.4f}"
        f" = {s.weights[j]:.4f}\n"
        f"(shifted by the row maximum {_num(m)}: {float(s.exps[j]):.4f} / "
        f"{float(s.exps.sum()):.4f}, the same weight)"
    )


def weights_heatmap(Q: np.ndarray = example.Q, K: np.ndarray = example.K,
                    V: np.ndarray = example.V, tokens: tuple[str, ...] = example.tokens) -> str:
    """The full weight matrix as an HTML heatmap whose cells explain themselves on hover, click or tap."""
    rows = [row_steps(i, Q, K, V, tokens) for i in range(Q.shape[0])]  # one pass per query
    w = np.stack([s.weights for s in rows])
    return heatmap_html(
        w, tokens, tokens, fmt=".4f", vmin=0.0, vmax=float(w.max()),
        titles=lambda i, j: _explain(rows[i], j),
        caption="Attention weights: row = query token, column = key token (tap or hover a cell)")


def explorer(Q: np.ndarray = example.Q, K: np.ndarray = example.K, V: np.ndarray = example.V,
             tokens: tuple[str, ...] = example.tokens) -> Any:
    """Pick a token, step through the four stages: works live and on the static page."""
    views = [[stage_html(row_steps(i, Q, K, V, tokens), st) for st in range(4)]
             for i in range(len(tokens))]
    return stepper2d(views, tokens, STAGES, row_description="query token",
                     col_description="stage", col_kind="slider")


@dataclass(frozen=True)
class Interpretation:
    """What the weight matrix says, computed (not read off by eye).

    Attributes:
        favourite: for each query, the keys with the largest weight (ties kept).
        self_attenders: queries that attend most to themselves: no weight of the row is
            larger than the one on their own key (a tie counts, the book's rule).
        entropy: the entropy (nats) of each row; ``log(S)`` is perfectly even.
        most_even: the query whose row has the largest entropy.
        strongest: ``(query, key)`` of the largest weight in the matrix.
    """

    favourite: tuple[tuple[int, ...], ...]
    self_attenders: tuple[int, ...]
    entropy: np.ndarray
    most_even: int
    strongest: tuple[int, int]


def interpret(weights: np.ndarray, atol: float = 1e-9) -> Interpretation:
    """Summarise a square ``(L, L)`` weight matrix: favourites, self-attention, evenness.

    Two weights closer than ``atol`` count as a tie.

    Raises:
        ValueError: ``weights`` is not a square 2-D matrix.

    Example:
        >>> info = interpret(np.array([[0.5, 0.5], [0.9, 0.1]]))
        >>> info.favourite, info.self_attenders
        (((0, 1), (0,)), (0,))
    """
    w = np.asarray(weights, dtype=float)
    if w.ndim != 2 or w.shape[0] != w.shape[1]:
        raise ValueError(f"weights must be a square 2-D matrix; got shape {w.shape}")
    fav = tuple(tuple(int(j) for j in np.flatnonzero(np.isclose(r, r.max(), atol=atol))) for r in w)
    selfs = tuple(i for i, f in enumerate(fav) if i in f)  # ties count
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.sum(np.where(w > 0, w * np.log(w), 0.0), axis=1)
    flat = int(np.argmax(w))
    return Interpretation(fav, selfs, ent, int(np.argmax(ent)), divmod(flat, w.shape[1]))
