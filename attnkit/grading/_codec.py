"""Answers as data: how values cross between a student's kernel and the grader.

The kernel encodes the answer variables (and the results of calls of the student's
functions) as JSON with a few tagged forms; the grader decodes them with
:func:`decode`, which builds only plain values (numbers, strings, tuples, lists,
sets, dicts, NumPy arrays of numeric dtypes and SymPy expressions made of an
allow-list of classes). No student object, pickle or code reaches the grader's
process, so nothing a student defines can run where the checks run.

``ENCODER`` is the source of the encoder; the kernel runs it (sent with each request,
never stored in the kernel's history) and the grader uses the same definitions to
send arguments to the student's functions. Both sides name the tagged forms through
one table, :data:`TAGS`: the encoder's source is given the table as data, and
:func:`decode` dispatches on it, so a tag is spelled in one place only.
"""

from __future__ import annotations

import base64
import json
import math
import re
from typing import Any

import numpy as np

__all__ = [
    "ENCODER", "ENCODER_NAMES", "MIME", "TAGS", "AnswerError", "Opaque", "StudentCallable", "decode",
    "encode",
]

#: MIME type of the display message that carries a payload out of the kernel.
MIME = "application/x-attnkit-answer+json"

#: Largest payload the grader decodes (bytes of JSON).
MAX_PAYLOAD = 64 * 1024**2

#: The wire format's tags: a tagged value is a JSON object ``{TAG: data}`` with one key.
#: The kernel's encoder and decoder (``ENCODER``) and the grader's :func:`decode` all
#: read this one table.
TAGS: dict[str, str] = {
    "int": "$int",              # an int beyond 2**53, as its decimal digits
    "nonfinite": "$f",          # inf, -inf or nan, as repr()
    "complex": "$c",            # [real, imag]
    "ndarray": "$nd",           # [dtype.str, shape, base64 of the C-ordered bytes]
    "tuple": "$tuple",          # [items]
    "set": "$set",              # [items]
    "dict": "$dict",            # [[key, value], ...]
    "sympy": "$sym",            # an expression tree (see _attnkit_sym)
    "sympy_matrix": "$symmat",  # [rows, cols, [trees]]
    "function": "$fn",          # a function of the student's: its name (the grader calls it)
    "object": "$obj",           # anything else: [type name, repr]; not data
    "error": "$error",          # the value could not be encoded: the message
}

_ENCODER_BODY = r'''
def _attnkit_encode(x, depth=0):
    import base64, math, sys
    if depth > 20:
        raise ValueError("nested too deeply")
    if x is None or isinstance(x, (bool, str)):
        return x
    if isinstance(x, int):
        return x if abs(x) < 2**53 else {_attnkit_T["int"]: str(x)}
    if isinstance(x, float):
        return x if math.isfinite(x) else {_attnkit_T["nonfinite"]: repr(x)}
    if isinstance(x, complex):
        return {_attnkit_T["complex"]: [_attnkit_encode(x.real), _attnkit_encode(x.imag)]}
    np = sys.modules.get("numpy")
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        x = x.detach().cpu().resolve_conj().resolve_neg().numpy()
    if np is not None and isinstance(x, np.generic):
        if x.dtype.kind in "biuf":
            return _attnkit_encode(x.item(), depth + 1)
        x = np.asarray(x)
    if np is not None and isinstance(x, np.ndarray):
        if x.dtype.kind not in "biufc":
            return {_attnkit_T["object"]: ["ndarray of " + str(x.dtype), ""]}
        a = np.ascontiguousarray(x)
        return {_attnkit_T["ndarray"]: [a.dtype.str, list(a.shape), base64.b64encode(a.tobytes()).decode()]}
    sympy = sys.modules.get("sympy")
    if sympy is not None and isinstance(x, sympy.MatrixBase):
        return {_attnkit_T["sympy_matrix"]: [x.rows, x.cols, [_attnkit_sym(e) for e in x]]}
    if sympy is not None and isinstance(x, sympy.Basic):
        return {_attnkit_T["sympy"]: _attnkit_sym(x)}
    if isinstance(x, tuple):
        return {_attnkit_T["tuple"]: [_attnkit_encode(v, depth + 1) for v in x]}
    if isinstance(x, list):
        return [_attnkit_encode(v, depth + 1) for v in x]
    if isinstance(x, (set, frozenset)):
        return {_attnkit_T["set"]: [_attnkit_encode(v, depth + 1) for v in x]}
    if isinstance(x, dict):
        return {_attnkit_T["dict"]: [[_attnkit_encode(k, depth + 1), _attnkit_encode(v, depth + 1)]
                          for k, v in x.items()]}
    if callable(x) and not isinstance(x, type):
        return {_attnkit_T["function"]: getattr(x, "__name__", "function")}
    return {_attnkit_T["object"]: [type(x).__name__, repr(x)[:200]]}

def _attnkit_sym(e):
    import sympy
    if isinstance(e, sympy.Symbol):
        return ["Symbol", e.name, {k: v for k, v in e.assumptions0.items() if isinstance(v, bool)}]
    if isinstance(e, sympy.Integer):
        return ["Integer", str(int(e))]
    if isinstance(e, sympy.Rational):
        return ["Rational", str(e.p), str(e.q)]
    if isinstance(e, sympy.Float):
        return ["Float", str(e)]
    if e.is_Function or isinstance(e, (sympy.Add, sympy.Mul, sympy.Pow)) or e.args:
        return [type(e).__name__] + [_attnkit_sym(a) for a in e.args]
    return [type(e).__name__]

def _attnkit_decode(x):
    import base64, numpy as np
    if isinstance(x, list):
        return [_attnkit_decode(v) for v in x]
    if not isinstance(x, dict):
        return x
    (tag, v), = x.items()
    if tag == _attnkit_T["nonfinite"]:
        return float(v)
    if tag == _attnkit_T["int"]:
        return int(v)
    if tag == _attnkit_T["complex"]:
        return complex(v[0], v[1])
    if tag == _attnkit_T["ndarray"]:
        return np.frombuffer(base64.b64decode(v[2]), dtype=np.dtype(v[0])).reshape(v[1]).copy()
    if tag == _attnkit_T["tuple"]:
        return tuple(_attnkit_decode(e) for e in v)
    if tag == _attnkit_T["set"]:
        return {_attnkit_decode(e) for e in v}
    if tag == _attnkit_T["dict"]:
        return {_attnkit_decode(k): _attnkit_decode(e) for k, e in v}
    raise ValueError("cannot decode " + tag)
'''

