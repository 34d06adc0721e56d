"""Checks for exercise notebooks: each failure says what was expected and what was got.

The public tests in a student notebook and the hidden tests of the grader both use
these functions, so a student sees the same kind of message while working as in the
feedback after grading. They need nothing beyond NumPy.

Two kinds of check:

* **value checks** compare an answer with the right one: :func:`check` (numbers and
  arrays to a tolerance, letters, sets, shapes) and :func:`check_expr` (SymPy);
* **form checks** (:data:`FORM_CHECKS`) test only what an answer must look like, never
  its value: :func:`check_shape`, :func:`check_choice`, :func:`check_number` (type and
  range), :func:`check_range`, :func:`check_finite`, :func:`check_normalised`,
  :func:`check_set_of`, :func:`check_symbols`, :func:`check_unchanged`.

A course release (solutions hidden) keeps only form checks in the student's notebook;
a self-study release shows value checks too (see :mod:`attnkit.grading.release`).
Numbers are compared to :data:`ATOL` unless a check states otherwise: an answer
rounded to four decimal places passes.

:func:`forbid` declares that a student's function must be written without some library
functions (see :mod:`attnkit.grading._guard`), and :func:`explain` writes the text of a
worked solution.

>>> from attnkit.grading import check
>>> check("answer", 0.31416, 0.3142)
>>> check("answer", "b", "B")          # letters: case and spaces do not matter
"""

from __future__ import annotations

import contextlib
import io
import math
import sys
import types
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from ._guard import ForbiddenCall, guarded

__all__ = [
    "ATOL", "FORM_CHECKS", "ForbiddenCall", "check", "check_choice", "check_expr", "check_finite",
    "check_normalised", "check_number", "check_range", "check_set_of", "check_shape",
    "check_symbols", "check_unchanged", "explain", "forbid", "quiet",
]

#: Absolute tolerance of numeric checks. Answers may be rounded to four decimal places
#: (an error of at most 0.00005), so the tolerance is one unit of the fourth decimal.
ATOL = 1e-4

