"""Validation: the one vocabulary of argument checks, and the one attention-call routine.

* :func:`integer`, :func:`positive_int`, :func:`real`, :func:`choice`, :func:`flag`
  and :func:`array` check one argument each and raise, in one style
  (``"n must be a positive integer; got 0"``), a ``TypeError`` when the argument
  has the wrong type and a ``ValueError`` when it has the right type but a wrong
  value. Every module of the library uses them (the grader has its own,
  student-facing, messages); ``tests/test_architecture.py`` fails on a
  private copy.
* :func:`check_attention_args` turns the arguments of :func:`attnkit.attention`
  into an :class:`AttentionSpec` (shapes, scale, causal alignment, mask kind, the
  variants: window, sinks, soft-capping, grouped-query heads, score modifier,
  learned sink logits, and which inputs need gradients). Engines receive only
  validated arguments.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ._arrays import array_kind, dtype_name, needs_grad

CausalArg = bool | Literal["top-left", "bottom-right"]
Alignment = Literal["top-left", "bottom-right"]

FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")

#: ``window=(left, right)``: ``None`` on a side means unbounded.
Window = tuple[int | None, int | None]
#: ``score_mod(score, b, h, q_idx, kv_idx) -> score``, as ``torch.nn.attention.flex_attention``.
ScoreMod = Callable[[Any, Any, Any, Any, Any], Any]


# ----------------------------------------------------------------------------- vocabulary


def _kind(value: Any) -> str:
    """What sort of scalar ``value`` is: ``"bool"``, ``"int"``, ``"real"``, ``"str"`` or ``"other"``.

    A bool is never an integer here (``True == 1`` in Python, but ``1`` is not a
    flag and ``True`` is not a count), and any ``str`` subclass (``numpy.str_``,
    what NumPy and pandas hand back) is a string.
    """
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, (numbers.Integral, np.integer)):
        return "int"
    if isinstance(value, numbers.Real):
        return "real"
    if isinstance(value, str):
        return "str"
    return "other"


def _bounds(what: str, low: Any, low_open: bool, high: Any, high_open: bool) -> str:
    """``"an integer in [0, 4)"``, ``"a number > 1"``, ...: the phrase for a bounded value."""
    if low is not None and high is not None:
        return f"{what} in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"{what} {'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"{what} {'<' if high_open else '<='} {high:g}"
    return what


def integer(name: str, value: Any, *, minimum: int | None = None,
            maximum: int | None = None) -> int:
    """Check that ``value`` is an integer (not a bool) in ``[minimum, maximum]``; return it.

    Args:
        name: the argument's name, for the message.
        value: what the caller passed.
        minimum, maximum: inclusive bounds (``None``: unbounded).

    Returns:
        ``int(value)``.

    Raises:
        TypeError: not an integer (a bool, a float, a string, ...).
        ValueError: an integer out of range; the message names the argument.

    Example:
        >>> integer("sinks", 4, minimum=0)
        4
        >>> integer("n", 0, minimum=1)
        Traceback (most recent call last):
        ...
        ValueError: n must be a positive integer; got 0
        >>> integer("n", "3", minimum=1)
        Traceback (most recent call last):
        ...
        TypeError: n must be a positive integer; got '3' of type str
    """
    if minimum == 1 and maximum is None:
        what = "a positive integer"
    elif minimum == 0 and maximum is None:
        what = "a non-negative integer"
    else:
        what = _bounds("an integer", minimum, False, maximum, False)
    if _kind(value) != "int":
        raise TypeError(f"{name} must be {what}; got {value!r} of type {type(value).__name__}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be {what}; got {value!r}")
    return int(value)


def positive_int(name: str, value: Any) -> int:
    """Check that ``value`` is an integer ``>= 1`` (see :func:`integer`); return it.

    Example:
        >>> positive_int("block_q", 64)
        64
    """
    return integer(name, value, minimum=1)


def real(name: str, value: Any, *, positive: bool = False, above: float | None = None,
         minimum: float | None = None, below: float | None = None,
         finite: bool = True) -> float:
    """Check that ``value`` is a real number (not a bool); return it as a float.

    Args:
        name: the argument's name, for the message.
        value: what the caller passed.
        positive: require ``value > 0``.
        above: require ``value > above``. minimum: require ``value >= minimum``.
        below: require ``value < below``.
        finite: require a finite value (no ``inf``/``nan``).

    Returns:
        ``float(value)``.

    Raises:
        TypeError: not a real number.
        ValueError: not finite, or outside the bounds.

    Example:
        >>> real("softcap", 30, positive=True)
        30.0
        >>> real("scale", "2")
        Traceback (most recent call last):
        ...
        TypeError: scale must be a real number; got '2' of type str
        >>> real("reserve", 1.5, minimum=0, below=1)
        Traceback (most recent call last):
        ...
        ValueError: reserve must be a number in [0, 1); got 1.5
    """
    if _kind(value) not in ("int", "real"):
        raise TypeError(f"{name} must be a real number; got {value!r} of type {type(value).__name__}")
    f = float(value)
    if finite and not math.isfinite(f):
        raise ValueError(f"{name} must be finite; got {value!r}")
    if positive and not f > 0:
        raise ValueError(f"{name} must be a finite positive number; got {value!r}")
    low, low_open = (above, True) if above is not None else (minimum, False)
    if ((above is not None and not f > above) or (minimum is not None and not f >= minimum)
            or (below is not None and not f < below)):
        raise ValueError(f"{name} must be {_bounds('a number', low, low_open, below, True)}; "
                         f"got {value!r}")
    return f


def choice(name: str, value: Any, options: Sequence[Any]) -> Any:
    """Check that ``value`` is one of ``options``; return the option it equals.

    A value matches an option of its own sort only: any ``str`` (``numpy.str_``
    too) matches a string, an integer an integer, a bool a bool (``1`` is not
    ``True``).

    Raises:
        TypeError: a value of a sort that no option has (``1`` among strings).
        ValueError: any other value; the message lists the options.

    Example:
        >>> choice("device", "gpu", ["cpu", "cuda"])
        Traceback (most recent call last):
        ...
        ValueError: device must be one of ['cpu', 'cuda']; got 'gpu'
        >>> type(choice("device", np.str_("cpu"), ["cpu", "cuda"])).__name__
        'str'
    """
    for o in options:
        if value is o or (_kind(value) == _kind(o) != "other" and value == o):
            return o
        if _kind(o) == "other" and type(value) is type(o) and value == o:
            return o
    if _kind(value) not in {_kind(o) for o in options}:
        raise TypeError(f"{name} must be one of {list(options)}; got {value!r} of type "
                        f"{type(value).__name__}")
    raise ValueError(f"{name} must be one of {list(options)}; got {value!r}")


def flag(name: str, value: Any) -> bool:
    """Check that ``value`` is a bool (Python's or NumPy's); return it.

    Raises:
        TypeError: anything else (``1`` included).

    Example:
        >>> flag("enable_gqa", True)
        True
    """
    if _kind(value) != "bool":
        raise TypeError(f"{name} must be a bool; got {value!r}")
    return bool(value)


def array(name: str, value: Any, kind: str | None = None) -> str:
    """Check that ``value`` is a NumPy array or a torch tensor (of ``kind``); return its kind.

    Args:
        name: the argument's name, for the message.
        value: what the caller passed.
        kind: ``"numpy"`` or ``"torch"`` to require that kind; ``None`` takes either.

    Returns:
        ``"numpy"`` or ``"torch"``.

    Raises:
        TypeError: anything else.

    Example:
        >>> array("x", np.zeros(2))
        'numpy'
        >>> array("x", [1, 2])
        Traceback (most recent call last):
        ...
        TypeError: x must be a numpy.ndarray or torch.Tensor; got list
    """
    got = array_kind(value)
    wanted = {"numpy": "a numpy.ndarray", "torch": "a torch.Tensor", None: None}[kind]
    if got == "other" or (kind is not None and got != kind):
        raise TypeError(f"{name} must be {wanted or 'a numpy.ndarray or torch.Tensor'}; "
                        f"got {type(value).__name__}")
    return got


# ----------------------------------------------------------------------------- attention


@dataclass(frozen=True)
class AttentionSpec:
    """Validated description of one attention call.

    Attributes:
        batch: broadcast batch shape ``...`` of q, k and v.
        L: number of queries. S: number of keys/values.
        E: query/key width. Ev: value width.
        scale: the factor applied to ``q @ k^T``.
        causal: ``None``, ``"top-left"`` or ``"bottom-right"``.
        mask_kind: ``None``, ``"bool"`` or ``"float"``.
        dtype: dtype name shared by q, k and v.
        kind: ``"numpy"`` or ``"torch"``, what the caller passed (and gets back).
        return_weights: whether the caller asked for the weights.
        window: ``(left, right)`` of a sliding window (``None`` on a side: unbounded),
            or ``None`` for no window.
        sinks: number of leading keys exempt from the window's left bound.
        softcap: ``c`` of the soft-capping ``c * tanh(s / c)``, or ``None``.
        score_mod: the user's score modifier, or ``None``.
        groups: query heads per key/value head (``enable_gqa``); 1 without grouping.
        needs_grad: which of ``"q"``, ``"k"``, ``"v"``, ``"mask"``, ``"sink_logits"``
            are tensors that require grad while torch's grad mode is on (the engine
            must carry their gradients, or refuse).
        sink_logits: the learned sink logits, an array of the call's kind (NumPy or
            torch, as ``q``) broadcastable to ``batch``, or ``None``. Not part of the
            spec's equality (it is an array).
    """

    batch: tuple[int, ...]
    L: int
    S: int
    E: int
    Ev: int
    scale: float
    causal: Alignment | None
    mask_kind: Literal["bool", "float"] | None
    dtype: str
    kind: Literal["numpy", "torch"]
    return_weights: bool
    window: Window | None = None
    sinks: int = 0
    softcap: float | None = None
    score_mod: ScoreMod | None = None
    groups: int = 1
    needs_grad: tuple[str, ...] = ()
    sink_logits: Any = field(default=None, compare=False)

    @property
    def out_shape(self) -> tuple[int, ...]:
        """Shape of the output, ``(..., L, Ev)``."""
        return (*self.batch, self.L, self.Ev)

    @property
    def weights_shape(self) -> tuple[int, ...]:
        """Shape of the attention weights, ``(..., L, S)``."""
        return (*self.batch, self.L, self.S)

    @property
    def features(self) -> frozenset[str]:
        """The variant features this call uses (the names engines declare)."""
        used = {"window": self.window is not None, "sinks": self.sinks > 0,
                "softcap": self.softcap is not None, "score_mod": self.score_mod is not None,
                "enable_gqa": self.groups > 1, "sink_logits": self.sink_logits is not None}
        return frozenset(name for name, on in used.items() if on)


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in x.shape)


def normalise_causal(causal: Any) -> Alignment | None:
    """Map the ``causal`` argument to ``None``, ``"top-left"`` or ``"bottom-right"``.

    Raises:
        TypeError: neither a bool nor a string (``1`` is not ``True``).
        ValueError: a string that names no alignment.

    Example:
        >>> normalise_causal(True), normalise_causal(np.str_("bottom-right"))
        ('top-left', 'bottom-right')
    """
    if _kind(causal) == "bool":
        return "top-left" if causal else None
    what = "causal must be False, True, 'top-left' or 'bottom-right'"
    if _kind(causal) != "str":
        raise TypeError(f"{what}; got {causal!r} of type {type(causal).__name__}")
    if causal not in ("top-left", "bottom-right"):
        raise ValueError(f"{what}; got {causal!r}")
    return str(causal)  # type: ignore[return-value]


def check_attention_args(
    q: Any,
    k: Any,
    v: Any,
    *,
    mask: Any = None,
    causal: Any = False,
    scale: Any = None,
    return_weights: bool = False,
    window: Any = None,
    sinks: Any = 0,
    softcap: Any = None,
    enable_gqa: Any = False,
    score_mod: Any = None,
    sink_logits: Any = None,
) -> AttentionSpec:
    """Validate the arguments of :func:`attnkit.attention` and describe the call.

    Shapes: ``q (..., L, E)``, ``k (..., S, E)``, ``v (..., S, Ev)``, ``mask``
    broadcastable to ``(..., L, S)``, ``sink_logits`` broadcastable to ``(...)``;
    with ``enable_gqa=True``, ``q (..., Hq, L, E)``, ``k (..., Hkv, S, E)``,
    ``v (..., Hkv, S, Ev)``.

    Returns:
        The :class:`AttentionSpec` of the call.

    Raises:
        TypeError: an input that is not an array/tensor, a non-floating or complex
            dtype, mixed dtypes or array kinds, a mask that is neither boolean nor
            floating; a ``scale``, ``softcap``, ``sinks``, window bound, ``causal``
            or flag of the wrong type; a ``score_mod`` that is not callable;
            ``sink_logits`` that are not an array of ``q``'s kind with a real
            floating dtype.
        ValueError: fewer than 2 dimensions, q/k widths that differ, k/v lengths
            that differ, batch dimensions or a mask that do not broadcast, a
            non-finite scale, an unknown ``causal`` string, a window that is not a
            pair, negative window bounds or ``sinks``, a ``softcap`` that is not
            positive, query heads that are not a multiple of the key/value heads
            (``enable_gqa``), ``sink_logits`` that do not broadcast to the batch
            dimensions or are not finite.

    Example:
        >>> import numpy as np
        >>> spec = check_attention_args(np.ones((2, 8, 5, 4)), np.ones((2, 2, 7, 4)),
        ...                             np.ones((2, 2, 7, 3)), enable_gqa=True, window=(3, 0))
        >>> spec.batch, spec.groups, spec.window
        ((2, 8), 4, (3, 0))
    """
    kind, dtype = _check_inputs(q, k, v)
    qs, ks, vs = _shape(q), _shape(k), _shape(v)
    groups, batch = _check_shapes(qs, ks, vs, flag("enable_gqa", enable_gqa))
    L, E, S, Ev = qs[-2], qs[-1], ks[-2], vs[-1]
    if score_mod is not None and not callable(score_mod):
        raise TypeError(
            "score_mod must be a function f(score, b, h, q_idx, kv_idx) -> score (or None); "
            f"got {type(score_mod).__name__}"
        )
    sink_logits = check_sink_logits(sink_logits, kind, batch)
    inputs = {"q": q, "k": k, "v": v, "mask": mask, "sink_logits": sink_logits}
    return AttentionSpec(
        batch=batch,
        L=L,
        S=S,
        E=E,
        Ev=Ev,
        scale=_check_scale(scale, E, qs),
        causal=normalise_causal(causal),
        mask_kind=_check_mask(mask, (*batch, L, S)),
        dtype=dtype,
        kind=kind,  # type: ignore[arg-type]
        return_weights=flag("return_weights", return_weights),
        window=check_window(window),
        sinks=integer("sinks", sinks, minimum=0),
        softcap=None if softcap is None else real("softcap", softcap, positive=True),
        score_mod=score_mod,
        groups=groups,
        needs_grad=tuple(n for n, x in inputs.items() if needs_grad(x)),
        sink_logits=sink_logits,
    )


def check_sink_logits(sink_logits: Any, kind: str, batch: tuple[int, ...]) -> Any:
    """Validate ``sink_logits``: ``None``, or finite floating logits broadcastable to ``batch``.

    One learned logit per head (gpt-oss) joins every softmax denominator of its head;
    the array has the kind of ``q`` (a tensor can carry a gradient) and a shape that
    broadcasts to the call's batch dimensions ``...``, e.g. ``(H,)`` for
    ``q (B, H, L, E)``, or ``()`` for one logit shared by every row.

    Args:
        sink_logits: what the caller passed.
        kind: ``"numpy"`` or ``"torch"``, the kind of ``q``.
        batch: the call's broadcast batch shape.

    Returns:
        ``sink_logits`` itself (or ``None``).

    Raises:
        TypeError: not an array of ``q``'s kind, or not of a real floating dtype.
        ValueError: a shape that does not broadcast to ``batch``, or a value that is
            not finite (a logit of ``-inf`` is no sink: pass ``None``).

    Example:
        >>> check_sink_logits(np.zeros(4), "numpy", (2, 4)).shape
        (4,)
        >>> check_sink_logits(np.zeros(3), "numpy", (2, 4))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: sink_logits must broadcast to the batch dimensions (...) = (2, 4), ...
    """
    if sink_logits is None:
        return None
    wanted = {"numpy": "a numpy.ndarray", "torch": "a torch.Tensor"}[kind]
    if array_kind(sink_logits) != kind:
        raise TypeError(f"sink_logits must be {wanted}, as q is (or None); got "
                        f"{type(sink_logits).__name__}")
    dt = dtype_name(sink_logits)
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"sink_logits must have a real floating dtype; got {dt} with shape "
                        f"{_shape(sink_logits)}")
    try:
        ok = tuple(np.broadcast_shapes(_shape(sink_logits), batch)) == batch
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"sink_logits must broadcast to the batch dimensions (...) = {batch}, "
                         f"one logit per head; got shape {_shape(sink_logits)}")
    values = sink_logits if kind == "numpy" else sink_logits.detach()
    finite = bool(np.isfinite(values).all()) if kind == "numpy" else bool(values.isfinite().all())
    if not finite:
        raise ValueError("sink_logits must be finite (a sink logit of -inf is no sink: pass "
                         "sink_logits=None)")
    return sink_logits


def _check_inputs(q: Any, k: Any, v: Any) -> tuple[str, str]:
    """q, k and v: arrays of one kind, one real floating dtype, at least 2-D; their kind and dtype."""
    named = (("q", q), ("k", k), ("v", v))
    kinds = {name: array(name, x) for name, x in named}
    if len(set(kinds.values())) > 1:
        raise TypeError(
            "q, k and v must all be NumPy arrays or all torch tensors; got "
            + ", ".join(f"{n}: {kd}" for n, kd in kinds.items())
        )
    dtypes = {name: dtype_name(x) for name, x in named}
    for name, x in named:
        if dtypes[name] not in FLOAT_DTYPES:
            what = "complex" if "complex" in dtypes[name] else "non-floating"
            raise TypeError(
                f"{name} must have a real floating dtype (float16, bfloat16, float32, "
                f"float64); got {what} dtype {dtypes[name]} with shape {_shape(x)}"
            )
    if len(set(dtypes.values())) > 1:
        raise TypeError(
            "q, k and v must share one dtype; got "
            + ", ".join(f"{n}: {d}" for n, d in dtypes.items())
        )
    for name, x in named:
        if x.ndim < 2:
            raise ValueError(
                f"{name} must have at least 2 dimensions (..., length, width); "
                f"got shape {_shape(x)}"
            )
    return kinds["q"], dtypes["q"]


def _check_shapes(qs: tuple[int, ...], ks: tuple[int, ...], vs: tuple[int, ...],
                  enable_gqa: bool) -> tuple[int, tuple[int, ...]]:
    """Widths, lengths, grouped heads and batch dimensions: ``(groups, batch)``."""
    if qs[-1] != ks[-1]:
        raise ValueError(
            f"q and k must have the same width E (last dimension); got q {qs} and k {ks}"
        )
    if ks[-2] != vs[-2]:
        raise ValueError(
            f"k and v must have the same length S (second-to-last dimension); "
            f"got k {ks} and v {vs}"
        )
    groups = 1
    if enable_gqa:
        for name, shape in (("q", qs), ("k", ks), ("v", vs)):
            if len(shape) < 3:
                raise ValueError(
                    f"enable_gqa=True needs a heads dimension (..., H, length, width); "
                    f"got {name} of shape {shape}"
                )
        Hq, Hkv = qs[-3], ks[-3]
        if vs[-3] != Hkv:
            raise ValueError(
                f"enable_gqa=True: k and v must have the same number of heads; got k {ks} and v {vs}"
            )
        if Hkv == 0 or Hq % Hkv:
            raise ValueError(
                "enable_gqa=True: the query heads Hq must be a multiple of the key/value heads "
                f"Hkv (dimension -3); got Hq={Hq} (q {qs}) and Hkv={Hkv} (k {ks})"
            )
        groups = Hq // Hkv
    try:
        if enable_gqa:
            batch = (*np.broadcast_shapes(qs[:-3], ks[:-3], vs[:-3]), qs[-3])
        else:
            batch = tuple(np.broadcast_shapes(qs[:-2], ks[:-2], vs[:-2]))
    except ValueError:
        raise ValueError(
            "the batch dimensions of q, k and v (all but the last two) must broadcast; "
            f"got q {qs}, k {ks}, v {vs}"
        ) from None
    return groups, tuple(int(d) for d in batch)


def _check_mask(mask: Any, target: tuple[int, ...]) -> Literal["bool", "float"] | None:
    """The kind of ``mask`` (``None``, ``"bool"``, ``"float"``), which must broadcast to ``target``."""
    if mask is None:
        return None
    if array_kind(mask) == "other":
        raise TypeError(
            f"mask must be a numpy.ndarray or torch.Tensor (or None); got {type(mask).__name__}"
        )
    mdt = dtype_name(mask)
    if mdt != "bool" and mdt not in FLOAT_DTYPES:
        raise TypeError(
            "mask must be boolean (True = takes part) or floating (added to the "
            f"scores); got dtype {mdt} with shape {_shape(mask)}"
        )
    try:
        ok = tuple(np.broadcast_shapes(_shape(mask), target)) == target
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"mask must broadcast to (..., L, S) = {target}; got shape {_shape(mask)}")
    return "bool" if mdt == "bool" else "float"


def _check_scale(scale: Any, E: int, qs: tuple[int, ...]) -> float:
    """``scale`` as a float; ``None`` means ``1 / sqrt(E)``."""
    if scale is not None:
        return real("scale", scale)
    if E == 0:
        raise ValueError(
            f"scale=None means 1/sqrt(E), undefined for E = 0; got q {qs}: pass scale explicitly"
        )
    return 1.0 / math.sqrt(E)


def check_window(window: Any) -> Window | None:
    """Validate ``window``: ``None``, or ``(left, right)`` of non-negative integers or ``None``.

    ``(None, None)`` (no bound on either side) is returned as ``None``.

    Raises:
        TypeError: not a tuple or list, or a bound that is not an integer.
        ValueError: not a pair, or a negative bound; the message names the argument.

    Example:
        >>> check_window((128, 0)), check_window((None, None))
        ((128, 0), None)
    """
    if window is None:
        return None
    what = ("window must be None or a pair (left, right) of non-negative integers or None "
            f"(None = unbounded on that side); got {window!r}")
    if not isinstance(window, (tuple, list)):
        raise TypeError(f"{what} of type {type(window).__name__}")
    if len(window) != 2:
        raise ValueError(what)
    left, right = (None if w is None else integer(f"window[{i}]", w, minimum=0)
                   for i, w in enumerate(window))
    if left is None and right is None:
        return None
    return (left, right)
