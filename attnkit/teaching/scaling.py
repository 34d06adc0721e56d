"""Experiments behind "why scale by sqrt(d_k)": score statistics, saturation, explorer.

Everything here is seeded and pure NumPy (no torch, no GPU), so that the chapter's
numbers are the same on every machine.

Shape legend (S keys, the book's symbols)::

    p        (..., S)           a probability vector (one softmax row) per leading index
    jac      (..., S, S)        its softmax Jacobian dp/ds = diag(p) - p p^T
    r        (n_samples,)       raw scores r = q . k of independent pairs (q, k)
    r, s     (n_draws, S)       one row of raw scores r_j = q . k_j, and of the scores s_j
                                that enter the softmax (r_j / sqrt(d_k) when scaled), per draw

Contents:

* :func:`softmax_jacobian`, :func:`entropy` - two facts about one softmax row (the
  entropy is the book's script H, -sum_j p_j log p_j).
* :func:`dot_product_samples`, :class:`DotProductStats`, :func:`dot_product_stats`,
  :func:`monte_carlo_dot_products`
  - Monte Carlo estimates of the mean and variance of ``q . k`` with their
  standard errors.
* :class:`SaturationStats`, :func:`saturation_stats` - how peaked softmax rows of
  random scores are, and how small their Jacobian is, with or without scaling.
* :func:`random_score_row`, :func:`weight_bars_html`, :func:`scaling_explorer_views`,
  :func:`scaling_explorer` - the chapter's explorer (works on the static site).
"""

from __future__ import annotations

import html as _html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core._validate import positive_int, real
from ..core.masks import softmax

__all__ = [
    "DotProductStats",
    "SaturationStats",
    "dot_product_samples",
    "dot_product_stats",
    "entropy",
    "monte_carlo_dot_products",
    "random_score_row",
    "saturation_stats",
    "scaling_explorer",
    "scaling_explorer_views",
    "softmax_jacobian",
    "weight_bars_html",
]

#: Samples are drawn in blocks of at most this many numbers per matrix (memory bound).
_BLOCK_NUMBERS = 1 << 20


def softmax_jacobian(p: Any) -> np.ndarray:
    """The Jacobian of softmax at a point, from its output: ``diag(p) - p p^T``.

    If ``p = softmax(s)`` then ``dp_j / ds_j' = p_j (delta_jj' - p_j')``. The matrix is
    symmetric, its rows sum to zero, and it tends to zero as ``p`` tends to a
    one-hot vector (the saturation that scaling prevents).

    The diagonal ``p_j (1 - p_j)`` is computed as ``p_j * sum_{j' != j} p_j'``: for a
    nearly one-hot row float64 rounds the top weight to exactly 1 (``1 - 3e-17`` is
    not representable), so ``1 - p_j`` would be 0 where the sum of the other weights
    still holds the true, tiny value.

    Shapes: ``p (..., S)`` -> ``jac (..., S, S)``.

    Args:
        p: probability vectors along the last axis (any leading batch axes).

    Returns:
        ``np.ndarray`` of float64 with shape ``p.shape + (S,)``.

    Raises:
        ValueError: ``p`` is a scalar (it needs at least one axis).

    Example:
        >>> softmax_jacobian([0.5, 0.5])
        array([[ 0.25, -0.25],
               [-0.25,  0.25]])
        >>> p = np.array([1.0, 3e-17])  # a one-hot row as float64 stores it
        >>> float(softmax_jacobian(p)[0, 0])  # p_0 (1 - p_0) with 1 - p_0 = 3e-17
        3e-17
    """
    p = np.asarray(p, dtype=np.float64)
    if p.ndim == 0:
        raise ValueError("p must have at least one axis (the S probabilities); got a scalar")
    eye = np.eye(p.shape[-1], dtype=bool)
    # sum of the other weights of the row, for each j: (..., S, S) -> (..., S)
    others = np.where(eye, 0.0, p[..., None, :]).sum(axis=-1)
    return np.where(eye, (p * others)[..., :, None], -p[..., :, None] * p[..., None, :])


