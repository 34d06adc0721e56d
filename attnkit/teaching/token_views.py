"""HTML views of one query's attention over a sequence of tokens (static-page friendly).

Used by the book's explorers of trained heads: each view is a strip of tokens
coloured by the weight the chosen query gives them, with the weights on hover.
"""

from __future__ import annotations

import html as _html
from collections.abc import Sequence

import numpy as np

from .html import _CELL_STYLE, _TABLE_STYLE, _viridis

__all__ = ["token_weights_html"]


def token_weights_html(
    tokens: Sequence[str],
    weights: Sequence[float] | np.ndarray,
    query: int,
    *,
    marks: dict[int, str] | None = None,
    caption: str | None = None,
    fmt: str = ".2f",
) -> str:
    """One query's weights over the tokens, as a coloured strip with a row of weights.

    Shapes::

        tokens   (L,) labels          weights  (L,) the query's row of the weight matrix

    Args:
        tokens: one label per position.
        weights: the weight of the query on each position (masked positions may be 0).
        query: the query's position; its token is outlined.
        marks: optional ``{position: note}`` shown under the strip (e.g. "to copy").
        caption: optional HTML-escaped caption above the strip.
        fmt: format of the printed weights.

    Returns:
        A string of HTML.

    Raises:
        ValueError: ``weights`` of another length than ``tokens``, or ``query`` out of range.

    Example:
        >>> "attnkit-tokens" in token_weights_html(["a", "b"], [0.25, 0.75], 1)
        True
    """
    w = np.asarray(weights, dtype=float)
    if w.ndim != 1 or len(w) != len(tokens):
        raise ValueError(f"weights must have shape ({len(tokens)},); got {w.shape}")
    if not 0 <= int(query) < len(tokens):
        raise ValueError(f"query must be a position in [0, {len(tokens)}); got {query!r}")
    marks = marks or {}
    out = [f'<table class="attnkit-tokens" style="{_TABLE_STYLE}">']
    if caption:
        out.append(f'<caption style="caption-side:top;text-align:left">{_html.escape(caption)}</caption>')
    for label, row in (("position", [str(i) for i in range(len(tokens))]),
                       ("token", [str(t) for t in tokens])):
        out.append(f'<tr><th style="{_CELL_STYLE}">{label}</th>')
        for i, s in enumerate(row):
            extra = ";outline:3px solid #D55E00" if (label == "token" and i == query) else ""
            out.append(f'<td style="{_CELL_STYLE}{extra}">{_html.escape(s)}</td>')
        out.append("</tr>")
    out.append(f'<tr><th style="{_CELL_STYLE}">weight</th>')
    for i, x in enumerate(w):
        r, g, b = _viridis(x)
        ink = "#000000" if (0.299 * r + 0.587 * g + 0.114 * b) > 140 else "#ffffff"
        tip = _html.escape(f"query {query} ({tokens[query]}) -> key {i} ({tokens[i]}): weight {x:.4f}",
                           quote=True)
        out.append(f'<td title="{tip}" style="{_CELL_STYLE};background:rgb({r},{g},{b});color:{ink}">'
                   f"{format(x, fmt)}</td>")
    out.append("</tr>")
    if marks:
        out.append(f'<tr><th style="{_CELL_STYLE}">note</th>')
        for i in range(len(tokens)):
            out.append(f'<td style="{_CELL_STYLE};font-size:0.8em">{_html.escape(marks.get(i, ""))}</td>')
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)
