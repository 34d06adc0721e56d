"""One number format for the book's prose: thousands separators and ×10ⁿ.

A glued float shown with ``:.2e`` reads ``1.56e-11``, a programmer's notation that a
browser may also break across two lines. :func:`sci` writes ``1.56 × 10⁻¹¹`` instead,
joined by narrow no-break spaces so that the number never breaks. Glue it as Markdown
(``glue(name, Markdown(sci(x)))``) and refer to it with ``{glue:md}`name```.
"""

from __future__ import annotations

import math

__all__ = ["sci"]

_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")
#: U+202F NARROW NO-BREAK SPACE: a thin space at which no line may break.
_NNBSP = "\u202f"


def sci(x: float, digits: int = 2) -> str:
    """``x`` in scientific notation for prose: ``1.56 × 10⁻¹¹``.

    Args:
        x: a finite number.
        digits: digits after the decimal point of the mantissa (0 or more).

    Returns:
        The mantissa, a times sign and a power of ten with a superscript exponent,
        joined by narrow no-break spaces; no power of ten when the exponent is 0.
        Negative numbers use the minus sign U+2212.

    Raises:
        ValueError: if ``x`` is not finite or ``digits`` is negative.

    Example:
        >>> sci(1.5603e-11)
        '1.56\u202f×\u202f10⁻¹¹'
        >>> sci(0.25, 1)
        '2.5\u202f×\u202f10⁻¹'
    """
    if isinstance(digits, bool) or not isinstance(digits, int) or digits < 0:
        raise ValueError(f"digits must be a non-negative integer; got {digits!r}")
    x = float(x)
    if not math.isfinite(x):
        raise ValueError(f"x must be a finite number; got {x!r}")
    mantissa, exponent = f"{x:.{digits}e}".split("e")
    mantissa = mantissa.replace("-", "\u2212")
    power = int(exponent)
    if power == 0:
        return mantissa
    return f"{mantissa}{_NNBSP}×{_NNBSP}10{str(power).translate(_SUPERSCRIPT)}"
