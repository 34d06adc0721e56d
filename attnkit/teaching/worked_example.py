"""The worked example of chapter 4: the four steps of attention for one query, as data and HTML.

The weights and outputs come from :func:`attnkit.attention`; the raw and scaled
scores are the first two steps written out, and :func:`row_steps` checks that they
lead to the library's weights, so every number the chapter shows is the library's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from .. import example
from ..core.attention import attention
from ..core.masks import softmax
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
    """The four steps for query row ``i`` of ``Q (L, E)`` against ``K (S, E)``, ``V (S, Ev)``.

    Raises:
        ValueError: ``i`` is not a row of ``Q``.
    """
    if not 0 <= i < Q.shape[0]:
        raise ValueError(f"i must be a row of Q (0..{Q.shape[0] - 1}); got {i}")
    out, weights = attention(Q, K, V, return_weights=True)
    scale = 1.0 / math.sqrt(Q.shape[-1])
    raw = Q[i] @ K.T
    scaled = raw * scale
    if not np.allclose(softmax(scaled), weights[i], atol=1e-12):  # pragma: no cover
        raise AssertionError("the written-out steps disagree with attnkit.attention")
    exps = np.exp(scaled - scaled.max())
    return RowSteps(i=i, token=tokens[i], tokens=tuple(tokens), q=Q[i], K=K, V=V, scale=scale,
                    raw=raw, scaled=scaled, exps=exps, weights=weights[i],
                    weighted=weights[i][:, None] * V, out=out[i])


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
        rows.append(["output", float(s.weights.sum()), *map(float, s.out)])
        cols = ["key", "weight"] + [f"w·v[{d}]" for d in range(s.V.shape[1])]
        return rows, cols, (
            "Aggregate: the output is the weighted sum of the value rows "
            f"(last row): {_vec(s.out)}.")
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
        self_attenders: queries whose largest weight is on themselves.
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
    """Summarise a square ``(L, L)`` weight matrix: favourites, self-attention, evenness."""
    w = np.asarray(weights, dtype=float)
    if w.ndim != 2 or w.shape[0] != w.shape[1]:
        raise ValueError(f"weights must be a square 2-D matrix; got shape {w.shape}")
    fav = tuple(tuple(int(j) for j in np.flatnonzero(np.isclose(r, r.max(), atol=atol))) for r in w)
    selfs = tuple(i for i, f in enumerate(fav) if f == (i,))
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.sum(np.where(w > 0, w * np.log(w), 0.0), axis=1)
    flat = int(np.argmax(w))
    return Interpretation(fav, selfs, ent, int(np.argmax(ent)), divmod(flat, w.shape[1]))
