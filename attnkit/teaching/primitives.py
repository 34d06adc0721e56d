"""Small teaching primitives, defined once.

Number and vector formatting, the agreement label, powers in superscript, and the
annotated weight heatmap.

The chapters and the other teaching modules use these instead of their own copies,
so that a number looks the same wherever the book prints it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = ["agree", "draw_weights", "fmt_num", "fmt_vec", "superscript_power"]

_SUPERSCRIPTS = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def fmt_num(x: float, digits: int = 4, *, compact: bool = False) -> str:
    """A number as the book prints it: ``digits`` decimals; ``-inf``/``inf`` spelled out.

    Args:
        x: the number.
        digits: decimals shown.
        compact: integers without decimals and no trailing zeros (``1``, ``0.5``).

    Returns:
        The formatted number.

    Example:
        >>> fmt_num(0.10949), fmt_num(2.0, compact=True), fmt_num(0.5, compact=True)
        ('0.1095', '2', '0.5')
        >>> fmt_num(float("-inf"))
        '-inf'
    """
    x = float(x)
    if math.isinf(x):
        return "-inf" if x < 0 else "inf"
    if compact:
        if abs(x - round(x)) < 1e-12:
            return str(int(round(x)))
        return f"{x:.{digits}f}".rstrip("0")
    return f"{x:.{digits}f}"


def fmt_vec(xs: Iterable[float], digits: int = 4, *, compact: bool = False,
            brackets: str = "[]") -> str:
    """A vector as ``[a, b, c]`` with :func:`fmt_num` entries.

    Example:
        >>> fmt_vec([0.22539, 0.41354]), fmt_vec([1.0, 0.5], compact=True, brackets="()")
        ('[0.2254, 0.4135]', '(1, 0.5)')
    """
    inner = ", ".join(fmt_num(float(a), digits, compact=compact) for a in np.asarray(xs).ravel())
    return f"{brackets[:1]}{inner}{brackets[1:]}"


def agree(diff: float, tol: float) -> str:
    """How far apart two results are, as a label that is the same on every machine.

    A difference within the tolerance is shown as ``"≤ tol"`` (the last digits of
    floating-point rounding differ between machines, the bound does not); a larger
    one is shown with its value.

    Example:
        >>> agree(3e-17, 1e-14), agree(0.25, 1e-14)
        ('≤ 1e-14', '2.50e-01 (above 1e-14)')
    """
    return f"≤ {tol:.0e}" if diff <= tol else f"{diff:.2e} (above {tol:.0e})"


def superscript_power(base: int, exponent: int) -> str:
    """``base`` to the ``exponent`` in Unicode superscripts, for text glued into prose.

    Example:
        >>> superscript_power(10, -14)
        '10⁻¹⁴'
    """
    return f"{base}{str(exponent).translate(_SUPERSCRIPTS)}"


def draw_weights(ax: Any, w: np.ndarray, rows: Sequence[str], cols: Sequence[str], title: str,
                 vmax: float = 1.0, fmt: str = "{:.2f}") -> Any:
    """A weight matrix as an annotated heatmap: queries down, keys across.

    Args:
        ax: a Matplotlib axis.
        w: ``(L, S)`` weights (non-finite entries are left blank).
        rows, cols: query and key labels.
        title: the axis title.
        vmax: the top of the colour scale (the bottom is 0).
        fmt: format of the number written in each cell.

    Returns:
        The image, for a colour bar.
    """
    im = ax.imshow(w, vmin=0.0, vmax=vmax, cmap="viridis")
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
    ax.set_title(title, fontsize=10)
    ax.grid(False)
    for i in range(w.shape[0]):
        for j in range(w.shape[1]):
            if np.isfinite(w[i, j]):
                ink = "black" if w[i, j] > 0.6 * vmax else "white"
                ax.text(j, i, fmt.format(w[i, j]), ha="center", va="center", fontsize=10, color=ink)
    return im
