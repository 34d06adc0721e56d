"""Masks and the stable softmax."""

from __future__ import annotations

import numpy as np
import pytest

from attnkit import causal_mask, causal_offset, key_padding_mask, softmax


def test_causal_square() -> None:
    np.testing.assert_array_equal(causal_mask(4), np.tril(np.ones((4, 4), bool)))


@pytest.mark.parametrize("L,S", [(2, 5), (5, 2), (3, 3), (1, 4), (0, 3), (3, 0)])
def test_alignments(L: int, S: int) -> None:
    tl = causal_mask(L, S, alignment="top-left")
    br = causal_mask(L, S, alignment="bottom-right")
    assert tl.shape == br.shape == (L, S)
    np.testing.assert_array_equal(tl, np.tril(np.ones((L, S), bool)))
    np.testing.assert_array_equal(br, np.tril(np.ones((L, S), bool), k=S - L))
    assert causal_offset(L, S, "bottom-right") == S - L
    if L and S:
        # bottom-right: the last query (the newest token) sees every key
        assert br[-1].all()


def test_docstring_pictures() -> None:
    assert causal_mask(2, 5, alignment="bottom-right").astype(int).tolist() == [
        [1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]
    assert causal_mask(5, 2, alignment="bottom-right").astype(int).tolist() == [
        [0, 0], [0, 0], [0, 0], [1, 0], [1, 1]]


def test_causal_mask_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="L must be"):
        causal_mask(-1)
    with pytest.raises(TypeError, match="S must be"):
        causal_mask(2, 2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="causal"):
        causal_mask(2, alignment="middle")  # type: ignore[arg-type]


def test_key_padding() -> None:
    m = key_padding_mask([2, 3, 0], 3)
    assert m.shape == (3, 1, 3)
    assert m[:, 0].astype(int).tolist() == [[1, 1, 0], [1, 1, 1], [0, 0, 0]]
    with pytest.raises(ValueError, match="lengths"):
        key_padding_mask([4], 3)
    with pytest.raises(ValueError, match="lengths"):
        key_padding_mask([[1]], 3)


def test_softmax_facts() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 7))
    p = softmax(x)
    np.testing.assert_allclose(p.sum(-1), 1.0)
    np.testing.assert_allclose(softmax(x + 123.0), p)  # shift invariance
    np.testing.assert_allclose(softmax(np.array([1.0, 2.0, 3.0]))[1], 0.2447, atol=5e-5)


def test_softmax_stable_and_masked_rows() -> None:
    big = softmax(np.array([1000.0, 1001.0]))
    assert np.isfinite(big).all()
    np.testing.assert_allclose(big, softmax(np.array([0.0, 1.0])))
    dead = softmax(np.array([[-np.inf, -np.inf], [0.0, -np.inf]]))
    np.testing.assert_array_equal(dead, [[0.0, 0.0], [1.0, 0.0]])
    assert softmax(np.zeros((2, 0))).shape == (2, 0)
