"""FP8 caches (e4m3, e5m2) with per-head scales: round-trip error bounds from the mantissa widths."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attnkit import serving
from attnkit.serving.fp8 import FP8_FORMATS, Float8Quantized, quantize_fp8
from attnkit.serving.sizing import quantize

# the formats' fields, written out: (mantissa bits, exponent of the smallest normal, largest finite)
FIELDS = {"e4m3": (3, -6, 448.0), "e5m2": (2, -14, 57344.0)}


def _cache(outliers: bool, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 3, 64, 32))  # (B, H, T, D)
    if outliers:
        x[..., :2] *= 50.0  # two outlier channels in every head
        x[..., 5] *= 1e-3  # and a channel of tiny numbers
    return x


def test_the_formats_are_torchs() -> None:
    for name, (m, e_min, top) in FIELDS.items():
        f = FP8_FORMATS[name]
        info = torch.finfo(getattr(torch, f.torch_dtype))
        assert (f.mantissa_bits, f.min_exponent, f.max) == (m, e_min, top)
        assert info.max == top and info.tiny == 2.0**e_min
        assert f.relative_error == 2.0 ** -(m + 1) and f.subnormal_error == 2.0 ** (e_min - m - 1)


@pytest.mark.parametrize("fmt", ["e4m3", "e5m2"])
@pytest.mark.parametrize("outliers", [False, True])
def test_round_trip_error_within_the_mantissa_bound(fmt: str, outliers: bool) -> None:
    x = _cache(outliers)
    q = quantize_fp8(x, fmt)
    m, e_min, top = FIELDS[fmt]
    assert q.values.dtype == getattr(torch, FP8_FORMATS[fmt].torch_dtype)
    assert q.values.shape == x.shape and q.scales.shape == (2, 3)
    np.testing.assert_allclose(q.scales, np.abs(x).max(axis=(-2, -1)) / top, rtol=1e-6)
    s = q.scales.astype(np.float64)[..., None, None]
    # round to nearest: relative 2**-(m+1) in the normal range, half the subnormal step below it;
    # 2**-22 |x| for the float32 division and product around the rounding
    bound = 2.0 ** -(m + 1) * np.abs(x) + 2.0 ** (e_min - m - 1) * s + 2.0**-22 * np.abs(x)
    err = np.abs(q.dequantize() - x)
    assert np.all(err <= bound)
    # the bound is attained to within a factor of two somewhere (it is not loose)
    normal = np.abs(x) / s >= 2.0**e_min
    assert np.max(err[normal] / np.abs(x[normal])) > 2.0 ** -(m + 2)
    # the largest magnitude of each head is stored exactly at the format's largest finite
    assert np.allclose(np.abs(q.values.float().numpy()).max(axis=(-2, -1)), top)


def test_outlier_channels_cost_fp8_little_and_integers_much() -> None:
    """A per-head FP8 scale keeps the ordinary channels' relative precision; int8 per group loses it."""
    x = _cache(outliers=True)
    ordinary = np.ones(32, dtype=bool)
    ordinary[[0, 1, 5]] = False
    ref = np.abs(x[..., ordinary])
    rel_fp8 = np.abs(quantize_fp8(x, "e4m3").dequantize() - x)[..., ordinary] / ref
    rel_int8 = np.abs(quantize(x, 8, group_size=32).dequantize() - x)[..., ordinary] / ref
    assert np.median(rel_fp8) <= 2.0**-4
    assert np.median(rel_int8) > 4 * np.median(rel_fp8)


def test_zero_heads_torch_input_and_storage() -> None:
    x = torch.zeros(3, 4, 8, dtype=torch.float32)
    x[1] = torch.linspace(-2, 2, 32).reshape(4, 8)
    q = quantize_fp8(x, "e5m2")
    assert isinstance(q, Float8Quantized)
    assert q.scales[0] == 1.0 and q.scales[2] == 1.0
    assert np.all(q.dequantize()[[0, 2]] == 0)
    assert q.nbytes == 3 * 4 * 8 + 4 * 3
    one_head = quantize_fp8(np.ones((4, 8)))
    assert one_head.scales.shape == () and one_head.fmt.name == "e4m3"
    assert serving.quantize_fp8 is quantize_fp8


@pytest.mark.parametrize(("x", "fmt", "error", "words"), [
    (np.ones((2, 2)), "e3m4", ValueError, r"fmt must be one of \['e4m3', 'e5m2'\]; got 'e3m4'"),
    (np.ones((2, 2)), 8, TypeError, "fmt must be one of"),
    (np.ones(4), "e4m3", ValueError, "at least two dimensions"),
    (np.array([[1.0, np.inf]]), "e4m3", ValueError, "finite"),
])
def test_bad_input(x, fmt, error, words) -> None:
    with pytest.raises(error, match=words):
        quantize_fp8(x, fmt)