#: The kernel-side source: the tag table as data, then the encoder and decoder.
ENCODER = f"_attnkit_T = {TAGS!r}\n" + _ENCODER_BODY

#: The names ``ENCODER`` defines in the kernel (deleted again after each request).
ENCODER_NAMES = ("_attnkit_T", "_attnkit_encode", "_attnkit_sym", "_attnkit_decode")

_ns: dict[str, Any] = {}
exec(compile(ENCODER, "<attnkit answer codec>", "exec"), _ns)  # noqa: S102 - our own source


def encode(x: Any) -> Any:
    """Encode a value the way the kernel does (used for the arguments the grader sends)."""
    return _ns["_attnkit_encode"](x)


class AnswerError(ValueError):
    """A payload from a kernel that is not valid data."""


class Opaque:
    """An answer that is not data the checks can use (an object of a student's class)."""

    def __init__(self, type_name: str, text: str) -> None:
        self.type_name, self.text = str(type_name)[:80], str(text)[:200]

    def __repr__(self) -> str:
        return f"<{self.type_name} object: {self.text}>"


class StudentCallable:
    """Marks a name that is a function in the student's kernel (the grader calls it there)."""

    def __init__(self, name: str) -> None:
        self.name = str(name)[:80]


_DTYPE = re.compile(r"^[<>|=]?(b1|[iu][1248]|f[248]|c(8|16))$")

#: SymPy classes an expression from a kernel may be built of.
SYMPY_HEADS = (
    "Add", "Mul", "Pow", "exp", "log", "sqrt", "Abs", "sin", "cos", "tanh", "KroneckerDelta",
    "Max", "Min", "Sum", "Piecewise", "ExprCondPair", "Eq", "Ne", "Lt", "Le", "Gt", "Ge",
    "Indexed", "IndexedBase", "Idx", "Tuple", "Half", "One", "NegativeOne", "Zero", "Infinity",
    "NegativeInfinity", "Pi", "Exp1", "ImaginaryUnit", "BooleanTrue", "BooleanFalse",
)


def _sym(tree: Any, depth: int = 0) -> Any:
    import sympy

    if depth > 200 or not isinstance(tree, list) or not tree or not isinstance(tree[0], str):
        raise AnswerError("not a SymPy expression tree")
    head, args = tree[0], tree[1:]
    if head == "Symbol":
        if not 1 <= len(args) <= 2 or not isinstance(args[0], str) or len(args[0]) > 100:
            raise AnswerError("bad Symbol")
        from sympy.core.assumptions import _assume_defined

        given = args[1] if len(args) == 2 and isinstance(args[1], dict) else {}
        assume = {k: v for k, v in given.items() if k in _assume_defined and isinstance(v, bool)}
        try:
            return sympy.Symbol(args[0], **assume)
        except Exception:  # inconsistent assumptions
            return sympy.Symbol(args[0])
    if head == "Integer":
        return sympy.Integer(int(str(args[0])[:4000]))
    if head == "Rational":
        return sympy.Rational(int(str(args[0])[:4000]), int(str(args[1])[:4000]))
    if head == "Float":
        return sympy.Float(float(str(args[0])[:100]))
    if head not in SYMPY_HEADS:
        raise AnswerError(f"SymPy class {head[:40]!r} is not accepted in an answer")
    if not args:
        try:
            return getattr(sympy.S, head)
        except AttributeError:
            raise AnswerError(f"unknown SymPy constant {head[:40]!r}") from None
    cls = getattr(sympy, head, None)
    if cls is None:
        raise AnswerError(f"unknown SymPy class {head[:40]!r}")
    built = [_sym(a, depth + 1) for a in args]
    return cls(*built, evaluate=False) if head in ("Add", "Mul", "Pow") else cls(*built)


