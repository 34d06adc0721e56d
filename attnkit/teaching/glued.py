"""Glue for the book's prose: numbers rounded so the stored output is the same on any machine.

The chapters insert computed numbers into their prose with myst-nb's ``glue``, and
nbval compares the glued record (``application/papermill.record/text/plain``, the
value's ``repr``) with a fresh run. A raw float repr has 17 significant digits, and
the last ones change with the CPU, the BLAS kernel and the thread count, so a chapter
would "fail" on a reader's laptop although nothing is wrong. :func:`glue` rounds
every float it is given to :data:`DIGITS` significant digits (more than any sentence
shows) before gluing; integers, strings, Markdown and figures pass unchanged.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = ["DIGITS", "glue", "portable"]

#: Significant digits kept in a glued float: two more than the four the prose shows.
DIGITS = 6


def _round_float(x: float, digits: int) -> float:
    if x == 0.0 or not math.isfinite(x):
        return x
    decimals = digits - 1 - math.floor(math.log10(abs(x)))
    # Never round away digits before the decimal point: 2,289,982,846.6 -> 2289982847.0.
    return float(round(x, max(decimals, 0)))


def portable(value: Any, digits: int = DIGITS) -> Any:
    """``value`` with every float rounded to ``digits`` significant digits.

    Python and NumPy floats become rounded Python floats, NumPy integers and booleans
    become Python ones, lists and tuples are rounded element by element, and NumPy
    float arrays are rounded elementwise. Anything else (int, str, Markdown, a
    figure) is returned unchanged. Rounding never removes digits before the
    decimal point, so large values keep their integer part.

    Args:
        value: what is about to be glued or printed.
        digits: significant digits to keep (a positive integer).

    Returns:
        The rounded value.

    Raises:
        ValueError: ``digits`` is not a positive integer.

    Example:
        >>> portable(0.6507169646140367)
        0.650717
        >>> portable([1 / 3, 2.0e-11, 7])
        [0.333333, 2e-11, 7]
    """
    if isinstance(digits, bool) or not isinstance(digits, numbers.Integral) or digits < 1:
        raise ValueError(f"digits must be a positive integer; got {digits!r}")
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return _round_float(float(value), digits)
    if isinstance(value, (list, tuple)):
        return type(value)(portable(v, digits) for v in value)
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a dependency
        return value
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        flat = [_round_float(float(v), digits) for v in value.ravel()]
        return np.array(flat, dtype=value.dtype).reshape(value.shape)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def glue(name: str, value: Any, display: bool = True, *, digits: int = DIGITS,
         alt: str | None = None) -> None:
    """Glue ``value`` under ``name`` for the prose, floats rounded by :func:`portable`.

    The same call as ``myst_nb.glue`` (``{glue:text}`name:.4f``` in the Markdown),
    except that the stored record is the same on every machine, and that a figure
    can carry its alt text: ``glue("ch1_fig", fig, display=False, alt="Line plot of
    ...")`` stores ``alt`` beside the image, and the book's build makes it the alt
    attribute of the figure that ``{glue:figure}`` pastes (website and PDF).

    Args:
        name: the key the Markdown refers to.
        value: a number, a string, a Markdown object or a figure.
        display: also show the value in the cell's output (as ``myst_nb.glue``).
        digits: significant digits kept in floats.
        alt: what the figure shows, for a reader who cannot see it (figures only;
            see :func:`attnkit.teaching.plotting.check_alt`).

    Raises:
        ValueError: ``digits`` is not a positive integer; ``alt`` is empty, a path or
            a file name, or given for a value that displays no image.
        TypeError: ``alt`` is not a string.
    """
    from myst_nb import glue as _myst_glue

    if alt is not None:
        from .plotting import Described

        value = Described(value, alt)
    _myst_glue(name, portable(value, digits), display=display)
