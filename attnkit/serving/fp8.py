"""FP8 key/value caches: e4m3 and e5m2 with one scale per head.

Beside the integer formats of :func:`attnkit.serving.sizing.quantize` (8 or 4 bits,
one float16 scale per group of numbers along the head dimension), a cache can hold
8-bit floating-point numbers (torch's ``float8_e4m3fn`` and ``float8_e5m2``, the
formats of Micikevicius et al. 2022, "FP8 formats for deep learning"), each head
scaled once so that its largest magnitude maps to the format's largest finite
number::

    format  exponent  mantissa  largest finite  smallest normal  smallest subnormal
    e4m3    4 bits    3 bits    448             2**-6            2**-9
    e5m2    5 bits    2 bits    57344           2**-14           2**-16

A floating-point format keeps a *relative* precision: rounding to nearest, a number
``y`` in the normal range is off by at most ``2**-(m + 1) |y|`` (``m`` mantissa
bits: 1/16 for e4m3, 1/8 for e5m2); below the smallest normal, by at most half the
subnormal spacing, ``2**(e_min - m - 1)``. So an outlier channel, which inflates the
scale of its head, costs the other channels of that head little: they keep their
relative precision unless the outlier pushes them below the normal range, while an
integer format's step is the same absolute size for every number of a group.

``quantize_fp8`` imports torch when called (through ``attnkit.core._arrays.torch_module``);
importing this module does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core._arrays import torch_module
from ..core._validate import choice

__all__ = ["FP8_FORMATS", "Float8Format", "Float8Quantized", "quantize_fp8"]


@dataclass(frozen=True)
class Float8Format:
    """An 8-bit floating-point format: its fields and what rounding into it costs.

    Attributes:
        name: ``"e4m3"`` or ``"e5m2"``. exponent_bits, mantissa_bits: field widths
            (with the sign bit, 8 in all). max: the largest finite number.
        min_exponent: exponent of the smallest normal number (``2**min_exponent``).
        torch_dtype: the name of torch's dtype (``"float8_e4m3fn"``, ``"float8_e5m2"``).

    Example:
        >>> f = FP8_FORMATS["e4m3"]
        >>> f.relative_error, f.subnormal_error, f.max
        (0.0625, 0.0009765625, 448.0)
    """

    name: str
    exponent_bits: int
    mantissa_bits: int
    max: float
    min_exponent: int
    torch_dtype: str

    @property
    def relative_error(self) -> float:
        """Largest relative rounding error in the normal range: ``2**-(mantissa_bits + 1)``."""
        return 2.0 ** -(self.mantissa_bits + 1)

    @property
    def subnormal_error(self) -> float:
        """Largest absolute rounding error below the normal range: half the subnormal spacing."""
        return 2.0 ** (self.min_exponent - self.mantissa_bits - 1)

    def error_bound(self, x: Any, scale: Any) -> np.ndarray:
        """The bound on ``|x - dequantised x|`` of each number, for numbers stored with ``scale``.

        ``relative_error x |x| + subnormal_error x scale`` (the larger of the two
        applies; their sum bounds both). ``scale`` broadcasts against ``x``.

        Example:
            >>> FP8_FORMATS["e5m2"].error_bound(np.array([8.0]), 1.0).tolist()
            [1.0000076293945312]
        """
        x = np.abs(np.asarray(x, dtype=np.float64))
        return self.relative_error * x + self.subnormal_error * np.asarray(scale, np.float64)


#: The two FP8 formats of torch (OCP 8-bit floating point; e4m3 without infinities).
FP8_FORMATS: dict[str, Float8Format] = {
    "e4m3": Float8Format("e4m3", 4, 3, 448.0, -6, "float8_e4m3fn"),
    "e5m2": Float8Format("e5m2", 5, 2, 57344.0, -14, "float8_e5m2"),
}


@dataclass(frozen=True)
class Float8Quantized:
    """A cache stored as FP8 numbers with one float32 scale per head.

    Attributes:
        values: a torch tensor of the format's dtype, the input's shape ``(..., T, D)``.
        scales: float32 scales, shape ``(...)``: one per head (per index of the
            leading axes).
        fmt: the :class:`Float8Format`.

    Example:
        >>> q = quantize_fp8(np.full((2, 3, 4), 2.0), "e5m2")    # two heads of 3 tokens by 4
        >>> q.scales.shape, q.nbytes, float(q.dequantize()[1, 2, 3])
        ((2,), 32, 2.0)
    """

    values: Any
    scales: np.ndarray
    fmt: Float8Format

    def dequantize(self) -> np.ndarray:
        """The float32 array the FP8 numbers and their scales stand for, shape ``(..., T, D)``."""
        vals = self.values.float().numpy()
        return vals * self.scales.astype(np.float32)[..., None, None]

    @property
    def nbytes(self) -> int:
        """Storage in bytes: one per number plus four per scale."""
        return int(self.values.numel()) + 4 * int(self.scales.size)


def quantize_fp8(x: Any, fmt: str = "e4m3") -> Float8Quantized:
    """Store ``x`` in an FP8 format, one scale per head: ``scale = max|x| / fmt.max``.

    Each head (the last two axes, tokens by head width, of one index of the leading
    axes) is divided by its scale, rounded to the nearest FP8 number (torch's
    conversion, round to nearest even) and kept with its float32 scale. A head of
    zeros gets scale 1. The error of each number is at most
    :meth:`Float8Format.error_bound` (up to float32 rounding of the division).

    Shapes::

        x       (..., T, D)   a cache of heads: (T, D) is one head, (H, T, D) H heads,
                              (B, H, T, D) one scale per sequence and head
        values  (..., T, D)   torch float8_e4m3fn or float8_e5m2
        scales  (...)         float32

    Args:
        x: a NumPy array, a torch tensor or anything ``np.asarray`` accepts, of real
            numbers, with at least two dimensions.
        fmt: ``"e4m3"`` (more precision) or ``"e5m2"`` (more range).

    Returns:
        A :class:`Float8Quantized`; ``.dequantize()`` gives the approximation back.

    Raises:
        TypeError: ``fmt`` not a string.
        ValueError: an unknown format, fewer than two dimensions, a non-finite input.

    Example:
        >>> q = quantize_fp8(np.array([[[1.0, -3.0], [0.1, 448.0]]]), "e4m3")
        >>> q.scales.tolist(), q.dequantize().tolist()
        ([1.0], [[[1.0, -3.0], [0.1015625, 448.0]]])
        >>> quantize_fp8(np.ones((2, 2)), "e3m4")
        Traceback (most recent call last):
        ...
        ValueError: fmt must be one of ['e4m3', 'e5m2']; got 'e3m4'
    """
    torch = torch_module()
    spec = FP8_FORMATS[choice("fmt", fmt, list(FP8_FORMATS))]
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim < 2:
        raise ValueError(f"x must have at least two dimensions (..., T, D); got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("x must be finite")
    amax = np.abs(arr).max(axis=(-2, -1)) if arr.size else np.zeros(arr.shape[:-2])
    scales = (amax / spec.max).astype(np.float32)  # (...)
    safe = np.where(scales == 0, np.float32(1), scales)
    scales = safe  # a head of zeros is stored with scale 1
    scaled = torch.from_numpy((arr / safe.astype(np.float64)[..., None, None]).astype(np.float32))
    scaled = scaled.clamp(-spec.max, spec.max)  # the division may round just past the largest finite
    values = scaled.to(getattr(torch, spec.torch_dtype))
    return Float8Quantized(values, scales, spec)
