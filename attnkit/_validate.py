"""The one validation routine shared by every engine.

:func:`check_attention_args` turns the user's arguments into an
:class:`AttentionSpec` (shapes, scale, causal alignment, mask kind) or raises a
``TypeError``/``ValueError`` whose message names the argument and what it got.
Engines receive only validated arguments.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ._arrays import array_kind, dtype_name

CausalArg = bool | Literal["top-left", "bottom-right"]
Alignment = Literal["top-left", "bottom-right"]

FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")


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

    @property
    def out_shape(self) -> tuple[int, ...]:
        """Shape of the output, ``(..., L, Ev)``."""
        return (*self.batch, self.L, self.Ev)

    @property
    def weights_shape(self) -> tuple[int, ...]:
        """Shape of the attention weights, ``(..., L, S)``."""
        return (*self.batch, self.L, self.S)


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
) -> AttentionSpec:
    """Validate the arguments of :func:`attnkit.attention` and describe the call.

    Shapes: ``q (..., L, E)``, ``k (..., S, E)``, ``v (..., S, Ev)``, ``mask``
    broadcastable to ``(..., L, S)``.

    Raises:
        TypeError: an input that is not an array/tensor, a non-floating or complex
            dtype, mixed dtypes or array kinds, a mask that is neither boolean nor
            floating, a ``scale`` that is not a real number.
        ValueError: fewer than 2 dimensions, q/k widths that differ, k/v lengths
            that differ, batch dimensions or a mask that do not broadcast, a
            non-finite scale, an unknown ``causal`` value.
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
    try:
        batch = tuple(np.broadcast_shapes(qs[:-2], ks[:-2], vs[:-2]))
    except ValueError:
        raise ValueError(
            "the batch dimensions of q, k and v (all but the last two) must broadcast; "
            f"got q {qs}, k {ks}, v {vs}"
        ) from None
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
        if isinstance(scale, (bool, np.bool_)) or not isinstance(scale, numbers.Real):
            raise TypeError(
                f"scale must be a real number (or None for 1/sqrt(E)); got {scale!r} "
                f"of type {type(scale).__name__}"
            )
        scale_f = float(scale)
        if not math.isfinite(scale_f):
            raise ValueError(f"scale must be finite; got {scale!r}")

    if not isinstance(return_weights, (bool, np.bool_)):
        raise TypeError(f"return_weights must be a bool; got {return_weights!r}")

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
        return_weights=bool(return_weights),
    )
