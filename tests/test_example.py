"""The shared example and BRIEF's known results for row 0 ("The")."""

from __future__ import annotations

import numpy as np
import pytest

import attnkit
from attnkit import example


def test_shapes_and_tokens() -> None:
    assert example.tokens == ("The", "cat", "sat", "on", "mat")
    for m in (example.Q, example.K, example.V):
        assert m.shape == (5, 4) and m.dtype == np.float64
    assert example.d_k == 4


def test_example_is_read_only() -> None:
    with pytest.raises(ValueError):
        example.Q[0, 0] = 5.0


def test_row0_steps() -> None:
    raw = example.Q[0] @ example.K.T
    np.testing.assert_allclose(raw, [0, 2, 1, 1, 1.5])
    scaled = raw / np.sqrt(example.d_k)
    np.testing.assert_allclose(scaled, [0, 1, 0.5, 0.5, 0.75])
    out, w = attnkit.attention(example.Q, example.K, example.V, return_weights=True)
    np.testing.assert_allclose(w[0], [0.1095, 0.2976, 0.1805, 0.1805, 0.2318], atol=5e-5)
    np.testing.assert_allclose(out[0], [0.2254, 0.4135, 0.2964, 0.2964], atol=5e-5)


@pytest.mark.parametrize("backend", attnkit.backends())
def test_row0_every_backend(backend: str) -> None:
    # float32: the one precision every engine takes (the Triton kernels have no float64).
    q, k, v = (m.astype(np.float32) for m in (example.Q, example.K, example.V))
    out = attnkit.attention(q, k, v, backend=backend)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], [0.2254, 0.4135, 0.2964, 0.2964], atol=5e-5)