def _nonfinite(v: Any, depth: int) -> float:
    f = float(str(v)[:10])
    if math.isfinite(f):
        raise AnswerError("bad float")
    return f


def _complex(v: Any, depth: int) -> complex:
    return complex(float(v[0]) if not isinstance(v[0], dict) else decode(v[0], depth + 1),
                   float(v[1]) if not isinstance(v[1], dict) else decode(v[1], depth + 1))


def _ndarray(v: Any, depth: int) -> np.ndarray:
    dtype, shape, data = v
    if not isinstance(dtype, str) or not _DTYPE.match(dtype):
        raise AnswerError(f"array dtype {str(dtype)[:20]!r} is not accepted")
    if not isinstance(shape, list) or len(shape) > 32 or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        raise AnswerError("bad array shape")
    raw = base64.b64decode(str(data), validate=True)
    dt = np.dtype(dtype)
    if len(raw) != dt.itemsize * int(np.prod(shape, dtype=np.int64)):
        raise AnswerError("array data does not match its shape")
    return np.frombuffer(raw, dtype=dt).reshape(shape).copy()


def _sympy_matrix(v: Any, depth: int) -> Any:
    import sympy

    rows, cols, items = v
    if not (isinstance(rows, int) and isinstance(cols, int) and len(items) == rows * cols
            and rows * cols <= 10_000):
        raise AnswerError("bad SymPy matrix")
    return sympy.Matrix(rows, cols, [_sym(e) for e in items])


def _error(v: Any, depth: int) -> Any:
    raise AnswerError(str(v)[:500])


#: How the grader builds each tagged form (keys are the names of :data:`TAGS`).
_DECODERS: dict[str, Any] = {
    "int": lambda v, d: int(str(v)[:4000]),
    "nonfinite": _nonfinite,
    "complex": _complex,
    "ndarray": _ndarray,
    "tuple": lambda v, d: tuple(decode(e, d + 1) for e in v),
    "set": lambda v, d: {_hashable(decode(e, d + 1)) for e in v},
    "dict": lambda v, d: {_hashable(decode(k, d + 1)): decode(e, d + 1) for k, e in v},
    "sympy": lambda v, d: _sym(v),
    "sympy_matrix": _sympy_matrix,
    "function": lambda v, d: StudentCallable(str(v)),
    "object": lambda v, d: Opaque(str(v[0]), str(v[1])),
    "error": _error,
}
assert set(_DECODERS) == set(TAGS), "every tag of the wire format has one decoder"
_BY_TAG = {TAGS[name]: fn for name, fn in _DECODERS.items()}


def decode(x: Any, depth: int = 0) -> Any:
    """Build a plain value from an encoded answer; raise :class:`AnswerError` on anything else.

    Example:
        >>> import numpy as np
        >>> decode(encode((1, float("inf"), np.arange(3))))
        (1, inf, array([0, 1, 2]))
    """
    if depth > 40:
        raise AnswerError("nested too deeply")
    if x is None or isinstance(x, (bool, str, int)):
        return x
    if isinstance(x, float):
        return x
    if isinstance(x, list):
        return [decode(v, depth + 1) for v in x]
    if not isinstance(x, dict) or len(x) != 1:
        raise AnswerError("not an encoded value")
    (tag, v), = x.items()
    build = _BY_TAG.get(tag) if isinstance(tag, str) else None
    if build is None:
        raise AnswerError(f"unknown tag {str(tag)[:10]!r}")
    try:
        return build(v, depth)
    except AnswerError:
        raise
    except Exception as exc:  # malformed payload of any kind
        raise AnswerError(f"malformed {tag[:10]!r} value ({type(exc).__name__})") from None


def _hashable(x: Any) -> Any:
    try:
        hash(x)
        return x
    except TypeError:
        raise AnswerError("a set element or dict key is not hashable") from None


def loads(text: str | bytes) -> Any:
    """Parse a payload (JSON text); its values are still encoded (see :func:`decode`)."""
    if len(text) > MAX_PAYLOAD:
        raise AnswerError(f"the answer is larger than {MAX_PAYLOAD // 1024**2} MB")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise AnswerError("the answer is not valid JSON") from None
    return data
