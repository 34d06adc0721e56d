"""Checks for exercise notebooks: each failure says what was expected and what was got.

The public tests in a student notebook and the hidden tests of the grader both use
these functions, so a student sees the same kind of message while working as in the
feedback after grading. They need nothing beyond NumPy.

>>> from attnkit.grading import check
>>> check("answer", 0.24473, 0.2447)
>>> check("answer", "b", "B")          # letters: case and spaces do not matter
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

__all__ = ["check", "check_choice", "check_expr", "check_shape", "quiet"]

#: Absolute tolerance of numeric checks: answers are compared to 4 decimal places.
ATOL = 1e-4


def _fmt(x: Any) -> str:
    """A short, rounded representation of a value for a message."""
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, np.ndarray):
        if x.dtype.kind in "fc":
            x = np.round(x, 4)
        text = np.array2string(x, separator=", ", threshold=40)
        return text if x.ndim else str(x.item())
    if isinstance(x, float):
        return f"{x:.4f}" if math.isfinite(x) and x != int(x) else repr(x)
    if isinstance(x, (set, frozenset)):
        return "{" + ", ".join(repr(v) for v in sorted(x, key=str)) + "}"
    return repr(x)


def _unanswered(name: str, got: Any) -> None:
    if got is None or got is Ellipsis:
        raise AssertionError(f"{name} is not answered yet: it is still {got!r}; assign your answer")


def _as_number_array(name: str, got: Any, expected: np.ndarray) -> np.ndarray:
    try:
        arr = np.asarray(got, dtype=np.float64) if not _is_torch(got) else _torch_to_numpy(got)
    except (TypeError, ValueError):
        raise AssertionError(
            f"{name}: expected a number or array like {_fmt(expected)}, "
            f"got {type(got).__name__} {_fmt(got)}"
        ) from None
    return arr


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def _torch_to_numpy(x: Any) -> np.ndarray:
    return np.asarray(x.detach().cpu().double().numpy())


def check(
    name: str,
    got: Any,
    expected: Any,
    *,
    atol: float = ATOL,
    rtol: float = 0.0,
) -> None:
    """Check one answer; raise ``AssertionError`` saying what was expected and what was got.

    How ``got`` is compared depends on ``expected``:

    * ``bool``: ``got`` must be ``True`` or ``False`` (NumPy booleans too) and equal;
    * ``str``: equal after stripping spaces and ignoring case (``"b"`` matches ``"B"``);
    * ``set`` or ``frozenset``: the same elements (strings compared as above);
    * ``tuple`` of ints (a shape): equal as a tuple;
    * a number or an array (NumPy or torch): the same shape and every entry within
      ``atol + rtol * |expected|``; ``inf`` must match ``inf`` of the same sign and
      ``nan`` matches ``nan``.

    Args:
        name: the variable or expression being checked, as the student wrote it.
        got: the student's value.
        expected: the right value (computed by the test, usually with attnkit).
        atol: absolute tolerance of numeric comparisons (default 1e-4).
        rtol: relative tolerance of numeric comparisons (default 0).

    Raises:
        AssertionError: the answer is missing (``None`` or ``...``) or wrong.
        TypeError: ``name`` is not a string (a mistake in the test, not the answer).

    Example:
        >>> import numpy as np
        >>> check("weights.sum()", np.float64(1.0), 1.0)
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str naming the checked value; got {type(name).__name__}")
    _unanswered(name, got)
    if isinstance(expected, (bool, np.bool_)):
        if not isinstance(got, (bool, np.bool_)):
            raise AssertionError(
                f"{name}: expected True or False, got {type(got).__name__} {_fmt(got)}"
            )
        if bool(got) != bool(expected):
            raise AssertionError(f"{name}: expected {bool(expected)}, got {bool(got)}")
        return
    if isinstance(expected, str):
        if not isinstance(got, str):
            raise AssertionError(
                f"{name}: expected a string like {expected!r}, got {type(got).__name__} {_fmt(got)}"
            )
        if _norm(got) != _norm(expected):
            raise AssertionError(f"{name}: expected {expected!r}, got {got!r}")
        return
    if isinstance(expected, (set, frozenset)):
        if not isinstance(got, (set, frozenset, list, tuple)):
            raise AssertionError(
                f"{name}: expected a set like {_fmt(set(expected))}, "
                f"got {type(got).__name__} {_fmt(got)}"
            )
        if {_norm(x) for x in got} != {_norm(x) for x in expected}:
            raise AssertionError(f"{name}: expected {_fmt(set(expected))}, got {_fmt(set(got))}")
        return
    if isinstance(expected, tuple) and all(isinstance(n, (int, np.integer)) for n in expected):
        try:
            got_t = tuple(int(n) for n in got)
        except (TypeError, ValueError):
            raise AssertionError(
                f"{name}: expected a shape (a tuple of ints) like {expected}, "
                f"got {type(got).__name__} {_fmt(got)}"
            ) from None
        if got_t != tuple(int(n) for n in expected):
            raise AssertionError(f"{name}: expected {tuple(expected)}, got {got_t}")
        return
    _check_numbers(name, got, expected, atol=atol, rtol=rtol)


