"""Plain-HTML tables and heatmaps: they render the same in Jupyter and on a static page.

A heatmap cell explains its own computation on a details line under the table when
it is hovered, clicked, tapped or reached with the Tab key. The value is printed in
each cell, so colour is never the only carrier of a number; the colours are viridis
(distinct for the common colour-vision deficiencies and in greyscale), and the ink of
each cell is black or white, whichever contrasts more (4.5:1 at least). That needs no JavaScript
and no kernel: each cell can take focus (``tabindex``), and a small style sheet that
travels with the table shows the focused cell's explanation. (A ``title`` tooltip
would do nothing on a touch screen.)
"""

from __future__ import annotations

import html as _html
from collections.abc import Callable, Sequence

import numpy as np

#: A colour-blind-safe sequential colormap (matplotlib's viridis), sampled at 9 stops.
_VIRIDIS = [
    (68, 1, 84), (71, 44, 122), (59, 81, 139), (44, 113, 142), (33, 144, 141),
    (39, 173, 129), (92, 200, 99), (170, 220, 50), (253, 231, 37),
]


def _viridis(t: float) -> tuple[int, int, int]:
    t = min(max(float(t), 0.0), 1.0) * (len(_VIRIDIS) - 1)
    i = min(int(t), len(_VIRIDIS) - 2)
    f = t - i
    a, b = _VIRIDIS[i], _VIRIDIS[i + 1]
    return tuple(round(a[c] + f * (b[c] - a[c])) for c in range(3))  # type: ignore[return-value]


def _luminance(rgb: tuple[int, int, int]) -> float:
    """WCAG 2 relative luminance of an sRGB colour (0-255 channels)."""
    def channel(c: int) -> float:
        v = c / 255
        return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    """WCAG 2 contrast ratio of two sRGB colours, from 1 (none) to 21 (black on white).

    Example:
        >>> round(contrast((0, 0, 0), (255, 255, 255)), 1)
        21.0
    """
    hi, lo = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def ink(background: tuple[int, int, int]) -> str:
    """Black or white, whichever has more contrast on ``background`` (at least 4.5:1 on viridis).

    Example:
        >>> ink((253, 231, 37)), ink((68, 1, 84))
        ('#000000', '#ffffff')
    """
    black = contrast(background, (0, 0, 0))
    white = contrast(background, (255, 255, 255))
    return "#000000" if black >= white else "#ffffff"


def _fmt(x: object, fmt: str) -> str:
    if isinstance(x, (float, np.floating)):
        return format(float(x), fmt)
    return _html.escape(str(x))


_TABLE_STYLE = (
    "border-collapse:collapse;font-family:monospace;font-size:0.9em;"
    "background:#ffffff;color:#111111;margin:0.5em 0"
)
_CELL_STYLE = "border:1px solid #bbbbbb;padding:3px 8px;text-align:right"
#: Captions keep dark ink on white in the site's dark mode too (a caption sits
#: outside the table's own white box).
_CAPTION_STYLE = "caption-side:top;text-align:left;color:#111111;background:#ffffff;padding:2px 0"

#: The style sheet of a heatmap's details line (scoped by class; emitted with each
#: heatmap so that it works in Jupyter, in a widget and on the static page).
_HEATMAP_CSS = (
    "<style>"
    ".attnkit-heatmap-box{position:relative;display:inline-block;max-width:100%;"
    "padding-bottom:8.6em;background:#ffffff;color:#111111}"
    ".attnkit-heatmap-box td.attnkit-cell{cursor:pointer}"
    ".attnkit-heatmap-box td.attnkit-cell:hover,.attnkit-heatmap-box td.attnkit-cell:focus"
    "{outline:3px solid #D55E00;outline-offset:-3px}"
    ".attnkit-heatmap-box table.attnkit-heatmap{position:relative}"
    ".attnkit-heatmap-box .attnkit-detail{display:none;position:absolute;left:0;right:0;"
    "top:calc(100% + 0.5em);height:7.8em;overflow:auto;white-space:pre-line;font-family:monospace;"
    "font-size:0.85em;line-height:1.25;text-align:left;background:#fff7e0;color:#111111;"
    "border-left:3px solid #D55E00;padding:2px 6px;box-sizing:border-box}"
    ".attnkit-heatmap-box .attnkit-hint{position:absolute;left:0;bottom:0.4em;font-size:0.85em;"
    "color:#333333;padding:2px 0}"
    ".attnkit-heatmap-box td.attnkit-cell:focus .attnkit-detail{display:block;z-index:2}"
    ".attnkit-heatmap-box td.attnkit-cell:hover .attnkit-detail{display:block;z-index:3}"
    "</style>"
)


