"""Position encodings: sinusoids, RoPE, ALiBi, T5 buckets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from attnkit.models.positions import (
    alibi_bias,
    alibi_slopes,
    apply_rope,
    relative_position_bucket,
    rope_angles,
    sinusoidal_positions,
)


# ------------------------------------------------------------------ sinusoids
def test_sinusoidal_values() -> None:
    P = sinusoidal_positions(50, 8)
    assert P.shape == (50, 8) and P.dtype == np.float64
    p = np.arange(50)
    np.testing.assert_allclose(P[:, 0], np.sin(p))  # i = 0: wavelength 2 pi
    np.testing.assert_allclose(P[:, 1], np.cos(p))
    np.testing.assert_allclose(P[:, 2], np.sin(p / 10000 ** (2 / 8)))
    np.testing.assert_allclose(P[:, 7], np.cos(p / 10000 ** (6 / 8)))
    np.testing.assert_allclose(P[0], [0, 1, 0, 1, 0, 1, 0, 1])
    # every (sin, cos) pair has norm 1, so every row has norm sqrt(d / 2)
    np.testing.assert_allclose(np.linalg.norm(P, axis=1), 2.0)
    assert P[1, 0] == pytest.approx(0.8414709848)


def test_sinusoidal_base() -> None:
    P = sinusoidal_positions(3, 4, base=100.0)
    assert P[2, 2] == pytest.approx(math.sin(2 / 100 ** 0.5))


@pytest.mark.parametrize("n,d,error", [(-1, 4, ValueError), (3, 3, ValueError), (3, 0, ValueError),
                                       (2.0, 4, TypeError)])
def test_sinusoidal_errors(n: object, d: object, error: type) -> None:
    with pytest.raises(error, match="n_positions|dim"):
        sinusoidal_positions(n, d)  # type: ignore[arg-type]


def test_bad_base() -> None:
    with pytest.raises(ValueError, match="base"):
        rope_angles([0, 1], 4, base=1.0)
    with pytest.raises(TypeError, match="base"):
        rope_angles([0, 1], 4, base="10000")  # type: ignore[arg-type]


# ------------------------------------------------------------------ RoPE
def _score(q: np.ndarray, k: np.ndarray, m: int, n: int, d: int) -> float:
    qm = apply_rope(q[None], positions=[m])[0]
    kn = apply_rope(k[None], positions=[n])[0]
    return float(qm @ kn)


@pytest.mark.parametrize("d", [2, 8, 64])
def test_rope_relative_property(d: int) -> None:
    """q_m . k_n depends only on m - n: shifting both positions changes nothing."""
    rng = np.random.default_rng(0)
    q, k = rng.standard_normal(d), rng.standard_normal(d)
    for m, n in [(0, 0), (5, 2), (2, 5), (17, 3), (100, 99)]:
        base = _score(q, k, m, n, d)
        for shift in (1, 7, 1000):
            assert _score(q, k, m + shift, n + shift, d) == pytest.approx(base, abs=1e-9)
    # ... but it does depend on m - n
    assert abs(_score(q, k, 3, 0, d) - _score(q, k, 0, 0, d)) > 1e-6


def test_rope_matrix_form_is_toeplitz() -> None:
    """All scores of rotated q and k: entry (m, n) depends on m - n only."""
    rng = np.random.default_rng(1)
    q = np.tile(rng.standard_normal(8), (6, 1))  # the same vector at every position
    k = np.tile(rng.standard_normal(8), (6, 1))
    scores = apply_rope(q) @ apply_rope(k).T  # (6, 6)
    for offset in range(-5, 6):
        diag = np.diagonal(scores, offset=offset)
        np.testing.assert_allclose(diag, diag[0], atol=1e-12)


def test_rope_is_a_rotation() -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 7, 8))
    y = apply_rope(x)
    assert y.shape == x.shape
    pairs = lambda a: np.hypot(a[..., 0::2], a[..., 1::2])  # noqa: E731
    np.testing.assert_allclose(pairs(y), pairs(x))
    np.testing.assert_allclose(y[..., 0, :], x[..., 0, :])  # position 0: no rotation


def test_rope_as_complex_multiplication() -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 6))
    z = x[:, 0::2] + 1j * x[:, 1::2]
    rotated = z * np.exp(1j * rope_angles(np.arange(5), 6))
    y = apply_rope(x)
    np.testing.assert_allclose(y[:, 0::2], rotated.real, atol=1e-12)
    np.testing.assert_allclose(y[:, 1::2], rotated.imag, atol=1e-12)


def test_rope_torch_matches_numpy() -> None:
    x = np.random.default_rng(4).standard_normal((2, 5, 4))
    pos = np.arange(3, 8)
    got = apply_rope(torch.from_numpy(x), positions=torch.from_numpy(pos))
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), apply_rope(x, positions=pos), atol=1e-12)
    got32 = apply_rope(torch.from_numpy(x).float())
    assert got32.dtype == torch.float32


def test_rope_errors() -> None:
    with pytest.raises(TypeError, match="x must"):
        apply_rope([[1.0, 2.0]])
    with pytest.raises(TypeError, match="floating"):
        apply_rope(np.ones((2, 4), dtype=np.int64))
    with pytest.raises(ValueError, match="D even"):
        apply_rope(np.ones((2, 3)))
    with pytest.raises(ValueError, match="one position per row"):
        apply_rope(np.ones((2, 4)), positions=[0, 1, 2])
    with pytest.raises(ValueError, match="1-D"):
        rope_angles(np.zeros((2, 2)), 4)


# ------------------------------------------------------------------ ALiBi
def test_alibi_slopes_8_heads() -> None:
    np.testing.assert_allclose(alibi_slopes(8), [2.0 ** -h for h in range(1, 9)])


def test_alibi_slopes_other_counts() -> None:
    np.testing.assert_allclose(alibi_slopes(16), [2.0 ** (-h / 2) for h in range(1, 17)])
    # 12 heads: the 8-head slopes, then every other slope of the 16-head sequence
    expected = [2.0 ** -h for h in range(1, 9)] + [2.0 ** (-h / 2) for h in (1, 3, 5, 7)]
    np.testing.assert_allclose(alibi_slopes(12), expected)
    assert len(alibi_slopes(5)) == 5
    with pytest.raises(ValueError, match="num_heads"):
        alibi_slopes(0)


def test_alibi_bias() -> None:
    b = alibi_bias(8, 4)
    assert b.shape == (8, 4, 4)
    np.testing.assert_array_equal(np.diagonal(b, axis1=1, axis2=2), 0.0)
    assert b[0, 3, 0] == -1.5  # slope 1/2, distance 3
    assert b[7, 3, 1] == -2 / 256
    # fewer queries than keys: the queries are the last positions
    np.testing.assert_array_equal(alibi_bias(2, 1, 4)[:, 0], alibi_bias(2, 4)[:, 3])
    with pytest.raises(ValueError, match="S"):
        alibi_bias(2, 3, -1)


# ------------------------------------------------------------------ T5 buckets
def test_t5_buckets_known_values() -> None:
    rel = np.array([0, -1, 1, -7, -8, -20, -200, 200, 7])
    expected = [0, 1, 17, 7, 8, 10, 15, 31, 23]
    np.testing.assert_array_equal(relative_position_bucket(rel), expected)


def test_t5_buckets_properties() -> None:
    rel = np.arange(-300, 301)
    b = relative_position_bucket(rel, num_buckets=32, max_distance=128)
    assert b.min() == 0 and b.max() == 31
    back = b[rel <= 0][::-1]  # distances 0, 1, 2, ... back from the query
    assert np.all(np.diff(back) >= 0)  # never decreasing with distance
    assert np.all(b[(rel <= -128)] == 15)  # everything far away shares the last bucket
    uni = relative_position_bucket(rel, bidirectional=False, num_buckets=32)
    assert np.all(uni[rel > 0] == 0) and uni.max() == 31


def test_t5_bucket_errors() -> None:
    with pytest.raises(ValueError, match="integers"):
        relative_position_bucket(np.array([0.5]))
    with pytest.raises(ValueError, match="num_buckets"):
        relative_position_bucket(np.array([0]), num_buckets=2)
    with pytest.raises(ValueError, match="max_distance"):
        relative_position_bucket(np.array([0]), num_buckets=32, max_distance=4)
