"""Validation: the one vocabulary of argument checks, and the one attention-call routine.

* :func:`integer`, :func:`positive_int`, :func:`real` and :func:`choice` check one
  argument each and raise a ``TypeError``/``ValueError`` whose message names the
  argument and what it got, in one style (``"n must be a positive integer; got 0"``).
  Every module of the library uses them (the grader has its own, student-facing,
  messages).
* :func:`check_attention_args` turns the arguments of :func:`attnkit.attention`
  into an :class:`AttentionSpec` (shapes, scale, causal alignment, mask kind and
  the variants: window, sinks, soft-capping, grouped-query heads, score modifier).
  Engines receive only validated arguments.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ._arrays import array_kind, dtype_name

CausalArg = bool | Literal["top-left", "bottom-right"]
Alignment = Literal["top-left", "bottom-right"]

FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")

#: ``window=(left, right)``: ``None`` on a side means unbounded.
Window = tuple[int | None, int | None]
#: ``score_mod(score, b, h, q_idx, kv_idx) -> score``, as ``torch.nn.attention.flex_attention``.
ScoreMod = Callable[[Any, Any, Any, Any, Any], Any]


# ----------------------------------------------------------------------------- vocabulary


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


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
        ValueError: not an integer, or out of range; the message names the argument.

    Example:
        >>> integer("sinks", 4, minimum=0)
        4
        >>> integer("n", 0, minimum=1)
        Traceback (most recent call last):
        ...
        ValueError: n must be a positive integer; got 0
    """
    ok = _is_int(value)
    if ok and minimum is not None and value < minimum:
        ok = False
    if ok and maximum is not None and value > maximum:
        ok = False
    if not ok:
        if minimum == 1 and maximum is None:
            what = "a positive integer"
        elif minimum == 0 and maximum is None:
            what = "a non-negative integer"
        elif minimum is not None and maximum is not None:
            what = f"an integer in [{minimum}, {maximum}]"
        elif minimum is not None:
            what = f"an integer >= {minimum}"
        elif maximum is not None:
            what = f"an integer <= {maximum}"
        else:
            what = "an integer"
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
         finite: bool = True) -> float:
    """Check that ``value`` is a real number (not a bool); return it as a float.

    Args:
        name: the argument's name, for the message.
        value: what the caller passed.
        positive: require ``value > 0``.
        above: require ``value > above``.
        finite: require a finite value (no ``inf``/``nan``).

    Returns:
        ``float(value)``.

    Raises:
        TypeError: not a real number.
        ValueError: not finite, or not above the bound.

    Example:
        >>> real("softcap", 30, positive=True)
        30.0
        >>> real("scale", "2")
        Traceback (most recent call last):
        ...
        TypeError: scale must be a real number; got '2' of type str
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {value!r} of type {type(value).__name__}")
    f = float(value)
    if finite and not math.isfinite(f):
        raise ValueError(f"{name} must be finite; got {value!r}")
    if positive and not f > 0:
        raise ValueError(f"{name} must be a finite positive number; got {value!r}")
    if above is not None and not f > above:
        raise ValueError(f"{name} must be a number > {above:g}; got {value!r}")
    return f


def choice(name: str, value: Any, options: Sequence[Any]) -> Any:
    """Check that ``value`` is one of ``options``; return it.

    Raises:
        ValueError: any other value; the message lists the options.

    Example:
        >>> choice("device", "gpu", ["cpu", "cuda"])
        Traceback (most recent call last):
        ...
        ValueError: device must be one of ['cpu', 'cuda']; got 'gpu'
    """
    if not any(value is o or (type(value) is type(o) and value == o) for o in options):
        raise ValueError(f"{name} must be one of {list(options)}; got {value!r}")
    return value


def flag(name: str, value: Any) -> bool:
    """Check that ``value`` is a bool (Python's or NumPy's); return it.

    Example:
        >>> flag("enable_gqa", True)
        True
    """
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool; got {value!r}")
    return bool(value)


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
                "enable_gqa": self.groups > 1}
        return frozenset(name for name, on in used.items() if on)

    @property
    def bounded(self) -> bool:
        """True when a causal mask or a window limits which keys a query sees."""
        return self.causal is not None or self.window is not None


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in x.shape)


def normalise_causal(causal: Any) -> Alignment | None:
    """Map the ``causal`` argument to ``None``, ``"top-left"`` or ``"bottom-right"``."""
    if isinstance(causal, (bool, np.bool_)):
        return "top-left" if causal else None
    if isinstance(causal, str) and causal in ("top-left", "bottom-right"):
        return causal  # type: ignore[return-value]
    raise ValueError(
        "causal must be False, True, 'top-left' or 'bottom-right'; "
        f"got {causal!r} of type {type(causal).__name__}"
    )


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
) -> AttentionSpec:
    """Validate the arguments of :func:`attnkit.attention` and describe the call.

    Shapes: ``q (..., L, E)``, ``k (..., S, E)``, ``v (..., S, Ev)``, ``mask``
    broadcastable to ``(..., L, S)``; with ``enable_gqa=True``,
    ``q (..., Hq, L, E)``, ``k (..., Hkv, S, E)``, ``v (..., Hkv, S, Ev)``.

    Returns:
        The :class:`AttentionSpec` of the call.

    Raises:
        TypeError: an input that is not an array/tensor, a non-floating or complex
            dtype, mixed dtypes or array kinds, a mask that is neither boolean nor
            floating, a ``scale`` that is not a real number.
        ValueError: fewer than 2 dimensions, q/k widths that differ, k/v lengths
            that differ, batch dimensions or a mask that do not broadcast, a
            non-finite scale, an unknown ``causal`` value, a window that is not a pair
            of non-negative integers or ``None``, negative ``sinks``, a ``softcap`` that
            is not positive, query heads that are not a multiple of the key/value
            heads (``enable_gqa``), a ``score_mod`` that is not callable.

    Example:
        >>> import numpy as np
        >>> spec = check_attention_args(np.ones((2, 8, 5, 4)), np.ones((2, 2, 7, 4)),
        ...                             np.ones((2, 2, 7, 3)), enable_gqa=True, window=(3, 0))
        >>> spec.batch, spec.groups, spec.window
        ((2, 8), 4, (3, 0))
    """
    kinds = {}
    for name, x in (("q", q), ("k", k), ("v", v)):
        kind = array_kind(x)
        if kind == "other":
            raise TypeError(
                f"{name} must be a numpy.ndarray or torch.Tensor; got {type(x).__name__}"
            )
        kinds[name] = kind
    if len(set(kinds.values())) > 1:
        raise TypeError(
            "q, k and v must all be NumPy arrays or all torch tensors; got "
            + ", ".join(f"{n}: {kd}" for n, kd in kinds.items())
        )
    for name, x in (("q", q), ("k", k), ("v", v)):
        dt = dtype_name(x)
        if dt not in FLOAT_DTYPES:
            what = "complex" if "complex" in dt else "non-floating"
            raise TypeError(
                f"{name} must have a real floating dtype (float16, bfloat16, float32, "
                f"float64); got {what} dtype {dt} with shape {_shape(x)}"
            )
    dtypes = {n: dtype_name(x) for n, x in (("q", q), ("k", k), ("v", v))}
    if len(set(dtypes.values())) > 1:
        raise TypeError(
            "q, k and v must share one dtype; got "
            + ", ".join(f"{n}: {d}" for n, d in dtypes.items())
        )
    for name, x in (("q", q), ("k", k), ("v", v)):
        if x.ndim < 2:
            raise ValueError(
                f"{name} must have at least 2 dimensions (..., length, width); "
                f"got shape {_shape(x)}"
            )
    qs, ks, vs = _shape(q), _shape(k), _shape(v)
    if qs[-1] != ks[-1]:
        raise ValueError(
            f"q and k must have the same width E (last dimension); got q {qs} and k {ks}"
        )
    if ks[-2] != vs[-2]:
        raise ValueError(
            f"k and v must have the same length S (second-to-last dimension); "
            f"got k {ks} and v {vs}"
        )
    enable_gqa = flag("enable_gqa", enable_gqa)
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
        if groups > 1 or enable_gqa:
            batch = (*np.broadcast_shapes(qs[:-3], ks[:-3], vs[:-3]), qs[-3])
        else:
            batch = tuple(np.broadcast_shapes(qs[:-2], ks[:-2], vs[:-2]))
    except ValueError:
        raise ValueError(
            "the batch dimensions of q, k and v (all but the last two) must broadcast; "
            f"got q {qs}, k {ks}, v {vs}"
        ) from None
    batch = tuple(int(d) for d in batch)
    L, E = qs[-2], qs[-1]
    S, Ev = ks[-2], vs[-1]

    mask_kind = None
    if mask is not None:
        mkind = array_kind(mask)
        if mkind == "other":
            raise TypeError(
                f"mask must be a numpy.ndarray or torch.Tensor (or None); got {type(mask).__name__}"
            )
        mdt = dtype_name(mask)
        if mdt == "bool":
            mask_kind = "bool"
        elif mdt in FLOAT_DTYPES:
            mask_kind = "float"
        else:
            raise TypeError(
                "mask must be boolean (True = takes part) or floating (added to the "
                f"scores); got dtype {mdt} with shape {_shape(mask)}"
            )
        target = (*batch, L, S)
        try:
            ok = tuple(np.broadcast_shapes(_shape(mask), target)) == target
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(
                f"mask must broadcast to (..., L, S) = {target}; got shape {_shape(mask)}"
            )

    if scale is None:
        if E == 0:
            raise ValueError(
                "scale=None means 1/sqrt(E), undefined for E = 0; got q "
                f"{qs}: pass scale explicitly"
            )
        scale_f = 1.0 / math.sqrt(E)
    else:
        scale_f = real("scale", scale)

    return_weights = flag("return_weights", return_weights)
    window_t = check_window(window)
    sinks_i = integer("sinks", sinks, minimum=0)
    softcap_f = None if softcap is None else real("softcap", softcap, positive=True)
    if score_mod is not None and not callable(score_mod):
        raise TypeError(
            "score_mod must be a function f(score, b, h, q_idx, kv_idx) -> score (or None); "
            f"got {type(score_mod).__name__}"
        )

    return AttentionSpec(
        batch=batch,
        L=L,
        S=S,
        E=E,
        Ev=Ev,
        scale=scale_f,
        causal=normalise_causal(causal),
        mask_kind=mask_kind,
        dtype=dtypes["q"],
        kind=kinds["q"],  # type: ignore[arg-type]
        return_weights=return_weights,
        window=window_t,
        sinks=sinks_i,
        softcap=softcap_f,
        score_mod=score_mod,
        groups=groups,
    )


def check_window(window: Any) -> Window | None:
    """Validate ``window``: ``None``, or ``(left, right)`` of non-negative integers or ``None``.

    ``(None, None)`` (no bound on either side) is returned as ``None``.

    Raises:
        ValueError: anything else, naming the argument.

    Example:
        >>> check_window((128, 0)), check_window((None, None))
        ((128, 0), None)
    """
    if window is None:
        return None
    if not isinstance(window, (tuple, list)) or len(window) != 2:
        raise ValueError(
            "window must be None or a pair (left, right) of non-negative integers or None "
            f"(None = unbounded on that side); got {window!r}"
        )
    left, right = (None if w is None else integer(f"window[{i}]", w, minimum=0)
                   for i, w in enumerate(window))
    if left is None and right is None:
        return None
    return (left, right)