def html_table(
    data: Sequence[Sequence[object]] | np.ndarray,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    *,
    fmt: str = ".4f",
    caption: str | None = None,
    highlight: Sequence[tuple[int, int]] = (),
) -> str:
    """An HTML table of ``data`` (rows x columns), floats formatted with ``fmt``.

    Args:
        data: a 2-D array or nested sequence.
        row_labels, col_labels: optional header labels.
        fmt: format spec for floats (default 4 decimal places).
        caption: optional caption above the table.
        highlight: ``(row, col)`` cells drawn in bold on a light yellow background.

    Returns:
        A string of HTML; display it with ``IPython.display.HTML``.
    """
    rows = [list(r) for r in data]
    marked = set(highlight)
    out = [f'<table class="attnkit-table" style="{_TABLE_STYLE}">']
    if caption:
        out.append(f'<caption style="{_CAPTION_STYLE}">{_html.escape(caption)}</caption>')
    if col_labels is not None:
        # The corner above the row labels is an empty data cell, not an empty header.
        out.append("<tr>" + ("<td></td>" if row_labels is not None else ""))
        out += [f'<th scope="col" style="{_CELL_STYLE}">{_html.escape(str(c))}</th>' for c in col_labels]
        out.append("</tr>")
    for i, r in enumerate(rows):
        out.append("<tr>")
        if row_labels is not None:
            out.append(f'<th scope="row" style="{_CELL_STYLE}">{_html.escape(str(row_labels[i]))}</th>')
        for j, x in enumerate(r):
            extra = ";font-weight:bold;background:#fff3b0" if (i, j) in marked else ""
            out.append(f'<td style="{_CELL_STYLE}{extra}">{_fmt(x, fmt)}</td>')
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


def heatmap_html(
    values: np.ndarray,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    *,
    titles: Callable[[int, int], str] | None = None,
    fmt: str = ".3f",
    vmin: float = 0.0,
    vmax: float | None = None,
    caption: str | None = None,
    row_axis: str = "query",
    col_axis: str = "key",
) -> str:
    """A heatmap as an HTML table whose cells explain themselves on a details line.

    Hovering, clicking, tapping or tabbing to a cell shows ``titles(i, j)`` on a line
    under the table; the cell gets a visible outline.

    Args:
        values: 2-D array, shape ``(rows, cols)``.
        row_labels, col_labels: tick labels.
        titles: ``titles(i, j)`` returns the explanation of cell ``(i, j)``
            (newlines allowed). Without it the cells carry no explanation.
        fmt: format of the number printed in each cell.
        vmin, vmax: colour range (default ``vmax = values.max()``).
        caption: optional caption.
        row_axis, col_axis: axis names shown in the corner cell.

    Returns:
        A string of HTML, coloured with the colour-blind-safe viridis map.

    Raises:
        ValueError: if ``values`` is not 2-D.

    Example:
        >>> html = heatmap_html(np.eye(2), ["a", "b"], ["a", "b"], titles=lambda i, j: f"{i},{j}")
        >>> "attnkit-detail" in html
        True
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"values must be 2-D; got shape {values.shape}")
    hi = float(values.max()) if vmax is None else vmax
    span = hi - vmin if hi > vmin else 1.0
    out = []
    if titles:
        out += [_HEATMAP_CSS, '<div class="attnkit-heatmap-box">']
    out.append(f'<table class="attnkit-heatmap" style="{_TABLE_STYLE}">')
    if caption:
        out.append(f'<caption style="{_CAPTION_STYLE}">{_html.escape(caption)}</caption>')
    out.append(f'<tr><th style="{_CELL_STYLE};font-size:0.8em">{_html.escape(row_axis)} \\ '
               f"{_html.escape(col_axis)}</th>")
    out += [f'<th scope="col" style="{_CELL_STYLE}">{_html.escape(c)}</th>' for c in col_labels]
    out.append("</tr>")
    for i, label in enumerate(row_labels):
        out.append(f'<tr><th scope="row" style="{_CELL_STYLE}">{_html.escape(label)}</th>')
        for j in range(values.shape[1]):
            rgb = _viridis((values[i, j] - vmin) / span)
            r, g, b = rgb
            cell_style = f"{_CELL_STYLE};background:rgb({r},{g},{b});color:{ink(rgb)};min-width:3.5em"
            if titles:
                detail = _html.escape(titles(i, j))
                out.append(
                    f'<td class="attnkit-cell" tabindex="0" style="{cell_style}">'
                    f'{format(values[i, j], fmt)}<span class="attnkit-detail">{detail}</span></td>'
                )
            else:
                out.append(f'<td style="{cell_style}">{format(values[i, j], fmt)}</td>')
        out.append("</tr>")
    out.append("</table>")
    if titles:
        out.append('<span class="attnkit-hint">Hover over, click, tap or Tab to a cell to see how '
                   "it is computed.</span></div>")
    return "".join(out)
