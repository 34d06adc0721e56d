"""Top-k sparse attention: gathered keys equal attention with the selection as a mask.

Forward and backward; also the indexer, the blocked selection and the refusals.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import attnkit
from attnkit.models.sparse import (
    indexer_scores,
    indexer_topk,
    select_topk,
    selection_mask,
    topk_attention,
    window_selection,
)


@settings(max_examples=40, deadline=None)
@given(L=st.integers(1, 12), extra=st.integers(0, 12), E=st.integers(1, 6),
       data=st.data(), seed=st.integers(0, 2**16))
def test_topk_equals_masked_attention_forward_and_backward(L, extra, E, data, seed):
    S = L + extra
    k_top = data.draw(st.integers(1, S))
    causal = data.draw(st.sampled_from([False, "bottom-right"]))
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(2, n, E, dtype=torch.float64, generator=g, requires_grad=True)
               for n in (L, S, S))
    scores = torch.randn(2, L, S, dtype=torch.float64, generator=g)
    if causal:
        vis = torch.ones(L, S, dtype=torch.bool).tril(S - L)
        scores = scores.masked_fill(~vis, float("-inf"))
    idx, valid = select_topk(scores, k_top)
    out = topk_attention(q, k, v, idx, valid, block_q=data.draw(st.integers(1, 5)))
    ref = attnkit.attention(q, k, v, mask=selection_mask(idx, valid, S), backend="torch")
    assert float((out - ref).detach().abs().max()) <= 1e-12
    up = torch.randn(out.shape, dtype=torch.float64, generator=g)
    g1 = torch.autograd.grad(out, (q, k, v), up)
    g2 = torch.autograd.grad(ref, (q, k, v), up)
    for a, b in zip(g1, g2):
        assert float((a - b).abs().max()) <= 1e-12


def test_numpy_and_torch_agree():
    rng = np.random.default_rng(0)
    q, k, v = rng.standard_normal((3, 1, 16, 4))
    idx, valid = select_topk(np.where(np.tril(np.ones((16, 16), bool)), q @ k.swapaxes(-1, -2),
                                      -np.inf), 5)
    a = topk_attention(q, k, v, idx, valid)
    b = topk_attention(*(torch.from_numpy(x) for x in (q, k, v, idx, valid)))
    assert np.abs(a - b.numpy()).max() <= 1e-12


@pytest.mark.parametrize("k_top", [1, 5, 16])
def test_numpy_selection_is_torch_topk_largest_first(k_top):
    rng = np.random.default_rng(k_top)
    scores = np.where(np.tril(np.ones((16, 16), bool)), rng.standard_normal((3, 16, 16)), -np.inf)
    idx, valid = select_topk(scores, k_top)
    t_idx, t_valid = select_topk(torch.from_numpy(scores), k_top)
    assert np.array_equal(selection_mask(idx, valid, 16),
                          selection_mask(t_idx, t_valid, 16).numpy())
    top = np.take_along_axis(scores, idx, axis=-1)
    assert np.all(np.diff(np.where(np.isfinite(top), top, -1e300), axis=-1) <= 0)  # largest first
    assert np.array_equal(valid, np.isfinite(top))


def test_gradcheck():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 6, 3, dtype=torch.float64, generator=g, requires_grad=True)
               for _ in range(3))
    idx, valid = select_topk(torch.randn(1, 6, 6, generator=g).tril().masked_fill(
        torch.ones(6, 6).triu(1).bool(), float("-inf")), 3)
    assert torch.autograd.gradcheck(lambda a, b, c: topk_attention(a, b, c, idx, valid), (q, k, v))


def test_a_query_with_no_valid_key_gets_zeros():
    q = k = v = np.ones((1, 2, 2))
    out = topk_attention(q, k, v, np.zeros((1, 2, 1), np.int64), np.array([[[False], [True]]]))
    assert out[0, 0].tolist() == [0.0, 0.0] and out[0, 1].tolist() == [1.0, 1.0]


def test_indexer_scores_formula_and_causal():
    rng = np.random.default_rng(1)
    qi, ki, w = rng.standard_normal((5, 3, 4)), rng.standard_normal((7, 4)), rng.random((5, 3))
    got = indexer_scores(qi, ki, w, causal="bottom-right")
    for i in range(5):
        for s in range(7):
            want = sum(w[i, j] * max(qi[i, j] @ ki[s], 0.0) for j in range(3))
            assert (got[i, s] == -np.inf) if s > i + 2 else abs(got[i, s] - want) < 1e-12
    t = indexer_scores(*(torch.from_numpy(x) for x in (qi, ki, w)), causal="bottom-right")
    assert np.array_equal(np.isinf(got), torch.isinf(t).numpy())


@pytest.mark.parametrize("causal", [False, "bottom-right"])
def test_blocked_indexer_selects_the_same_keys(causal):
    rng = np.random.default_rng(2)
    qi, ki, w = rng.standard_normal((2, 20, 2, 3)), rng.standard_normal((2, 20, 3)), \
        rng.random((2, 20, 2))
    full = select_topk(indexer_scores(qi, ki, w, causal=causal), 6)
    for block in (1, 3, 7, 64):
        got = indexer_topk(qi, ki, w, 6, causal=causal, block_q=block)
        assert np.array_equal(selection_mask(*got, 20), selection_mask(*full, 20))


def test_window_selection_is_the_window_mask():
    idx, valid = window_selection(5, 9, 3)
    mask = selection_mask(idx, valid, 9)
    i = np.arange(5)[:, None] + 4
    j = np.arange(9)[None, :]
    assert np.array_equal(mask, (j <= i) & (j > i - 3))
    # and attention over the window's selection is attnkit's own window
    rng = np.random.default_rng(0)
    q, k, v = rng.standard_normal((1, 5, 2)), rng.standard_normal((1, 9, 2)), \
        rng.standard_normal((1, 9, 2))
    want = attnkit.attention(q, k, v, causal="bottom-right", window=(2, 0))
    assert np.abs(topk_attention(q, k, v, idx[None], valid[None]) - want).max() <= 1e-12


def test_refusals():
    with pytest.raises(ValueError, match="k must be at most the number of keys S = 4; got k = 5"):
        select_topk(np.zeros((2, 4)), 5)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        select_topk(np.zeros((2, 4)), 0)
    with pytest.raises(ValueError, match="k must be at most"):
        indexer_topk(np.zeros((2, 1, 3)), np.zeros((4, 3)), np.zeros((2, 1)), 5)
    with pytest.raises(ValueError, match=r"window must be an integer in \[1, 9\]; got -2"):
        window_selection(5, 9, -2)
    with pytest.raises(ValueError, match="idx must hold key positions"):
        topk_attention(np.zeros((2, 3)), np.zeros((4, 3)), np.zeros((4, 3)),
                       np.full((2, 1), 4, np.int64))
    with pytest.raises(TypeError, match="idx must hold integers"):
        topk_attention(np.zeros((2, 3)), np.zeros((4, 3)), np.zeros((4, 3)), np.zeros((2, 1)))
    with pytest.raises(ValueError, match="shapes do not fit"):
        indexer_scores(np.zeros((2, 1, 3)), np.zeros((4, 2)), np.zeros((2, 1)))