def entropy(p: Any, axis: int = -1) -> np.ndarray:
    """Shannon entropy ``-sum_j p_j log p_j`` in nats, with ``0 log 0 = 0``.

    The book writes it with a script H (plain H is the number of heads). It is ``0``
    for a one-hot row and ``log S`` for the uniform row over ``S`` keys;
    ``exp(entropy)`` reads as "the number of keys the row effectively spreads over".

    Shapes: ``p (..., S, ...)`` -> the same shape without ``axis``.

    Args:
        p: probabilities (non-negative, summing to one along ``axis``).
        axis: the axis of the distribution.

    Returns:
        ``np.ndarray`` of float64 (a 0-d array for a single row).

    Raises:
        ValueError: ``p`` has a negative entry.

    Example:
        >>> round(float(entropy([0.25, 0.25, 0.25, 0.25])), 4)  # log 4
        1.3863
    """
    p = np.asarray(p, dtype=np.float64)
    if np.any(p < 0):
        raise ValueError("p must be non-negative (probabilities); got a negative entry")
    safe = np.where(p > 0, p, 1.0)
    return -np.sum(np.where(p > 0, p * np.log(safe), 0.0), axis=axis)


@dataclass(frozen=True)
class DotProductStats:
    """Monte Carlo estimates for the raw score ``r = q . k`` at one width ``d_k``.

    Attributes:
        d_k: the width of ``q`` and ``k``.
        n_samples: the number of independent pairs ``(q, k)`` drawn.
        sigma: the standard deviation of every component.
        mean: the sample mean of ``r`` (theory: 0).
        var: the sample variance of ``r``, ``ddof=1`` (theory: ``d_k sigma^4``).
        se_mean: standard error of ``mean``: ``sqrt(var / n_samples)``.
        se_var: standard error of ``var``: ``sqrt((m4 - var^2) / n_samples)`` with
            ``m4`` the sample fourth central moment.
        scaled_var: the sample variance of ``r / (sigma^2 sqrt(d_k))`` (theory: 1).
        se_scaled_var: standard error of ``scaled_var``.
    """

    d_k: int
    n_samples: int
    sigma: float
    mean: float
    var: float
    se_mean: float
    se_var: float
    scaled_var: float
    se_scaled_var: float

    @property
    def expected_var(self) -> float:
        """The theoretical variance ``d_k sigma^4``."""
        return self.d_k * self.sigma**4

    @property
    def z_mean(self) -> float:
        """How many standard errors ``mean`` lies from 0."""
        return self.mean / self.se_mean

    @property
    def z_var(self) -> float:
        """How many standard errors ``var`` lies from ``d_k sigma^4``."""
        return (self.var - self.expected_var) / self.se_var


def dot_product_samples(
    d_k: int,
    n_samples: int,
    *,
    sigma: float = 1.0,
    rng: np.random.Generator | int = 0,
) -> np.ndarray:
    """Independent samples of ``q . k`` for ``q, k`` with i.i.d. ``N(0, sigma^2)`` components.

    Shapes: returns ``r (n_samples,)``; ``q`` and ``k`` are ``(d_k,)`` per sample.

    Args:
        d_k: the width of the vectors.
        n_samples: how many independent pairs to draw.
        sigma: the standard deviation of each component.
        rng: a NumPy ``Generator`` (consumed) or an integer seed.

    Returns:
        ``np.ndarray`` of float64.

    Raises:
        ValueError: a non-positive ``d_k`` or ``n_samples``, or ``sigma <= 0``.

    Example:
        >>> dot_product_samples(4, 3, rng=0).shape
        (3,)
    """
    d_k = positive_int("d_k", d_k)
    n_samples = positive_int("n_samples", n_samples)
    sigma = real("sigma", sigma, positive=True)
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    return _dot_samples(d_k, n_samples, sigma, gen)


