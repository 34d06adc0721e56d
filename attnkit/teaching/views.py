"""Views that chapters share: masked weights, KV-cache decoding, the table of engines.

Each builder returns HTML strings, one per view, for :func:`attnkit.teaching.stepper`
(which switches between them client-side, so they work on the static website).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..core.attention import attention
from ..core.masks import softmax
from .html import heatmap_html, html_table

__all__ = ["engine_table", "kv_cache_step_views", "masked_weights_view"]


def masked_weights_view(q: np.ndarray, k: np.ndarray, v: np.ndarray, allowed: np.ndarray,
                        row_labels: Sequence[str], col_labels: Sequence[str], title: str) -> str:
    """One view: the weight matrix under a boolean mask, as a heatmap whose cells explain themselves.

    Shapes: ``q (L, E)``, ``k (S, E)``, ``v (S, Ev)``, ``allowed (L, S)`` (True = visible).

    Args:
        q, k, v: one head's queries, keys and values.
        allowed: the mask.
        row_labels, col_labels: query and key labels.
        title: the caption.

    Returns:
        The view's HTML (hover a cell for its scaled score, mask state and weight).
    """
    scaled = q @ k.T / np.sqrt(q.shape[-1])
    _, w = attention(q, k, v, mask=allowed, return_weights=True)

    def tip(r: int, c: int) -> str:
        state = "visible" if allowed[r, c] else "masked: score + (−∞)"
        return (f"query {row_labels[r]} → key {col_labels[c]}\n"
                f"scaled score {scaled[r, c]:.4f} ({state})\n"
                f"weight {w[r, c]:.4f}")

    return heatmap_html(w, row_labels, col_labels, titles=tip, vmax=1.0, caption=title)


def kv_cache_step_views(q: np.ndarray, k: np.ndarray, v: np.ndarray,
                        tokens: Sequence[str]) -> list[str]:
    """One view per decoding step with a KV cache: the new token's query against the cache.

    Shapes: ``q (n, E)``, ``k (n, E)``, ``v (n, Ev)``; step ``t`` attends from token ``t``
    to the cached tokens ``0..t`` (bottom-right causal), and checks the output against
    row ``t`` of full causal attention.

    Returns:
        ``n`` HTML views.
    """
    n = len(tokens)
    full_causal = attention(q, k, v, causal=True)
    views = []
    for t in range(n):
        scores = q[t] @ k[:t + 1].T / math.sqrt(q.shape[-1])
        w = softmax(scores)
        rows = [[tokens[j], ", ".join(f"{x:g}" for x in k[j]), ", ".join(f"{x:g}" for x in v[j]),
                 f"{scores[j]:.4f}", f"{w[j]:.4f}"] for j in range(t + 1)]
        table = html_table(rows, col_labels=["cached token", "key k_j", "value v_j",
                                             f"q·k_j / {math.sqrt(q.shape[-1]):g}", "weight"],
                           highlight=[(t, c) for c in range(5)])
        macs_cached = (t + 1) * (q.shape[-1] + v.shape[-1])
        macs_full = (t + 1) ** 2 * (q.shape[-1] + v.shape[-1])
        out = attention(q[t:t + 1], k[:t + 1], v[:t + 1], causal="bottom-right")[0]
        views.append(
            f"<p style='margin:0.3em 0'><b>Step {t + 1} of {n}</b>: the new token is "
            f"“{tokens[t]}”, query q = [{', '.join(f'{x:g}' for x in q[t])}]. Its key and value "
            f"join the cache (highlighted row); the cache now holds {t + 1} position(s).</p>"
            + table
            + f"<p style='margin:0.3em 0'>Output for “{tokens[t]}”: "
            f"[{', '.join(f'{x:.4f}' for x in out)}], equal to row {t} of full causal attention: "
            f"{'yes' if np.allclose(out, full_causal[t], atol=1e-12) else 'no'}.<br>"
            f"Work this step: {t + 1} score(s), {macs_cached} multiply-adds; recomputing all "
            f"{t + 1} token(s) without a cache: {(t + 1) ** 2} scores, {macs_full} multiply-adds.</p>"
        )
    return views


def engine_table(caption: str = "The engines and what each declares") -> str:
    """An HTML table of every registered engine's declared capabilities.

    Built from each engine's :class:`~attnkit.engines.Capabilities`, so that a new
    engine appears in the book's table without editing it.

    Example:
        >>> "flash" in engine_table()
        True
    """
    from ..engines import ENGINES, FEATURES, capabilities

    rows = []
    for name in ENGINES:
        try:
            c = capabilities(name)
        except ImportError as exc:  # e.g. Triton not installed
            rows.append([name, f"not importable here ({exc.name})", "", "", "", "", "", ""])
            continue
        masks = " + ".join(c.masks) + (" (key masks only)" if c.mask_rows == "key" else "")
        rows.append([name, c.notes, ", ".join(c.dtypes), masks,
                     "yes" if c.weights else "no", "yes" if c.gradients else "no",
                     ", ".join(c.devices),
                     ", ".join(f for f in FEATURES if c.supports(f)) or "none"])
    return html_table(rows, None, ["engine", "what it is", "dtypes", "masks", "weights",
                                   "gradients", "devices", "variants"], caption=caption)