#: The checks that test an answer's form (type, shape, range, units), never its value:
#: the only checks a course release shows in a student's notebook.
FORM_CHECKS = (
    "check_shape", "check_choice", "check_number", "check_range", "check_finite",
    "check_normalised", "check_set_of", "check_symbols", "check_unchanged",
)


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
    atol: Any = ATOL,
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
        atol: absolute tolerance of numeric comparisons (default :data:`ATOL`: four
            decimal places); an array broadcast against ``expected`` gives each entry
            its own (a quantity's resolution, such as one quantisation step).
        rtol: relative tolerance of numeric comparisons (default 0), added to ``atol``.

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


def _check_numbers(name: str, got: Any, expected: Any, *, atol: Any, rtol: float) -> None:
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
    tol = np.asarray(atol, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        close = (arr == exp) | (np.abs(arr - exp) <= tol + rtol * np.abs(exp)) | (
            np.isnan(arr) & np.isnan(exp))
    close = np.broadcast_to(close, exp.shape)
    if close.all():
        return
    bad = np.argwhere(~close)
    where = tuple(int(i) for i in bad[0])
    first = ""
    if where:
        first = f" first at index {where}: expected {_fmt(exp[where])}, got {_fmt(arr[where])};"
    if exp.ndim == 0:
        raise AssertionError(f"{name}: expected {_fmt(exp)}, got {_fmt(arr)}")
    tol = f"{atol:g}" if np.ndim(atol) == 0 and not rtol else "the tolerance"
    raise AssertionError(
        f"{name}: {len(bad)} of {exp.size} entries differ by more than {tol};{first}"
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
        >>> a, b = sympy.symbols("a b", positive=True)
        >>> check_expr("volume", a * b * b**2, a * b**3)
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
    diff = g - e
    # cheap tests first (a rational function of the symbols and their exponentials
    # cancels to 0); simplify, which can take a second, only if they do not decide
    if diff != 0 and sympy.cancel(sympy.expand(diff)) != 0 and sympy.simplify(diff) != 0:
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


# -- form checks: what an answer must look like, never its value ---------------------------


def _array(name: str, got: Any, what: str) -> np.ndarray:
    _unanswered(name, got)
    if isinstance(got, (bool, np.bool_, str)):
        raise AssertionError(f"{name}: expected {what}, got {type(got).__name__} {_fmt(got)}")
    try:
        return _torch_to_numpy(got) if _is_torch(got) else np.asarray(got, dtype=np.float64)
    except (TypeError, ValueError):
        raise AssertionError(f"{name}: expected {what}, got {type(got).__name__}") from None


def check_number(
    name: str,
    got: Any,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    integer: bool = False,
) -> None:
    """Check that ``got`` is one real number (not an array, not a bool), within ``[low, high]``.

    Args:
        name: the answer's name.
        got: the student's value (a Python or NumPy number, or an array of shape ``()``).
        low, high: the range it must lie in (inclusive; default: any number, infinities
            included). Chosen wide, to catch a wrong unit or sign, not to hint at a value.
        integer: it must be a whole number (an int, or a float with no fractional part).

    Example:
        >>> check_number("count", 12, low=1, integer=True)
        >>> check_number("share", 0.4783, low=0, high=1)
    """
    arr = _array(name, got, "a number")
    if arr.shape != ():
        raise AssertionError(f"{name}: expected one number, got an array of shape {arr.shape}")
    x = float(arr)
    if math.isnan(x):
        raise AssertionError(f"{name}: expected a number, got nan")
    if integer and not (math.isfinite(x) and x == int(x)):
        raise AssertionError(f"{name}: expected a whole number, got {_fmt(got)}")
    if not low <= x <= high:
        raise AssertionError(f"{name}: expected a number between {low:g} and {high:g}, got {_fmt(got)}")


def check_range(name: str, got: Any, low: float, high: float) -> None:
    """Check that every entry of a number or array lies in ``[low, high]`` (NaN never does).

    Example:
        >>> import numpy as np
        >>> check_range("weights", np.array([0.1, 0.9]), 0, 1)
    """
    arr = _array(name, got, "a number or an array")
    with np.errstate(invalid="ignore"):
        bad = ~((arr >= low) & (arr <= high))
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        at = f" at index {where}" if where else ""
        value = arr[where] if where else arr
        raise AssertionError(
            f"{name}: every entry must lie between {low:g} and {high:g}; got {_fmt(value)}{at}")


def check_finite(name: str, got: Any) -> None:
    """Check that a number or array holds no ``inf`` or ``nan``.

    Example:
        >>> check_finite("out", [1.0, 2.0])
    """
    arr = _array(name, got, "a number or an array")
    if not np.all(np.isfinite(arr)):
        where = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0]) if arr.ndim else ()
        at = f" (first at index {where})" if where else ""
        value = arr[where] if where else arr
        raise AssertionError(f"{name}: every entry must be finite; got {_fmt(value)}{at}")


def check_normalised(name: str, got: Any, *, axis: int = -1) -> None:
    """Check that ``got`` holds weights: entries in [0, 1] that sum to 1 along ``axis``.

    Each entry may be rounded to four decimal places, so a sum of ``n`` entries may be off
    by ``n`` half-units of the fourth decimal (plus :data:`ATOL`).

    Example:
        >>> import numpy as np
        >>> check_normalised("weights", np.full((2, 4), 0.25))
    """
    arr = _array(name, got, "an array of weights")
    check_range(name, arr, 0.0, 1.0)
    sums = np.sum(arr, axis=axis) if arr.ndim else arr
    n = arr.shape[axis] if arr.ndim else 1
    if not np.all(np.abs(sums - 1.0) <= ATOL * (1 + n / 2)):
        raise AssertionError(f"{name}: the weights must sum to 1 along axis {axis}; "
                             f"their sums are {_fmt(sums)}")


def check_set_of(name: str, got: Any, options: Iterable[Any]) -> None:
    """Check that ``got`` is a set whose elements are all among ``options`` (not which ones).

    Strings are compared without case or spaces, as in :func:`check`.

    Example:
        >>> check_set_of("levers", {"A", "c"}, "ABCDEF")
    """
    _unanswered(name, got)
    opts = [str(o) if isinstance(options, str) else o for o in options]
    if not isinstance(got, (set, frozenset)):
        raise AssertionError(f"{name}: expected a set such as {{{opts[0]!r}}}, "
                             f"got {type(got).__name__} {_fmt(got)}")
    allowed = {_norm(o) for o in opts}
    unknown = [x for x in got if _norm(x) not in allowed]
    if unknown:
        raise AssertionError(f"{name}: every element must be one of "
                             f"{', '.join(repr(o) for o in opts)}; got {_fmt(set(unknown))}")


def check_symbols(name: str, got: Any, symbols: Iterable[Any]) -> None:
    """Check that ``got`` is a SymPy expression (or a number) in the given symbols only.

    Symbols are matched by name. Needs SymPy.

    Example:
        >>> import sympy
        >>> a, b = sympy.symbols("a b", positive=True)
        >>> check_symbols("area", 2 * a * b, [a, b])
    """
    import sympy

    _unanswered(name, got)
    if not isinstance(got, (sympy.Basic, int, float)) or isinstance(got, bool):
        raise AssertionError(f"{name}: expected a SymPy expression, got {type(got).__name__} "
                             f"{_fmt(got)}")
    allowed = {str(s) for s in symbols}
    extra = sorted(str(s) for s in sympy.sympify(got).free_symbols if str(s) not in allowed)
    if extra:
        raise AssertionError(f"{name}: the expression may use only {', '.join(sorted(allowed))}; "
                             f"it also uses {', '.join(extra)}")


def check_unchanged(name: str, got: Any, before: Any) -> None:
    """Check that an input the student's function received is unchanged (exactly).

    Example:
        >>> import numpy as np
        >>> x = np.ones(3)
        >>> check_unchanged("x after f(x)", x, x.copy())
    """
    arr, ref = np.asarray(got), np.asarray(before)
    if arr.shape != ref.shape or not np.array_equal(arr, ref, equal_nan=True):
        raise AssertionError(f"{name}: your function changed its input; it must leave it as "
                             f"it was (copy it before changing it)")


# -- write it yourself ------------------------------------------------------------------------

#: The student functions declared with :func:`forbid` in this process: name -> names.
_FORBIDDEN: dict[str, tuple[str, ...]] = {}
_HOOKED: set[int] = set()


def forbid(function: str, *names: str) -> None:
    """Declare that the student's ``function`` must be written without calling ``names``.

    An exercise that asks for something the library has puts this call in a locked cell
    next to its task. The grader reads the declaration from the source notebook and
    runs every call of ``function`` under the guard of :mod:`attnkit.grading._guard`:
    a call of one of ``names`` from the student's code raises ``ForbiddenCall`` and the
    check scores 0 with that message. In Jupyter the same guard wraps the student's
    function (after each cell that defines it), so the public checks, and the
    student's own tries, say the same before anything is handed in.

    Args:
        function: the name of the student's function, e.g. ``"masked_attention"``.
        names: dotted names of library functions, C functions or modules, e.g.
            ``"attnkit.attention"``, ``"attnkit.engines"``,
            ``"torch.nn.functional.scaled_dot_product_attention"``.

    Raises:
        TypeError: an argument is not a string.
        ValueError: ``function`` is not an identifier, a name is not a dotted name, or
            no name is given.

    Example:
        >>> forbid("stable_softmax", "attnkit.softmax", "scipy.special.softmax")
    """
    if not isinstance(function, str) or not all(isinstance(n, str) for n in names):
        raise TypeError("forbid takes the function's name and dotted names, all strings; got "
                        f"{function!r}, {names!r}")
    if not function.isidentifier():
        raise ValueError(f"function must be the name of a function; got {function!r}")
    if not names or not all(all(p.isidentifier() for p in n.split(".")) for n in names):
        raise ValueError(f"names must be dotted names such as 'attnkit.attention'; got {names!r}")
    _FORBIDDEN[function] = tuple(dict.fromkeys(_FORBIDDEN.get(function, ()) + names))
    try:
        ip = sys.modules["IPython"].get_ipython() if "IPython" in sys.modules else None
    except Exception:  # an IPython without a shell
        ip = None
    if ip is None or sys._getframe(1).f_globals is not ip.user_ns:
        return                      # not a notebook's own namespace: nothing to wrap
    _wrap_forbidden(ip.user_ns)
    if id(ip) not in _HOOKED:
        _HOOKED.add(id(ip))
        ip.events.register("post_run_cell", lambda result=None: _wrap_forbidden(ip.user_ns))


def _wrap_forbidden(ns: dict) -> None:
    for function, names in _FORBIDDEN.items():
        fn = ns.get(function)
        if isinstance(fn, types.FunctionType) and not getattr(fn, "__attnkit_guarded__", False):
            ns[function] = guarded(fn, function, names)


# -- worked solutions -----------------------------------------------------------------------


class explain:  # noqa: N801 - used like a function in a notebook cell
    """The text of a worked solution: Markdown that a source notebook's cell displays.

    A code cell of a source notebook tagged ``worked-solution`` ends with
    ``explain(f"...")``: the numbers in it are computed by the cell, the release copies
    the displayed Markdown into the worked-solutions page after the exercise, and the
    student notebooks never contain the cell.

    Example:
        >>> explain(f"So the factor is {0.9 ** 7:.4f}.")
        worked solution: So the factor is 0.4783.
    """

    def __init__(self, markdown: str) -> None:
        if not isinstance(markdown, str):
            raise TypeError(f"markdown must be a str; got {type(markdown).__name__}")
        self.markdown = "\n".join(line.rstrip() for line in markdown.strip("\n").splitlines())

    def _repr_markdown_(self) -> str:
        return self.markdown

    def __repr__(self) -> str:
        first = self.markdown.strip().splitlines()[0] if self.markdown.strip() else ""
        return f"worked solution: {first[:70]}"