def _dot_samples(d_k: int, n_samples: int, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Raw scores ``r = q . k`` of ``n_samples`` independent pairs, drawn in blocks."""
    out = np.empty(n_samples)  # r, (n_samples,)
    block = max(1, _BLOCK_NUMBERS // d_k)
    for start in range(0, n_samples, block):
        stop = min(n_samples, start + block)
        q = sigma * rng.standard_normal((stop - start, d_k))  # (b, d_k)
        k = sigma * rng.standard_normal((stop - start, d_k))  # (b, d_k)
        out[start:stop] = np.einsum("bd,bd->b", q, k)  # (b,)
    return out


def dot_product_stats(
    d_k: int,
    n_samples: int = 20_000,
    *,
    sigma: float = 1.0,
    rng: np.random.Generator | int = 0,
) -> DotProductStats:
    """Draw raw scores ``r = q . k`` and estimate their mean and variance, with standard errors.

    Every component of ``q`` and ``k`` in ``R^{d_k}`` is drawn independently from
    ``N(0, sigma^2)``; the function draws the ``n_samples`` pairs itself (in blocks,
    so that memory stays bounded) and turns them into the estimates.

    Args:
        d_k: the width of the vectors.
        n_samples: the number of independent pairs.
        sigma: the standard deviation of each component.
        rng: a NumPy ``Generator`` (consumed) or an integer seed.

    Returns:
        A :class:`DotProductStats`.

    Raises:
        ValueError: a non-positive ``d_k``, ``n_samples < 2`` or ``sigma <= 0``.

    Example:
        >>> st = dot_product_stats(64, 20_000, rng=0)
        >>> abs(st.var - 64) < 4 * st.se_var
        True
    """
    d_k = positive_int("d_k", d_k)
    n_samples = positive_int("n_samples", n_samples)
    if n_samples < 2:
        raise ValueError(f"n_samples must be at least 2 to estimate a variance; got {n_samples}")
    sigma = real("sigma", sigma, positive=True)
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    r = _dot_samples(d_k, n_samples, sigma, gen)  # raw scores, (n_samples,)
    mean = float(r.mean())
    var = float(r.var(ddof=1))
    m4 = float(np.mean((r - mean) ** 4))
    se_var = math.sqrt(max(m4 - var**2, 0.0) / n_samples)
    divisor = sigma**2 * math.sqrt(d_k)
    return DotProductStats(
        d_k=d_k,
        n_samples=n_samples,
        sigma=sigma,
        mean=mean,
        var=var,
        se_mean=math.sqrt(var / n_samples),
        se_var=se_var,
        scaled_var=var / divisor**2,
        se_scaled_var=se_var / divisor**2,
    )


def monte_carlo_dot_products(
    dims: Sequence[int],
    n_samples: int = 20_000,
    *,
    sigma: float = 1.0,
    seed: int = 0,
) -> list[DotProductStats]:
    """:func:`dot_product_stats` for every width in ``dims``, from one seeded generator.

    Args:
        dims: the widths ``d_k`` to try, e.g. ``[1, 2, 4, ..., 1024]``.
        n_samples: pairs per width.
        sigma: the standard deviation of each component.
        seed: the seed of the one generator used for all widths, in order.

    Returns:
        A list of :class:`DotProductStats`, one per entry of ``dims``.

    Example:
        >>> [s.d_k for s in monte_carlo_dot_products([1, 2], 100)]
        [1, 2]
    """
    rng = np.random.default_rng(seed)
    return [dot_product_stats(d, n_samples, sigma=sigma, rng=rng) for d in dims]


def random_score_row(
    d_k: int, n_keys: int = 8, *, scaled: bool = True, seed: int = 0
) -> np.ndarray:
    """Scores ``q . k_j`` of one random query against ``n_keys`` random keys.

    With ``scaled=True`` the scores are divided by ``sqrt(d_k)``.

    ``q`` and the keys have independent ``N(0, 1)`` components. The draw depends
    only on ``(seed, d_k)``, so the scaled and unscaled rows of one ``d_k`` come
    from the same vectors and differ only by the factor ``1 / sqrt(d_k)``.

    Shapes: returns ``(n_keys,)``, one score per key (``S = n_keys``).

    Example:
        >>> a = random_score_row(16, 4, scaled=False)
        >>> bool(np.allclose(random_score_row(16, 4), a / 4))
        True
    """
    d_k = positive_int("d_k", d_k)
    n_keys = positive_int("n_keys", n_keys)
    rng = np.random.default_rng([seed, d_k])
    q = rng.standard_normal(d_k)  # (d_k,)
    keys = rng.standard_normal((n_keys, d_k))  # (n_keys, d_k)
    scores = keys @ q  # (n_keys, d_k) x (d_k,) -> (n_keys,)
    return scores / math.sqrt(d_k) if scaled else scores


@dataclass(frozen=True)
class SaturationStats:
    """Averages over random softmax rows at one width ``d_k``.

    Attributes:
        d_k: the width of queries and keys.
        scaled: whether scores were divided by ``sqrt(d_k)``.
        jacobian_norm: mean Frobenius norm of ``diag(p) - p p^T``.
        median_jacobian_norm: its median (the typical row; the mean of saturated
            rows is dominated by the few rows that are not saturated).
        entropy: mean entropy of the rows (nats).
        max_weight: mean of the largest weight in a row.
    """

    d_k: int
    scaled: bool
    jacobian_norm: float
    median_jacobian_norm: float
    entropy: float
    max_weight: float


def saturation_stats(
    d_k: int,
    *,
    scaled: bool,
    n_keys: int = 16,
    n_draws: int = 500,
    seed: int = 0,
) -> SaturationStats:
    """How saturated softmax rows of random scores are at width ``d_k``.

    Each draw takes one query and ``n_keys`` keys with independent ``N(0, 1)``
    components, forms the scores (divided by ``sqrt(d_k)`` when ``scaled``), and
    measures the softmax row. The draws depend only on ``(seed, d_k)``, so
    ``scaled=True`` and ``scaled=False`` see the same vectors.

    Args:
        d_k: the width of queries and keys.
        scaled: divide the scores by ``sqrt(d_k)``.
        n_keys: keys per row.
        n_draws: independent rows to average over.
        seed: seed of the draws.

    Returns:
        A :class:`SaturationStats`.

    Example:
        >>> hot = saturation_stats(1024, scaled=False, n_draws=50)
        >>> cool = saturation_stats(1024, scaled=True, n_draws=50)
        >>> hot.jacobian_norm < cool.jacobian_norm
        True
    """
    d_k = positive_int("d_k", d_k)
    n_keys = positive_int("n_keys", n_keys)
    n_draws = positive_int("n_draws", n_draws)
    rng = np.random.default_rng([seed, d_k])
    q = rng.standard_normal((n_draws, 1, d_k))  # (n_draws, 1, d_k)
    keys = rng.standard_normal((n_draws, n_keys, d_k))  # (n_draws, S, d_k)
    # raw scores r_j = q . k_j: (n_draws, 1, d_k) x (n_draws, S, d_k) -> (n_draws, S)
    r = np.einsum("dqe,dse->ds", q, keys)
    s = r / math.sqrt(d_k) if scaled else r  # the scores that enter the softmax
    p = softmax(s, axis=-1)  # (n_draws, S)
    # Frobenius norm of each row's Jacobian: (n_draws, S, S) -> (n_draws,)
    jac_norms = np.linalg.norm(softmax_jacobian(p), axis=(-2, -1))
    return SaturationStats(
        d_k=d_k,
        scaled=bool(scaled),
        jacobian_norm=float(jac_norms.mean()),
        median_jacobian_norm=float(np.median(jac_norms)),
        entropy=float(entropy(p).mean()),
        max_weight=float(p.max(axis=-1).mean()),
    )


_BAR_COLOUR = "#0072B2"  # Okabe-Ito blue


def weight_bars_html(
    weights: Any,
    labels: Sequence[str],
    *,
    scores: Any = None,
    caption: str | None = None,
    width_em: float = 18.0,
) -> str:
    """A horizontal bar chart of one row of attention weights, as plain HTML.

    Plain HTML renders the same in Jupyter and on a static page (no kernel, no
    JavaScript). The chart has an opaque white background, one bar per key, the
    weight printed to 4 d.p. beside each bar and, when given, the score.

    Args:
        weights: ``(n,)`` weights in ``[0, 1]``.
        labels: ``n`` key labels.
        scores: optional ``(n,)`` scores shown in a column.
        caption: optional HTML-escaped caption above the chart.
        width_em: the width of a bar of weight 1, in ``em``.

    Returns:
        A string of HTML.

    Raises:
        ValueError: ``weights``, ``labels`` and ``scores`` disagree in length.

    Example:
        >>> "0.2500" in weight_bars_html([0.25, 0.75], ["a", "b"])
        True
    """
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if len(labels) != w.size:
        raise ValueError(f"labels must have one entry per weight; got {len(labels)} for {w.size}")
    s = None if scores is None else np.asarray(scores, dtype=np.float64).reshape(-1)
    if s is not None and s.size != w.size:
        raise ValueError(f"scores must have one entry per weight; got {s.size} for {w.size}")
    cell = "padding:2px 6px;border-bottom:1px solid #eeeeee;text-align:right"
    out = [
        '<table class="attnkit-bars" style="border-collapse:collapse;background:#ffffff;'
        'color:#111111;font-family:monospace;font-size:0.9em;margin:0.4em 0">'
    ]
    if caption:
        out.append('<caption style="caption-side:top;text-align:left;padding-bottom:4px;'
                   f'color:#111111;background:#ffffff">{_html.escape(caption)}</caption>')
    head = ["key"] + (["score"] if s is not None else []) + ["weight", ""]
    out.append("<tr>" + "".join(f'<th style="{cell}">{h}</th>' for h in head) + "</tr>")
    for i, label in enumerate(labels):
        bar = (
            f'<div style="width:{width_em}em;background:#f2f2f2;height:1em">'
            f'<div style="width:{100 * min(max(w[i], 0.0), 1.0):.2f}%;background:{_BAR_COLOUR};'
            f'height:1em"></div></div>'
        )
        row = [f'<th style="{cell}">{_html.escape(str(label))}</th>']
        if s is not None:
            row.append(f'<td style="{cell}">{s[i]:.4f}</td>')
        row += [
            f'<td style="{cell}">{w[i]:.4f}</td>',
            f'<td style="{cell};text-align:left">{bar}</td>',
        ]
        out.append("<tr>" + "".join(row) + "</tr>")
    out.append("</table>")
    return "".join(out)


def scaling_explorer_views(
    dims: Sequence[int],
    *,
    n_keys: int = 8,
    seed: int = 0,
) -> tuple[list[list[str]], list[str], list[str]]:
    """Precomputed views for the scaling explorer, ``views[i][j]``.

    ``i`` picks the scaling and ``j`` the width ``d_k = dims[j]``.

    Row 0 divides the scores by ``sqrt(d_k)``, row 1 does not. Each view is a bar
    chart of the softmax row of :func:`random_score_row` with a summary line: the
    entropy (in nats; the book's script H), ``exp`` of the entropy (the effective
    number of keys) and the largest weight.

    Returns:
        ``(views, row_labels, col_labels)``, ready for
        :func:`attnkit.teaching.stepper2d`.

    Example:
        >>> views, rows, cols = scaling_explorer_views([1, 64], n_keys=4)
        >>> len(views), len(views[0]), cols
        (2, 2, ['1', '64'])
    """
    if not dims:
        raise ValueError("dims must name at least one width d_k; got an empty sequence")
    n_keys = positive_int("n_keys", n_keys)
    labels = [f"k{j + 1}" for j in range(n_keys)]
    views: list[list[str]] = []
    for scaled in (True, False):
        row = []
        for d in dims:
            d = positive_int("d_k", d)
            scores = random_score_row(d, n_keys, scaled=scaled, seed=seed)
            p = softmax(scores)
            h = float(entropy(p))
            rule = "scores not scaled"
            if scaled:
                rule = f"scores divided by sqrt({d}) = {math.sqrt(d):.4f}"
            summary = (
                f'<div style="background:#ffffff;color:#111111;font-family:sans-serif;'
                f'padding:2px 0"><b>d_k = {d}</b>, {rule}. '
                f"Entropy {h:.4f} nats (uniform: log {n_keys} = {math.log(n_keys):.4f}); "
                f"effective number of keys exp(entropy) = {math.exp(h):.2f} of {n_keys}; "
                f"largest weight {p.max():.4f}; score spread (std) {scores.std():.4f}.</div>"
            )
            row.append(summary + weight_bars_html(p, labels, scores=scores))
        views.append(row)
    return views, ["scaled by 1/sqrt(d_k)", "unscaled"], [str(d) for d in dims]


def scaling_explorer(dims: Sequence[int], *, n_keys: int = 8, seed: int = 0) -> Any:
    """The chapter's explorer: pick ``d_k``, toggle scaling, see the weights and entropy.

    All views are precomputed by :func:`scaling_explorer_views` and switched in the
    browser (``widgets.jslink``), so the explorer also works on the static website.

    Returns:
        An ``ipywidgets.VBox`` (CSS classes ``attnkit-explorer`` and
        ``attnkit-scaling-explorer``); display it as a cell's last expression.

    Example:
        >>> box = scaling_explorer([1, 16, 256])  # doctest: +SKIP
    """
    from .explorers import stepper2d

    views, rows, cols = scaling_explorer_views(dims, n_keys=n_keys, seed=seed)
    box = stepper2d(
        views,
        rows,
        cols,
        row_description="Scores:",
        col_description="d_k:",
        title=(
            "<b>Scaling explorer.</b> One random query against "
            f"{n_keys} random keys (components N(0, 1)); pick the width d_k and "
            "whether the scores are divided by sqrt(d_k)."
        ),
    )
    box.add_class("attnkit-scaling-explorer")  # a hook for the page's browser test
    return box