def _norm(x: Any) -> Any:
    return "".join(x.split()).casefold() if isinstance(x, str) else x


def _check_numbers(name: str, got: Any, expected: Any, *, atol: float, rtol: float) -> None:
    if _is_torch(expected):
        exp = _torch_to_numpy(expected)
    else:
        exp = np.asarray(expected, dtype=np.float64)
    arr = _as_number_array(name, got, exp)
    if arr.shape != exp.shape:
        raise AssertionError(
            f"{name}: expected shape {exp.shape}, got shape {arr.shape}"
            + (f" (expected {_fmt(exp)}, got {_fmt(arr)})" if exp.size <= 25 else "")
        )
    close = np.isclose(arr, exp, atol=atol, rtol=rtol, equal_nan=True)
    if close.all():
        return
    bad = np.argwhere(~close)
    where = tuple(int(i) for i in bad[0])
    first = ""
    if where:
        first = f" first at index {where}: expected {_fmt(exp[where])}, got {_fmt(arr[where])};"
    if exp.ndim == 0:
        raise AssertionError(f"{name}: expected {_fmt(exp)}, got {_fmt(arr)}")
    raise AssertionError(
        f"{name}: {len(bad)} of {exp.size} entries differ by more than {atol:g};{first}"
        f" expected {_fmt(exp)}, got {_fmt(arr)}"
    )


def check_shape(name: str, got: Any, shape: tuple[int, ...]) -> None:
    """Check that ``got`` is an array (or number) of the given shape.

    Example:
        >>> import numpy as np
        >>> check_shape("weights", np.ones((5, 5)), (5, 5))
    """
    _unanswered(name, got)
    try:
        arr = _torch_to_numpy(got) if _is_torch(got) else np.asarray(got, dtype=np.float64)
    except (TypeError, ValueError):
        raise AssertionError(
            f"{name}: expected an array of shape {tuple(shape)}, got {type(got).__name__}"
        ) from None
    if arr.shape != tuple(shape):
        raise AssertionError(f"{name}: expected shape {tuple(shape)}, got shape {arr.shape}")


def check_choice(name: str, got: Any, choices: Iterable[str]) -> None:
    """Check that a multiple-choice answer is one of ``choices`` (not whether it is right).

    Example:
        >>> check_choice("answer_q1", "c", "ABCD")
    """
    options = [str(c) for c in choices]
    _unanswered(name, got)
    if not isinstance(got, str) or _norm(got) not in {_norm(c) for c in options}:
        raise AssertionError(
            f"{name}: expected one of {', '.join(repr(c) for c in options)}, got {_fmt(got)}"
        )


def check_expr(name: str, got: Any, expected: Any, *, subs: dict | None = None) -> None:
    """Check a derived expression (SymPy) against the right one, symbolically.

    Symbols are matched by name (their assumptions, such as ``positive=True``, are
    ignored), ``subs`` (e.g. ``{p0: exp(z0) / (exp(z0) + exp(z1))}``) is applied to both
    sides, and the difference must simplify to zero. Needs SymPy.

    Args:
        name: the answer's name, as the student wrote it.
        got: the student's expression (a SymPy expression or a number).
        expected: the right expression.
        subs: substitutions applied to both sides before comparing.

    Raises:
        AssertionError: no answer, not an expression, or not equal to ``expected``
            (the message shows both).

    Example:
        >>> import sympy
        >>> d_k, sigma = sympy.symbols("d_k sigma", positive=True)
        >>> check_expr("var_qk", d_k * sigma**2 * sigma**2, d_k * sigma**4)
    """
    import sympy

    _unanswered(name, got)
    if not isinstance(got, (sympy.Basic, int, float)) or isinstance(got, bool):
        raise AssertionError(
            f"{name}: expected a SymPy expression like {expected}, got {type(got).__name__} "
            f"{_fmt(got)}"
        )

    def plain(e: Any) -> Any:
        e = sympy.sympify(e)
        e = e.xreplace({s: sympy.Symbol(s.name) for s in e.free_symbols})
        if subs:
            e = e.xreplace({sympy.Symbol(str(k)): sympy.sympify(v).xreplace(
                {s: sympy.Symbol(s.name) for s in sympy.sympify(v).free_symbols})
                for k, v in subs.items()})
        return e

    g, e = plain(got), plain(expected)
    if sympy.simplify(g - e) != 0:
        raise AssertionError(f"{name}: expected an expression equal to {expected}, got {got}")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Run a test with warnings and stderr silenced, so that only a failed check counts.

    The grader gives no points to a test cell that writes to stderr, even when its
    checks pass; a warning from student code (an ``exp`` overflow, say) must not
    cost the points of a right answer. Errors still propagate.

    Example:
        >>> import numpy as np
        >>> with quiet():
        ...     _ = np.exp(np.array([1000.0]))   # no RuntimeWarning shown
    """
    with contextlib.ExitStack() as stack:
        stack.enter_context(warnings.catch_warnings())
        warnings.simplefilter("ignore")
        stack.enter_context(np.errstate(all="ignore"))
        stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
        yield
