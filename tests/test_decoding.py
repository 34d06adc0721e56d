"""Split-KV decoding and the log-sum-exp merge: equal to full attention, exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from attnkit import attention, example
from attnkit.serving.decoding import merge_partials, partial_attention, split_kv_attention, split_sizes

CAUSAL = [False, "top-left", "bottom-right"]


def _lse_reference(q, k, mask, causal, scale):
    """log(sum(exp(scores))) per row, from the full (L, S) matrix."""
    scores = q @ np.swapaxes(k, -1, -2) * scale
    L, S = scores.shape[-2:]
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    if causal:
        o = 0 if causal == "top-left" else S - L
        scores = np.where(np.arange(S)[None, :] <= np.arange(L)[:, None] + o, scores, -np.inf)
    m = scores.max(axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return (m + np.log(np.exp(scores - m).sum(axis=-1, keepdims=True)))[..., 0]


@given(
    L=st.integers(1, 4), S=st.integers(1, 40), splits=st.integers(1, 12),
    causal=st.sampled_from(CAUSAL), masked=st.booleans(), seed=st.integers(0, 2**16),
)
def test_split_kv_equals_full_attention_numpy(L, S, splits, causal, masked, seed):
    rng = np.random.default_rng(seed)
    q, k, v = rng.normal(size=(2, 3, L, 8)), rng.normal(size=(2, 3, S, 8)), rng.normal(size=(2, 3, S, 5))
    mask = rng.random((2, 1, 1, S)) < 0.7 if masked else None
    out, lse = split_kv_attention(q, k, v, num_splits=splits, causal=causal, mask=mask,
                                  return_lse=True)
    ref = attention(q, k, v, causal=causal, mask=mask)
    np.testing.assert_allclose(out, ref, atol=1e-12)
    np.testing.assert_allclose(lse, _lse_reference(q, k, mask, causal, 8**-0.5), atol=1e-12)


@given(
    L=st.integers(1, 3), S=st.integers(1, 30), splits=st.integers(1, 8),
    causal=st.sampled_from(CAUSAL), seed=st.integers(0, 2**16),
)
def test_split_kv_equals_full_attention_torch(L, S, splits, causal, seed):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(2, L, 6, generator=g, dtype=torch.float64)
    k = torch.randn(2, S, 6, generator=g, dtype=torch.float64)
    v = torch.randn(2, S, 4, generator=g, dtype=torch.float64)
    mask = torch.rand(2, 1, S, generator=g) < 0.7
    out = split_kv_attention(q, k, v, num_splits=splits, causal=causal, mask=mask, workers=2)
    torch.testing.assert_close(out, attention(q, k, v, causal=causal, mask=mask), atol=1e-12, rtol=0)


def test_float_mask_scale_and_float32():
    rng = np.random.default_rng(1)
    q, k, v = (rng.normal(size=s).astype(np.float32) for s in ((4, 2, 16), (4, 300, 16), (4, 300, 16)))
    bias = rng.normal(size=(1, 1, 300)).astype(np.float32)
    out = split_kv_attention(q, k, v, num_splits=7, mask=bias, scale=0.3)
    assert out.dtype == np.float32
    ref64 = attention(*(x.astype(np.float64) for x in (q, k, v)), mask=bias.astype(np.float64), scale=0.3)
    naive32 = attention(q, k, v, mask=bias, scale=0.3)
    err, naive_err = np.abs(out - ref64).max(), np.abs(naive32 - ref64).max()
    assert err <= 2 * max(naive_err, np.finfo(np.float32).eps), (err, naive_err)


def test_shared_example_row0_and_empty_chunks():
    out = split_kv_attention(example.Q[:1], example.K, example.V, num_splits=9)  # 4 empty chunks
    np.testing.assert_allclose(out[0].round(4), [0.2254, 0.4135, 0.2964, 0.2964])


def test_fully_masked_rows_are_zero_with_lse_minus_inf():
    rng = np.random.default_rng(2)
    q, k, v = rng.normal(size=(3, 4)), rng.normal(size=(10, 4)), rng.normal(size=(10, 4))
    mask = np.ones((3, 10), dtype=bool)
    mask[1] = False  # query 1 sees nothing
    mask[2, :5] = False  # query 2 sees only the second chunk
    out, lse = split_kv_attention(q, k, v, num_splits=2, mask=mask, return_lse=True)
    np.testing.assert_array_equal(out[1], 0.0)
    assert lse[1] == -np.inf and np.isfinite(lse[[0, 2]]).all()
    np.testing.assert_allclose(out, attention(q, k, v, mask=mask), atol=1e-14)


def test_merge_partials_is_order_free_and_handles_minus_inf():
    rng = np.random.default_rng(3)
    q, k, v = rng.normal(size=(5, 4)), rng.normal(size=(12, 4)), rng.normal(size=(12, 3))
    parts = [partial_attention(q, k[a:b], v[a:b]) for a, b in ((0, 4), (4, 9), (9, 12))]
    empty = (np.full((5, 3), 7.0), np.full(5, -np.inf))  # an empty chunk: ignored
    for order in ([0, 1, 2], [2, 0, 1], [1, 2, 0]):
        chosen = [parts[i] for i in order] + [empty]
        out, lse = merge_partials([p[0] for p in chosen], [p[1] for p in chosen])
        np.testing.assert_allclose(out, attention(q, k, v), atol=1e-14)
        np.testing.assert_allclose(lse, _lse_reference(q, k, None, False, 0.5), atol=1e-14)
    out, lse = merge_partials([empty[0]], [empty[1]])
    np.testing.assert_array_equal(out, 0.0)
    assert np.all(lse == -np.inf)


def test_merge_partials_extreme_lse_does_not_overflow():
    outs = [np.ones((1, 2)), 2 * np.ones((1, 2))]
    out, lse = merge_partials(outs, [np.array([1000.0]), np.array([1000.0])])
    np.testing.assert_allclose(out, 1.5)
    np.testing.assert_allclose(lse, 1000 + np.log(2))
    out, _ = merge_partials(outs, [np.array([-1000.0]), np.array([1000.0])])
    np.testing.assert_allclose(out, 2.0)


def test_gradcheck_split_kv_and_merge():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 7, 3, generator=g, dtype=torch.float64, requires_grad=True)
    v = torch.randn(2, 7, 2, generator=g, dtype=torch.float64, requires_grad=True)
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[0, :3] = False  # query 0 sees nothing in the first chunk
    for causal in (False, "bottom-right"):
        assert torch.autograd.gradcheck(
            lambda q, k, v, c=causal: split_kv_attention(q, k, v, num_splits=3, mask=mask, causal=c),
            (q, k, v))
    assert torch.autograd.gradcheck(
        lambda q, k, v: split_kv_attention(q, k, v, num_splits=2, return_lse=True)[1], (q, k, v))
    # and the gradients equal those of full attention
    out = split_kv_attention(q, k, v, num_splits=3, mask=mask)
    ref = attention(q, k, v, mask=mask, backend="torch")
    grads = torch.autograd.grad(out.square().sum(), (q, k, v))
    ref_grads = torch.autograd.grad(ref.square().sum(), (q, k, v))
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_torch_merge_matches_numpy_merge():
    rng = np.random.default_rng(4)
    outs = [rng.normal(size=(2, 3, 4)) for _ in range(3)]
    lses = [rng.normal(size=(2, 3)) for _ in range(3)]
    lses[1][0, 0] = -np.inf
    out_np, lse_np = merge_partials(outs, lses)
    out_t, lse_t = merge_partials([torch.from_numpy(o) for o in outs], [torch.from_numpy(s) for s in lses])
    np.testing.assert_allclose(out_t.numpy(), out_np, atol=1e-15)
    np.testing.assert_allclose(lse_t.numpy(), lse_np, atol=1e-15)


def test_split_sizes():
    assert split_sizes(10, 4) == [3, 3, 2, 2]
    assert split_sizes(2, 4) == [1, 1, 0, 0]
    assert sum(split_sizes(1001, 7)) == 1001


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(num_splits=0), ValueError, "num_splits must be a positive integer; got 0"),
    (dict(num_splits=2.5), TypeError, "num_splits must be a positive integer; got 2.5 of type float"),
    (dict(num_splits=True), TypeError, "num_splits must be a positive integer; got True of type bool"),
    (dict(num_splits=2, workers=0), ValueError, "workers must be a positive integer"),
    (dict(num_splits=2, return_lse=1), TypeError, "return_lse must be a bool"),
])
def test_split_kv_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        split_kv_attention(example.Q, example.K, example.V, **kwargs)


def test_split_kv_bad_shapes_use_the_shared_validation():
    with pytest.raises(ValueError, match="same width E"):
        split_kv_attention(example.Q, example.K[:, :3], example.V, num_splits=2)


def test_merge_partials_bad_input():
    with pytest.raises(ValueError, match="at least one"):
        merge_partials([], [])
    with pytest.raises(ValueError, match="same length"):
        merge_partials([np.zeros((2, 3))], [])
    with pytest.raises(ValueError, match=r"lses\[0\] must have shape"):
        merge_partials([np.zeros((2, 3))], [np.zeros(3)])
    with pytest.raises(TypeError, match="a mix"):
        merge_partials([np.zeros((2, 3))], [torch.zeros(2)])
    with pytest.raises(TypeError, match="list"):
        merge_partials([[0.0, 1.0]], [np.zeros(1)])
